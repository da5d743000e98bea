// `silo tenant create|list|suspend|resume|delete|token|rebuild|export` and
// `silo audit verify`: clients of the operator API's /v1/tenants and
// /v1/audit routes.
#ifndef SILO_CLI_TENANT_COMMANDS_H_
#define SILO_CLI_TENANT_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace silo::cli {

// Each adds its subcommand to `app`. `as_json` is the global --json flag; the
// chosen command's exit code lands in `code`. Both outlive the parse.
void AddTenantCommands(CLI::App& app, bool& as_json, int& code);
void AddAuditCommands(CLI::App& app, bool& as_json, int& code);

}  // namespace silo::cli

#endif  // SILO_CLI_TENANT_COMMANDS_H_
