// One SQLite connection to an encrypted database, prepared statements with
// typed binding, and scoped write transactions. The storage module is the
// only code that sees sqlite3 types; nothing here exposes them.
//
// A Database is used by one thread at a time (the tenant cache serialises
// writers and hands each reader its own connection).
#ifndef SILO_STORAGE_DATABASE_H_
#define SILO_STORAGE_DATABASE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/status.h"
#include "cache/tenant_cache.h"
#include "crypto/secret_key.h"
#include "storage/cipher_vfs.h"

struct sqlite3;
struct sqlite3_stmt;

namespace silo::storage {

enum class Synchronous { kNormal, kFull };

struct OpenOptions {
  bool create = true;  // create the file when missing
  // The VFS to open through; tests pass a cipher VFS over a faulty one.
  std::string vfs = kCipherVfsName;
  // FULL: a commit that returned survives power loss. NORMAL gives up the
  // last transactions on power loss (not on a process crash); see
  // docs/storage_format.md.
  Synchronous synchronous = Synchronous::kFull;
  int cache_pages = 500;  // SQLite page cache per connection (x 4 KiB)
  int busy_timeout_ms = 5000;
};

class Statement;

class Database {
 public:
  // Opens (or creates) the database at `path`, encrypted under
  // `database_key`, in WAL mode with foreign keys, secure delete and
  // temp_store=MEMORY. A wrong key or a file that is not a Silo database
  // gives DataLoss "wrong key or not a silo database".
  static Result<std::unique_ptr<Database>> Open(const std::string& path,
                                                const crypto::SecretKey& database_key,
                                                const OpenOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements that return no rows.
  Status Exec(std::string_view sql);
  // Prepared statements are cached per connection by their SQL text (up to
  // kMaxCachedStatements): preparing the same text again reuses the compiled
  // statement, reset and unbound. REQUIRES: the Statement is destroyed before
  // this Database.
  Result<Statement> Prepare(std::string_view sql);
  static constexpr size_t kMaxCachedStatements = 64;

  int64_t LastInsertRowId() const;
  int Changes() const;
  // True between BEGIN and COMMIT/ROLLBACK.
  bool InTransaction() const;
  const std::string& path() const { return path_; }

  // Writes a compacted copy to `target_path` under `target_key` (VACUUM
  // INTO). The copy is fsynced with its directory; a failed copy is removed.
  Status VacuumInto(const std::string& target_path, const crypto::SecretKey& target_key);

  // Copies this database into `target` with the online backup API (both
  // encrypted, each under its own key).
  Status BackupTo(Database& target);

  // "ok", or the problems PRAGMA quick_check / integrity_check report.
  Result<std::string> QuickCheck();
  Result<std::string> IntegrityCheck();

  // Moves the WAL into the database file and truncates the WAL.
  Status Checkpoint();

  // The frames in the WAL as SQLite recovered it (the last commit frame):
  // a log that a damaged frame ends early shows fewer than were written.
  // Runs a PASSIVE checkpoint to learn it (copies what it can, never waits).
  Result<int64_t> WalFrames();

  // The raw handle, for the storage module's own code and tests only.
  sqlite3* handle() { return db_; }

  // The cache of the tenant this connection belongs to (set by
  // TenantDatabase for its connections), or null: then there is nothing to
  // cache in, and callers derive every value afresh.
  cache::TenantCache* tenant_cache() const { return tenant_cache_; }
  void set_tenant_cache(cache::TenantCache* c) { tenant_cache_ = c; }

 private:
  friend class Statement;
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Result<std::string> CheckPragma(const char* pragma);
  // Takes back a statement that is done (reset, unbound) or finalizes it.
  void Return(std::string sql, sqlite3_stmt* stmt);

  sqlite3* db_;
  std::string path_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;  // idle compiled statements
  cache::TenantCache* tenant_cache_ = nullptr;
};

// A prepared statement. Bind indexes are 1-based, column indexes 0-based.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& BindNull(int index);
  Statement& BindDouble(int index, double value);

  // true while a row is available; false when done.
  Result<bool> Step();
  // Steps to the end, for statements that return no rows.
  Status Run();
  void Reset();

  int64_t ColumnInt(int column) const;
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  bool ColumnIsNull(int column) const;
  double ColumnDouble(int column) const;
  enum class Type { kInteger, kReal, kText, kBlob, kNull };
  Type ColumnType(int column) const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt, Database* owner, std::string sql)
      : db_(db), stmt_(stmt), owner_(owner), sql_(std::move(sql)) {}
  Status BindError();
  void Release();
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  Database* owner_;  // the cache to return to
  std::string sql_;
  int bind_rc_ = 0;  // first bind failure, reported by Step()
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit()
// succeeded. Inside a transaction that is already open (a group commit:
// TenantDatabase::WriteGrouped) it is a SAVEPOINT instead: Commit()
// releases it into the enclosing transaction, which makes it durable or
// not; destruction without Commit() undoes exactly its own changes.
class Transaction {
 public:
  static Result<Transaction> Begin(Database& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_), nested_(other.nested_) {
    other.db_ = nullptr;
  }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  Transaction(Database* db, bool nested) : db_(db), nested_(nested) {}
  Database* db_;
  bool nested_;
};

// Removes the database at `path` and any log beside it (-wal, -journal; the
// cipher VFS keeps no -shm), ignoring what is not there. For scratch copies,
// and before a new database takes a path, where a leftover log would be
// replayed into it.
void RemoveDatabaseFiles(const std::string& path);

// Re-encrypts the database at `path` under `new_key`: VACUUM INTO a sibling
// file, check it, fsync it and its directory, rename it over the original.
// REQUIRES: no open connection to `path`.
Status Rekey(const std::string& path, const crypto::SecretKey& old_key,
             const crypto::SecretKey& new_key);

// Maps an SQLite result code to a Status with a generic public message;
// `what` (context, SQLite's text, maybe a path) becomes its private cause.
Status SqliteStatus(int rc, std::string_view what);

}  // namespace silo::storage

#endif  // SILO_STORAGE_DATABASE_H_
