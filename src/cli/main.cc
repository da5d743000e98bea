// silo: argv -> subcommand. Exit codes: 0 ok, 1 refused, 2 usage.
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string_view>

#include "app/app.h"
#include "cli/backup_commands.h"
#include "cli/commands.h"
#include "cli/operator_client.h"
#include "cli/version.h"

namespace {

using silo::cli::Call;
using silo::cli::kOk;
using silo::cli::kRefused;
using silo::cli::kUsage;
using silo::cli::OperatorClient;
using silo::cli::ProblemDetail;
using silo::cli::SlugIsPathSafe;
using silo::cli::Str;
namespace json = boost::json;

const char* Env(const char* name) { return std::getenv(name); }

void PrintTenant(const json::value& t) {
  std::printf("%-24s %-10s %s  %s\n", Str(t, "slug").c_str(), Str(t, "state").c_str(),
              Str(t, "id").c_str(), Str(t, "name").c_str());
}

// CLI11 answers a mistyped subcommand ("silo tenants list") with "A subcommand
// is required", which names neither the word at fault nor the choices. Walks
// argv down the subcommand tree (flags are skipped; below a level that takes
// subcommands only flags come before the next one) and says which word is not
// a command there, with the choices. Nothing when every word fits.
std::optional<std::string> UnknownSubcommand(CLI::App& app, int argc, char** argv) {
  CLI::App* level = &app;
  std::string path = "silo";
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    auto subs = level->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return std::nullopt;  // a leaf: the rest are its arguments
    CLI::App* next = nullptr;
    for (CLI::App* sub : subs) {
      if (sub->get_name() == word) next = sub;
    }
    if (next == nullptr) {
      std::string choices;
      for (CLI::App* sub : subs) choices += (choices.empty() ? "" : ", ") + sub->get_name();
      return "'" + path + " " + word + "' is not a command; choose one of: " + choices;
    }
    level = next;
    path += " " + word;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the signals the server waits for before any thread exists, so that
  // only the main thread's sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Every file and directory this process creates in the data directory
  // (databases, WAL, keyring, backups, logs) is the owner's alone: 0600 and
  // 0700, whatever mode the creating library asks for.
  umask(077);

  CLI::App app{"silo: a multi-tenant, encrypted, event-sourced backend"};
  app.require_subcommand(1);
  bool as_json = false;
  app.add_flag("--json", as_json, "print the operator API's JSON answer and nothing else");

  int code = kOk;
  auto* serve = app.add_subcommand("serve", "run the server (configuration from SILO_* variables)");
  serve->callback([&] { code = silo::app::Serve(Env); });

  bool operator_routes = false;
  auto* routes = app.add_subcommand("routes", "print the tenant route table (JSON)");
  routes->add_flag("--operator", operator_routes, "the operator API's table instead");
  routes->callback([&] {
    using silo::app::RouteTableKind;
    std::printf("%s\n", silo::app::RouteTable(operator_routes ? RouteTableKind::kOperator
                                                              : RouteTableKind::kTenant)
                            .c_str());
  });

  auto* tenant = app.add_subcommand("tenant", "manage tenants through the operator API");
  tenant->require_subcommand(1);
  tenant->fallthrough();

  std::string slug, name, owner_email;
  auto* create = tenant->add_subcommand("create", "create a tenant");
  create->add_option("slug", slug, "DNS label, 3-63 characters")->required();
  create->add_option("--name", name, "display name");
  create->add_option("--owner-email", owner_email, "the owner's e-mail address");
  create->callback([&] {
    json::object body;
    body["slug"] = slug;
    if (!name.empty()) body["name"] = name;
    if (!owner_email.empty()) body["owner_email"] = owner_email;
    code = Call(as_json, "POST", "/v1/tenants", json::serialize(body), [](const json::value& v) {
      std::printf("created tenant %s (id %s)\n", Str(v, "slug").c_str(), Str(v, "id").c_str());
      if (std::string t = Str(v, "owner_setup_token"); !t.empty()) {
        std::printf("owner setup token (shown once; POST /api/auth/setup): %s\n", t.c_str());
      }
    });
  });

  auto* list = tenant->add_subcommand("list", "list tenants");
  list->callback([&] {
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
    sub->add_option("slug", slug, "the tenant")->required();
    std::string v = verb;
    sub->callback([&, v] {
      if (!SlugIsPathSafe(slug)) {
        std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
        code = kUsage;
        return;
      }
      code = Call(as_json, "POST", "/v1/tenants/" + slug + "/" + v, "",
                  [](const json::value& t) { PrintTenant(t); });
    });
  }

  bool yes = false;
  auto* del = tenant->add_subcommand("delete", "delete a tenant and destroy its key");
  del->add_option("slug", slug, "the tenant")->required();
  del->add_flag("--yes", yes, "confirm: the tenant's data becomes unrecoverable");
  del->callback([&] {
    if (!yes) {
      std::fprintf(stderr, "silo: deleting a tenant destroys its data for good; add --yes\n");
      code = kUsage;
      return;
    }
    if (!SlugIsPathSafe(slug)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
      code = kUsage;
      return;
    }
    code = Call(as_json, "DELETE", "/v1/tenants/" + slug, "", [](const json::value& v) {
      std::printf("deleted tenant %s\n", Str(v, "slug").c_str());
    });
  });

  auto check_slug = [&]() {
    if (SlugIsPathSafe(slug)) return true;
    std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
    code = kUsage;
    return false;
  };

  std::string token_name, expires;
  std::vector<std::string> permissions;
  auto* token = tenant->add_subcommand("token", "issue an API token for a tenant (shown once)");
  token->add_option("slug", slug, "the tenant")->required();
  token->add_option("--name", token_name, "what the token is for")->required();
  token->add_option("--permission", permissions, "a permission (repeatable), e.g. records.*.read")
      ->required();
  token->add_option("--expires", expires, "RFC 3339 expiry time")->required();
  token->callback([&] {
    if (!check_slug()) return;
    json::array perms;
    for (const auto& p : permissions) perms.push_back(json::string(p));
    json::object body{{"name", token_name}, {"permissions", perms}, {"expires_at", expires}};
    code = Call(as_json, "POST", "/v1/tenants/" + slug + "/tokens", json::serialize(body),
                [](const json::value& v) { std::printf("%s\n", Str(v, "token").c_str()); });
  });

  auto* rebuild = tenant->add_subcommand(
      "rebuild", "recreate a tenant's projections from its event log and prove them equal");
  rebuild->add_option("slug", slug, "the tenant")->required();
  rebuild->callback([&] {
    if (!check_slug()) return;
    code = Call(as_json, "POST", "/v1/tenants/" + slug + "/rebuild", "", [](const json::value& v) {
      const auto& o = v.as_object();
      std::printf("rebuilt %s: %lld events, checksum %s, equal\n", Str(v, "tenant").c_str(),
                  static_cast<long long>(o.at("events").as_int64()),
                  Str(v, "checksum_after").c_str());
    });
  });

  std::string at;
  auto* exp = tenant->add_subcommand("export", "print a tenant's records as JSON lines");
  exp->add_option("slug", slug, "the tenant")->required();
  exp->add_option("--at", at, "the state at this RFC 3339 time (default: now)");
  exp->callback([&] {
    if (!check_slug()) return;
    auto client = OperatorClient::FromEnvironment(Env);
    if (!client.ok()) {
      std::fprintf(stderr, "silo: %s\n", client.status().message().c_str());
      code = kRefused;
      return;
    }
    std::string path = "/v1/tenants/" + slug + "/export";
    if (!at.empty()) {
      // RFC 3339 needs only '+' escaped in a query ([0-9A-Za-z:.-] otherwise).
      std::string q;
      for (char c : at) q += c == '+' ? std::string("%2B") : std::string(1, c);
      path += "?at=" + q;
    }
    auto answer = client->Call("GET", path);
    if (!answer.ok()) {
      std::fprintf(stderr, "silo: %s\n", answer.status().message().c_str());
      code = kRefused;
      return;
    }
    if (answer->status != 200) {
      std::fprintf(stderr, "silo: refused (%ld): %s\n", answer->status,
                   ProblemDetail(answer->body).c_str());
      code = kRefused;
      return;
    }
    std::cout << answer->body;
  });

  auto* audit = app.add_subcommand("audit", "check the tenants' hash-chained logs");
  audit->require_subcommand(1);
  audit->fallthrough();
  std::string verify_slug;
  auto* verify = audit->add_subcommand(
      "verify",
      "recompute every chain and run integrity_check (one tenant or all); name what is broken");
  verify->add_option("slug", verify_slug, "the tenant (default: every tenant)");
  verify->callback([&] {
    if (!verify_slug.empty() && !SlugIsPathSafe(verify_slug)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", verify_slug.c_str());
      code = kUsage;
      return;
    }
    std::string path =
        verify_slug.empty() ? "/v1/audit/verify" : "/v1/tenants/" + verify_slug + "/audit/verify";
    std::string raw;
    code = Call(
        as_json, "POST", path, "",
        [&](const json::value& v) {
          for (const auto& t : v.at("tenants").as_array()) {
            const auto& o = t.as_object();
            if (o.at("ok").as_bool()) {
              std::printf("%s: ok (%lld events, %lld audit entries, integrity_check ok)\n",
                          Str(t, "tenant").c_str(),
                          static_cast<long long>(o.at("events_checked").as_int64()),
                          static_cast<long long>(o.at("audit_checked").as_int64()));
              continue;
            }
            if (o.at("events_first_broken").is_null() && o.at("audit_first_broken").is_null()) {
              std::printf("%s: BROKEN database: %s\n", Str(t, "tenant").c_str(),
                          Str(t, "integrity").c_str());
              continue;
            }
            bool events = !o.at("events_first_broken").is_null();
            std::printf("%s: BROKEN %s entry %lld: %s\n", Str(t, "tenant").c_str(),
                        events ? "event" : "audit",
                        static_cast<long long>(
                            o.at(events ? "events_first_broken" : "audit_first_broken").as_int64()),
                        Str(t, "reason").c_str());
          }
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

  silo::cli::AddBackupCommands(app, as_json, code);

  // `silo --version` (and `silo --json --version`) before the subcommand
  // rules: it needs none.
  bool version = false;
  for (int i = 1; i < argc && argv[i][0] == '-'; ++i) {
    std::string_view a = argv[i];
    if (a == "--version") version = true;
    if (a == "--json") as_json = true;
  }
  if (version) {
    std::fputs(silo::cli::VersionText(as_json).c_str(), stdout);
    return kOk;
  }
  if (auto unknown = UnknownSubcommand(app, argc, argv)) {
    std::fprintf(stderr, "silo: %s\n", unknown->c_str());
    return kUsage;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kUsage;
  }
  return code;
}
