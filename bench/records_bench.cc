// In-process record figures (issue: records), for bench/api_bench.sh:
//   - event append rate through the tenant store (synchronous=NORMAL)
//   - `?at=` read latency (GetRecord at a random past time) with EVENTS
//     events in the tenant: median and p99 of 20,000 reads
//   - rebuild speed: events per second, and that the checksum matched
// Usage: EVENTS=1000000 records_bench
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "crypto/crypto.h"
#include "records/tenant_store.h"

namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using silo::events::Origin;

namespace {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Die(const silo::Status& s, const char* what) {
  std::fprintf(stderr, "records_bench: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  const char* env_events = std::getenv("EVENTS");
  const int64_t events = env_events ? std::atoll(env_events) : 1'000'000;
  const int64_t records = std::max<int64_t>(1, std::min<int64_t>(10'000, events / 10));
  char tmpl[] = "/tmp/silo-records-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string key = silo::crypto::RandomBytes(silo::crypto::SecretKey::kSize);
  auto stores = silo::records::NewSqliteTenantStores(
      [&](const std::string&) { return silo::crypto::SecretKey::FromBytes(key); },
      [&](const std::string& id) { return dir + "/" + id + ".db"; },
      {.max_open_tenants = 4, .readers_per_tenant = 2, .synchronous_full = false});
  if (auto s = stores->Create("t"); !s.ok()) return Die(s, "create tenant");
  auto store = std::move(stores->Open("t")).value();
  auto schema = silo::records::ParseCollection(json::parse(
      R"({"name":"items","fields":[{"name":"title","type":"string","required":true},
          {"name":"n","type":"integer","indexed":true}]})"));
  const int64_t t0 = 1'780'000'000'000'000;
  auto ctx = [&](int64_t i) {
    return Origin{{"token", "bench"}, "r" + std::to_string(i), "127.0.0.1", t0 + i * 1000};
  };
  if (auto c = store->CreateCollection(ctx(0), *schema); !c.ok())
    return Die(c.status(), "collection");

  std::mt19937_64 rng(42);
  auto started = Clock::now();
  for (int64_t i = 1; i < events; ++i) {
    if (i <= records) {
      json::object data{{"id", "r" + std::to_string(i)}, {"title", "seed"}, {"n", i}};
      if (auto r = store->CreateRecord(ctx(i), "items", data); !r.ok())
        return Die(r.status(), "create");
    } else {
      std::string id = "r" + std::to_string(1 + rng() % records);
      json::object patch{{"title", "v" + std::to_string(i)},
                         {"n", static_cast<int64_t>(rng() % 1000)}};
      auto r = store->UpdateRecord(ctx(i), "items", id, patch, std::nullopt);
      if (!r.ok()) return Die(r.status(), "update");
    }
  }
  double write_s = Seconds(started);

  std::vector<double> at_ms;
  const int reads = 20'000;
  at_ms.reserve(reads);
  for (int i = 0; i < reads; ++i) {
    std::string id = "r" + std::to_string(1 + rng() % records);
    int64_t at = t0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(events)) * 1000;
    auto t = Clock::now();
    auto r = store->GetRecord("items", id, at);
    at_ms.push_back(Seconds(t) * 1000);
    if (!r.ok() && r.status().code() != silo::StatusCode::kNotFound)
      return Die(r.status(), "at read");
  }
  std::sort(at_ms.begin(), at_ms.end());

  started = Clock::now();
  auto rebuild = store->Rebuild();
  double rebuild_s = Seconds(started);
  if (!rebuild.ok()) return Die(rebuild.status(), "rebuild");

  store.reset();
  stores.reset();
  std::filesystem::remove_all(dir);
  double write_rate = static_cast<double>(events) / write_s;
  double rebuild_rate = static_cast<double>(rebuild->events) / rebuild_s;
  std::printf("in-process, %lld events over %lld records (synchronous=NORMAL)\n",
              static_cast<long long>(events), static_cast<long long>(records));
  std::printf("| writes through the store | %.0f events/s |\n", write_rate);
  std::printf("| ?at= read (%d reads) | median %.3f ms, p99 %.3f ms |\n", reads, at_ms[reads / 2],
              at_ms[reads * 99 / 100]);
  std::printf("| rebuild | %.0f events/s, %.1f s, checksum %s |\n", rebuild_rate, rebuild_s,
              rebuild->equal() ? "equal" : "DIFFERENT");
  std::printf(
      "RESULT write_events_per_s=%.0f at_p50_ms=%.3f at_p99_ms=%.3f rebuild_events_per_s=%.0f "
      "rebuild_equal=%d\n",
      write_rate, at_ms[reads / 2], at_ms[reads * 99 / 100], rebuild_rate,
      rebuild->equal() ? 1 : 0);
  return rebuild->equal() ? 0 : 1;
}
