#include "cli/access_commands.h"

#include <boost/json.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/operator_client.h"

namespace silo::cli {
namespace {

namespace json = boost::json;

struct AccessOptions {
  std::string slug, id, reason, duration;
  std::vector<std::string> scopes;
};

AccessOptions& Options() {
  static AccessOptions* o = new AccessOptions;
  return *o;
}

// One request as a line: id, state, until when, scopes.
void PrintRequest(const json::value& r) {
  std::string scopes;
  if (const auto* s = r.as_object().if_contains("scopes"); s && s->is_array()) {
    for (const auto& p : s->as_array()) {
      if (p.is_string()) scopes += (scopes.empty() ? "" : ",") + std::string(p.as_string());
    }
  }
  std::string until = Str(r, "expires_at");
  std::printf("%-32s %-9s %-27s %s\n", Str(r, "id").c_str(), Str(r, "state").c_str(),
              until.empty() ? "-" : until.c_str(), scopes.c_str());
}

// Request ids are [a-z0-9] (crypto::RandomId); anything else would change the
// path the request means.
bool CheckId(const std::string& id, int& code) {
  if (!id.empty() && id.size() <= 64 &&
      id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") == std::string::npos) {
    return true;
  }
  std::fprintf(stderr, "silo: not an access request id: %s\n", id.c_str());
  code = kUsage;
  return false;
}

}  // namespace

std::optional<int64_t> ParseDurationSeconds(const std::string& text) {
  if (text.size() < 2 || text.size() > 8) return std::nullopt;
  const std::string digits = text.substr(0, text.size() - 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits[0] == '0') {
    return std::nullopt;
  }
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return std::nullopt;
  }
  return std::stoll(digits) * unit;  // at most 7 digits: no overflow
}

void AddAccessCommands(CLI::App& app, bool& as_json, int& code) {
  AccessOptions& o = Options();
  auto* access = app.add_subcommand(
      "access", "ask a tenant for access to its data, and see what it decided (the lockbox)");
  access->require_subcommand(1);
  access->fallthrough();

  auto* request = access->add_subcommand(
      "request", "ask the tenant's owners and security admins for access (they are mailed)");
  request->add_option("slug", o.slug, "the tenant")->required();
  request->add_option("--scope", o.scopes, "a permission (repeatable), e.g. records.*.export")
      ->required();
  request->add_option("--reason", o.reason, "why (the tenant sees it)")->required();
  request->add_option("--duration", o.duration, "how long once approved: 30m, 2h (at most 24h)")
      ->required();
  request->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code)) return;
    auto seconds = ParseDurationSeconds(o.duration);
    if (!seconds) {
      std::fprintf(stderr, "silo: --duration must be a number and a unit (s, m, h, d): %s\n",
                   o.duration.c_str());
      code = kUsage;
      return;
    }
    json::array scopes;
    for (const auto& s : o.scopes) scopes.push_back(json::string(s));
    json::object body{{"scopes", scopes}, {"reason", o.reason}, {"duration_s", *seconds}};
    code = Call(as_json, "POST", "/v1/tenants/" + o.slug + "/access-requests",
                json::serialize(body), [](const json::value& v) {
                  std::printf("access request %s: pending until the tenant decides\n",
                              Str(v, "id").c_str());
                });
  });

  auto* list = access->add_subcommand("list", "the requests to one tenant, newest first");
  list->add_option("slug", o.slug, "the tenant")->required();
  list->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code)) return;
    code = Call(as_json, "GET", "/v1/tenants/" + o.slug + "/access-requests", "",
                [](const json::value& v) {
                  std::printf("%-32s %-9s %-27s %s\n", "ID", "STATE", "UNTIL", "SCOPES");
                  for (const auto& r : v.at("items").as_array()) PrintRequest(r);
                });
  });

  auto* show = access->add_subcommand("show", "one request and its state");
  show->add_option("slug", o.slug, "the tenant")->required();
  show->add_option("id", o.id, "the request")->required();
  show->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code) || !CheckId(o.id, code)) return;
    code = Call(as_json, "GET", "/v1/tenants/" + o.slug + "/access-requests/" + o.id, "",
                [](const json::value& v) { PrintRequest(v); });
  });
}

namespace {

struct IncidentOptions {
  std::string from, to, discovered, tenant, out = ".", file;
};

IncidentOptions& Incident() {
  static IncidentOptions* o = new IncidentOptions;
  return *o;
}

int Report(const IncidentOptions& o, bool as_json) {
  json::object body{{"from", o.from}, {"to", o.to}, {"discovered", o.discovered}};
  if (!o.tenant.empty()) body["tenant"] = o.tenant;
  std::string raw;
  int code = Call(/*as_json=*/false, "POST", "/v1/incidents", json::serialize(body),
                  [](const json::value&) {}, &raw);
  if (code != kOk) return code;
  boost::system::error_code ec;
  json::value v = json::parse(raw, ec);
  if (ec || !v.is_object() || !v.as_object().if_contains("report")) {
    std::fprintf(stderr, "silo: unexpected answer\n");
    return kRefused;
  }
  const json::object& report = v.at("report").as_object();
  const std::string id = Str(report, "id");
  const std::string base = o.out + "/incident-" + id;
  // The owner's alone (0600), whole or not at all: a report names users
  // and client addresses.
  if (!WriteFileAtomic(base + ".json", raw + "\n").ok() ||
      !WriteFileAtomic(base + ".md", Str(v, "markdown")).ok()) {
    std::fprintf(stderr, "silo: cannot write %s.json and .md\n", base.c_str());
    return kRefused;
  }
  if (as_json) {
    std::printf("%s\n", raw.c_str());
    return kOk;
  }
  std::printf("incident report %s: %s.json (signed) and %s.md\n", id.c_str(), base.c_str(),
              base.c_str());
  std::printf("notify by %s (72 hours after discovery)\n", Str(report, "notify_by").c_str());
  for (const auto& t : report.at("affected_tenants").as_array()) {
    std::printf("affected: %s (%lld entries)\n", Str(t, "tenant").c_str(),
                static_cast<long long>(t.at("entries").as_int64()));
  }
  return kOk;
}

}  // namespace

void AddIncidentCommands(CLI::App& app, bool& as_json, int& code) {
  IncidentOptions& o = Incident();
  auto* incident = app.add_subcommand("incident", "incident reports from the security records");
  incident->require_subcommand(1);
  incident->fallthrough();
  auto* report = incident->add_subcommand(
      "report",
      "a signed timeline of a window, the tenants and users concerned, the 72-hour deadline and "
      "a notification draft per tenant (Markdown and JSON)");
  report->add_option("--from", o.from, "start of the window (RFC 3339)")->required();
  report->add_option("--to", o.to, "end of the window (RFC 3339)")->required();
  report->add_option("--discovered", o.discovered, "when the incident was discovered (RFC 3339)")
      ->required();
  report->add_option("--tenant", o.tenant, "one tenant's slug (default: every tenant)");
  report->add_option("--out", o.out, "where to write incident-<id>.json and .md (default .)");
  report->callback([&o, &as_json, &code] {
    if (!o.tenant.empty() && !CheckSlug(o.tenant, code)) return;
    code = Report(o, as_json);
  });
  auto* verify =
      incident->add_subcommand("verify", "whether a kept report is the one the platform signed");
  verify->add_option("file", o.file, "incident-<id>.json")->required();
  verify->callback([&o, &as_json, &code] {
    auto text = ReadFile(o.file);
    if (!text.ok()) {
      std::fprintf(stderr, "silo: cannot read %s\n", o.file.c_str());
      code = kUsage;
      return;
    }
    std::string raw;
    code = Call(
        as_json, "POST", "/v1/incidents/verify", *text, [](const json::value&) {}, &raw);
    boost::system::error_code ec;
    json::value v = json::parse(raw, ec);
    if (code == kOk && !as_json) {
      if (!ec && v.is_object() && v.at("ok") == json::value(true)) {
        std::printf("%s: signed by this platform, unchanged\n", o.file.c_str());
      } else {
        std::printf("%s: NOT VALID: %s\n", o.file.c_str(),
                    ec ? "unexpected answer" : Str(v, "problem").c_str());
      }
    }
    if (code == kOk && (ec || !v.is_object() || v.at("ok") != json::value(true))) code = kRefused;
  });
}

}  // namespace silo::cli
