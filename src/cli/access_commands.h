// `silo access request|list|show` and `silo incident report|verify`: the operator's requests for
// access to a tenant's data (the lockbox, issue 22), clients of the operator API's
// /v1/tenants/{slug}/access-requests routes. The tenant decides them; the
// operator then names an approved one to `silo tenant token` or `silo tenant
// export` (--access-request).
#ifndef SILO_CLI_ACCESS_COMMANDS_H_
#define SILO_CLI_ACCESS_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace silo::cli {

// As AddTenantCommands (tenant_commands.h).
void AddAccessCommands(CLI::App& app, bool& as_json, int& code);
// `silo incident report|verify` (POST /v1/incidents[/verify]): a report is
// written as incident-<id>.json (the signed object) and incident-<id>.md.
void AddIncidentCommands(CLI::App& app, bool& as_json, int& code);

// "90s", "45m", "2h" or "1d" in seconds; nullopt for anything else (a
// number without a unit, zero, a fraction, an overflow).
std::optional<int64_t> ParseDurationSeconds(const std::string& text);

}  // namespace silo::cli

#endif  // SILO_CLI_ACCESS_COMMANDS_H_
