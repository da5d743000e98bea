// Handler functions, grouped by file: health_api.cc, tenant_root_api.cc,
// tenants_api.cc. Each returns the full Response (status, JSON body).
#ifndef SILO_API_HANDLERS_H_
#define SILO_API_HANDLERS_H_

#include "api/context.h"
#include "api/services.h"

namespace silo::api {

http::Response Healthz(RequestContext& ctx);
http::Response Readyz(Services& s, RequestContext& ctx);
http::Response Metrics(Services& s, RequestContext& ctx);

http::Response TenantRoot(RequestContext& ctx);

http::Response CreateTenant(Services& s, RequestContext& ctx);
http::Response ListTenants(Services& s, RequestContext& ctx);
http::Response SuspendTenant(Services& s, RequestContext& ctx);
http::Response ResumeTenant(Services& s, RequestContext& ctx);
http::Response DeleteTenant(Services& s, RequestContext& ctx);

// Status -> problem response: the one place where domain errors become HTTP.
http::Response ErrorResponse(const Status& status, const http::Request& req);

}  // namespace silo::api

#endif  // SILO_API_HANDLERS_H_
