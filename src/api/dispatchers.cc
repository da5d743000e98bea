#include "api/dispatchers.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "api/handlers.h"
#include "api/routes.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "guard/client_address.h"
#include "guard/rate_limiter.h"
#include "platform/security_log.h"
#include "rbac/rbac.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

using http::Access;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

// The route's body limit; kNoRoute when no route takes the method and path
// (the answer is a 404 or 405 whatever the body).
size_t LimitFor(const Router& r, std::string_view method, std::string_view path, size_t ceiling) {
  auto m = r.Find(method, path);
  if (m.route != nullptr) return std::min(m.route->body_limit, ceiling);
  return http::Dispatcher::kNoRoute;
}

http::Response NotFound(const http::Request& req) {
  return http::Problem(404, "not found", req.request_id);
}

// Runs a matched route after enforcing its Access. `operator_ok` says whether
// the caller proved the operator token.
http::Response RunRoute(const Router::Match& m, RequestContext& ctx, const std::string& route_label,
                        bool operator_ok) {
  const auto& req = ctx.request;
  if (m.route == nullptr) {
    if (!m.path_known) return NotFound(req);
    auto r = http::Problem(405, "method not allowed", req.request_id);
    r.headers.emplace_back("Allow", m.allow);
    r.route = route_label;
    return r;
  }
  http::Response res;
  switch (m.route->access.kind) {
    case Access::Kind::kPublic: res = m.route->handler(ctx); break;
    case Access::Kind::kOperator:
      if (!operator_ok) {
        res = http::Problem(401, "operator token required", req.request_id);
        res.headers.emplace_back("WWW-Authenticate", "Bearer");
      } else {
        res = m.route->handler(ctx);
      }
      break;
    case Access::Kind::kSession:
    case Access::Kind::kPermission:
      // Only tenant routes declare these; the tenant dispatcher proves them
      // (RunTenantRoute) before calling here with ctx.authenticated set.
      if (!ctx.authenticated) {
        res = http::Problem(401, "authentication required", req.request_id);
      } else {
        res = m.route->handler(ctx);
      }
      break;
    case Access::Kind::kUnset: res = http::Problem(500, "internal error", req.request_id); break;
  }
  res.route = route_label;
  return res;
}

// "records.{name}.read" with the route's captures filled in.
std::string ResolvePermission(const std::string& pattern, const http::PathParams& params) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] == '{') {
      size_t close = pattern.find('}', i);
      auto it = params.find(pattern.substr(i + 1, close - i - 1));
      out += it == params.end() ? "" : it->second;
      i = close + 1;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

constexpr std::string_view kSessionCookie = "__Host-silo_session";

bool SafeMethod(std::string_view m) { return m == "GET" || m == "HEAD" || m == "OPTIONS"; }

// Fetch Metadata first, Origin as the fallback (CSRF cheat sheet): a
// cross-site or same-site (sibling subdomain) request never changes state
// with the cookie; a request without either header (not a browser) passes
// on the CSRF token alone.
bool SameOriginRequest(const http::Request& req) {
  if (auto site = req.Header("sec-fetch-site")) return *site == "same-origin" || *site == "none";
  if (auto origin = req.Header("origin")) {
    auto host = req.Header("host");
    return host && *origin == "https://" + std::string(*host);
  }
  return true;
}

// Token uses are audited once per token per hour (an entry per request
// would double the writes of every API read).
class UseAudit {
 public:
  bool Due(const std::string& token_id, int64_t now_us) {
    std::lock_guard lock(mu_);
    if (last_.size() > 100'000) last_.clear();
    int64_t& last = last_[token_id];
    if (last != 0 && now_us - last < 3600LL * 1'000'000) return false;
    last = now_us;
    return true;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> last_;
};

UseAudit& TokenUseAudit() {
  static UseAudit* audit = new UseAudit;
  return *audit;
}

guard::RateLimit LimitFor(const Services& s, const std::string& label) {
  double per_minute =
      label == "public_form" ? s.security->public_form_per_minute : s.security->login_per_minute;
  return {per_minute, per_minute / 60.0, 15LL * 60 * 1'000'000};
}

http::Response TooMany(const http::Request& req, int64_t retry_after_us, const std::string& label) {
  auto r = http::Problem(429, "too many attempts; retry later", req.request_id);
  r.headers.emplace_back("Retry-After", std::to_string(guard::RetryAfterSeconds(retry_after_us)));
  r.route = label;
  r.delay_ms = static_cast<int>(std::min<int64_t>(retry_after_us / 1000, 2000));
  return r;
}

events::Origin AuthContext(const RequestContext& ctx, int64_t now_us) {
  return {ctx.actor, ctx.request.request_id, ctx.client, now_us};
}

// Proves who calls a tenant route (API token or cookie session), what it may
// do, and runs the route. Public routes get the store and identity store
// only. Every refusal is a problem answer; denials are audit entries.
http::Response RunTenantRoute(Services& s, const Router::Match& m, RequestContext& ctx,
                              const std::string& label) {
  const auto& req = ctx.request;
  if (m.route == nullptr || m.route->access.kind == Access::Kind::kOperator ||
      m.route->access.kind == Access::Kind::kUnset) {
    return RunRoute(m, ctx, label, false);
  }
  const int64_t now = NowMicros();
  auto fail = [&](const Status& st) {
    auto r = ErrorResponse(st, req);
    r.route = label;
    return r;
  };
  auto deny = [&](int status, std::string_view detail) {
    auto r = http::Problem(status, detail, req.request_id);
    if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
    r.route = label;
    return r;
  };
  if (!m.route->rate_label.empty()) {
    auto v = s.limiter->Take(m.route->rate_label + ":ip:" + ctx.client,
                             LimitFor(s, m.route->rate_label), now);
    if (!v.allowed) return TooMany(req, v.retry_after_us, label);
  }
  // Path parameters are checked before they reach a permission or a store.
  auto name = m.params.find("name");
  if (name != m.params.end() && m.route->pattern.find("/collections/") != std::string::npos &&
      !records::ValidName(name->second)) {
    return deny(404, "not found");
  }
  // Anonymous routes without a rate limit touch no tenant data (the tenant
  // root); every other route gets the tenant's stores.
  if (m.route->access.kind == Access::Kind::kPublic && m.route->rate_label.empty()) {
    return RunRoute(m, ctx, label, false);
  }
  auto store = s.stores->Open(ctx.tenant->id);
  if (!store.ok()) return fail(store.status());
  auto identity = s.identities->Open(ctx.tenant->id);
  if (!identity.ok()) return fail(identity.status());
  auth::ApiTokens tokens = (*identity)->Tokens();
  ctx.store = store->get();
  ctx.identity = identity->get();
  ctx.tokens = &tokens;
  if (m.route->access.kind == Access::Kind::kPublic) {
    ctx.actor = {"anonymous", ctx.client};
    return RunRoute(m, ctx, label, false);
  }

  std::optional<auth::SessionAuth> session;
  std::vector<rbac::Role> roles;
  auto bearer = req.Header("authorization");
  if (bearer && bearer->substr(0, 7) == "Bearer ") {
    auto principal = tokens.Authenticate(bearer->substr(7), now);
    if (!principal.ok()) {
      if (principal.status().code() == StatusCode::kUnauthenticated) {
        return deny(401, "invalid or expired token");
      }
      return fail(principal.status());
    }
    ctx.actor = {"token", principal->token_id};
    ctx.permissions = principal->permissions;
    if (principal->owner.rfind("user:", 0) == 0) {
      // A user's token never does more than its owner may do now.
      auto owner = (*identity)->GetUser(principal->owner.substr(5));
      if (!owner.ok() || owner->status != "active") return deny(401, "invalid or expired token");
      auto owner_roles = (*identity)->RolesOf(*owner);
      if (!owner_roles.ok()) return fail(owner_roles.status());
      auto held = rbac::PermissionsOf(*owner_roles);
      std::erase_if(ctx.permissions, [&](const std::string& p) { return !rbac::Grants(held, p); });
    }
    if (TokenUseAudit().Due(principal->token_id, now)) {
      (void)(*identity)->Audit(AuthContext(ctx, now), "token.used", "token", principal->token_id,
                               {{"route", req.method + " " + m.route->pattern}});
    }
  } else if (auto cookie = req.Cookie(kSessionCookie)) {
    auto sa = (*identity)->AuthenticateSession(std::string(*cookie), now);
    if (!sa.ok()) {
      if (sa.status().code() == StatusCode::kUnauthenticated) {
        return deny(401, "invalid or expired session");
      }
      return fail(sa.status());
    }
    session = std::move(*sa);
    if (!SafeMethod(req.method)) {
      auto csrf = req.Header("x-csrf-token");
      if (!SameOriginRequest(req)) return deny(403, "cross-site request refused");
      if (!csrf || !crypto::ConstantTimeEquals(crypto::Sha256Hex(*csrf), session->csrf_hash)) {
        return deny(403, "missing or wrong X-CSRF-Token");
      }
    }
    auto user_roles = (*identity)->RolesOf(session->user);
    if (!user_roles.ok()) return fail(user_roles.status());
    roles = std::move(*user_roles);
    ctx.actor = {"user", session->user.id};
    ctx.permissions = rbac::PermissionsOf(roles);
    ctx.mfa_enrolment_pending = rbac::AnyRequiresMfa(roles) && !session->user.totp_enabled;
    ctx.session = &*session;
  } else {
    return deny(401, "authentication required");
  }
  ctx.authenticated = true;

  if (m.route->access.kind == Access::Kind::kSession) {
    if (ctx.session == nullptr) return deny(403, "this route needs a signed-in session");
    return RunRoute(m, ctx, label, false);
  }
  std::string wanted = ResolvePermission(m.route->access.permission, m.params);
  rbac::Decision d = rbac::Authorize({ctx.permissions, ctx.mfa_enrolment_pending}, wanted);
  if (d != rbac::Decision::kAllow) {
    (void)(*identity)->Audit(AuthContext(ctx, now), "access.denied", "route",
                             req.method + " " + m.route->pattern, {{"permission", wanted}});
    return deny(403, d == rbac::Decision::kDenyMfaEnrolmentRequired
                         ? "enrol a second factor first (POST /api/auth/totp/enroll)"
                         : "missing permission " + wanted);
  }
  return RunRoute(m, ctx, label, false);
}

}  // namespace

TenantTarget ResolveTenant(const std::string& base_domain, std::string_view host,
                           std::string_view path) {
  TenantTarget t;
  std::string host_slug;
  if (!base_domain.empty() && !host.empty()) {
    std::string h = Lower(host);
    if (h.front() != '[') h = h.substr(0, h.find(':'));  // drop the port
    // "acme.example.com." names the same host as "acme.example.com"; left
    // unstripped it would match no tenant and let the path choose silently.
    if (!h.empty() && h.back() == '.') h.pop_back();
    std::string suffix = "." + base_domain;
    if (h.size() > suffix.size() &&
        h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string label = h.substr(0, h.size() - suffix.size());
      if (label.find('.') == std::string::npos) host_slug = label;
    }
  }
  std::string path_slug;
  std::string rest(path);
  if (path.substr(0, 3) == "/t/") {
    std::string_view after = path.substr(3);
    size_t slash = after.find('/');
    path_slug = std::string(after.substr(0, slash));
    rest = slash == std::string_view::npos ? "" : std::string(after.substr(slash));
    if (path_slug.empty()) return t;
  }
  if (!host_slug.empty() && !path_slug.empty() && host_slug != path_slug) {
    t.kind = TenantTarget::Kind::kMismatch;
    return t;
  }
  t.slug = path_slug.empty() ? host_slug : path_slug;
  if (t.slug.empty()) return t;
  t.kind = TenantTarget::Kind::kTenant;
  t.path = rest;
  return t;
}

PublicDispatcher::PublicDispatcher(Services& services, std::string base_domain,
                                   size_t max_body_bytes)
    : services_(services),
      base_domain_(std::move(base_domain)),
      max_body_bytes_(max_body_bytes),
      platform_(BuildPlatformRouter(services)),
      tenant_(BuildTenantRouter(services)),
      honeypots_(services.security->honeypot_paths) {}

size_t PublicDispatcher::BodyLimit(std::string_view method, std::string_view target) const {
  std::string_view path = PathOf(target);
  if (platform_.Find(method, path).path_known) {
    return LimitFor(platform_, method, path, max_body_bytes_);
  }
  auto t = ResolveTenant("", "", path);
  return LimitFor(tenant_, method, t.kind == TenantTarget::Kind::kTenant ? t.path : path,
                  max_body_bytes_);
}

std::vector<std::string> PublicDispatcher::UnguardedRoutes() const {
  auto out = platform_.UnguardedRoutes();
  for (auto& r : tenant_.UnguardedRoutes()) out.push_back(std::move(r));
  return out;
}

bool PublicDispatcher::Slow(std::string_view method, std::string_view target) const {
  std::string_view path = PathOf(target);
  auto t = ResolveTenant("", "", path);
  auto m = tenant_.Find(method, t.kind == TenantTarget::Kind::kTenant ? t.path : path);
  return m.route != nullptr && m.route->slow;
}

http::Response PublicDispatcher::Handle(const http::Request& req) {
  const int64_t now = NowMicros();
  std::string client = services_.proxies->ClientOf(req.client_ip, req.Header("x-forwarded-for"));
  if (services_.bans->Banned(client, now)) {
    auto r = http::Problem(403, "forbidden", req.request_id);
    r.route = "banned";
    return r;
  }
  auto pm = platform_.Find(req.method, req.path);
  if (pm.path_known) {
    RequestContext ctx{req, pm.params, nullptr, client};
    return RunRoute(pm, ctx, pm.route ? pm.route->pattern : "unmatched", false);
  }
  // RFC 9112 3.2: a request with more than one Host is refused, never
  // resolved from whichever comes first.
  int hosts = 0;
  for (const auto& [name, value] : req.headers) hosts += name == "host";
  if (hosts > 1) return http::Problem(400, "more than one Host header", req.request_id);
  auto host = req.Header("host");
  TenantTarget t = ResolveTenant(base_domain_, host.value_or(""), req.path);
  if (t.kind == TenantTarget::Kind::kMismatch) {
    return http::Problem(400, "tenant in Host and path disagree", req.request_id);
  }
  // Honeypot paths (after normalisation) answer like any unknown path and
  // ban the client, unless a browser made the request for another site.
  if (honeypots_.Matches(req.path) ||
      (t.kind == TenantTarget::Kind::kTenant && honeypots_.Matches(t.path))) {
    const bool on_behalf = guard::BrowserMadeForAnotherSite(
        req.Header("sec-fetch-site"), req.Header("sec-fetch-mode"), req.Header("sec-fetch-dest"));
    if (!on_behalf) services_.bans->Ban(client, now + services_.security->ban_us, now);
    services_.security_log->AppendOrLog({on_behalf ? "honeypot.hit_not_banned" : "honeypot.hit",
                                         "anonymous", client, req.method + " " + req.path},
                                        req.request_id);
    auto r = NotFound(req);
    r.route = "honeypot";
    return r;
  }
  if (t.kind == TenantTarget::Kind::kNone) return NotFound(req);
  // Unknown and suspended tenants get the same answer as an unknown path, so
  // the public cannot tell which tenants exist.
  auto tenant = services_.tenants->FindActive(t.slug);
  if (!tenant) return NotFound(req);
  auto m = tenant_.Find(req.method, t.path);
  RequestContext ctx{req, m.params, &*tenant, client};
  return RunTenantRoute(services_, m, ctx,
                        m.route ? "/t/{tenant}" + m.route->pattern : "unmatched");
}

OperatorDispatcher::OperatorDispatcher(Services& services, std::string operator_token)
    : services_(services),
      token_(std::move(operator_token)),
      router_(BuildOperatorRouter(services)) {}

size_t OperatorDispatcher::BodyLimit(std::string_view method, std::string_view target) const {
  return LimitFor(router_, method, PathOf(target), 64 * 1024);
}

http::Response OperatorDispatcher::Handle(const http::Request& req) {
  auto m = router_.Find(req.method, req.path);
  bool operator_ok = false;
  if (auto auth = req.Header("authorization"); auth && auth->substr(0, 7) == "Bearer ") {
    operator_ok = crypto::ConstantTimeEquals(auth->substr(7), token_);
  }
  if (m.route != nullptr && m.route->access.kind == Access::Kind::kOperator && !operator_ok) {
    services_.security_log->AppendOrLog(
        {"operator.auth_failed", "anonymous", req.client_ip, req.method + " " + m.route->pattern},
        req.request_id);
  }
  RequestContext ctx{req, m.params, nullptr, req.client_ip};
  return RunRoute(m, ctx, m.route ? m.route->pattern : "unmatched", operator_ok);
}

}  // namespace silo::api
