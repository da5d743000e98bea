// What a handler receives: the request, its path parameters and, for tenant
// routes, the one tenant the request is bound to (DESIGN principle 1: bound
// before any handler runs; no handler takes a second tenant).
#ifndef SILO_API_CONTEXT_H_
#define SILO_API_CONTEXT_H_

#include <string>
#include <vector>

#include "events/event_log.h"
#include "http/message.h"
#include "http/router.h"
#include "rbac/rbac.h"
#include "tenant/registry.h"

namespace silo::records {
class TenantStore;
struct Record;
}  // namespace silo::records
namespace silo::auth {
class ApiTokens;
class Identity;
struct SessionAuth;
}  // namespace silo::auth

namespace silo::api {

struct RequestContext {
  const http::Request& request;
  http::PathParams params;
  const tenant::TenantInfo* tenant = nullptr;  // set on tenant routes only
  // The client's address: the TCP peer, or the forwarded-for address when
  // the peer is a trusted proxy. What rate limits and audit entries use.
  std::string client;
  // Set on tenant routes once the caller was proven (session or token): the
  // bound tenant's store, identity store and API tokens, who the caller is,
  // and what it may do. Public tenant routes get the three stores only.
  records::TenantStore* store = nullptr;
  auth::Identity* identity = nullptr;
  auth::ApiTokens* tokens = nullptr;
  bool authenticated = false;
  events::Actor actor = {};                    // {"user", id} or {"token", id}
  std::vector<std::string> permissions = {};   // effective (token: within its owner's)
  std::vector<rbac::Grant> grants = {};        // with conditions and fields (record rules)
  std::string user_id = {};                    // whom the caller acts for (@me)
  bool mfa_enrolment_pending = false;          // may only enrol TOTP
  const auth::SessionAuth* session = nullptr;  // when the caller used the cookie
};

}  // namespace silo::api

#endif  // SILO_API_CONTEXT_H_
