// In-process figures of record rules and expand (issue 18), for
// bench/api_bench.sh: a tenant of RECORDS (100,000) tickets, 1 % of them
// assigned to the caller, each naming one of 1,000 customers. Interleaved
// rounds (A, B, A, B, ...) of:
//   - read by id of the caller's tickets: with the rule assignee:eq:@me
//     against no rule (goal >= 0.9)
//   - list-50 (first page): with the rule against no rule (goal >= 0.8),
//     for assignee indexed and not, and for created_by:eq:@me
//   - list-50 with ?expand of the customer relation against list-50 (goal
//     >= 0.6; the handler's work: one GetRecords for the page's ids)
// Each figure is the median over ROUNDS rounds of operations per second.
// Usage: RECORDS=100000 ROUNDS=7 rules_bench
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "crypto/crypto.h"
#include "records/rules.h"
#include "records/tenant_store.h"

namespace json = boost::json;
namespace records = silo::records;
using Clock = std::chrono::steady_clock;

namespace {

int Die(const silo::Status& s, const char* what) {
  std::fprintf(stderr, "rules_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Operations per second of `op` run `n` times.
double Rate(int n, const std::function<void(int)>& op) {
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) op(i);
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

records::RulesProvider Rule(std::string where) {
  return [where](const records::CollectionSchema& schema,
                 std::string_view) -> silo::Result<records::RecordRules> {
    if (schema.name != "tickets") return records::AllowAll();
    auto r = records::ParseRule(schema, {where}, {}, {"me", 0});
    if (!r.ok()) return r.status();
    return records::RecordRules{{*r}};
  };
}

}  // namespace

int main() {
  const int64_t n_records = std::getenv("RECORDS") ? std::atoll(std::getenv("RECORDS")) : 100'000;
  const int rounds = std::getenv("ROUNDS") ? std::atoi(std::getenv("ROUNDS")) : 7;
  char tmpl[] = "/tmp/silo-rules-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string key = silo::crypto::RandomBytes(silo::crypto::SecretKey::kSize);
  auto stores = records::NewSqliteTenantStores(
      [&](const std::string&) { return silo::crypto::SecretKey::FromBytes(key); },
      [&](const std::string& id) { return dir + "/" + id + ".db"; },
      {.max_open_tenants = 4, .readers_per_tenant = 2, .synchronous_full = false});
  const int64_t t0 = 1'780'000'000'000'000;
  int64_t clock = 0;
  auto ctx = [&](const std::string& user) {
    ++clock;
    return silo::events::Origin{{"user", user}, "r", "127.0.0.1", t0 + clock};
  };
  std::vector<std::string> mine;
  std::printf("| figure | with | without | ratio | goal |\n|---|---|---|---|---|\n");
  for (bool indexed : {false, true}) {
    const std::string tenant = indexed ? "indexed" : "plain";
    if (auto s = stores->Create(tenant); !s.ok()) Die(s, "tenant");
    auto store = std::move(stores->Open(tenant)).value();
    auto customers = records::ParseCollection(json::parse(
        R"({"name":"customers","fields":[{"name":"name","type":"string"},
            {"name":"country","type":"string"}]})"));
    auto tickets = records::ParseCollection(
        json::parse(std::string(R"({"name":"tickets","fields":[{"name":"title","type":"string"},
            {"name":"assignee","type":"string","indexed":)") +
                    (indexed ? "true" : "false") +
                    R"(},{"name":"customer","type":"relation","collection":"customers"}]})"));
    if (auto c = store->CreateCollection(ctx("admin"), *customers); !c.ok()) Die(c.status(), "c");
    if (auto c = store->CreateCollection(ctx("admin"), *tickets); !c.ok()) Die(c.status(), "t");
    for (int i = 0; i < 1000; ++i) {
      json::object d{{"id", "c" + std::to_string(i)}, {"name", "customer"}, {"country", "CZ"}};
      if (auto r = store->CreateRecord(ctx("admin"), "customers", d); !r.ok()) Die(r.status(), "c");
    }
    mine.clear();
    for (int64_t i = 0; i < n_records; ++i) {
      const bool own = i % 100 == 0;
      const std::string user = own ? "me" : "u" + std::to_string(i % 97);
      json::object d{{"title", "ticket " + std::to_string(i)},
                     {"assignee", user},
                     {"customer", "c" + std::to_string(i % 1000)}};
      auto r = store->CreateRecord(ctx(user), "tickets", d);
      if (!r.ok()) Die(r.status(), "ticket");
      if (own) mine.push_back(r->id);
    }
    std::mt19937 rng(7);
    records::ListQuery list;
    list.limit = 50;
    auto read = [&](int) {
      auto r = store->GetRecord("tickets", mine[rng() % mine.size()], std::nullopt);
      if (!r.ok()) Die(r.status(), "read");
    };
    auto page = [&](int) {
      auto p = store->ListRecords("tickets", list);
      if (!p.ok() || p->records.size() != 50) Die(p.status(), "list");
    };
    records::ListQuery by_me = list;
    by_me.filters.push_back(records::ParseFilter(*tickets, "assignee:eq:me", nullptr).value());
    auto filtered = [&](int) {
      auto p = store->ListRecords("tickets", by_me);
      if (!p.ok() || p->records.size() != 50) Die(p.status(), "filtered");
    };
    std::vector<std::string> fifty;
    for (int i = 0; i < 50; ++i) fifty.push_back("c" + std::to_string(i * 7 % 1000));
    auto lookup = [&](int) {
      auto c = store->GetRecords("customers", fifty, std::nullopt);
      if (!c.ok() || c->size() != 50) Die(c.status(), "lookup");
    };
    auto expanded = [&](int) {
      auto p = store->ListRecords("tickets", list);
      if (!p.ok()) Die(p.status(), "list");
      std::vector<std::string> ids;
      for (const auto& r : p->records) ids.emplace_back(r.data.at("customer").as_string());
      auto c = store->GetRecords("customers", ids, std::nullopt);
      if (!c.ok() || c->empty()) Die(c.status(), "expand");
    };
    struct Pair {
      std::string name;
      std::function<void(int)> op_a, op_b;
      records::RulesProvider rules_a, rules_b;
      int n;
      const char* goal;
    };
    std::vector<Pair> pairs = {
        {"read by id, assignee:eq:@me", read, read, Rule("assignee:eq:@me"), nullptr, 3000,
         ">= 0.9"},
        {"list-50, assignee:eq:@me", page, page, Rule("assignee:eq:@me"), nullptr, 100, ">= 0.8"},
        {"list-50, created_by:eq:@me", page, page, Rule("created_by:eq:@me"), nullptr, 100,
         ">= 0.8"},
        {"list-50 ?expand=customer vs list-50", expanded, page, nullptr, nullptr, 100, ">= 0.6"},
        {"list-50, filter=assignee:eq:me (no rule) (control)", filtered, page, nullptr, nullptr,
         100, "(SQL alone)"},
        {"GetRecords of 50 customers vs list-50 (control)", lookup, page, nullptr, nullptr, 100,
         "(expand's part)"}};
    const char* only = std::getenv("ONLY");
    for (auto& p : pairs) {
      if (indexed && p.name.find("assignee") == std::string::npos) continue;
      if (only != nullptr && p.name.find(only) == std::string::npos) continue;
      // The rules are set before every operation, as the dispatcher sets a
      // new caller's for every request.
      auto with = [&](const records::RulesProvider& rules, const std::function<void(int)>& op) {
        return [&, rules, op](int i) {
          store->SetRules(rules);
          op(i);
        };
      };
      std::vector<double> a, b;
      for (int r = 0; r < rounds; ++r) {
        a.push_back(Rate(p.n, with(p.rules_a, p.op_a)));
        b.push_back(Rate(p.n, with(p.rules_b, p.op_b)));
      }
      const double ma = Median(a), mb = Median(b);
      std::printf("| %s%s | %.0f/s | %.0f/s | %.2f | %s |\n", p.name.c_str(),
                  indexed ? " (assignee indexed)" : "", ma, mb, ma / mb, p.goal);
    }
    store->SetRules(nullptr);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
