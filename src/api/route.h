// The vocabulary of a route's policy. routes.cc declares every route with it,
// and the dispatchers enforce exactly these fields: who may call (Access), the
// per-client rate rule, what each path capture must look like, whether a
// session that must still enrol a second factor may call it, the body limit,
// and whether it hashes passwords. A handler never re-checks what its route
// declared.
#ifndef SILO_API_ROUTE_H_
#define SILO_API_ROUTE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"
#include "http/router.h"

namespace silo::api {

struct RequestContext;
struct Services;
struct SecurityOptions;

// Every handler has this signature (one shape for the whole table).
using Handler = http::Response (*)(Services&, RequestContext&);

// Who may call a route. Access has no default value that passes: a route
// built without one has kind kUnset, and UnguardedRoutes() lists it so that a
// unit test and the server's start-up both refuse such a table.
struct Access {
  // kSession: any signed-in user of the tenant, by cookie session only (a
  // user's own account actions); kPermission: a named permission, where
  // "{capture}" stands for that capture ("records.{name}.read"), or
  // alternatives separated by '|', any one of which suffices
  // ("records.{collection}.create|records.{collection}.update").
  // kAuthenticated: any proven caller of the tenant (session or token), for
  // a route whose permission depends on the data it names (a file's links
  // need read permission on the file's collection): the handler checks it
  // with CheckPermission (tenant_access.h).
  enum class Kind { kUnset, kPublic, kOperator, kSession, kPermission, kAuthenticated };
  Kind kind = Kind::kUnset;
  std::string permission;  // for kPermission

  static Access Public() { return {Kind::kPublic, {}}; }
  static Access Operator() { return {Kind::kOperator, {}}; }
  static Access Session() { return {Kind::kSession, {}}; }
  static Access Permission(std::string p) { return {Kind::kPermission, std::move(p)}; }
  static Access Authenticated() { return {Kind::kAuthenticated, {}}; }
  // "public", "operator", "session", the permission, "authenticated", or
  // "UNSET" (what `silo routes` prints).
  std::string ToString() const;
};

// A token bucket per key: `name` prefixes the key ("login:ip:203.0.113.9")
// and is what `silo routes` shows; the budget says which limit applies.
struct RateRule {
  enum class Budget {
    kLogin,       // SILO_LOGIN_RATE_PER_MINUTE, a burst of as many
    kPublicForm,  // SILO_PUBLIC_FORM_RATE_PER_MINUTE, a burst of as many
    kResetMail,   // 5 an hour
    kFileLink,    // 600 a minute
    kRealtime,    // SILO_REALTIME_CONNECT_PER_MINUTE, a burst of as many
    kApi,         // SILO_API_RATE_PER_MINUTE, a burst of a sixth of it (at least 10)
    kExport,      // SILO_EXPORTS_PER_HOUR, a burst of as many
  };
  std::string_view name;
  Budget budget;
};

// Takes one token from `rule`'s bucket for "<name>:<key>". A refusal is a
// "rate.throttled" event in the platform security log once per minute per
// rule and key (ASVS 8.1.4), naming the rule, the key's kind (ip, acct,
// device), the tenant of an account key, and `client`; never the key itself
// (it may hold an e-mail address).
struct RateVerdict {
  bool allowed = true;
  int64_t retry_after_us = 0;
};
RateVerdict TakeRate(Services& services, const RateRule& rule, std::string_view key, int64_t now_us,
                     std::string_view client);
// The 429 for a refused take: Retry-After, and a tarpit delay of up to 2 s.
http::Response TooManyAttempts(const http::Request& request, const RateVerdict& verdict);

// A check on one path capture. A capture that fails it is answered 404, like
// an unknown path, before it reaches a permission, a store or a handler.
struct CaptureCheck {
  std::string_view capture;  // the name between braces in the pattern
  bool (*valid)(std::string_view value);
};

struct Route {
  std::string method;
  std::string pattern;
  Handler handler = nullptr;
  Access access;
  const RateRule* rate = nullptr;  // per client address, taken first; null: none
  std::vector<CaptureCheck> captures;
  // Query parameters taken as captures (for permissions and checks) on a
  // route whose subject is not in its path, like POST /api/files?collection=.
  // A request without one is answered 422 before anything else runs.
  std::vector<std::string_view> query_captures;
  // A signed-in user who holds a role that requires MFA and has not enrolled
  // TOTP may call only routes that say so (the enrolment gate). Permission
  // routes never do: rbac::Authorize withholds every permission meanwhile.
  bool during_mfa_enrolment = false;
  size_t body_limit = 0;  // bytes; 0 = no body accepted
  bool slow = false;      // hashes passwords: runs on the server's slow pool
  // The body is not read before the handler runs: the handler reads it from
  // Request::body_stream and decides its own limits (uploads). The request
  // needs a Content-Length; body_limit does not apply.
  bool streamed = false;

  // Builders for the table: Post("/api/x", H).Allow(Access::Public()).Rate(kR).
  Route&& Allow(Access a) && {
    access = std::move(a);
    return std::move(*this);
  }
  Route&& Rate(const RateRule& r) && {
    rate = &r;
    return std::move(*this);
  }
  Route&& Check(CaptureCheck c) && {
    captures.push_back(c);
    return std::move(*this);
  }
  Route&& QueryCapture(std::string_view name) && {
    query_captures.push_back(name);
    return std::move(*this);
  }
  Route&& DuringMfaEnrolment() && {
    during_mfa_enrolment = true;
    return std::move(*this);
  }
  Route&& Body(size_t limit) && {
    body_limit = limit;
    return std::move(*this);
  }
  Route&& Slow() && {
    slow = true;
    return std::move(*this);
  }
  Route&& Streamed() && {
    streamed = true;
    return std::move(*this);
  }
};

// A route on `method` and `pattern`, with nothing declared yet.
Route On(std::string method, std::string pattern, Handler handler);
inline Route Get(std::string pattern, Handler h) { return On("GET", std::move(pattern), h); }
inline Route Post(std::string pattern, Handler h) { return On("POST", std::move(pattern), h); }
inline Route Put(std::string pattern, Handler h) { return On("PUT", std::move(pattern), h); }
inline Route Patch(std::string pattern, Handler h) { return On("PATCH", std::move(pattern), h); }
inline Route Delete(std::string pattern, Handler h) { return On("DELETE", std::move(pattern), h); }

using Router = http::Router<Route>;

// "METHOD pattern" of every route that is not fully declared: Access unset,
// a permission that is empty or names a capture the pattern lacks, a capture
// check on a capture the pattern lacks, or no handler. `silo serve` refuses
// to start unless it is empty.
std::vector<std::string> UnguardedRoutes(const Router& router);

// The first capture of `params` that fails its route's check, if any.
std::optional<std::string> FailedCapture(const Route& route, const http::PathParams& params);

}  // namespace silo::api

#endif  // SILO_API_ROUTE_H_
