// make bench-storage: the same workloads on SQLite's plain `unix` VFS and on
// the cipher VFS, interleaved run by run, medians of RUNS runs (default 5).
// All use the production settings: WAL, synchronous=FULL, secure_delete,
// temp_store=MEMORY. The baseline is `unix` with locking_mode=EXCLUSIVE:
// the cipher VFS sits on `unix-excl`, which is the same locking (one process
// owns the database, WAL index in heap memory), so the ratio measures the
// cipher and nothing else. `unix` with its default shared locking is shown
// too, for reference (it pays file locks on every read transaction).
// Prints a table and, last,
//   RESULT write_ratio=<x> write_plain_ms=<ms> write_cipher_ms=<ms> ... for write, batch,
//          warm_read, cold_read and scan
// where each ratio is cipher time / plain time.
//
// BENCH_DIR (default /tmp) holds the scratch databases, removed afterwards.
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "crypto/secret_key.h"
#include "median.h"
#include "storage/database.h"

namespace {

using silo::bench::Median;

using silo::storage::Database;
namespace fs = std::filesystem;

constexpr int kWrites = 200;        // single-row write transactions
constexpr int kBatches = 10;        // transactions of 1,000 rows
constexpr int kRows = 20000;        // rows for the read workloads
constexpr int kWarmReads = 100000;  // point reads, cache holds the database
constexpr int kColdReads = 20000;   // point reads, 16-page cache, fresh connection
constexpr char kBody[] = "%0250d";  // 250-byte bodies

void Check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

void Exec(sqlite3* db, const std::string& sql) {
  Check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, sql.c_str());
}

enum class Kind { kPlainExclusive, kCipher, kPlainShared };
const char* const kKindNames[] = {"plain", "cipher", "shared"};

// A connection on either VFS with the same settings.
class Conn {
 public:
  Conn(Kind kind, const std::string& path, const silo::crypto::SecretKey& key, int cache_pages) {
    if (kind == Kind::kCipher) {
      auto db = Database::Open(path, key, {.cache_pages = cache_pages});
      if (!db.ok()) {
        std::fprintf(stderr, "open: %s\n", db.status().ToString().c_str());
        std::exit(1);
      }
      cipher_ = std::move(db).value();
      db_ = cipher_->handle();
    } else {
      Check(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
            db_, "open");
      if (kind == Kind::kPlainExclusive) Exec(db_, "PRAGMA locking_mode=EXCLUSIVE");
      Exec(db_,
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;"
           "PRAGMA temp_store=MEMORY; PRAGMA cache_size=" +
               std::to_string(cache_pages));
    }
  }
  ~Conn() {
    if (cipher_ == nullptr) sqlite3_close(db_);
  }
  sqlite3* db() { return db_; }

 private:
  std::unique_ptr<Database> cipher_;
  sqlite3* db_ = nullptr;
};

double Seconds(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void InsertRows(sqlite3* db, int first, int count) {
  sqlite3_stmt* stmt = nullptr;
  Check(sqlite3_prepare_v2(db, "INSERT INTO t (id, body) VALUES (?, printf(?, ?))", -1, &stmt,
                           nullptr),
        db, "prepare");
  for (int i = first; i < first + count; ++i) {
    sqlite3_bind_int(stmt, 1, i);
    sqlite3_bind_text(stmt, 2, kBody, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, i);
    Check(sqlite3_step(stmt), db, "insert");
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
}

void PointReads(sqlite3* db, int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(1, kRows);
  sqlite3_stmt* stmt = nullptr;
  Check(sqlite3_prepare_v2(db, "SELECT length(body) FROM t WHERE id = ?", -1, &stmt, nullptr), db,
        "prepare");
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    sqlite3_bind_int(stmt, 1, id(rng));
    Check(sqlite3_step(stmt), db, "read");
    total += sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
  if (total != int64_t{250} * count) std::exit(2);
}

int64_t Scan(sqlite3* db) {
  sqlite3_stmt* stmt = nullptr;
  Check(sqlite3_prepare_v2(db, "SELECT sum(length(body)) FROM t", -1, &stmt, nullptr), db, "scan");
  Check(sqlite3_step(stmt), db, "scan");
  int64_t total = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return total;
}

// One run of every workload on one VFS; seconds per workload.
std::map<std::string, double> RunOnce(Kind kind, const std::string& dir,
                                      const silo::crypto::SecretKey& key, uint32_t seed) {
  std::map<std::string, double> t;
  std::string name = kKindNames[static_cast<int>(kind)];
  std::string writes = dir + "/w-" + name + ".db";
  {
    Conn c(kind, writes, key, 2000);
    Exec(c.db(), "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)");
    t["write"] = Seconds([&] {
      for (int i = 1; i <= kWrites; ++i) InsertRows(c.db(), i, 1);
    });
    t["batch"] = Seconds([&] {
      for (int b = 0; b < kBatches; ++b) {
        Exec(c.db(), "BEGIN IMMEDIATE");
        InsertRows(c.db(), 1000000 + b * 1000, 1000);
        Exec(c.db(), "COMMIT");
      }
    });
  }
  std::string reads = dir + "/r-" + name + ".db";
  {
    Conn c(kind, reads, key, 2000);
    Exec(c.db(), "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); BEGIN");
    InsertRows(c.db(), 1, kRows);
    Exec(c.db(), "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)");
  }
  {
    Conn c(kind, reads, key, 4000);  // 16 MB: the whole database stays cached
    Scan(c.db());
    t["warm_read"] = Seconds([&] { PointReads(c.db(), kWarmReads, seed); });
  }
  {
    Conn c(kind, reads, key, 16);
    t["cold_read"] = Seconds([&] { PointReads(c.db(), kColdReads, seed + 1); });
  }
  {
    Conn c(kind, reads, key, 100);
    t["scan"] = Seconds([&] {
      if (Scan(c.db()) != int64_t{250} * kRows) std::exit(2);
    });
  }
  for (const auto& f : fs::directory_iterator(dir)) fs::remove(f.path());
  return t;
}

}  // namespace

int main() {
  int runs = getenv("RUNS") ? std::max(1, atoi(getenv("RUNS"))) : 5;
  std::string base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
  std::string tmpl = base + "/silo-storage-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl.data());
  auto key = silo::crypto::SecretKey::Random();
  std::map<std::string, std::vector<double>> times[3];  // by Kind
  const Kind kOrder[] = {Kind::kPlainExclusive, Kind::kCipher, Kind::kPlainShared};
  for (int r = 0; r < runs; ++r) {
    // Rotate which VFS goes first, so drift in machine load hits all.
    for (int i = 0; i < 3; ++i) {
      Kind kind = kOrder[(i + r) % 3];
      for (const auto& [name, s] : RunOnce(kind, dir, key, 1000 + r)) {
        times[static_cast<int>(kind)][name].push_back(s);
      }
    }
    std::fprintf(stderr, "run %d/%d done\n", r + 1, runs);
  }
  fs::remove_all(dir);
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"write", "200 single-row write transactions"},
      {"batch", "10 transactions of 1,000 rows"},
      {"warm_read", "100,000 point reads, warm page cache"},
      {"cold_read", "20,000 point reads, 16-page cache"},
      {"scan", "full scan of 20,000 rows (5.6 MB)"},
  };
  std::printf("%-40s %10s %10s %7s %12s\n", "workload (median of runs, ms)", "plain", "cipher",
              "ratio", "unix-shared");
  std::string result = "RESULT";
  for (const auto& [name, label] : rows) {
    double p = Median(times[0][name]) * 1000, c = Median(times[1][name]) * 1000;
    double shared = Median(times[2][name]) * 1000;
    std::printf("%-40s %10.1f %10.1f %7.2f %12.1f\n", label.c_str(), p, c, c / p, shared);
    char part[160];
    std::snprintf(part, sizeof part, " %s_ratio=%.2f %s_plain_ms=%.1f %s_cipher_ms=%.1f",
                  name.c_str(), c / p, name.c_str(), p, name.c_str(), c);
    result += part;
  }
  std::printf("runs=%d\n%s\n", runs, result.c_str());
  return 0;
}
