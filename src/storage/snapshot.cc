#include "storage/snapshot.h"

#include <sodium.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/file_util.h"
#include "storage/page_cipher.h"

namespace silo::storage {
namespace {

constexpr char kSqliteMagic[] = "SQLite format 3";  // 15 characters and NUL

// A private in-memory database (SQLite's memdb VFS): never a file.
Result<sqlite3*> OpenMemdb() {
  static std::atomic<uint64_t> counter{0};
  // A name without a leading '/' is private to the connection.
  std::string uri = "file:silo-image-" + std::to_string(counter.fetch_add(1)) + "?vfs=memdb";
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(uri.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close(db);
    return SqliteStatus(rc, "open in-memory image");
  }
  return db;
}

// Wipes the memdb's pages, then closes it.
void WipeAndClose(sqlite3* memdb) {
  if (memdb == nullptr) return;
  sqlite3_int64 size = 0;
  unsigned char* p = sqlite3_serialize(memdb, "main", &size, SQLITE_SERIALIZE_NOCOPY);
  if (p != nullptr && size > 0) sodium_memzero(p, static_cast<size_t>(size));
  sqlite3_close(memdb);
}

Status CopyAll(sqlite3* to, sqlite3* from, const char* what) {
  sqlite3_backup* backup = sqlite3_backup_init(to, "main", from, "main");
  if (backup == nullptr) return SqliteStatus(sqlite3_extended_errcode(to), sqlite3_errmsg(to));
  int rc = sqlite3_backup_step(backup, -1);  // one step: one read transaction on `from`
  int finish = sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return SqliteStatus(rc, what);
  return SqliteStatus(finish, what);
}

}  // namespace

Snapshot::~Snapshot() { WipeAndClose(memdb_); }

Snapshot::Snapshot(Snapshot&& other) noexcept : memdb_(other.memdb_) { other.memdb_ = nullptr; }

std::string_view Snapshot::bytes() const {
  sqlite3_int64 size = 0;
  unsigned char* p = sqlite3_serialize(memdb_, "main", &size, SQLITE_SERIALIZE_NOCOPY);
  if (p == nullptr) return {};
  return {reinterpret_cast<const char*>(p), static_cast<size_t>(size)};
}

Result<Snapshot> TakeSnapshot(Database& db, const std::function<Status(Database&)>& inside) {
  if (db.InTransaction()) return FailedPrecondition("snapshot inside a transaction");
  auto memdb = OpenMemdb();
  if (!memdb.ok()) return memdb.status();
  Snapshot snapshot(*memdb);
  // memdb caps a database at 1 GiB unless told otherwise.
  sqlite3_int64 limit = int64_t{1} << 42;
  sqlite3_file_control(*memdb, "main", SQLITE_FCNTL_SIZE_LIMIT, &limit);

  // BEGIN plus a first read opens the read transaction that `inside` and the
  // copy share (the backup API reuses an open read transaction of its source).
  if (Status s = db.Exec("BEGIN; SELECT count(*) FROM sqlite_schema"); !s.ok()) return s;
  Status s = inside(db);
  if (s.ok()) s = CopyAll(*memdb, db.handle(), "snapshot");
  (void)db.Exec("COMMIT");
  if (!s.ok()) return s;
  if (snapshot.bytes().size() < kPageSize || snapshot.bytes().size() % kPageSize != 0) {
    return Internal("snapshot has an unexpected size");
  }
  return snapshot;
}

Status WriteImage(std::string& image, const std::string& path, const crypto::SecretKey& key) {
  struct Wipe {
    std::string& s;
    ~Wipe() {
      if (!s.empty()) sodium_memzero(s.data(), s.size());
    }
  } wipe{image};
  if (PathExists(path)) return AlreadyExists("target exists").WithCause(path);
  const auto* b = reinterpret_cast<const unsigned char*>(image.data());
  if (image.size() < kPageSize || image.size() % kPageSize != 0 ||
      std::memcmp(b, kSqliteMagic, sizeof kSqliteMagic) != 0 || b[16] != 0x10 || b[17] != 0x00 ||
      b[20] != kReserveBytes) {
    return DataLoss("not a database image of Silo's page layout");
  }
  // memdb has no WAL: read the image as a rollback-journal database (bytes
  // 18 and 19 are the read and write format versions; the copy into a WAL
  // database sets them back to 2).
  image[18] = 1;
  image[19] = 1;

  auto memdb = OpenMemdb();
  if (!memdb.ok()) return memdb.status();
  int rc =
      sqlite3_deserialize(*memdb, "main", reinterpret_cast<unsigned char*>(image.data()),
                          static_cast<sqlite3_int64>(image.size()),
                          static_cast<sqlite3_int64>(image.size()), SQLITE_DESERIALIZE_READONLY);
  Status s = SqliteStatus(rc, "load image");
  if (s.ok()) {
    auto target = Database::Open(path, key, {.create = true});
    s = target.status();
    if (s.ok()) s = CopyAll((*target)->handle(), *memdb, "write image");
    if (s.ok()) s = (*target)->Checkpoint();
  }
  sqlite3_close(*memdb);  // does not own the image: `wipe` clears it
  if (s.ok()) s = SyncFile(path);
  if (s.ok()) s = SyncDir(std::filesystem::path(path).parent_path().string());
  if (!s.ok()) {
    for (const char* suffix : {"", "-wal", "-journal"}) std::remove((path + suffix).c_str());
  }
  return s;
}

}  // namespace silo::storage
