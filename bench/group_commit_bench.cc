// make bench-group-commit: durable writes through one tenant's writer
// (storage::TenantDatabase, the path every record write takes), with group
// commit (max_group 64, the default) against one COMMIT per write
// (max_group 1), interleaved run by run, medians of RUNS runs (default 5).
// Each write is a storage::Transaction inserting one 250-byte row, the
// database is on the cipher VFS with the production settings
// (synchronous=FULL: every COMMIT is a WAL fsync), on a real disk.
// Measured with 16 concurrent writers and with one (where grouping cannot
// help and must not cost). Prints a table and, last,
//   RESULT grouped16_wps=<n> single16_wps=<n> group16_ratio=<x>
//          grouped1_wps=<n> single1_wps=<n> writes_per_commit16=<n>
//
// BENCH_DIR (default /tmp) holds the scratch databases, removed afterwards.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "crypto/secret_key.h"
#include "median.h"
#include "storage/database.h"
#include "storage/tenant_databases.h"

namespace {

using silo::bench::Median;

using silo::Status;
using silo::storage::Database;
using silo::storage::TenantDatabase;
using silo::storage::Transaction;
namespace fs = std::filesystem;

constexpr int kWritesPerRun = 3200;  // split among the writers

struct Outcome {
  double writes_per_s;
  double writes_per_commit;
};

void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

Outcome Run(const std::string& dir, const silo::crypto::SecretKey& key, int writers,
            size_t max_group) {
  std::string path = dir + "/gc.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  auto writer = Database::Open(path, key, {});
  if (!writer.ok()) Die(writer.status(), "open");
  if (Status s = (*writer)->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"); !s.ok())
    Die(s, "create");
  TenantDatabase db(path, key.Clone(), {}, 1, std::move(writer).value(), max_group);
  const std::string body(250, 'b');
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kWritesPerRun / writers; ++i) {
        Status s = db.WriteGrouped([&](Database& d) -> Status {
          auto tx = Transaction::Begin(d);
          if (!tx.ok()) return tx.status();
          auto insert = d.Prepare("INSERT INTO t (body) VALUES (?)");
          if (!insert.ok()) return insert.status();
          insert->Bind(1, body);
          if (Status r = insert->Run(); !r.ok()) return r;
          return tx->Commit();
        });
        if (!s.ok()) Die(s, "write");
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int total = kWritesPerRun / writers * writers;
  return {total / seconds, static_cast<double>(total) / static_cast<double>(db.group_commits())};
}

}  // namespace

int main() {
  const char* runs_env = std::getenv("RUNS");
  int runs = runs_env != nullptr ? std::max(1, std::atoi(runs_env)) : 5;
  const char* base = std::getenv("BENCH_DIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/silo-gc-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  silo::crypto::SecretKey key = silo::crypto::SecretKey::Random();

  // [writers][grouped] -> per-run figures
  std::vector<double> wps[2][2], per_commit16;
  const int kWriters[2] = {16, 1};
  for (int r = 0; r < runs; ++r) {
    for (int w = 0; w < 2; ++w) {
      for (int g = 0; g < 2; ++g) {
        Outcome o = Run(dir, key, kWriters[w], g == 1 ? 64 : 1);
        wps[w][g].push_back(o.writes_per_s);
        if (w == 0 && g == 1) per_commit16.push_back(o.writes_per_commit);
      }
    }
    std::fprintf(stderr, "run %d/%d done\n", r + 1, runs);
  }
  fs::remove_all(dir);

  std::printf("%-34s %14s %14s %7s\n", "durable writes/s (median of runs)", "one COMMIT each",
              "group commit", "ratio");
  for (int w = 0; w < 2; ++w) {
    double single = Median(wps[w][0]), grouped = Median(wps[w][1]);
    std::printf("%-34s %14.0f %14.0f %7.2f\n",
                (std::to_string(kWriters[w]) + (kWriters[w] == 1 ? " writer" : " writers")).c_str(),
                single, grouped, grouped / single);
  }
  std::printf("writes per COMMIT, 16 writers: %.1f\nruns=%d\n", Median(per_commit16), runs);
  std::printf(
      "RESULT grouped16_wps=%.0f single16_wps=%.0f group16_ratio=%.2f grouped1_wps=%.0f "
      "single1_wps=%.0f writes_per_commit16=%.1f\n",
      Median(wps[0][1]), Median(wps[0][0]), Median(wps[0][1]) / Median(wps[0][0]),
      Median(wps[1][1]), Median(wps[1][0]), Median(per_commit16));
  return 0;
}
