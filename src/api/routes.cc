#include "api/routes.h"

#include "api/handlers.h"

namespace silo::api {
namespace {

using http::Access;
constexpr size_t kNoBody = 0;
constexpr size_t kSmallJson = 16 * 1024;

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
  Router r;
  r.Add({"GET", "/api/", Access::Public(), kNoBody, "", TenantRoot});
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
  return r;
}

}  // namespace silo::api
