#include "cli/access_commands.h"

#include <boost/json.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

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

bool CheckSlug(const std::string& slug, int& code) {
  if (SlugIsPathSafe(slug)) return true;
  std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
  code = kUsage;
  return false;
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

}  // namespace silo::cli
