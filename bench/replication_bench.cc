// make bench-replication: what shipping a tenant's changes costs its
// commits, in one process (the data path of issue 21 before silo serve uses
// it; make bench-cluster will measure whole nodes). One writer commits
// single-row inserts (250-byte rows, synchronous=FULL) to a database on the
// cipher VFS:
//   off    plain (the cipher VFS over unix-excl, no shim);
//   shim   through the replication shim, segments cut and dropped;
//   live   the same with the primary's chain.live kept (replication::LiveHead:
//          dirty before each commit's first write, clean at each cut), as
//          silo serve does for each tenant it leads;
//   async  segments sent to two followers over mutual-TLS node links on
//          loopback (each applies and fsyncs), commits not waiting;
//   sync   the same, each commit answered after one follower's ack.
// Modes interleaved run by run, medians of RUNS runs (default 5). Also the
// bytes shipped per commit, and the acknowledgement lag (commit start to the
// first follower's ack) p50/p99 in sync mode. Prints a table and, last,
//   RESULT off_cps=<n> shim_cps=<n> async_cps=<n> sync_cps=<n>
//          async_ratio=<x> sync_ratio=<x> bytes_per_commit=<n> live_cps=<n>
//          live_vs_shim=<x> decode64k_format1_us=<x> decode64k_format2_us=<x>
// (the last two: what checking a 64 KiB segment costs a follower in each
// segment format, docs/formats.md).
//
// BENCH_DIR (default /tmp) holds the scratch files, removed afterwards. The
// node certificates are made with the openssl tool (as in the tests).
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cluster/peer_link.h"
#include "cluster/test_certs.h"
#include "crypto/crypto.h"
#include "median.h"
#include "replication/follower.h"
#include "replication/live_head.h"
#include "replication/recorder.h"
#include "replication/segment.h"
#include "replication/shipper.h"
#include "storage/database.h"
#include "storage/repl_vfs.h"

namespace {

using silo::Status;
using silo::bench::Median;
namespace fs = std::filesystem;
namespace repl = silo::replication;
using Clock = std::chrono::steady_clock;

constexpr int kCommitsPerRun = 1500;

void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

enum class Mode { kOff, kShim, kLive, kAsync, kSync };
const char* Name(Mode m) {
  switch (m) {
    case Mode::kOff: return "off";
    case Mode::kShim: return "shim";
    case Mode::kLive: return "live";
    case Mode::kAsync: return "async";
    case Mode::kSync: return "sync";
  }
  return "?";
}

struct Outcome {
  double commits_per_s = 0;
  double bytes_per_commit = 0;
  std::vector<double> commit_ms;
};

struct Followers {
  std::vector<std::unique_ptr<repl::Replicas>> replicas;
  std::vector<std::unique_ptr<silo::cluster::PeerListener>> listeners;
};

Outcome Run(const std::string& dir, const silo::crypto::SecretKey& key, Mode mode,
            const silo::cluster::PeerTls& primary_tls, Followers& followers, int run) {
  std::string path = dir + "/primary/tenant-" + std::to_string(run) + ".db";
  silo::storage::RemoveDatabaseFiles(path);
  std::atomic<size_t> shipped{0};
  std::unique_ptr<repl::Shipper> shipper;
  std::string tenant = "t" + std::to_string(run) + Name(mode);
  if (mode == Mode::kAsync || mode == Mode::kSync) {
    std::vector<repl::FollowerLink> links;
    for (size_t i = 0; i < followers.listeners.size(); ++i) {
      auto client = silo::cluster::PeerClient::Connect(
          "127.0.0.1:" + std::to_string(followers.listeners[i]->port()), primary_tls);
      if (!client.ok()) Die(client.status(), "connect");
      links.push_back({"f" + std::to_string(i), std::move(client).value()});
    }
    shipper = std::make_unique<repl::Shipper>(
        tenant, repl::ShipperOptions{.sync = mode == Mode::kSync}, std::move(links));
  }
  silo::storage::OpenOptions options;
  if (mode != Mode::kOff) {
    options.vfs = silo::storage::repl::kReplicatedCipherVfs;
    auto recorder = std::make_shared<repl::SegmentRecorder>(
        silo::crypto::RandomBytes(repl::kLineageSize), 1, repl::ChainHead{},
        [&](uint64_t seq, const std::string& encoded) {
          shipped += encoded.size();
          return shipper ? shipper->Publish(seq, encoded) : Status::Ok();
        });
    if (mode == Mode::kLive) {
      auto live = repl::LiveHead::Open(path);
      if (!live.ok()) Die(live.status(), "live head");
      recorder->SetCommitFrame(0);  // a new database: no WAL yet
      recorder->KeepLiveHead(std::move(live).value());
    }
    silo::storage::repl::Attach(path, recorder);
  }
  auto db = silo::storage::Database::Open(path, key, options);
  if (!db.ok()) Die(db.status(), "open");
  if (Status s = (*db)->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"); !s.ok()) {
    Die(s, "create");
  }
  size_t shipped_before = shipped;
  std::string body(250, 'x');
  Outcome out;
  out.commit_ms.reserve(kCommitsPerRun);
  Clock::time_point start = Clock::now();
  for (int i = 0; i < kCommitsPerRun; ++i) {
    Clock::time_point t0 = Clock::now();
    auto stmt = (*db)->Prepare("INSERT INTO t (body) VALUES (?)");
    if (!stmt.ok()) Die(stmt.status(), "prepare");
    if (Status s = stmt->Bind(1, body).Run(); !s.ok()) Die(s, "insert");
    out.commit_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  out.commits_per_s = kCommitsPerRun / seconds;
  out.bytes_per_commit = static_cast<double>(shipped - shipped_before) / kCommitsPerRun;
  db.value().reset();
  shipper.reset();
  silo::storage::repl::Detach(path);
  silo::storage::RemoveDatabaseFiles(path);
  fs::remove(repl::LiveHead::FileOf(path));
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

// What checking a segment costs a follower (DecodeSegment) in format 2
// (SHA-256) against format 1 (BLAKE2b-256), the same bytes but for the
// version and the hash, alternated within each run: microseconds per
// segment of `bytes` in frame writes, medians of `runs`.
struct DecodeCost {
  double format1_us = 0;
  double format2_us = 0;
};
DecodeCost SegmentDecodeCost(size_t bytes, int runs) {
  std::vector<repl::Op> ops = {
      repl::Op{repl::OpKind::kWrite, repl::FileId::kWal, 32, std::string(bytes, '\x5a')},
      repl::Op{repl::OpKind::kSync, repl::FileId::kWal, 0, {}}};
  const repl::SegmentHeader header{std::string(repl::kLineageSize, 'L'), 3, 9,
                                   std::string(repl::kHashSize, 'h')};
  const std::string format2 = repl::EncodeSegment(header, ops);
  std::string body = format2.substr(0, format2.size() - repl::kHashSize);
  body[4] = 1;  // the version byte (docs/formats.md)
  const std::string format1 = body + silo::crypto::Blake2b256({body});
  auto time = [](const std::string& encoded) {
    constexpr int kIterations = 400;
    const auto start = Clock::now();
    for (int i = 0; i < kIterations; ++i) {
      if (!repl::DecodeSegment(encoded).ok()) std::abort();
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / kIterations;
  };
  std::vector<double> one, two;
  for (int run = 0; run < runs; ++run) {
    one.push_back(time(format1));
    two.push_back(time(format2));
  }
  return {Median(one), Median(two)};
}

}  // namespace

int main() {
  const char* env_dir = std::getenv("BENCH_DIR");
  const char* env_runs = std::getenv("RUNS");
  std::string base = env_dir ? env_dir : "/tmp";
  int runs = env_runs ? std::max(1, std::atoi(env_runs)) : 5;
  std::string tmpl = base + "/silo-repl-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string dir = buf.data();
  fs::create_directories(dir + "/primary");
  if (!silo::cluster::testing::MakeCa(dir, "ca")) {
    std::fprintf(stderr, "openssl failed (scripts/bootstrap.sh installs it)\n");
    return 1;
  }
  silo::cluster::PeerTls primary_tls = silo::cluster::testing::MakeNode(dir, "ca", "primary");
  Followers followers;
  for (int i = 0; i < 2; ++i) {
    std::string name = "follower-" + std::to_string(i);
    followers.replicas.push_back(std::make_unique<repl::Replicas>(dir + "/" + name));
    repl::Replicas* r = followers.replicas.back().get();
    auto listener = silo::cluster::PeerListener::StartForRuns(
        "127.0.0.1:0", silo::cluster::testing::MakeNode(dir, "ca", name),
        [r](const std::vector<silo::cluster::Message>& run) { return r->HandleRun(run); });
    if (!listener.ok()) Die(listener.status(), "listen");
    followers.listeners.push_back(std::move(listener).value());
  }
  silo::crypto::SecretKey key = silo::crypto::SecretKey::Random();

  const std::vector<Mode> modes = {Mode::kOff, Mode::kShim, Mode::kLive, Mode::kAsync, Mode::kSync};
  std::vector<std::vector<double>> cps(modes.size()), bytes(modes.size());
  std::vector<double> sync_ms;
  for (int run = 0; run < runs; ++run) {
    for (size_t m = 0; m < modes.size(); ++m) {
      Outcome o = Run(dir, key, modes[m], primary_tls, followers, run);
      cps[m].push_back(o.commits_per_s);
      bytes[m].push_back(o.bytes_per_commit);
      if (modes[m] == Mode::kSync) {
        sync_ms.insert(sync_ms.end(), o.commit_ms.begin(), o.commit_ms.end());
      }
      std::fprintf(stderr, "run %d %-5s %8.0f commits/s\n", run + 1, Name(modes[m]),
                   o.commits_per_s);
    }
  }
  for (auto& l : followers.listeners) l->Stop();
  fs::remove_all(dir);

  double off = Median(cps[0]);
  std::printf("| mode | commits/s (median of %d) | vs off | bytes shipped per commit |\n", runs);
  std::printf("|---|---:|---:|---:|\n");
  for (size_t m = 0; m < modes.size(); ++m) {
    std::printf("| %s | %.0f | %.2f | %.0f |\n", Name(modes[m]), Median(cps[m]),
                Median(cps[m]) / off, Median(bytes[m]));
  }
  std::printf("sync commit latency (ms, all runs): p50 %.2f p99 %.2f\n", Percentile(sync_ms, 0.5),
              Percentile(sync_ms, 0.99));
  // The live head's cost against the shim alone, run by run (the same
  // round's conditions), then the median of those ratios.
  std::vector<double> live_vs_shim;
  for (int run = 0; run < runs; ++run) live_vs_shim.push_back(cps[2][run] / cps[1][run]);
  std::printf("live / shim, median of the runs' ratios: %.3f\n", Median(live_vs_shim));
  // 64 KiB: about a cluster create's segment (bench/results/cluster_*.md);
  // 4 KiB: one page's commit.
  const DecodeCost small = SegmentDecodeCost(4 << 10, runs);
  const DecodeCost large = SegmentDecodeCost(64 << 10, runs);
  std::printf(
      "checking a segment (DecodeSegment), us: 4 KiB format 1 (BLAKE2b) %.1f, format 2 "
      "(SHA-256) %.1f; 64 KiB format 1 %.1f, format 2 %.1f\n",
      small.format1_us, small.format2_us, large.format1_us, large.format2_us);
  std::printf(
      "RESULT off_cps=%.0f shim_cps=%.0f async_cps=%.0f sync_cps=%.0f async_ratio=%.2f "
      "sync_ratio=%.2f bytes_per_commit=%.0f live_cps=%.0f live_vs_shim=%.3f "
      "decode64k_format1_us=%.1f decode64k_format2_us=%.1f\n",
      off, Median(cps[1]), Median(cps[3]), Median(cps[4]), Median(cps[3]) / off,
      Median(cps[4]) / off, Median(bytes[4]), Median(cps[2]), Median(live_vs_shim),
      large.format1_us, large.format2_us);
  return 0;
}
