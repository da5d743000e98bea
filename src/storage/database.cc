#include "storage/database.h"

#include <sqlite3.h>

#include <cstdio>
#include <filesystem>

#include "base/file_util.h"
#include "base/log.h"
#include "storage/page_cipher.h"

namespace silo::storage {
namespace {

std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

// The private cause of a failure on `db`: which file, and SQLite's words.
std::string Context(sqlite3* db, std::string_view message) {
  const char* file = sqlite3_db_filename(db, "main");
  return std::string(file != nullptr && *file != '\0' ? file : ":memory:") + ": " +
         std::string(message);
}

}  // namespace

Status SqliteStatus(int rc, std::string_view what) {
  // The public message names only the kind of failure: SQLite's text, the
  // statement context and any path in `what` go to the cause (status.h).
  std::string cause = std::string(what) + ": " + sqlite3_errstr(rc);
  auto with_cause = [&](Status s) { return std::move(s).WithCause(cause); };
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return Status::Ok();
    case SQLITE_NOTADB: return with_cause(DataLoss("wrong key or not a silo database"));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return with_cause(AlreadyExists("already exists"));
      }
      return with_cause(FailedPrecondition("the change conflicts with stored data"));
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return with_cause(Unavailable("storage is busy; retry"));
    // The server's disk, not the caller's quota: a 5xx, not a 429.
    case SQLITE_FULL: return with_cause(Unavailable("storage is full; retry later"));
    case SQLITE_CORRUPT: return with_cause(DataLoss("stored data is corrupt"));
    case SQLITE_IOERR:
      if (rc == SQLITE_IOERR_AUTH) return with_cause(DataLoss("page failed authentication"));
      // A sync that did not complete (on a cluster node also: no follower
      // acknowledged in strict mode, or the node's lease lapsed): the
      // change was not answered as made; the client may retry.
      if (rc == SQLITE_IOERR_FSYNC)
        return with_cause(Unavailable("the change could not be made durable; retry"));
      return with_cause(Internal("storage I/O error"));
    default: return with_cause(Internal("storage error"));
  }
}

// ---- Database ---------------------------------------------------------------

Result<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                 const crypto::SecretKey& database_key,
                                                 const OpenOptions& options) {
  EnsureCipherVfs();
  auto key = RegisterKey(database_key);
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX |
              (options.create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(CipherUri(path, *key, options.vfs).c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    sqlite3_close_v2(db);
    return SqliteStatus(extended, "open " + path);
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<Database> database(new Database(db, path));
  // The reserve must be requested before the first write creates page 1;
  // on an existing file it is already fixed and the VFS checks it.
  int reserve = static_cast<int>(kReserveBytes);
  sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
  std::string pragmas =
      "PRAGMA temp_store=MEMORY; PRAGMA secure_delete=ON; "
      "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=" +
      std::to_string(options.busy_timeout_ms) +
      "; PRAGMA cache_size=" + std::to_string(options.cache_pages) +
      "; PRAGMA synchronous=" + (options.synchronous == Synchronous::kFull ? "FULL" : "NORMAL") +
      ";";
  if (Status s = database->Exec(pragmas); !s.ok()) return s;
  auto mode = database->Prepare("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  auto row = mode->Step();
  if (!row.ok()) return row.status();
  if (!*row || mode->ColumnText(0) != "wal") {
    return Internal("cannot switch the database to WAL").WithCause(path);
  }
  return database;
}

Database::~Database() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
  if (sqlite3_close(db_) != SQLITE_OK) {
    log::Error("database closed with statements open", {{"file", path_}});
    sqlite3_close_v2(db_);
  }
}

Status Database::Exec(std::string_view sql) {
  std::string text(sql);
  char* error = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string message = error != nullptr ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  Status s = SqliteStatus(sqlite3_extended_errcode(db_), Context(db_, message));
  return s.ok() ? Internal("storage error").WithCause(Context(db_, message)) : s;
}

Result<Statement> Database::Prepare(std::string_view sql) {
  std::string text(sql);
  if (auto it = cache_.find(text); it != cache_.end()) {
    sqlite3_stmt* stmt = it->second;
    cache_.erase(it);
    return Statement(db_, stmt, this, std::move(text));
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(rc, Context(db_, sqlite3_errmsg(db_)));
  return Statement(db_, stmt, this, std::move(text));
}

void Database::Return(std::string sql, sqlite3_stmt* stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  if (cache_.size() >= kMaxCachedStatements || cache_.count(sql)) {
    sqlite3_finalize(stmt);
    return;
  }
  cache_.emplace(std::move(sql), stmt);
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Database::Changes() const { return sqlite3_changes(db_); }
bool Database::InTransaction() const { return !sqlite3_get_autocommit(db_); }

Status Database::VacuumInto(const std::string& target_path, const crypto::SecretKey& target_key) {
  if (PathExists(target_path)) return AlreadyExists("target exists").WithCause(target_path);
  auto key = RegisterKey(target_key);
  Status s = Exec("VACUUM INTO " + Quote(CipherUri(target_path, *key)));
  if (s.ok()) s = SyncFile(target_path);
  if (s.ok()) s = SyncDir(std::filesystem::path(target_path).parent_path().string());
  if (!s.ok()) RemoveDatabaseFiles(target_path);
  return s;
}

Status Database::BackupTo(Database& target) {
  sqlite3_backup* backup = sqlite3_backup_init(target.db_, "main", db_, "main");
  if (backup == nullptr) {
    return SqliteStatus(sqlite3_extended_errcode(target.db_),
                        Context(target.db_, sqlite3_errmsg(target.db_)));
  }
  int rc = sqlite3_backup_step(backup, -1);
  int finish = sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return SqliteStatus(rc, "backup");
  return SqliteStatus(finish, "backup");
}

Result<std::string> Database::CheckPragma(const char* pragma) {
  auto stmt = Prepare(pragma);
  if (!stmt.ok()) return stmt.status();
  std::string report;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) {
      // The check reports bad pages, then may stop on one while it walks a
      // table's rows: keep what it reported, then say why it stopped.
      if (report.empty() || report == "ok") return row.status();
      return report + "\n" + row.status().message();
    }
    if (!*row) break;
    if (!report.empty()) report += "\n";
    report += stmt->ColumnText(0);
  }
  return report;
}

Result<std::string> Database::QuickCheck() { return CheckPragma("PRAGMA quick_check"); }
Result<std::string> Database::IntegrityCheck() { return CheckPragma("PRAGMA integrity_check"); }

Status Database::Checkpoint() {
  int rc = sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  return SqliteStatus(rc, "checkpoint");
}

Result<int64_t> Database::WalFrames() {
  int log = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_PASSIVE, &log, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(rc, "checkpoint");
  return int64_t{log};
}

// ---- Statement --------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_),
      stmt_(other.stmt_),
      owner_(other.owner_),
      sql_(std::move(other.sql_)),
      bind_rc_(other.bind_rc_) {
  other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    Release();
    db_ = other.db_;
    stmt_ = other.stmt_;
    owner_ = other.owner_;
    sql_ = std::move(other.sql_);
    bind_rc_ = other.bind_rc_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { Release(); }

void Statement::Release() {
  if (stmt_ == nullptr) return;
  if (owner_ != nullptr) {
    owner_->Return(std::move(sql_), stmt_);
  } else {
    sqlite3_finalize(stmt_);
  }
  stmt_ = nullptr;
}

Statement& Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  int rc =
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::BindDouble(int index, double value) {
  int rc = sqlite3_bind_double(stmt_, index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  int rc = sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Statement::Step() {
  if (bind_rc_ != SQLITE_OK) return SqliteStatus(bind_rc_, "bind");
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s = SqliteStatus(sqlite3_extended_errcode(db_), Context(db_, sqlite3_errmsg(db_)));
  sqlite3_reset(stmt_);
  return s.ok() ? Internal("step failed") : s;
}

Status Statement::Run() {
  while (true) {
    auto row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_rc_ = SQLITE_OK;
}

int64_t Statement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }

double Statement::ColumnDouble(int column) const { return sqlite3_column_double(stmt_, column); }

Statement::Type Statement::ColumnType(int column) const {
  switch (sqlite3_column_type(stmt_, column)) {
    case SQLITE_INTEGER: return Type::kInteger;
    case SQLITE_FLOAT: return Type::kReal;
    case SQLITE_TEXT: return Type::kText;
    case SQLITE_BLOB: return Type::kBlob;
    default: return Type::kNull;
  }
}

std::string Statement::ColumnText(int column) const {
  const auto* text = sqlite3_column_text(stmt_, column);
  return text == nullptr ? std::string()
                         : std::string(reinterpret_cast<const char*>(text),
                                       sqlite3_column_bytes(stmt_, column));
}

std::string Statement::ColumnBlob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  return blob == nullptr
             ? std::string()
             : std::string(static_cast<const char*>(blob), sqlite3_column_bytes(stmt_, column));
}

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

// ---- Transaction ------------------------------------------------------------

Result<Transaction> Transaction::Begin(Database& db) {
  if (db.InTransaction()) {
    if (Status s = db.Exec("SAVEPOINT silo_tx"); !s.ok()) return s;
    return Transaction(&db, true);
  }
  if (Status s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return Transaction(&db, false);
}

Transaction::~Transaction() {
  // Not in a transaction any more: SQLite rolled it back itself (an I/O
  // error, a full disk), savepoints included.
  if (db_ == nullptr || !db_->InTransaction()) return;
  Status s = nested_ ? db_->Exec("ROLLBACK TO silo_tx; RELEASE silo_tx") : db_->Exec("ROLLBACK");
  if (!s.ok()) log::Warn("rollback failed", {{"file", db_->path()}, {"error", s.message()}});
}

Status Transaction::Commit() {
  if (db_ == nullptr) return FailedPrecondition("transaction already ended");
  Status s = db_->Exec(nested_ ? "RELEASE silo_tx" : "COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

void RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-journal"}) std::remove((path + suffix).c_str());
}

// ---- Rekey ------------------------------------------------------------------

Status Rekey(const std::string& path, const crypto::SecretKey& old_key,
             const crypto::SecretKey& new_key) {
  std::string staging = path + ".rekey";
  RemoveDatabaseFiles(staging);  // left by an interrupted earlier attempt
  {
    auto source = Database::Open(path, old_key, {.create = false});
    if (!source.ok()) return source.status();
    if (Status s = (*source)->VacuumInto(staging, new_key); !s.ok()) return s;
  }
  Status checked;
  {
    auto copy = Database::Open(staging, new_key, {.create = false});
    checked = copy.status();
    if (checked.ok()) {
      auto report = (*copy)->QuickCheck();
      checked = !report.ok()      ? report.status()
                : *report == "ok" ? Status::Ok()
                                  : DataLoss("re-keyed copy: " + *report);
    }
  }
  if (!checked.ok()) {
    RemoveDatabaseFiles(staging);
    return checked;
  }
  // The copy is closed: its WAL was checkpointed into it and removed.
  if (Status s = SyncFile(staging); !s.ok()) return s;
  std::remove((path + "-wal").c_str());
  if (std::rename(staging.c_str(), path.c_str()) != 0) {
    return Internal("cannot replace the database").WithCause("rename " + staging + " over " + path);
  }
  return SyncDir(std::filesystem::path(path).parent_path().string());
}

}  // namespace silo::storage
