// The composition root: Serve() builds every service from Config as locals of
// its own frame, wires the api dispatchers to the two servers, and runs until
// SIGTERM/SIGINT. No globals: everything dies when Serve() returns.
#ifndef SILO_APP_APP_H_
#define SILO_APP_APP_H_

#include "config/config.h"

namespace silo::app {

// `silo serve`. Returns the process exit code: 0 after a clean shutdown,
// 1 when refused (configuration problems, lock held, bad keys).
// REQUIRES: SIGTERM, SIGINT and SIGHUP are blocked in every thread (main
// does this first), so that this thread can sigwait for them.
int Serve(const config::GetEnv& getenv);

// <data>/platform/server.json: the addresses a running server bound, so that
// the CLI (and tests using port 0) can find it.
std::string ServerInfoPath(const std::string& data_dir);

// A route table as a JSON array of {method, pattern, access, rate_limit,
// body_limit, slow} (`access` is "public", "operator", "session" or a
// permission pattern like "records.{name}.read"): what `silo routes [--operator]`
// prints, and what the black-box role x route matrix and the operator
// boundary test are generated from.
enum class RouteTableKind { kTenant, kOperator };
std::string RouteTable(RouteTableKind kind);

}  // namespace silo::app

#endif  // SILO_APP_APP_H_
