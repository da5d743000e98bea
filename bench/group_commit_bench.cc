// make bench-group-commit: durable writes through one tenant's writer
// (storage::TenantDatabase, the path every record write takes), with group
// commit (max_group 64, the default) against one COMMIT per write
// (max_group 1), interleaved run by run, medians of RUNS runs (default 5).
// Each write is a storage::Transaction inserting one 250-byte row, the
// database is on the cipher VFS with the production settings
// (synchronous=FULL: every COMMIT is a WAL fsync), on a real disk.
// Measured with 16 concurrent writers and with one (where grouping cannot
// help and must not cost).
//
// Then, for a replicated tenant in sync mode: the same 16 writers, grouped,
// on the replication shim with a recorder whose every sync takes ACK_MS
// (default 2) milliseconds to be "acknowledged" (a stand-in for a follower
// on another machine: its round trip and fsync; this machine's loopback
// followers are CPU-bound instead, bench/cluster_bench.py), awaited either
// in the sync, under the write lock (as before storage::repl::CommitWaits),
// or after the writer let go of it (CommitWaits, as a cluster node does).
// Prints a table and, last,
//   RESULT grouped16_wps=<n> single16_wps=<n> group16_ratio=<x>
//          grouped1_wps=<n> single1_wps=<n> writes_per_commit16=<n>
//          ack_ms=<n> ack_in_lock_wps=<n> ack_after_lock_wps=<n> ack_ratio=<x>
//
// BENCH_DIR (default /tmp) holds the scratch databases, removed afterwards.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "crypto/secret_key.h"
#include "median.h"
#include "storage/database.h"
#include "storage/repl_vfs.h"
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

// A replica that acknowledges each sync after `ack`: in the sync (under the
// write lock), or, when `after_lock` and the writer installed CommitWaits,
// once the writer has let go of the lock.
class SlowReplica : public silo::storage::repl::Recorder {
 public:
  SlowReplica(std::chrono::microseconds ack, bool after_lock)
      : ack_(ack), after_lock_(after_lock) {}
  void Write(silo::storage::repl::File, int64_t, std::string_view) override {}
  void Truncate(silo::storage::repl::File, int64_t) override {}
  void Delete(silo::storage::repl::File) override {}
  Status Sync(silo::storage::repl::File) override {
    auto wait = [ack = ack_]() -> Status {
      std::this_thread::sleep_for(ack);
      return Status::Ok();
    };
    auto* waits = silo::storage::repl::CommitWaits::Current();
    if (!after_lock_ || waits == nullptr) return wait();
    waits->Add(wait);
    return Status::Ok();
  }

 private:
  const std::chrono::microseconds ack_;
  const bool after_lock_;
};

// `replica`: the database is attached to the replication shim with it.
Outcome Run(const std::string& dir, const silo::crypto::SecretKey& key, int writers,
            size_t max_group, std::shared_ptr<SlowReplica> replica = nullptr) {
  std::string path = dir + "/gc.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  silo::storage::OpenOptions options;
  if (replica) {
    silo::storage::repl::EnsureReplicationVfs();
    silo::storage::repl::Attach(path, replica);
    options.vfs = silo::storage::repl::kReplicatedCipherVfs;
  }
  auto writer = Database::Open(path, key, options);
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
  Outcome o{total / seconds, static_cast<double>(total) / static_cast<double>(db.group_commits())};
  if (replica) silo::storage::repl::Detach(path);
  return o;
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

  const char* ack_env = std::getenv("ACK_MS");
  const double ack_ms = ack_env != nullptr ? std::max(0.0, std::atof(ack_env)) : 2.0;
  const auto ack = std::chrono::microseconds(static_cast<int64_t>(ack_ms * 1000));

  // [writers][grouped] -> per-run figures; [after the lock] with a replica
  std::vector<double> wps[2][2], per_commit16, acked_wps[2], acked_per_commit[2];
  const int kWriters[2] = {16, 1};
  for (int r = 0; r < runs; ++r) {
    for (int w = 0; w < 2; ++w) {
      for (int g = 0; g < 2; ++g) {
        Outcome o = Run(dir, key, kWriters[w], g == 1 ? 64 : 1);
        wps[w][g].push_back(o.writes_per_s);
        if (w == 0 && g == 1) per_commit16.push_back(o.writes_per_commit);
      }
    }
    for (int after = 0; after < 2; ++after) {
      Outcome o = Run(dir, key, 16, 64, std::make_shared<SlowReplica>(ack, after == 1));
      acked_wps[after].push_back(o.writes_per_s);
      acked_per_commit[after].push_back(o.writes_per_commit);
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
  std::printf("writes per COMMIT, 16 writers: %.1f\n", Median(per_commit16));
  std::printf("\n%-34s %14s %14s %7s\n",
              ("16 writers, replica ack " + std::to_string(ack_ms).substr(0, 4) + " ms").c_str(),
              "under the lock", "after the lock", "ratio");
  std::printf("%-34s %14.0f %14.0f %7.2f\n", "durable, acknowledged writes/s", Median(acked_wps[0]),
              Median(acked_wps[1]), Median(acked_wps[1]) / Median(acked_wps[0]));
  std::printf("%-34s %14.1f %14.1f\nruns=%d\n", "writes per COMMIT", Median(acked_per_commit[0]),
              Median(acked_per_commit[1]), runs);
  std::printf(
      "RESULT grouped16_wps=%.0f single16_wps=%.0f group16_ratio=%.2f grouped1_wps=%.0f "
      "single1_wps=%.0f writes_per_commit16=%.1f ack_ms=%.1f ack_in_lock_wps=%.0f "
      "ack_after_lock_wps=%.0f ack_ratio=%.2f\n",
      Median(wps[0][1]), Median(wps[0][0]), Median(wps[0][1]) / Median(wps[0][0]),
      Median(wps[1][1]), Median(wps[1][0]), Median(per_commit16), ack_ms, Median(acked_wps[0]),
      Median(acked_wps[1]), Median(acked_wps[1]) / Median(acked_wps[0]));
  return 0;
}
