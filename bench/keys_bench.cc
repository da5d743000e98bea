// make bench-keys (issue 22): what the key lifecycle costs, each against the
// durable writes it cannot avoid, measured in the same run, interleaved,
// medians of RUNS runs (default 3):
//   - `silo keys rotate-master`'s keyring part for KEYS tenant keys (default
//     10,000): crypto::Keyring::RotateKeys + FinishRotation, against writing
//     as many files of the same size with WriteFileAtomic (temp file, fsync,
//     rename: what re-wrapping each key file must do at least);
//   - a checkpoint (checkpoint::Book::Take on an open tenant: two reads, an
//     Ed25519 signature, the kept file written atomically) against
//     WriteFileAtomic of the same bytes, and the check of one (Book::Check),
//     over CHECKPOINTS (default 300) of each.
// Prints a table and, last,
//   RESULT rotate_keys=<n> rotate_s=<s> rotate_write_s=<s> rotate_ratio=<x>
//          checkpoint_ms=<ms> checkpoint_write_ms=<ms> checkpoint_ratio=<x> check_ms=<ms>
//
// BENCH_DIR (default /tmp) holds the scratch files, removed afterwards.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "checkpoint/book.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "median.h"
#include "storage/database.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace {

using silo::Status;
using silo::bench::Median;
using silo::crypto::Keyring;
using silo::crypto::SecretKey;
namespace fs = std::filesystem;

void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : fallback;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A keyring of `keys` keys under `master`, in a fresh `dir`.
void MakeKeyring(const std::string& dir, const SecretKey& master, int keys) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto ring = Keyring::Open(dir + "/keyring", master.Clone());
  if (!ring.ok()) Die(ring.status(), "keyring");
  for (int i = 0; i < keys; ++i) {
    if (auto k = (*ring)->CreateKey("t" + std::to_string(i)); !k.ok()) Die(k.status(), "key");
  }
}

}  // namespace

int main() {
  const std::string base = (std::getenv("BENCH_DIR") ? std::getenv("BENCH_DIR") : "/tmp") +
                           std::string("/silo-keys-bench-") + std::to_string(getpid());
  const int runs = EnvInt("RUNS", 3);
  const int keys = EnvInt("KEYS", 10000);
  const int checkpoints = EnvInt("CHECKPOINTS", 300);

  // 1. Rotation of the keyring against writing as many key-sized files.
  std::vector<double> rotate_s, write_s;
  for (int run = 0; run < runs; ++run) {
    SecretKey from = SecretKey::Random(), to = SecretKey::Random();
    MakeKeyring(base + "/ring", from, keys);
    auto sample = silo::ReadFile(base + "/ring/keyring.d/t0");
    if (!sample.ok()) Die(sample.status(), "sample");
    auto t0 = std::chrono::steady_clock::now();
    auto done = Keyring::RotateKeys(base + "/ring/keyring", from, to);
    if (!done.ok() || *done != keys) Die(done.status(), "rotate");
    if (Status s = Keyring::FinishRotation(base + "/ring/keyring", to); !s.ok()) Die(s, "finish");
    rotate_s.push_back(Seconds(t0));
    fs::remove_all(base + "/plain");
    fs::create_directories(base + "/plain");
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < keys; ++i) {
      Status s = silo::WriteFileAtomic(base + "/plain/t" + std::to_string(i), *sample, 0600);
      if (!s.ok()) Die(s, "write");
    }
    if (Status s = silo::SyncDir(base + "/plain"); !s.ok()) Die(s, "sync");
    write_s.push_back(Seconds(t0));
    std::printf("run %d: rotate %d keys %.2f s, %d atomic writes %.2f s\n", run + 1, keys,
                rotate_s.back(), keys, write_s.back());
  }

  // 2. Checkpoints of one open tenant against writing the same bytes.
  const std::vector<silo::storage::Migration> schema = {
      {1, "events", silo::events::kEventLogSchema}};
  const std::string key_bytes = silo::crypto::RandomBytes(SecretKey::kSize);
  auto databases = std::make_shared<silo::storage::TenantDatabases>(
      [&](const std::string&) { return SecretKey::FromBytes(key_bytes); },
      [&](const std::string& id) { return base + "/" + id + ".db"; }, schema,
      silo::storage::TenantDatabasesOptions{});
  silo::checkpoint::Book book(base + "/checkpoints", SecretKey::Random(), databases);
  auto first = book.Take("t1", "acme", "schedule");  // opens the tenant
  if (!first.ok()) Die(first.status(), "checkpoint");
  std::vector<double> take_ms, plain_ms, check_ms;
  for (int run = 0; run < runs; ++run) {
    std::vector<double> take, plain, check;
    for (int i = 0; i < checkpoints; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      if (auto t = book.Take("t1", "acme", "schedule"); !t.ok()) Die(t.status(), "take");
      take.push_back(Seconds(t0) * 1e3);
      t0 = std::chrono::steady_clock::now();
      if (Status s = silo::WriteFileAtomic(base + "/plain.json", *first, 0600); !s.ok()) {
        Die(s, "write");
      }
      plain.push_back(Seconds(t0) * 1e3);
      t0 = std::chrono::steady_clock::now();
      auto v = book.Check("t1");
      if (!v.ok() || !v->ok) Die(v.status(), "check");
      check.push_back(Seconds(t0) * 1e3);
    }
    take_ms.push_back(Median(take));
    plain_ms.push_back(Median(plain));
    check_ms.push_back(Median(check));
    std::printf("run %d: checkpoint %.3f ms, atomic write %.3f ms, check %.3f ms (medians of %d)\n",
                run + 1, take_ms.back(), plain_ms.back(), check_ms.back(), checkpoints);
  }
  databases.reset();
  fs::remove_all(base);

  const double rot = Median(rotate_s), wr = Median(write_s);
  const double cp = Median(take_ms), cw = Median(plain_ms), ck = Median(check_ms);
  std::printf("\n| figure | median | baseline (same run) | ratio |\n|---|---|---|---|\n");
  std::printf("| rotate-master, keyring of %d keys | %.2f s | %.2f s (%d atomic writes) | %.2f |\n",
              keys, rot, wr, keys, rot / wr);
  std::printf("| checkpoint of an open tenant | %.3f ms | %.3f ms (atomic write) | %.2f |\n", cp,
              cw, cp / cw);
  std::printf("| check against the kept checkpoint | %.3f ms | | |\n", ck);
  std::printf(
      "RESULT rotate_keys=%d rotate_s=%.3f rotate_write_s=%.3f rotate_ratio=%.3f "
      "checkpoint_ms=%.4f checkpoint_write_ms=%.4f checkpoint_ratio=%.3f check_ms=%.4f\n",
      keys, rot, wr, rot / wr, cp, cw, cp / cw, ck);
  return 0;
}
