// The composition root. App builds every service from a Config, wires the api
// dispatchers to the two servers, and runs until SIGTERM/SIGINT. No globals:
// everything dies with the App. `silo serve`, the dispatcher tests and the
// HTTP fuzz target all get their service graph from it, so there is one.
//
// Lifecycle:
//   Create  takes the data directory's lock, opens the keyring, the tenant
//           registry and the security log, builds the stores and the
//           dispatchers, and refuses a route table with an unguarded route.
//           Nothing listens and no thread runs yet: a test or a fuzz target
//           may stop here and call the dispatchers directly.
//   Start   binds both listeners, writes server.json, starts the mailer,
//           audit retention and the backup schedule.
//   Run     waits for SIGTERM or SIGINT (SIGHUP reloads the certificate).
//   Stop    drains and joins everything, removes server.json. Idempotent;
//           the destructor runs it.
// Not thread-safe itself (one owner drives the lifecycle); what it builds is.
#ifndef SILO_APP_APP_H_
#define SILO_APP_APP_H_

#include <memory>
#include <string>

#include "base/status.h"
#include "config/config.h"

namespace silo::api {
class PublicDispatcher;
class OperatorDispatcher;
struct Services;
}  // namespace silo::api

namespace silo::backup {
class Target;
}  // namespace silo::backup

namespace silo::app {

class App {
 public:
  // Refusals (a held lock, a wrong master key, a broken log, an unguarded
  // route) as a Status whose message says why.
  static Result<std::unique_ptr<App>> Create(config::Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  Status Start();
  // REQUIRES: Start() succeeded; SIGTERM, SIGINT and SIGHUP are blocked in
  // every thread (main does this first), so that this thread can sigwait.
  void Run();
  void Stop();

  api::PublicDispatcher& public_dispatcher();
  api::OperatorDispatcher& operator_dispatcher();
  api::Services& services();

 private:
  struct Parts;
  explicit App(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> p_;
};

// `silo serve`: Load, Create, Start, Run, Stop. Returns the process exit code:
// 0 after a clean shutdown, 1 when refused (configuration problems, lock
// held, bad keys).
// REQUIRES: as App::Run.
int Serve(const config::GetEnv& getenv);

// `silo keys rotate-master` (key_rotation.cc): with the server stopped and its
// environment, re-wraps every tenant key and every backup manifest from
// SILO_MASTER_KEY to SILO_NEW_MASTER_KEY, resumably (docs/operations: rerun
// after any interruption with the same two keys). Prints what it did;
// returns the exit code (0 done, 1 refused or failed: it says why and what
// to do).
int RotateMasterKey(const config::GetEnv& getenv);

// The backup target SILO_BACKUP_TARGET names: a directory, or S3 with the
// SILO_S3_* settings.
Result<std::unique_ptr<backup::Target>> BackupTargetOf(const config::Config& c);

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
// The listener's OpenAPI 3.1 document (`silo openapi [--operator]`), without
// any tenant's collections; the tenant one under the server "/t/{tenant}".
// Pretty-printed with sorted keys, so the committed copy diffs by line.
std::string OpenApiDocument(RouteTableKind kind);

}  // namespace silo::app

#endif  // SILO_APP_APP_H_
