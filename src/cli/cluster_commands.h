// `silo cluster status [--json]`: what etcd says of the cluster (nodes,
// each tenant's primary, term and followers' lag), and `silo tenant promote
// <slug> --node <id>` (a switchover), both through SILO_ETCD_ENDPOINTS; no
// server needs to run on this machine. REQUIRES: the `tenant` command was
// added first (AddTenantCommands).
#ifndef SILO_CLI_CLUSTER_COMMANDS_H_
#define SILO_CLI_CLUSTER_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace silo::cli {

void AddClusterCommands(CLI::App& app, bool& as_json, int& code);

}  // namespace silo::cli

#endif  // SILO_CLI_CLUSTER_COMMANDS_H_
