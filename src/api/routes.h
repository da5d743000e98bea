// The table of contents of the product: every route, its access rule, its body
// limit and its rate-limit label, in routes.cc.
#ifndef SILO_API_ROUTES_H_
#define SILO_API_ROUTES_H_

#include "api/context.h"
#include "api/services.h"

namespace silo::api {

// Platform routes on the public listener, answered for any Host.
Router BuildPlatformRouter(Services& services);
// Routes under a tenant (`/t/<slug>/...` or `<slug>.<base domain>`); paths
// here are relative to the tenant root.
Router BuildTenantRouter(Services& services);
// The operator listener (loopback, bearer SILO_OPERATOR_TOKEN).
Router BuildOperatorRouter(Services& services);

}  // namespace silo::api

#endif  // SILO_API_ROUTES_H_
