#include "api/routes.h"

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
  return r;
}

Router BuildTenantRouter(Services& s) {
  (void)s;
  using P = Access;
  Router r;
  r.Add({"GET", "/api/", Access::Public(), kNoBody, "", TenantRoot});
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
  return r;
}

}  // namespace silo::api
