// What a handler receives: the request, its path parameters and, for tenant
// routes, the one tenant the request is bound to (DESIGN principle 1: bound
// before any handler runs; no handler takes a second tenant).
#ifndef SILO_API_CONTEXT_H_
#define SILO_API_CONTEXT_H_

#include "http/message.h"
#include "http/router.h"
#include "tenant/registry.h"

namespace silo::records {
class TenantStore;
struct Principal;
struct Record;
}  // namespace silo::records

namespace silo::api {

struct RequestContext {
  const http::Request& request;
  http::PathParams params;
  const tenant::TenantInfo* tenant = nullptr;  // set on tenant routes only
  // Set on tenant routes that require a permission, once it was proven: the
  // bound tenant's store and the caller.
  records::TenantStore* store = nullptr;
  const records::Principal* principal = nullptr;
};

using Router = http::Router<RequestContext>;
using Route = http::Route<RequestContext>;

}  // namespace silo::api

#endif  // SILO_API_CONTEXT_H_
