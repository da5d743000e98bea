#include "api/dispatchers.h"

#include <algorithm>
#include <boost/json.hpp>

#include "api/cors.h"
#include "api/handlers.h"
#include "api/routes.h"
#include "api/tenant_access.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "guard/client_address.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "records/query.h"
#include "records/tenant_store.h"

namespace silo::api {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

// The route's body limit (kStreamed for a streamed route); kNoRoute when no
// route takes the method and path (the answer is a 404 or 405 whatever the
// body).
size_t LimitFor(const Router& r, std::string_view method, std::string_view path, size_t ceiling) {
  auto m = r.Find(method, path);
  if (m.route != nullptr && m.route->streamed) return http::Dispatcher::kStreamed;
  if (m.route != nullptr) return std::min(m.route->body_limit, ceiling);
  return http::Dispatcher::kNoRoute;
}

http::Response NotFound(const http::Request& req) {
  return http::Problem(404, "not found", req.request_id);
}

// 307 (method and body kept) to the node that leads the tenant: the path
// form of the tenant's address there, whichever form this request used.
http::Response ToPrimary(const http::Request& req, const TenantTarget& t,
                         const std::string& primary_url) {
  const std::string prefix = "/t/" + t.slug;
  const bool by_path = req.path == prefix || req.path.starts_with(prefix + "/");
  http::Response r;
  r.status = 307;
  r.content_type = "";
  r.headers.emplace_back("location", primary_url + (by_path ? "" : prefix) + req.target);
  r.route = "/t/{tenant} elsewhere";
  return r;
}

// The answer to a request no route takes: 404, or 405 with Allow when the
// path has routes for other methods.
http::Response Unmatched(const Router::Match& m, const http::Request& req) {
  if (!m.path_known) return NotFound(req);
  auto r = http::Problem(405, "method not allowed", req.request_id);
  r.headers.emplace_back("Allow", m.allow);
  return r;
}

// Runs a matched platform or operator route after enforcing its Access.
// `operator_ok` says whether the caller proved the operator token. (Tenant
// routes go through RunTenantRoute.)
http::Response RunRoute(Services& s, const Router::Match& m, RequestContext& ctx,
                        bool operator_ok) {
  const auto& req = ctx.request;
  if (m.route == nullptr) return Unmatched(m, req);
  switch (m.route->access.kind) {
    case Access::Kind::kPublic: return m.route->handler(s, ctx);
    case Access::Kind::kOperator:
      if (operator_ok) return m.route->handler(s, ctx);
      {
        auto r = http::Problem(401, "operator token required", req.request_id);
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
      }
    case Access::Kind::kSession:
    case Access::Kind::kPermission:
    case Access::Kind::kAuthenticated:
      // Only tenant routes declare these, and RunTenantRoute proves them.
      return http::Problem(401, "authentication required", req.request_id);
    case Access::Kind::kUnset: break;
  }
  return http::Problem(500, "internal error", req.request_id);
}

// The metrics and access-log label of an answer: the route's pattern under
// `prefix`, or "unmatched" for a known path without the method. An unknown
// path keeps no label (one metric for all of them, whatever was probed).
http::Response Labelled(http::Response r, const Router::Match& m, std::string_view prefix) {
  if (m.path_known) r.route = m.route ? std::string(prefix) + m.route->pattern : "unmatched";
  return r;
}

// Copies the route's query captures from the query string into `params`;
// the name of the first one missing (or given twice), or "".
std::string TakeQueryCaptures(const Route& route, const http::Request& req,
                              http::PathParams* params) {
  if (route.query_captures.empty()) return "";
  auto query = records::ParseQueryString(req.query);
  for (auto name : route.query_captures) {
    int seen = 0;
    if (query.ok()) {
      for (const auto& [k, v] : *query) {
        if (k != name) continue;
        ++seen;
        (*params)[std::string(name)] = v;
      }
    }
    if (seen != 1) return std::string(name);
  }
  return "";
}

// A refusal from one of the tenant_access.h checks, or an internal failure.
http::Response Refusal(const Status& st, const http::Request& req) {
  http::Response r = ErrorResponse(st, req);
  if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

// The detail of a problem answer (its public text), at most 200 bytes.
std::string ProblemDetail(const http::Response& r) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r.body, ec);
  const boost::json::value* d =
      ec || !v.is_object() ? nullptr : v.as_object().if_contains("detail");
  if (d == nullptr || !d->is_string()) return "";
  return std::string(d->as_string().subview().substr(0, 200));
}

// A refused request as a security event in the tenant's audit log (ASVS
// 7.1.3): its kind, the route and the reason the caller was given (never a
// credential). Once per minute per client and kind, so that a flood cannot
// fill the log; a failed write goes to the process log.
void RefusalEvent(Services& s, const RequestContext& ctx, const Route& route, std::string_view type,
                  std::string_view reason) {
  const int64_t now = NowMicros();
  if (s.event_window != nullptr &&
      !s.event_window->Due(std::string(type) + " " + ctx.tenant->id + " " + ctx.client, now)) {
    return;
  }
  events::Actor actor = ctx.actor.kind.empty() ? events::Actor{"anonymous", ctx.client} : ctx.actor;
  const events::Origin origin{actor, ctx.request.request_id, ctx.client, now};
  Status st = ctx.identity->Audit(origin, std::string(type), "route",
                                  ctx.request.method + " " + route.pattern,
                                  {{"reason", std::string(reason)}});
  if (!st.ok()) {
    log::Error("security event not recorded", {{"type", std::string(type)},
                                               {"request_id", ctx.request.request_id},
                                               {"cause", st.ToString()}});
  }
}

// A tenant route: its rate rule and capture checks, then the tenant's stores,
// then (unless public) Authenticate, CheckCsrf and Authorize
// (tenant_access.h), then the handler. Denials are audit entries.
http::Response RunTenantRoute(Services& s, guard::OncePer& token_uses, Router::Match m,
                              RequestContext& ctx) {
  const auto& req = ctx.request;
  if (m.route == nullptr) return Unmatched(m, req);
  const Route& route = *m.route;
  const int64_t now = NowMicros();
  if (route.rate != nullptr) {
    RateVerdict v = TakeRate(s, *route.rate, "ip:" + ctx.client, now, ctx.client);
    if (!v.allowed) return TooManyAttempts(req, v);
  }
  if (FailedCapture(route, m.params)) return NotFound(req);
  if (route.access.kind == Access::Kind::kOperator || route.access.kind == Access::Kind::kUnset) {
    return RunRoute(s, m, ctx, false);
  }
  // Anonymous routes without a rate rule touch no tenant data (the tenant
  // root); every other route gets the tenant's stores.
  if (route.access.kind == Access::Kind::kPublic && route.rate == nullptr) {
    return route.handler(s, ctx);
  }
  auto store = s.stores->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  auto identity = s.identities->Open(ctx.tenant->id);
  if (!identity.ok()) return ErrorResponse(identity.status(), req);
  auth::ApiTokens tokens = (*identity)->Tokens();
  ctx.store = store->get();
  ctx.identity = identity->get();
  ctx.tokens = &tokens;
  if (route.access.kind == Access::Kind::kPublic) {
    ctx.actor = {"anonymous", ctx.client};
    return route.handler(s, ctx);
  }

  auto caller = Authenticate(req, ctx.tenant->slug, *ctx.identity, tokens, now);
  if (!caller.ok()) {
    // A credential that proves nothing is an event (ASVS 7.1.3); no
    // credential at all is an ordinary anonymous request.
    if (auto presented = CredentialsOf(req, ctx.tenant->slug)) {
      RefusalEvent(s, ctx, route,
                   presented->kind == Credentials::Kind::kToken ? "auth.token_refused"
                                                                : "auth.session_refused",
                   caller.status().message());
    }
    return Refusal(caller.status(), req);
  }
  if (Status csrf = CheckCsrf(req, *caller); !csrf.ok()) {
    ctx.actor = caller->actor;
    RefusalEvent(s, ctx, route, "auth.csrf_refused", csrf.message());
    return Refusal(csrf, req);
  }
  {
    RateVerdict v =
        TakeRate(s, kApiPerCredential,
                 "cred:" + ctx.tenant->id + ":" + caller->actor.kind + ":" + caller->actor.id, now,
                 ctx.client);
    if (!v.allowed) return TooManyAttempts(req, v);
  }
  ctx.authenticated = true;
  ctx.actor = caller->actor;
  ctx.permissions = caller->permissions;
  ctx.grants = caller->grants;
  ctx.user_id = caller->user_id;
  ctx.store->SetRules(RulesOf(caller->grants, {caller->user_id, now}));
  ctx.mfa_enrolment_pending = caller->mfa_enrolment_pending;
  ctx.session = caller->session ? &*caller->session : nullptr;
  // Captures from the query string, once the caller is known (an unknown
  // caller learns nothing about the parameters), before the permission that
  // may name them.
  if (std::string missing = TakeQueryCaptures(route, req, &m.params); !missing.empty()) {
    return http::Problem(422, "query parameter " + missing + " is required, once", req.request_id);
  }
  if (FailedCapture(route, m.params)) return NotFound(req);
  ctx.params = m.params;
  const events::Origin origin{ctx.actor, req.request_id, ctx.client, now};
  if (ctx.actor.kind == "token" && token_uses.Due(ctx.actor.id, now)) {
    (void)ctx.identity->Audit(origin, "token.used", "token", ctx.actor.id,
                              {{"route", req.method + " " + route.pattern}});
  }
  if (Status allowed = Authorize(route, m.params, *caller); !allowed.ok()) {
    if (route.access.kind == Access::Kind::kPermission) {
      (void)ctx.identity->Audit(origin, "access.denied", "route", req.method + " " + route.pattern,
                                {{"permission", RequiredPermission(route, m.params)}});
    }
    return Refusal(allowed, req);
  }
  http::Response r = route.handler(s, ctx);
  if (r.status == 400 || r.status == 422) {
    RefusalEvent(s, ctx, route, "request.invalid", ProblemDetail(r));
  }
  return r;
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
      platform_(BuildPlatformRouter()),
      tenant_(BuildTenantRouter()),
      honeypots_(services.security->honeypot_paths),
      // Token uses are audited once per token per hour (an entry per
      // request would double the writes of every API read).
      token_uses_(std::make_unique<guard::OncePer>(3600LL * 1'000'000)) {}

PublicDispatcher::~PublicDispatcher() = default;

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
  auto out = api::UnguardedRoutes(platform_);
  for (auto& r : api::UnguardedRoutes(tenant_)) out.push_back(std::move(r));
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
    return Labelled(RunRoute(services_, pm, ctx, false), pm, "");
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
  if (!tenant) {
    // Led by another node of the cluster: the same request, there. (This
    // tells the public that the slug exists in the cluster, which its
    // public URL does anyway; docs/threat_model.md.)
    if (services_.primary_elsewhere) {
      if (auto url = services_.primary_elsewhere(t.slug); url && url->empty()) {
        auto r = http::Problem(503, "the tenant is changing nodes; retry", req.request_id);
        r.headers.emplace_back("retry-after", "1");
        r.route = "/t/{tenant} changing nodes";
        return r;
      } else if (url) {
        return ToPrimary(req, t, *url);
      }
    }
    return NotFound(req);
  }
  // A page of another origin: listed in the tenant's cors_origins or not.
  const std::optional<std::string> foreign = ForeignOrigin(req);
  bool listed = false;
  if (foreign) {
    auto identity = services_.identities->Open(tenant->id);
    if (!identity.ok()) return ErrorResponse(identity.status(), req);
    auto settings = (*identity)->Settings();
    if (!settings.ok()) return ErrorResponse(settings.status(), req);
    listed = std::find(settings->cors_origins.begin(), settings->cors_origins.end(), *foreign) !=
             settings->cors_origins.end();
    if (IsPreflight(req)) {
      http::Response r = Preflight(req, tenant_, t.path, *foreign, listed);
      r.route = "/t/{tenant} preflight";
      return r;
    }
  }
  auto m = tenant_.Find(req.method, t.path);
  RequestContext ctx{req, m.params, &*tenant, client};
  http::Response r = Labelled(RunTenantRoute(services_, *token_uses_, m, ctx), m, "/t/{tenant}");
  if (foreign) AddCorsHeaders(&r, *foreign, listed);
  // What the request committed reaches realtime subscribers before the
  // answer, and a change of rights applies to open connections before the
  // caller learns it is done.
  if (m.route != nullptr && req.method != "GET" && req.method != "HEAD" &&
      services_.realtime != nullptr) {
    services_.realtime->AfterWrite(tenant->id);
  }
  return r;
}

OperatorDispatcher::OperatorDispatcher(Services& services, std::string operator_token)
    : services_(services), token_(std::move(operator_token)), router_(BuildOperatorRouter()) {}

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
  // On a cluster node, a command for a tenant another node leads is for
  // that node (its operator listener is its own, on its loopback): said so,
  // rather than "no such tenant", which would read as if the tenant were gone.
  if (auto slug = m.params.find("slug"); operator_ok && slug != m.params.end() &&
                                         services_.primary_elsewhere &&
                                         !services_.tenants->Find(slug->second)) {
    if (auto url = services_.primary_elsewhere(slug->second)) {
      auto r = url->empty()
                   ? http::Problem(503, "the tenant is changing nodes; retry", req.request_id)
                   : http::Problem(409,
                                   "another node of the cluster leads this tenant (" + *url +
                                       "): run the command on that node",
                                   req.request_id);
      if (url->empty()) r.headers.emplace_back("retry-after", "1");
      return Labelled(std::move(r), m, "");
    }
  }
  RequestContext ctx{req, m.params, nullptr, req.client_ip};
  return Labelled(RunRoute(services_, m, ctx, operator_ok), m, "");
}

}  // namespace silo::api
