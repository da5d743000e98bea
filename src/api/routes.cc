#include "api/routes.h"

#include <set>

#include "api/auth_handlers.h"
#include "api/handlers.h"
#include "api/openapi.h"
#include "files/blob.h"
#include "records/schema.h"

namespace silo::api {
namespace {

constexpr size_t kSmallJson = 16 * 1024;
constexpr size_t kRecordJson = 256 * 1024;  // a record: 64 fields, text up to 64 KiB each

// A collection named in a path: checked before it reaches a permission
// ("records.{name}.read") or a store.
bool CollectionName(std::string_view name) { return records::ValidName(name); }
constexpr CaptureCheck kCollection{"name", CollectionName};
constexpr CaptureCheck kUploadCollection{"collection", CollectionName};
constexpr CaptureCheck kField{"field", CollectionName};
constexpr CaptureCheck kFile{"file", files::ValidBlobId};
constexpr CaptureCheck kUpload{"upload", files::ValidBlobId};  // an upload's id is its file's
constexpr CaptureCheck kFileIdCapture{"id", files::ValidBlobId};
// A channel a server publishes to: a broadcast name, or user:<id>.
bool ChannelName(std::string_view n) {
  if (n.substr(0, 5) == "user:") n.remove_prefix(5);
  if (n.empty() || n.size() > 128) return false;
  return n.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.:-") ==
             std::string_view::npos &&
         n[0] != '_' && n[0] != '.' && n[0] != ':' && n[0] != '-';
}
constexpr CaptureCheck kChannel{"name", ChannelName};

// Anonymous: sign-in, the second factor, password reset.
void AddSignIn(Router& r) {
  using P = Access;
  // Routes that hash a password run on the slow pool.
  r.Add(Post("/api/auth/setup", AuthSetup)
            .Allow(P::Public())
            .Rate(kSignInPerClient)
            .Body(kSmallJson)
            .Slow());
  r.Add(Post("/api/auth/login", AuthLogin)
            .Allow(P::Public())
            .Rate(kSignInPerClient)
            .Body(kSmallJson)
            .Slow());
  r.Add(Post("/api/auth/mfa", AuthMfa).Allow(P::Public()).Rate(kMfaPerClient).Body(kSmallJson));
  r.Add(Post("/api/auth/password-reset", PasswordReset)
            .Allow(P::Public())
            .Rate(kResetPerClient)
            .Body(kSmallJson));
  r.Add(Post("/api/auth/password-reset/confirm", PasswordResetConfirm)
            .Allow(P::Public())
            .Rate(kSignInPerClient)
            .Body(kSmallJson)
            .Slow());
}

// The signed-in user's own account, sessions, second factor and tokens.
void AddOwnAccount(Router& r) {
  using P = Access;
  // A user who must enrol a second factor may see and end sessions, enrol,
  // and see or revoke their own tokens; not change the password or create
  // a token.
  r.Add(Post("/api/auth/logout", AuthLogout).Allow(P::Session()).DuringMfaEnrolment());
  r.Add(Get("/api/auth/me", AuthMe).Allow(P::Session()).DuringMfaEnrolment());
  r.Add(Post("/api/auth/password/change", AuthChangePassword)
            .Allow(P::Session())
            .Rate(kSignInPerClient)
            .Body(kSmallJson)
            .Slow());
  r.Add(Get("/api/auth/sessions", AuthListSessions).Allow(P::Session()).DuringMfaEnrolment());
  r.Add(Delete("/api/auth/sessions", AuthRevokeOtherSessions)
            .Allow(P::Session())
            .DuringMfaEnrolment());
  r.Add(Delete("/api/auth/sessions/{id}", AuthRevokeSession)
            .Allow(P::Session())
            .DuringMfaEnrolment());
  r.Add(Post("/api/auth/step-up", AuthStepUp)
            .Allow(P::Session())
            .DuringMfaEnrolment()
            .Rate(kMfaPerClient)
            .Body(kSmallJson)
            .Slow());
  r.Add(Post("/api/auth/totp/enroll", TotpEnroll).Allow(P::Session()).DuringMfaEnrolment());
  r.Add(Post("/api/auth/totp/confirm", TotpConfirm)
            .Allow(P::Session())
            .DuringMfaEnrolment()
            .Rate(kMfaPerClient)
            .Body(kSmallJson));
  r.Add(Delete("/api/auth/totp", TotpDisable)
            .Allow(P::Session())
            .DuringMfaEnrolment()
            .Rate(kMfaPerClient)
            .Body(kSmallJson));
  r.Add(Get("/api/tokens", ListApiTokens).Allow(P::Session()).DuringMfaEnrolment());
  r.Add(Post("/api/tokens", CreateApiToken).Allow(P::Session()).Body(kSmallJson));
  r.Add(Delete("/api/tokens/{id}", RevokeApiToken).Allow(P::Session()).DuringMfaEnrolment());
}

// Users, roles and the permission catalogue.
void AddUsersAndRoles(Router& r) {
  using P = Access;
  r.Add(Get("/api/permissions", ListPermissions).Allow(P::Permission("roles.read")));
  r.Add(Get("/api/roles", ListRoles).Allow(P::Permission("roles.read")));
  r.Add(Post("/api/roles", CreateRole).Allow(P::Permission("roles.manage")).Body(kSmallJson));
  r.Add(Get("/api/roles/{name}", GetRole).Allow(P::Permission("roles.read")));
  r.Add(
      Patch("/api/roles/{name}", UpdateRole).Allow(P::Permission("roles.manage")).Body(kSmallJson));
  r.Add(Delete("/api/roles/{name}", DeleteRole).Allow(P::Permission("roles.manage")));
  r.Add(Get("/api/users", ListUsers).Allow(P::Permission("users.read")));
  r.Add(Post("/api/users", InviteUser).Allow(P::Permission("users.manage")).Body(kSmallJson));
  r.Add(Get("/api/users/{id}", GetUser).Allow(P::Permission("users.read")));
  r.Add(Patch("/api/users/{id}", UpdateUser).Allow(P::Permission("users.manage")).Body(kSmallJson));
  r.Add(Put("/api/users/{id}/roles", SetUserRoles)
            .Allow(P::Permission("users.manage"))
            .Body(kSmallJson));
  r.Add(
      Delete("/api/users/{id}/sessions", RevokeUserSessions).Allow(P::Permission("users.manage")));
  // The tenant's settings: the origins allowed to call with API tokens.
  r.Add(Get("/api/settings", GetSettings).Allow(P::Permission("settings.read")));
  r.Add(Patch("/api/settings", UpdateSettings)
            .Allow(P::Permission("settings.manage"))
            .Body(kSmallJson));
  // The operator's access requests: seen, decided (with a TOTP code, so on
  // the second factor's rate) and revoked by the tenant's approvers.
  r.Add(Get("/api/access-requests", ListAccessRequests)
            .Allow(P::Permission("access_requests.manage")));
  r.Add(Post("/api/access-requests/{id}/approve", ApproveAccessRequest)
            .Allow(P::Permission("access_requests.manage"))
            .Rate(kMfaPerClient)
            .Body(kSmallJson));
  r.Add(Post("/api/access-requests/{id}/deny", DenyAccessRequest)
            .Allow(P::Permission("access_requests.manage"))
            .Rate(kMfaPerClient)
            .Body(kSmallJson));
  r.Add(Post("/api/access-requests/{id}/revoke", RevokeAccessRequest)
            .Allow(P::Permission("access_requests.manage")));
}

// Uploads (streamed: the field's limits apply as the body arrives), downloads
// through the record that holds the file, and the tenant's usage.
void AddFiles(Router& r) {
  using P = Access;
  r.Add(Post("/api/files", UploadFile)
            .Allow(P::Permission("records.{collection}.create|records.{collection}.update"))
            .QueryCapture("collection")
            .QueryCapture("field")
            .Check(kUploadCollection)
            .Check(kField)
            .Streamed());
  r.Add(Get("/api/files/usage", FileUsage).Allow(P::Permission("collections.read")));
  // Links: read permission on the file's collection, which only the file
  // names (so the handler checks it); the link itself needs no credentials.
  r.Add(Post("/api/files/{id}/links", CreateFileLink)
            .Allow(P::Authenticated())
            .Check(kFileIdCapture)
            .Body(kSmallJson));
  r.Add(Delete("/api/files/{id}/links/{link}", RevokeFileLink)
            .Allow(P::Authenticated())
            .Check(kFileIdCapture));
  // ?token=: in the query, which the access log never records.
  r.Add(Get("/api/files/link", OpenFileLink).Allow(P::Public()).Rate(kFileLinkPerClient));
  // tus 1.0: the upload URL carries the collection, whose permission every
  // request on it needs (and the field, for the client's sake).
  const std::string upload = "records.{collection}.create|records.{collection}.update";
  r.Add(On("OPTIONS", "/api/uploads", TusOptions).Allow(P::Public()));
  r.Add(Post("/api/uploads", TusCreate)
            .Allow(P::Permission(upload))
            .QueryCapture("collection")
            .QueryCapture("field")
            .Check(kUploadCollection)
            .Check(kField)
            .Streamed());
  r.Add(On("HEAD", "/api/uploads/{upload}", TusHead)
            .Allow(P::Permission(upload))
            .QueryCapture("collection")
            .Check(kUploadCollection)
            .Check(kUpload));
  r.Add(Patch("/api/uploads/{upload}", TusPatch)
            .Allow(P::Permission(upload))
            .QueryCapture("collection")
            .Check(kUploadCollection)
            .Check(kUpload)
            .Streamed());
  r.Add(Delete("/api/uploads/{upload}", TusDelete)
            .Allow(P::Permission(upload))
            .QueryCapture("collection")
            .Check(kUploadCollection)
            .Check(kUpload));
  r.Add(Get("/api/collections/{name}/records/{id}/files/{field}/{file}", DownloadFile)
            .Allow(P::Permission("records.{name}.read"))
            .Check(kCollection)
            .Check(kField)
            .Check(kFile));
}

// Public forms, collections, records, their history, and the tenant's logs.
void AddData(Router& r) {
  using P = Access;
  // Anonymous contact forms (collections marked public).
  r.Add(Post("/api/public/{name}", PublicSubmit)
            .Allow(P::Public())
            .Rate(kPublicFormPerClient)
            .Check(kCollection)
            .Body(kRecordJson));

  // Collections, records, their history, and the tenant's logs.
  r.Add(Get("/api/collections", ListCollections).Allow(P::Permission("collections.read")));
  r.Add(Post("/api/collections", CreateCollection)
            .Allow(P::Permission("collections.manage"))
            .Body(kSmallJson));
  r.Add(Get("/api/collections/{name}", GetCollection)
            .Allow(P::Permission("collections.read"))
            .Check(kCollection));
  r.Add(Patch("/api/collections/{name}", UpdateCollection)
            .Allow(P::Permission("collections.manage"))
            .Check(kCollection)
            .Body(kSmallJson));
  r.Add(Delete("/api/collections/{name}", DeleteCollection)
            .Allow(P::Permission("collections.manage"))
            .Check(kCollection));
  r.Add(Get("/api/collections/{name}/records", ListRecords)
            .Allow(P::Permission("records.{name}.read"))
            .Check(kCollection));
  r.Add(Post("/api/collections/{name}/records", CreateRecord)
            .Allow(P::Permission("records.{name}.create"))
            .Check(kCollection)
            .Body(kRecordJson));
  r.Add(Get("/api/collections/{name}/records/{id}", GetRecord)
            .Allow(P::Permission("records.{name}.read"))
            .Check(kCollection));
  r.Add(Patch("/api/collections/{name}/records/{id}", UpdateRecord)
            .Allow(P::Permission("records.{name}.update"))
            .Check(kCollection)
            .Body(kRecordJson));
  r.Add(Delete("/api/collections/{name}/records/{id}", DeleteRecord)
            .Allow(P::Permission("records.{name}.delete"))
            .Check(kCollection));
  r.Add(Get("/api/collections/{name}/records/{id}/history", RecordHistory)
            .Allow(P::Permission("records.{name}.history"))
            .Check(kCollection));
  r.Add(Get("/api/collections/{name}/export", ExportRecords)
            .Allow(P::Permission("records.{name}.export"))
            .Check(kCollection));
  r.Add(Post("/api/collections/{name}/records/{id}/revert", RevertRecord)
            .Allow(P::Permission("records.{name}.update"))
            .Check(kCollection)
            .Body(kSmallJson));
  AddFiles(r);
  r.Add(Get("/api/events", ListEvents).Allow(P::Permission("events.read")));
  // Realtime upgrades authenticate in the handler: a browser's WebSocket
  // sends no Authorization header, so besides a token or the cookie (with
  // a mandatory Origin check) they take a single-use ticket. Each channel
  // is then authorised as it is joined, and each event as it is delivered.
  r.Add(Get("/api/realtime", RealtimeConnect).Allow(P::Public()).Rate(kRealtimePerClient));
  r.Add(Get("/api/realtime/sse", RealtimeStream).Allow(P::Public()).Rate(kRealtimePerClient));
  r.Add(Post("/api/realtime/tickets", CreateRealtimeTicket).Allow(P::Authenticated()));
  r.Add(Post("/api/channels/{name}/messages", PublishMessage)
            .Allow(P::Permission("channels.{name}.publish"))
            .Check(kChannel)
            .Body(64 * 1024));
  r.Add(Get("/api/audit", ListAudit).Allow(P::Permission("audit.read")));
  r.Add(Post("/api/audit/verify", VerifyAudit).Allow(P::Permission("audit.verify")));
  r.Add(Get("/api/audit/checkpoint", AuditCheckpoint).Allow(P::Permission("audit.read")));
}

// The web console's files: public (they hold no tenant data; everything the
// console shows comes through the API under the caller's rights).
bool AssetName(std::string_view n) {
  return !n.empty() && n.size() <= 128 && n[0] != '.' &&
         n.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
             std::string_view::npos;
}
constexpr CaptureCheck kAssetName{"file", AssetName};

void AddConsole(Router& r) {
  r.Add(Get("/console", ConsoleSlash).Allow(Access::Public()));
  r.Add(Get("/console/", ConsoleIndex).Allow(Access::Public()));
  r.Add(Get("/console/assets/{file}", ConsoleFile).Allow(Access::Public()).Check(kAssetName));
  r.Add(Get("/reset", ResetPage).Allow(Access::Public()));
}

}  // namespace

Router BuildPlatformRouter() {
  Router r;
  r.Add(Get("/healthz", Healthz).Allow(Access::Public()));
  r.Add(Get("/readyz", Readyz).Allow(Access::Public()));
  r.Add(Get("/.well-known/security.txt", SecurityTxt).Allow(Access::Public()));
  return r;
}

Router BuildTenantRouter() {
  Router r;
  r.Add(Get("/api/", TenantRoot).Allow(Access::Public()));
  // The document with the caller's own collections typed (the static one
  // is `silo openapi`).
  r.Add(Get("/api/openapi.json", TenantOpenApi).Allow(Access::Authenticated()));
  AddConsole(r);
  AddSignIn(r);
  AddOwnAccount(r);
  AddUsersAndRoles(r);
  AddData(r);
  return r;
}

Router BuildOperatorRouter() {
  using P = Access;
  Router r;
  r.Add(Get("/healthz", Healthz).Allow(P::Public()));
  r.Add(Get("/metrics", Metrics).Allow(P::Operator()));
  r.Add(Get("/v1/openapi.json", OperatorOpenApiDocument).Allow(P::Operator()));
  r.Add(Post("/v1/tenants", CreateTenant).Allow(P::Operator()).Body(kSmallJson));
  r.Add(Get("/v1/tenants", ListTenants).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/suspend", SuspendTenant).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/resume", ResumeTenant).Allow(P::Operator()));
  r.Add(Delete("/v1/tenants/{slug}", DeleteTenant).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/tokens", IssueToken).Allow(P::Operator()).Body(kSmallJson));
  r.Add(Post("/v1/tenants/{slug}/rebuild", RebuildTenant).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/rekey", RekeyTenant).Allow(P::Operator()));
  r.Add(Get("/v1/tenants/{slug}/export", ExportTenant).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/access-requests", CreateAccessRequest)
            .Allow(P::Operator())
            .Body(kSmallJson));
  r.Add(Get("/v1/tenants/{slug}/access-requests", ListOperatorAccessRequests).Allow(P::Operator()));
  r.Add(Get("/v1/tenants/{slug}/access-requests/{id}", GetOperatorAccessRequest)
            .Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/audit/verify", VerifyTenants).Allow(P::Operator()));
  r.Add(Post("/v1/audit/verify", VerifyTenants).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/backups", RunBackup).Allow(P::Operator()));
  r.Add(Post("/v1/tenants/{slug}/drill", DrillBackup).Allow(P::Operator()));
  r.Add(Get("/v1/backups", ListBackups).Allow(P::Operator()));
  r.Add(Post("/v1/backups/prune", PruneBackups).Allow(P::Operator()));
  r.Add(Post("/v1/backups/{id}/verify", VerifyBackup).Allow(P::Operator()));
  r.Add(Post("/v1/backups/{id}/restore", RestoreBackup).Allow(P::Operator()).Body(kSmallJson));
  r.Add(Post("/v1/incidents", CreateIncidentReport).Allow(P::Operator()).Body(kSmallJson));
  r.Add(Post("/v1/incidents/verify", VerifyIncidentReport)
            .Allow(P::Operator())
            .Body(size_t{64} << 20));  // a kept report, timeline and drafts included
  return r;
}

std::vector<std::string> RouteDocumentationDefects() {
  const Router platform = BuildPlatformRouter(), tenant = BuildTenantRouter();
  const Router operator_routes = BuildOperatorRouter();
  std::vector<std::string> out = DocumentationDefects({&platform, &tenant}, PublicRouteDocs());
  for (auto& d : DocumentationDefects({&operator_routes}, OperatorRouteDocs())) {
    out.push_back("operator " + d);
  }
  // Unique across the two documents as well: one client may hold both.
  std::set<std::string_view> ids;
  for (const RouteDoc& d : PublicRouteDocs()) ids.insert(d.operation_id);
  for (const RouteDoc& d : OperatorRouteDocs()) {
    if (ids.contains(d.operation_id)) {
      out.push_back("operation id " + std::string(d.operation_id) + " is in both documents");
    }
  }
  return out;
}

}  // namespace silo::api
