// Backup and restore throughput of one large tenant against `cp` of the same
// database file in the same run, and the drill's restore time (RTO).
//
//   build/backup_bench [--mib 1024] [--runs 5] [--dir /tmp]
//
// Fills one tenant through the records store (event + projections per
// record, as the API writes them) until its database file reaches --mib,
// then, interleaved per run: `cp` of the file, a backup (snapshot, zstd,
// seal, write to a directory target, fsync), a restore as a new tenant
// (verify, decrypt, write, integrity_check, chain checks) and a drill.
// Prints medians; MB/s are database bytes (the image) per second.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "auth/identity.h"
#include "backup/service.h"
#include "base/data_layout.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "records/schema.h"

namespace {

using namespace silo;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t FileSize(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_size : 0;
}

// Text that compresses like real records do (words, numbers), not like zeros.
std::string Text(std::mt19937_64& rng, size_t n) {
  static const char* kWords[] = {"invoice", "customer", "shipped", "pending", "refund",
                                 "account", "priority", "support", "renewal", "contract",
                                 "berlin",  "paris",    "osaka",   "lima",    "accra"};
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % 15];
    s += ' ';
    s += std::to_string(rng() % 100000);
    s += ' ';
  }
  s.resize(n);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mib = 1024;
  int runs = 5;
  std::string base = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mib") mib = std::atoll(argv[i + 1]);
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
    if (a == "--dir") base = argv[i + 1];
  }
  std::string dir = base + "/silo-backup-bench-" + crypto::HexEncode(crypto::RandomBytes(4));
  fs::create_directories(dir + "/platform");
  auto keyring =
      std::move(crypto::Keyring::Open(dir + "/platform/keyring", crypto::SecretKey::Random()))
          .value();
  auto registry = std::move(tenant::TenantRegistry::Open(dir, keyring.get())).value();
  crypto::Keyring* ring = keyring.get();
  auto databases = std::make_shared<storage::TenantDatabases>(
      [ring](const std::string& id) -> Result<crypto::SecretKey> {
        auto dek = ring->GetKey(id);
        if (!dek.ok()) return dek.status();
        return crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kDatabasePages);
      },
      [dir](const std::string& id) { return layout::TenantDatabaseFile(dir, id); },
      records::TenantMigrations(),
      storage::TenantDatabasesOptions{.max_open_tenants = 8,
                                      .readers_per_tenant = 2,
                                      .open = {.synchronous = storage::Synchronous::kNormal}});
  auto stores = records::NewSqliteTenantStores(databases);
  backup::Service service(backup::NewDirectoryTarget(dir + "/backups"), registry.get(),
                          keyring.get(), databases, stores.get(), dir, {},
                          auth::EndSessionsAndOneTimeTokens);

  auto t = std::move(registry->Create("big", "", "")).value();
  (void)stores->Create(t.id);
  const std::string db_path = layout::TenantDatabaseFile(dir, t.id);
  {
    auto store = std::move(stores->Open(t.id)).value();
    auto schema = records::ParseCollection(boost::json::parse(
        R"({"name":"docs","fields":[{"name":"body","type":"text"},
            {"name":"n","type":"integer","indexed":true}]})"));
    (void)store->CreateCollection({{"system", "bench"}, "", "", NowMicros()}, *schema);
    std::mt19937_64 rng(20261124);
    const auto t0 = Clock::now();
    int64_t n = 0;
    while (FileSize(db_path) + FileSize(db_path + "-wal") < mib * 1024 * 1024) {
      for (int i = 0; i < 500; ++i, ++n) {
        auto r = store->CreateRecord({{"system", "bench"}, "", "", NowMicros()}, "docs",
                                     {{"body", Text(rng, 3000)}, {"n", n}});
        if (!r.ok()) {
          std::fprintf(stderr, "fill: %s\n", r.status().ToString().c_str());
          return 1;
        }
      }
    }
    std::printf("filled: %lld records in %.1f s\n", static_cast<long long>(n), Seconds(t0));
  }
  {
    // Checkpoint so that the file `cp` copies is the whole database.
    auto db = std::move(databases->Acquire(t.id)).value();
    (void)db->Write([](storage::Database& d) { return d.Checkpoint(); });
  }
  const double db_mb = static_cast<double>(FileSize(db_path)) / 1e6;
  std::printf("tenant database: %.1f MB (%s)\n", db_mb, db_path.c_str());

  std::vector<double> cp_s, backup_s, restore_s, drill_s, stored_mb;
  for (int run = 0; run < runs; ++run) {
    std::string copy = dir + "/cp-copy.db";
    auto t0 = Clock::now();
    std::string cmd = "cp '" + db_path + "' '" + copy + "'";
    if (std::system(cmd.c_str()) != 0) return 1;
    cp_s.push_back(Seconds(t0));
    fs::remove(copy);

    t0 = Clock::now();
    auto m = service.Run(t);
    backup_s.push_back(Seconds(t0));
    if (!m.ok()) {
      std::fprintf(stderr, "backup: %s\n", m.status().ToString().c_str());
      return 1;
    }
    stored_mb.push_back(static_cast<double>(m->stored_bytes) / 1e6);

    t0 = Clock::now();
    std::string slug = "copy" + std::to_string(run);
    auto r = service.Restore({m->id, slug, std::nullopt, ""});
    restore_s.push_back(Seconds(t0));
    if (!r.ok()) {
      std::fprintf(stderr, "restore: %s\n", r.status().ToString().c_str());
      return 1;
    }
    (void)registry->Delete(slug);

    auto d = service.Drill(t);
    if (!d.ok() || !d->ok) {
      std::fprintf(stderr, "drill failed\n");
      return 1;
    }
    drill_s.push_back(d->restore_seconds);
    (void)service.Prune(NowMicros() + int64_t{400} * 86'400'000'000);  // keep only the newest
    std::printf("run %d: cp %.2f s, backup %.2f s, restore %.2f s, drill %.2f s\n", run,
                cp_s.back(), backup_s.back(), restore_s.back(), drill_s.back());
    std::fflush(stdout);
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const double cp_mbs = db_mb / Median(cp_s);
  const double backup_mbs = db_mb / Median(backup_s);
  const double restore_mbs = db_mb / Median(restore_s);
  std::printf("\nmedians of %d runs, database %.1f MB, stored %.1f MB (%.1f%%)\n", runs, db_mb,
              Median(stored_mb), 100.0 * Median(stored_mb) / db_mb);
  std::printf("cp:      %.2f s  %7.1f MB/s\n", Median(cp_s), cp_mbs);
  std::printf("backup:  %.2f s  %7.1f MB/s  (%.2f of cp)\n", Median(backup_s), backup_mbs,
              backup_mbs / cp_mbs);
  std::printf("restore: %.2f s  %7.1f MB/s  (%.2f of cp)\n", Median(restore_s), restore_mbs,
              restore_mbs / cp_mbs);
  std::printf("drill RTO (fetch, verify, decrypt, write, check): %.2f s\n", Median(drill_s));
  std::printf("peak RSS: %.0f MB\n", static_cast<double>(ru.ru_maxrss) / 1024.0);
  std::printf(
      "RESULT db_mb=%.1f cp_mbs=%.1f backup_mbs=%.1f restore_mbs=%.1f drill_s=%.2f "
      "peak_rss_mb=%.0f\n",
      db_mb, cp_mbs, backup_mbs, restore_mbs, Median(drill_s),
      static_cast<double>(ru.ru_maxrss) / 1024.0);
  fs::remove_all(dir);
  return 0;
}
