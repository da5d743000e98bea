// Backup and restore throughput of one large tenant against `cp` of the same
// database file in the same run, the drill's restore time (RTO), and the
// memory backup and restore take (issue 17: <= 64 MiB over idle for a 1 GiB
// tenant with 1 GiB of files).
//
//   build/backup_bench [--mib 1024] [--files-mib 1024] [--runs 5] [--dir /tmp]
//
// Fills one tenant through the records store (event + projections per
// record, as the API writes them) until its database file reaches --mib,
// and gives it --files-mib of files (random bytes in 64 MiB files, sealed as
// uploads are, attached to a record); then, interleaved per run: `cp` of the
// database file, a backup (image copy, zstd, seal, write to a directory
// target, fsync; blobs are stored by the first run only, later backups share
// them), a restore as a new tenant (verify, decrypt, write, integrity_check,
// chain checks, every file re-sealed under the new tenant's key) and a drill
// (every file opened). Prints medians; MB/s are database bytes (the image)
// per second. Memory: the process's peak RSS (VmHWM, reset through
// /proc/self/clear_refs before each step) minus its RSS just before.
//
// Then `silo tenant rekey` of the same tenant (backup::Service::Rekey: its
// files and database sealed again under a new key), --rekeys times, each
// after a `cp` of the database file and while one writer writes records the
// way the API does (a store opened per request; a write refused during the
// pause is retried every millisecond until acknowledged): the writes' p99,
// from the first attempt to the acknowledgement, against the same writer's
// p99 for as long with no re-key, in the same run.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "app/tenant_schema.h"
#include "auth/identity.h"
#include "backup/service.h"
#include "base/data_layout.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "files/blob.h"
#include "files/catalog.h"
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

long StatusKib(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long v = 0;
  const size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') v = std::atol(line + n + 1);
  }
  std::fclose(f);
  return v;
}

// Resets the peak (VmHWM) to the current RSS and returns the RSS (KiB).
long ResetPeak() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
  return StatusKib("VmRSS");
}

double PeakOverMb(long before_kib) {
  return static_cast<double>(StatusKib("VmHWM") - before_kib) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mib = 1024;
  int64_t files_mib = -1;  // as --mib
  int runs = 5;
  int rekeys = 3;
  std::string base = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mib") mib = std::atoll(argv[i + 1]);
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
    if (a == "--files-mib") files_mib = std::atoll(argv[i + 1]);
    if (a == "--dir") base = argv[i + 1];
    if (a == "--rekeys") rekeys = std::atoi(argv[i + 1]);
  }
  if (files_mib < 0) files_mib = mib;
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
      app::TenantSchema(),
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

    // Files: uploads as the files module leaves them (a sealed blob and a
    // pending row), attached by one record write.
    auto att = records::ParseCollection(boost::json::parse(
        R"({"name":"att","fields":[{"name":"f","type":"file","max_bytes":1099511627776,
            "max_files":100}]})"));
    (void)store->CreateCollection({{"system", "bench"}, "", "", NowMicros()}, *att);
    const crypto::SecretKey files_key =
        crypto::DeriveSubkey(keyring->GetKey(t.id).value(), crypto::KeyPurpose::kFiles);
    constexpr int64_t kFileMib = 64;
    boost::json::array ids;
    std::string piece(size_t{1} << 20, '\0');
    for (int64_t left = files_mib; left > 0; left -= kFileMib) {
      const uint64_t size = static_cast<uint64_t>(std::min(left, kFileMib)) << 20;
      const std::string id = files::NewBlobId();
      fs::create_directories(layout::TenantBlobDir(dir, t.id, id));
      auto w =
          files::BlobWriter::Create(layout::TenantBlobFile(dir, t.id, id), files_key, id, size);
      if (!w.ok()) return 1;
      crypto::Sha256Stream digest;
      for (uint64_t done = 0; done < size; done += piece.size()) {
        for (auto& c : piece) c = static_cast<char>(rng());
        digest.Update(piece);
        if (!(*w)->Append(piece).ok()) return 1;
      }
      if (!(*w)->Finish().ok()) return 1;
      files::FileRow row;
      row.id = id;
      row.owner = "system:bench";
      row.name = "blob.bin";
      row.declared_type = row.type = "application/octet-stream";
      row.size = size;
      row.sha256 = digest.FinishHex();
      row.collection = "att";
      row.field = "f";
      row.created_at_us = NowMicros();
      row.expires_at_us = row.created_at_us + int64_t{3600} * 1'000'000;
      auto db = std::move(databases->Acquire(t.id)).value();
      if (!db->Write([&](storage::Database& d) { return files::InsertFile(d, row); }).ok()) {
        return 1;
      }
      ids.push_back(boost::json::value(id));
    }
    if (!ids.empty()) {
      auto r = store->CreateRecord({{"system", "bench"}, "", "", NowMicros()}, "att", {{"f", ids}});
      if (!r.ok()) {
        std::fprintf(stderr, "attach: %s\n", r.status().ToString().c_str());
        return 1;
      }
    }
    std::printf("files: %zu of up to %lld MiB, %lld MiB in all\n", ids.size(),
                static_cast<long long>(kFileMib), static_cast<long long>(files_mib));
  }
  {
    // Checkpoint so that the file `cp` copies is the whole database.
    auto db = std::move(databases->Acquire(t.id)).value();
    (void)db->Write([](storage::Database& d) { return d.Checkpoint(); });
  }
  const double db_mb = static_cast<double>(FileSize(db_path)) / 1e6;
  std::printf("tenant database: %.1f MB (%s)\n", db_mb, db_path.c_str());

  std::vector<double> cp_s, backup_s, restore_s, drill_s, stored_mb, backup_rss, restore_rss,
      drill_rss;
  // The baseline: `cp` of the database file, in seconds (< 0 when it failed).
  auto cp_seconds = [&]() -> double {
    const std::string copy = dir + "/cp-copy.db";
    const auto t0 = Clock::now();
    const std::string cmd = "cp '" + db_path + "' '" + copy + "'";
    if (std::system(cmd.c_str()) != 0) return -1;
    const double took = Seconds(t0);
    fs::remove(copy);
    return took;
  };
  for (int run = 0; run < runs; ++run) {
    cp_s.push_back(cp_seconds());
    if (cp_s.back() < 0) return 1;

    long before = ResetPeak();
    auto t0 = Clock::now();
    auto m = service.Run(t);
    backup_s.push_back(Seconds(t0));
    backup_rss.push_back(PeakOverMb(before));
    if (!m.ok()) {
      std::fprintf(stderr, "backup: %s\n", m.status().ToString().c_str());
      return 1;
    }
    stored_mb.push_back(static_cast<double>(m->stored_bytes) / 1e6);

    before = ResetPeak();
    t0 = Clock::now();
    std::string slug = "copy" + std::to_string(run);
    auto r = service.Restore({m->id, slug, std::nullopt, ""});
    restore_s.push_back(Seconds(t0));
    restore_rss.push_back(PeakOverMb(before));
    if (!r.ok()) {
      std::fprintf(stderr, "restore: %s\n", r.status().ToString().c_str());
      return 1;
    }
    (void)registry->Delete(slug);

    before = ResetPeak();
    auto d = service.Drill(t);
    drill_rss.push_back(PeakOverMb(before));
    if (!d.ok() || !d->ok) {
      std::fprintf(stderr, "drill failed\n");
      return 1;
    }
    drill_s.push_back(d->restore_seconds);
    (void)service.Prune(NowMicros() + int64_t{400} * 86'400'000'000);  // keep only the newest
    std::printf(
        "run %d: cp %.2f s, backup %.2f s (+%.1f MiB), restore %.2f s (+%.1f MiB), drill %.2f s "
        "(+%.1f MiB)\n",
        run, cp_s.back(), backup_s.back(), backup_rss.back(), restore_s.back(), restore_rss.back(),
        drill_s.back(), drill_rss.back());
    std::fflush(stdout);
  }
  // Re-keys, each against a cp of the database and with a writer running.
  std::vector<double> rekey_cp_s, rekey_s, pause_s, p99_during, p99_idle, max_during, max_idle;
  std::vector<double> refused;
  auto write_for = [&](const std::function<bool()>& go_on, std::vector<double>& latencies_ms,
                       int64_t& refusals) {
    std::mt19937_64 rng(7);
    for (int64_t i = 0; go_on(); ++i) {
      const auto t0 = Clock::now();
      for (;;) {
        auto store = stores->Open(t.id);
        auto r = store.ok() ? (*store)->CreateRecord({{"system", "bench"}, "", "", NowMicros()},
                                                     "docs", {{"body", Text(rng, 200)}, {"n", i}})
                            : Result<records::Record>(store.status());
        if (r.ok()) break;
        if (r.status().code() != StatusCode::kUnavailable) {
          std::fprintf(stderr, "write: %s\n", r.status().ToString().c_str());
          std::exit(1);
        }
        ++refusals;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      latencies_ms.push_back(Seconds(t0) * 1000);
    }
  };
  auto p99 = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, v.size() * 99 / 100)];
  };
  for (int run = 0; run < rekeys; ++run) {
    rekey_cp_s.push_back(cp_seconds());
    if (rekey_cp_s.back() < 0) return 1;

    std::atomic<bool> done{false};
    std::vector<double> during;
    int64_t refusals = 0;
    std::thread writer([&] { write_for([&] { return !done.load(); }, during, refusals); });
    const auto t0 = Clock::now();
    auto r = service.Rekey(t, "bench");
    const double took = Seconds(t0);
    done = true;
    writer.join();
    if (!r.ok()) {
      std::fprintf(stderr, "rekey: %s\n", r.status().ToString().c_str());
      return 1;
    }
    rekey_s.push_back(took);
    pause_s.push_back(r->pause_seconds);
    p99_during.push_back(p99(during));
    max_during.push_back(during.empty() ? 0 : *std::max_element(during.begin(), during.end()));
    refused.push_back(static_cast<double>(refusals));
    // The same writer alone, for as long: the baseline of this run.
    std::vector<double> idle;
    int64_t none = 0;
    const auto until = Clock::now() + std::chrono::duration<double>(took);
    write_for([&] { return Clock::now() < until; }, idle, none);
    p99_idle.push_back(p99(idle));
    max_idle.push_back(idle.empty() ? 0 : *std::max_element(idle.begin(), idle.end()));
    std::printf(
        "rekey %d: cp %.2f s, rekey %.2f s (writes paused %.2f s; %zu writes, p99 %.1f ms, max "
        "%.0f ms, %lld refused attempts; alone p99 %.1f ms, max %.0f ms)\n",
        run, rekey_cp_s.back(), took, r->pause_seconds, during.size(), p99_during.back(),
        max_during.back(), static_cast<long long>(refusals), p99_idle.back(), max_idle.back());
    std::fflush(stdout);
  }
  if (rekeys > 0) {
    std::printf(
        "rekey, medians of %d: %.2f s (cp of the database %.2f s, %.2fx), writes paused %.2f s, "
        "write p99 %.1f ms during (%.1f ms alone), longest write %.0f ms (%.0f ms alone)\n",
        rekeys, Median(rekey_s), Median(rekey_cp_s), Median(rekey_s) / Median(rekey_cp_s),
        Median(pause_s), Median(p99_during), Median(p99_idle), Median(max_during),
        Median(max_idle));
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
  auto max = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  std::printf(
      "RSS over idle, MiB (median / max of runs): backup %.1f / %.1f, restore %.1f / %.1f, "
      "drill %.1f / %.1f\n",
      Median(backup_rss), max(backup_rss), Median(restore_rss), max(restore_rss), Median(drill_rss),
      max(drill_rss));
  std::printf("peak RSS of the whole run (fill included): %.0f MB\n",
              static_cast<double>(ru.ru_maxrss) / 1024.0);
  std::printf(
      "RESULT db_mb=%.1f files_mib=%lld cp_mbs=%.1f backup_mbs=%.1f restore_mbs=%.1f "
      "drill_s=%.2f backup_rss_over_idle_mib=%.1f restore_rss_over_idle_mib=%.1f "
      "drill_rss_over_idle_mib=%.1f rekey_s=%.2f rekey_cp_s=%.2f rekey_pause_s=%.2f "
      "rekey_write_p99_ms=%.1f rekey_write_idle_p99_ms=%.1f rekey_write_max_ms=%.0f "
      "rekey_write_idle_max_ms=%.0f\n",
      db_mb, static_cast<long long>(files_mib), cp_mbs, backup_mbs, restore_mbs, Median(drill_s),
      max(backup_rss), max(restore_rss), max(drill_rss), rekeys > 0 ? Median(rekey_s) : 0.0,
      rekeys > 0 ? Median(rekey_cp_s) : 0.0, rekeys > 0 ? Median(pause_s) : 0.0,
      rekeys > 0 ? Median(p99_during) : 0.0, rekeys > 0 ? Median(p99_idle) : 0.0,
      rekeys > 0 ? Median(max_during) : 0.0, rekeys > 0 ? Median(max_idle) : 0.0);
  fs::remove_all(dir);
  return 0;
}
