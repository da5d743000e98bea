#include "cli/tenant_commands.h"

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/operator_client.h"

namespace silo::cli {
namespace {

namespace json = boost::json;

// The values of the tenant commands' options. Callbacks run after the Add*
// functions return, so the values live here (static), and the callbacks
// capture only these, `as_json` and `code`.
struct TenantOptions {
  std::string slug, name, owner_email, token_name, expires, at, access_request;
  std::vector<std::string> permissions;
  bool yes = false;
  bool shred = false;
};

TenantOptions& Options() {
  static TenantOptions* o = new TenantOptions;
  return *o;
}

const char* Env(const char* name) { return std::getenv(name); }

void PrintTenant(const json::value& t) {
  std::printf("%-24s %-10s %s  %s\n", Str(t, "slug").c_str(), Str(t, "state").c_str(),
              Str(t, "id").c_str(), Str(t, "name").c_str());
}

void AddCreate(CLI::App* tenant, bool& as_json, int& code) {
  TenantOptions& o = Options();
  auto* create = tenant->add_subcommand("create", "create a tenant");
  create->add_option("slug", o.slug, "DNS label, 3-63 characters")->required();
  create->add_option("--name", o.name, "display name");
  create->add_option("--owner-email", o.owner_email, "the owner's e-mail address");
  create->callback([&o, &as_json, &code] {
    json::object body;
    body["slug"] = o.slug;
    if (!o.name.empty()) body["name"] = o.name;
    if (!o.owner_email.empty()) body["owner_email"] = o.owner_email;
    code = Call(as_json, "POST", "/v1/tenants", json::serialize(body), [](const json::value& v) {
      std::printf("created tenant %s (id %s)\n", Str(v, "slug").c_str(), Str(v, "id").c_str());
      if (std::string t = Str(v, "owner_setup_token"); !t.empty()) {
        std::printf("owner setup token (shown once; POST /api/auth/setup): %s\n", t.c_str());
      }
    });
  });
}

void AddListAndStates(CLI::App* tenant, bool& as_json, int& code) {
  TenantOptions& o = Options();
  auto* list = tenant->add_subcommand("list", "list tenants");
  list->callback([&as_json, &code] {
    code = Call(as_json, "GET", "/v1/tenants", "", [](const json::value& v) {
      std::printf("%-24s %-10s %-32s  %s\n", "SLUG", "STATE", "ID", "NAME");
      if (v.is_object()) {
        if (auto* arr = v.as_object().if_contains("items"); arr && arr->is_array()) {
          for (const auto& t : arr->as_array()) PrintTenant(t);
        }
      }
    });
  });
  for (const char* verb : {"suspend", "resume"}) {
    auto* sub = tenant->add_subcommand(verb, std::string(verb) + " a tenant");
    sub->add_option("slug", o.slug, "the tenant")->required();
    sub->callback([&o, &as_json, &code, v = std::string(verb)] {
      if (!CheckSlug(o.slug, code)) return;
      code = Call(as_json, "POST", "/v1/tenants/" + o.slug + "/" + v, "",
                  [](const json::value& t) { PrintTenant(t); });
    });
  }
  auto* del = tenant->add_subcommand("delete", "delete a tenant and destroy its key");
  del->add_option("slug", o.slug, "the tenant")->required();
  del->add_flag("--yes", o.yes, "confirm: the tenant's data becomes unrecoverable");
  del->add_flag("--shred", o.shred,
                "also destroy the tenant's backup key: no backup of it opens any more");
  del->callback([&o, &as_json, &code] {
    if (!o.yes) {
      std::fprintf(stderr, "silo: deleting a tenant destroys its data for good; add --yes\n");
      code = kUsage;
      return;
    }
    if (!CheckSlug(o.slug, code)) return;
    const std::string path = "/v1/tenants/" + o.slug + (o.shred ? "?shred=true" : "");
    code = Call(as_json, "DELETE", path, "", [](const json::value& v) {
      std::printf("deleted tenant %s\n", Str(v, "slug").c_str());
      if (!v.is_object()) return;
      if (const json::value* sh = v.as_object().if_contains("shredded"); sh && sh->is_object()) {
        const json::value* n = sh->as_object().if_contains("backups");
        std::printf("shredded: %lld backups in %s no longer open, under any key\n",
                    static_cast<long long>(n != nullptr && n->is_int64() ? n->as_int64() : 0),
                    Str(*sh, "target").c_str());
      }
    });
  });
}

void AddTokenAndRebuild(CLI::App* tenant, bool& as_json, int& code) {
  TenantOptions& o = Options();
  auto* token = tenant->add_subcommand("token", "issue an API token for a tenant (shown once)");
  token->add_option("slug", o.slug, "the tenant")->required();
  token->add_option("--name", o.token_name, "what the token is for")->required();
  token->add_option("--permission", o.permissions, "a permission (repeatable), e.g. records.*.read")
      ->required();
  token->add_option("--expires", o.expires, "RFC 3339 expiry time")->required();
  token->add_option("--access-request", o.access_request,
                    "the tenant's approved access request (silo access request)");
  token->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code)) return;
    json::array perms;
    for (const auto& p : o.permissions) perms.push_back(json::string(p));
    json::object body{{"name", o.token_name}, {"permissions", perms}, {"expires_at", o.expires}};
    if (!o.access_request.empty()) body["access_request"] = o.access_request;
    code = Call(as_json, "POST", "/v1/tenants/" + o.slug + "/tokens", json::serialize(body),
                [](const json::value& v) { std::printf("%s\n", Str(v, "token").c_str()); });
  });
  auto* rebuild = tenant->add_subcommand(
      "rebuild", "recreate a tenant's projections from its event log and prove them equal");
  rebuild->add_option("slug", o.slug, "the tenant")->required();
  rebuild->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code)) return;
    code =
        Call(as_json, "POST", "/v1/tenants/" + o.slug + "/rebuild", "", [](const json::value& v) {
          const auto& r = v.as_object();
          std::printf("rebuilt %s: %lld events, checksum %s, equal\n", Str(v, "tenant").c_str(),
                      static_cast<long long>(r.at("events").as_int64()),
                      Str(v, "checksum_after").c_str());
        });
  });
  auto* rekey = tenant->add_subcommand(
      "rekey", "give a tenant a new data key (database, files, secrets); the old key is destroyed");
  rekey->add_option("slug", o.slug, "the tenant")->required();
  rekey->callback([&o, &as_json, &code] {
    if (!CheckSlug(o.slug, code)) return;
    constexpr long kRekeyCall = 3600;  // seconds: a large tenant's copy
    code = Call(
        as_json, "POST", "/v1/tenants/" + o.slug + "/rekey", "",
        [](const json::value& v) {
          const auto& r = v.as_object();
          auto n = [&](const char* k) { return static_cast<long long>(r.at(k).as_int64()); };
          std::printf(
              "rekeyed %s: key epoch %lld, %lld database bytes and %lld files sealed under the new "
              "key, %lld TOTP secrets moved, %lld recovery codes dropped; writes paused %.3f s "
              "of %.3f s; the old key is destroyed\n",
              Str(v, "tenant").c_str(), n("key_epoch"), n("database_bytes"), n("files"),
              n("secrets_resealed"), n("recovery_codes_dropped"),
              r.at("pause_seconds").to_number<double>(), r.at("seconds").to_number<double>());
          PrintFollowerCopies(v, "under the new key");
        },
        nullptr, kRekeyCall);
  });
}

// Prints the operator API's answer as it comes (JSON lines), not through
// Call's JSON parse.
int Export(const TenantOptions& o) {
  auto client = OperatorClient::FromEnvironment(Env);
  if (!client.ok()) {
    std::fprintf(stderr, "silo: %s\n", client.status().message().c_str());
    return kRefused;
  }
  std::string path = "/v1/tenants/" + o.slug + "/export";
  std::string query;
  if (!o.at.empty()) {
    // RFC 3339 needs only '+' escaped in a query ([0-9A-Za-z:.-] otherwise).
    query = "at=";
    for (char c : o.at) query += c == '+' ? std::string("%2B") : std::string(1, c);
  }
  if (!o.access_request.empty()) {
    if (o.access_request.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") !=
        std::string::npos) {
      std::fprintf(stderr, "silo: not an access request id: %s\n", o.access_request.c_str());
      return kUsage;
    }
    query += (query.empty() ? "" : "&") + std::string("access_request=") + o.access_request;
  }
  if (!query.empty()) path += "?" + query;
  auto answer = client->Call("GET", path);
  if (!answer.ok()) {
    std::fprintf(stderr, "silo: %s\n", answer.status().message().c_str());
    return kRefused;
  }
  if (answer->status != 200) {
    std::fprintf(stderr, "silo: refused (%ld): %s\n", answer->status,
                 ProblemDetail(answer->body).c_str());
    return kRefused;
  }
  std::cout << answer->body;
  return kOk;
}

void AddExport(CLI::App* tenant, int& code) {
  TenantOptions& o = Options();
  auto* exp = tenant->add_subcommand("export", "print a tenant's records as JSON lines");
  exp->add_option("slug", o.slug, "the tenant")->required();
  exp->add_option("--at", o.at, "the state at this RFC 3339 time (default: now)");
  exp->add_option("--access-request", o.access_request,
                  "the tenant's approved access request holding records.*.export");
  exp->callback([&o, &code] {
    if (CheckSlug(o.slug, code)) code = Export(o);
  });
}

// One tenant's line of `silo audit verify`.
void PrintVerdict(const json::value& t) {
  const auto& o = t.as_object();
  const json::value* cp = o.if_contains("checkpoint");
  if (o.at("ok").as_bool()) {
    std::string checkpoint = "no checkpoint yet";
    if (cp != nullptr && cp->is_object() && cp->as_object().if_contains("at") &&
        cp->at("at").is_string()) {
      checkpoint = "holds the checkpoint of " + Str(*cp, "at");
    }
    std::printf("%s: ok (%lld events, %lld audit entries, integrity_check ok, %s)\n",
                Str(t, "tenant").c_str(), static_cast<long long>(o.at("events_checked").as_int64()),
                static_cast<long long>(o.at("audit_checked").as_int64()), checkpoint.c_str());
    return;
  }
  if (cp != nullptr && cp->is_object() && cp->as_object().if_contains("ok") &&
      cp->at("ok") == json::value(false)) {
    std::printf("%s: ROLLED BACK or unverifiable: %s\n", Str(t, "tenant").c_str(),
                Str(*cp, "problem").c_str());
    return;
  }
  if (o.at("events_first_broken").is_null() && o.at("audit_first_broken").is_null()) {
    std::printf("%s: BROKEN database: %s\n", Str(t, "tenant").c_str(), Str(t, "integrity").c_str());
    return;
  }
  bool events = !o.at("events_first_broken").is_null();
  std::printf("%s: BROKEN %s entry %lld: %s\n", Str(t, "tenant").c_str(),
              events ? "event" : "audit",
              static_cast<long long>(
                  o.at(events ? "events_first_broken" : "audit_first_broken").as_int64()),
              Str(t, "reason").c_str());
}

}  // namespace

void AddTenantCommands(CLI::App& app, bool& as_json, int& code) {
  auto* tenant = app.add_subcommand("tenant", "manage tenants through the operator API");
  tenant->require_subcommand(1);
  tenant->fallthrough();
  AddCreate(tenant, as_json, code);
  AddListAndStates(tenant, as_json, code);
  AddTokenAndRebuild(tenant, as_json, code);
  AddExport(tenant, code);
}

void AddAuditCommands(CLI::App& app, bool& as_json, int& code) {
  auto* audit = app.add_subcommand("audit", "check the tenants' hash-chained logs");
  audit->require_subcommand(1);
  audit->fallthrough();
  static std::string* slug = new std::string;
  auto* verify = audit->add_subcommand(
      "verify",
      "recompute every chain and run integrity_check (one tenant or all); name what is broken");
  verify->add_option("slug", *slug, "the tenant (default: every tenant)");
  verify->callback([&as_json, &code] {
    if (!slug->empty() && !CheckSlug(*slug, code)) return;
    std::string path =
        slug->empty() ? "/v1/audit/verify" : "/v1/tenants/" + *slug + "/audit/verify";
    std::string raw;
    code = Call(
        as_json, "POST", path, "",
        [](const json::value& v) {
          for (const auto& t : v.at("tenants").as_array()) PrintVerdict(t);
        },
        &raw);
    // Exit 1 when any chain is broken, with or without --json.
    boost::system::error_code ec;
    json::value answer = json::parse(raw, ec);
    if (code == kOk &&
        (ec || !answer.is_object() || answer.as_object().if_contains("ok") == nullptr ||
         answer.at("ok") != json::value(true))) {
      code = kRefused;
    }
  });
}

}  // namespace silo::cli
