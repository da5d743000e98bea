// The three checks a tenant request that is not public passes, in order:
//   1. Authenticate: who calls (an API token, or else a cookie session);
//   2. CheckCsrf: a cookie session's state-changing request came from the
//      tenant's own pages and carries the session's CSRF token;
//   3. Authorize: the route's Access and the MFA-enrolment gate allow it.
// Each answers with a Status whose public message is the problem's detail:
// kUnauthenticated (401), kPermissionDenied (403); any other code is an
// internal failure (ErrorResponse: 503 or 500, cause to the log). None of
// them writes: the dispatcher audits what they decide.
#ifndef SILO_API_TENANT_ACCESS_H_
#define SILO_API_TENANT_ACCESS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/context.h"
#include "api/route.h"
#include "auth/identity.h"
#include "base/status.h"
#include "events/event_log.h"
#include "http/message.h"
#include "rbac/rbac.h"
#include "records/rules.h"

namespace silo::auth {
class ApiTokens;
}

namespace silo::api {

struct Caller {
  events::Actor actor;                   // {"user", id} or {"token", id}
  std::vector<std::string> permissions;  // effective: a user's token within its owner's
  // Every grant, conditional ones with their conditions and fields; a user's
  // token gets its owner's, narrowed to the token's permissions.
  std::vector<rbac::Grant> grants;
  std::string user_id;  // the user the caller acts for ("" for an operator's token)
  // A user holding a role that requires MFA who has not enrolled TOTP.
  bool mfa_enrolment_pending = false;
  std::optional<auth::SessionAuth> session;  // set when the caller used the cookie
  // When the credentials end unless used again: the session's idle or
  // absolute limit, or the token's expiry.
  int64_t ends_at_us = INT64_MAX;
};

// What a request proves its caller with, kept by a realtime connection to
// re-check it later.
struct Credentials {
  enum class Kind { kToken, kSession };
  Kind kind = Kind::kToken;
  std::string secret;  // the bearer token or the session cookie's value
};

// The request's bearer token, else the tenant's session cookie; nullopt for
// neither.
std::optional<Credentials> CredentialsOf(const http::Request& request,
                                         std::string_view tenant_slug);

// Who `credentials` prove, as Authenticate says; with IdleClock::kKeep a
// session check does not count as the session's use.
Result<Caller> AuthenticateWith(const Credentials& credentials, auth::Identity& identity,
                                auth::ApiTokens& tokens, int64_t now_us,
                                auth::IdleClock idle = auth::IdleClock::kRefresh);

// The session cookie of a tenant: "__Host-silo_session_<slug>". One name per
// tenant, so that signing in to two tenants under /t/<slug>/ on one host
// keeps both sessions (a __Host- cookie has Path=/, so one shared name would
// let each sign-in replace the other's cookie).
inline constexpr std::string_view kSessionCookiePrefix = "__Host-silo_session_";
std::string SessionCookieName(std::string_view tenant_slug);

// A bearer token when the request has "Authorization: Bearer", else the
// session cookie, else kUnauthenticated. A token owned by a user holds only
// what its owner still holds now; a user who is no longer active fails as an
// invalid token. Reads `identity` and `tokens`; writes nothing.
Result<Caller> Authenticate(const http::Request& request, std::string_view tenant_slug,
                            auth::Identity& identity, auth::ApiTokens& tokens, int64_t now_us);

// The request's Origin when it is not the tenant's own ("https://" + Host):
// a page of another origin made it.
std::optional<std::string> ForeignOrigin(const http::Request& request);

// For a cookie session: no foreign Origin (whatever the method: sessions are
// never usable across origins), and for an unsafe method (not GET, HEAD,
// OPTIONS) Fetch Metadata (or Origin) says same-origin and X-CSRF-Token
// hashes to the session's. OK for callers without a session (a bearer token
// is not sent by a browser on its own).
Status CheckCsrf(const http::Request& request, const Caller& caller);

// The route's permission with its captures filled in ("records.{name}.read"
// on /collections/tickets/... is "records.tickets.read"); "" when the route
// needs no permission.
std::string RequiredPermission(const Route& route, const http::PathParams& params);

// kPublic: OK. kSession: a cookie session, and the enrolment gate unless the
// route is allowed during enrolment. kPermission: rbac::Authorize on
// RequiredPermission (any one of '|'-separated alternatives).
// kAuthenticated: the enrolment gate only (the handler checks the rest).
// kOperator and kUnset never reach a tenant caller: refused.
Status Authorize(const Route& route, const http::PathParams& params, const Caller& caller);

// The record rules of a caller with `grants` (records/rules.h): for each
// collection and action, the grants that grant it, parsed against the
// collection's schema with @me = `vars.me`. A grant whose condition or
// fields no longer fit the schema (a field since removed) grants nothing.
records::RulesProvider RulesOf(std::vector<rbac::Grant> grants, records::Variables vars);

// For a kAuthenticated route's handler: whether the proven caller holds
// `permission` (named by the data the route reaches). A refusal is
// PermissionDenied and an access.denied audit entry, as a route's own
// permission check would be.
Status CheckPermission(RequestContext& ctx, const std::string& permission);

}  // namespace silo::api

#endif  // SILO_API_TENANT_ACCESS_H_
