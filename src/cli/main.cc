// silo: argv -> subcommand. Exit codes: 0 ok, 1 refused, 2 usage.
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "app/app.h"
#include "cli/access_commands.h"
#include "cli/backup_commands.h"
#include "cli/cluster_commands.h"
#include "cli/commands.h"
#include "cli/tenant_commands.h"
#include "cli/version.h"

namespace {

const char* Env(const char* name) { return std::getenv(name); }

// Blocks the signals the server waits for before any thread exists, so that
// only the main thread's sigwait sees them.
void BlockServerSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
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
  using silo::cli::kOk;
  using silo::cli::kUsage;
  BlockServerSignals();
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
  auto* keys = app.add_subcommand("keys", "the platform's keys");
  keys->require_subcommand(1);
  auto* rotate = keys->add_subcommand(
      "rotate-master",
      "with the server stopped and its environment: re-wrap every tenant key and backup under "
      "SILO_NEW_MASTER_KEY (rerun after an interruption)");
  rotate->callback([&] { code = silo::app::RotateMasterKey(Env); });

  bool operator_routes = false;
  auto* routes = app.add_subcommand("routes", "print the tenant route table (JSON)");
  routes->add_flag("--operator", operator_routes, "the operator API's table instead");
  routes->callback([&] {
    using silo::app::RouteTableKind;
    std::printf("%s\n", silo::app::RouteTable(operator_routes ? RouteTableKind::kOperator
                                                              : RouteTableKind::kTenant)
                            .c_str());
  });

  bool operator_document = false;
  auto* openapi = app.add_subcommand(
      "openapi", "print the tenant API's OpenAPI 3.1 document (without any tenant's collections)");
  openapi->add_flag("--operator", operator_document, "the operator API's document instead");
  openapi->callback([&] {
    using silo::app::RouteTableKind;
    std::fputs(silo::app::OpenApiDocument(operator_document ? RouteTableKind::kOperator
                                                            : RouteTableKind::kTenant)
                   .c_str(),
               stdout);
  });

  silo::cli::AddTenantCommands(app, as_json, code);
  silo::cli::AddAuditCommands(app, as_json, code);
  silo::cli::AddAccessCommands(app, as_json, code);
  silo::cli::AddIncidentCommands(app, as_json, code);
  silo::cli::AddBackupCommands(app, as_json, code);
  silo::cli::AddClusterCommands(app, as_json, code);

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
