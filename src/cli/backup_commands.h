// `silo backup run|list|verify|restore|drill|prune` (issue: backups): clients
// of the operator API's /v1/backups routes.
#ifndef SILO_CLI_BACKUP_COMMANDS_H_
#define SILO_CLI_BACKUP_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace silo::cli {

// Adds the `backup` subcommand to `app`. `as_json` is the global --json flag;
// the chosen command's exit code lands in `code`.
void AddBackupCommands(CLI::App& app, bool& as_json, int& code);

}  // namespace silo::cli

#endif  // SILO_CLI_BACKUP_COMMANDS_H_
