#include "api/routes.h"

#include "api/auth_handlers.h"
#include "api/handlers.h"

namespace silo::api {
namespace {

using http::Access;
constexpr size_t kNoBody = 0;
constexpr size_t kSmallJson = 16 * 1024;
constexpr size_t kRecordJson = 256 * 1024;  // a record: 64 fields, text up to 64 KiB each

}  // namespace

Router BuildPlatformRouter(Services& s) {
  Router r;
  r.Add({"GET", "/healthz", Access::Public(), kNoBody, "", Healthz});
  r.Add({"GET", "/readyz", Access::Public(), kNoBody, "",
         [&s](RequestContext& c) { return Readyz(s, c); }});
  r.Add({"GET", "/.well-known/security.txt", Access::Public(), kNoBody, "",
         [&s](RequestContext& c) { return SecurityTxt(s, c); }});
  return r;
}

Router BuildTenantRouter(Services& s) {
  using P = Access;
  Router r;
  auto with = [&s](http::Response (*h)(Services&, RequestContext&)) {
    return [&s, h](RequestContext& c) { return h(s, c); };
  };
  constexpr bool kSlow = true;  // hashes a password: the slow pool
  r.Add({"GET", "/api/", Access::Public(), kNoBody, "", TenantRoot});

  // Sign-in and the signed-in user's own account.
  r.Add({"POST", "/api/auth/setup", P::Public(), kSmallJson, "login", with(AuthSetup), kSlow});
  r.Add({"POST", "/api/auth/login", P::Public(), kSmallJson, "login", with(AuthLogin), kSlow});
  r.Add({"POST", "/api/auth/mfa", P::Public(), kSmallJson, "mfa", with(AuthMfa)});
  r.Add({"POST", "/api/auth/logout", P::Session(), kNoBody, "", AuthLogout});
  r.Add({"GET", "/api/auth/me", P::Session(), kNoBody, "", AuthMe});
  r.Add({"POST", "/api/auth/password/change", P::Session(), kSmallJson, "login",
         with(AuthChangePassword), kSlow});
  r.Add(
      {"POST", "/api/auth/password-reset", P::Public(), kSmallJson, "reset", with(PasswordReset)});
  r.Add({"POST", "/api/auth/password-reset/confirm", P::Public(), kSmallJson, "login",
         with(PasswordResetConfirm), kSlow});
  r.Add({"GET", "/api/auth/sessions", P::Session(), kNoBody, "", AuthListSessions});
  r.Add({"DELETE", "/api/auth/sessions/{id}", P::Session(), kNoBody, "", AuthRevokeSession});
  r.Add({"POST", "/api/auth/totp/enroll", P::Session(), kNoBody, "", with(TotpEnroll)});
  r.Add({"POST", "/api/auth/totp/confirm", P::Session(), kSmallJson, "mfa", with(TotpConfirm)});
  r.Add({"DELETE", "/api/auth/totp", P::Session(), kSmallJson, "mfa", with(TotpDisable)});
  r.Add({"GET", "/api/tokens", P::Session(), kNoBody, "", ListApiTokens});
  r.Add({"POST", "/api/tokens", P::Session(), kSmallJson, "", with(CreateApiToken)});
  r.Add({"DELETE", "/api/tokens/{id}", P::Session(), kNoBody, "", RevokeApiToken});

  // Users, roles and the permission catalogue.
  r.Add({"GET", "/api/permissions", P::Permission("roles.read"), kNoBody, "", ListPermissions});
  r.Add({"GET", "/api/roles", P::Permission("roles.read"), kNoBody, "", ListRoles});
  r.Add({"POST", "/api/roles", P::Permission("roles.manage"), kSmallJson, "", CreateRole});
  r.Add({"GET", "/api/roles/{name}", P::Permission("roles.read"), kNoBody, "", GetRole});
  r.Add({"PATCH", "/api/roles/{name}", P::Permission("roles.manage"), kSmallJson, "", UpdateRole});
  r.Add({"DELETE", "/api/roles/{name}", P::Permission("roles.manage"), kNoBody, "", DeleteRole});
  r.Add({"GET", "/api/users", P::Permission("users.read"), kNoBody, "", ListUsers});
  r.Add({"POST", "/api/users", P::Permission("users.manage"), kSmallJson, "", InviteUser});
  r.Add({"GET", "/api/users/{id}", P::Permission("users.read"), kNoBody, "", GetUser});
  r.Add({"PATCH", "/api/users/{id}", P::Permission("users.manage"), kSmallJson, "", UpdateUser});
  r.Add({"PUT", "/api/users/{id}/roles", P::Permission("users.manage"), kSmallJson, "",
         SetUserRoles});

  // Anonymous contact forms (collections marked public).
  r.Add(
      {"POST", "/api/public/{name}", P::Public(), kRecordJson, "public_form", with(PublicSubmit)});

  r.Add(
      {"GET", "/api/collections", P::Permission("collections.read"), kNoBody, "", ListCollections});
  r.Add({"POST", "/api/collections", P::Permission("collections.manage"), kSmallJson, "",
         CreateCollection});
  r.Add({"GET", "/api/collections/{name}", P::Permission("collections.read"), kNoBody, "",
         GetCollection});
  r.Add({"PATCH", "/api/collections/{name}", P::Permission("collections.manage"), kSmallJson, "",
         UpdateCollection});
  r.Add({"DELETE", "/api/collections/{name}", P::Permission("collections.manage"), kNoBody, "",
         DeleteCollection});
  r.Add({"GET", "/api/collections/{name}/records", P::Permission("records.{name}.read"), kNoBody,
         "", ListRecords});
  r.Add({"POST", "/api/collections/{name}/records", P::Permission("records.{name}.create"),
         kRecordJson, "", CreateRecord});
  r.Add({"GET", "/api/collections/{name}/records/{id}", P::Permission("records.{name}.read"),
         kNoBody, "", GetRecord});
  r.Add({"PATCH", "/api/collections/{name}/records/{id}", P::Permission("records.{name}.update"),
         kRecordJson, "", UpdateRecord});
  r.Add({"DELETE", "/api/collections/{name}/records/{id}", P::Permission("records.{name}.delete"),
         kNoBody, "", DeleteRecord});
  r.Add({"GET", "/api/collections/{name}/records/{id}/history",
         P::Permission("records.{name}.history"), kNoBody, "", RecordHistory});
  r.Add({"POST", "/api/collections/{name}/records/{id}/revert",
         P::Permission("records.{name}.update"), kSmallJson, "", RevertRecord});
  r.Add({"GET", "/api/events", P::Permission("events.read"), kNoBody, "", ListEvents});
  r.Add({"GET", "/api/audit", P::Permission("audit.read"), kNoBody, "", ListAudit});
  r.Add({"POST", "/api/audit/verify", P::Permission("audit.verify"), kNoBody, "", VerifyAudit});
  return r;
}

Router BuildOperatorRouter(Services& s) {
  Router r;
  r.Add({"GET", "/healthz", Access::Public(), kNoBody, "", Healthz});
  r.Add({"GET", "/metrics", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return Metrics(s, c); }});
  r.Add({"POST", "/v1/tenants", Access::Operator(), kSmallJson, "",
         [&s](RequestContext& c) { return CreateTenant(s, c); }});
  r.Add({"GET", "/v1/tenants", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return ListTenants(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/suspend", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return SuspendTenant(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/resume", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return ResumeTenant(s, c); }});
  r.Add({"DELETE", "/v1/tenants/{slug}", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return DeleteTenant(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/tokens", Access::Operator(), kSmallJson, "",
         [&s](RequestContext& c) { return IssueToken(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/rebuild", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return RebuildTenant(s, c); }});
  r.Add({"GET", "/v1/tenants/{slug}/export", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return ExportTenant(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/audit/verify", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return VerifyTenants(s, c); }});
  r.Add({"POST", "/v1/audit/verify", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return VerifyTenants(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/backups", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return RunBackup(s, c); }});
  r.Add({"POST", "/v1/tenants/{slug}/drill", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return DrillBackup(s, c); }});
  r.Add({"GET", "/v1/backups", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return ListBackups(s, c); }});
  r.Add({"POST", "/v1/backups/prune", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return PruneBackups(s, c); }});
  r.Add({"POST", "/v1/backups/{id}/verify", Access::Operator(), kNoBody, "",
         [&s](RequestContext& c) { return VerifyBackup(s, c); }});
  r.Add({"POST", "/v1/backups/{id}/restore", Access::Operator(), kSmallJson, "",
         [&s](RequestContext& c) { return RestoreBackup(s, c); }});
  return r;
}

}  // namespace silo::api
