#include "api/dispatchers.h"

#include <algorithm>

#include "api/handlers.h"
#include "api/routes.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
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

size_t LimitFor(const Router& r, std::string_view method, std::string_view path, size_t fallback) {
  auto m = r.Find(method, path);
  if (m.route != nullptr) return std::min(m.route->body_limit, fallback);
  return m.path_known ? 0 : fallback;
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
    case Access::Kind::kPermission:
      // Only tenant routes declare permissions; the tenant dispatcher proves
      // them (RunTenantRoute) before calling here with ctx.principal set.
      if (ctx.principal == nullptr) {
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

// Proves a permission route's access with the tenant's API token, then runs
// it with the store and principal in the context.
http::Response RunTenantRoute(Services& s, const Router::Match& m, RequestContext& ctx,
                              const std::string& label) {
  const auto& req = ctx.request;
  if (m.route == nullptr || m.route->access.kind != Access::Kind::kPermission) {
    return RunRoute(m, ctx, label, false);
  }
  auto deny = [&](int status, std::string_view detail) {
    auto r = http::Problem(status, detail, req.request_id);
    if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
    r.route = label;
    return r;
  };
  auto auth = req.Header("authorization");
  if (!auth || auth->substr(0, 7) != "Bearer ") return deny(401, "authentication required");
  auto store = s.stores->Open(ctx.tenant->id);
  if (!store.ok()) {
    auto r = ErrorResponse(store.status(), req);
    r.route = label;
    return r;
  }
  auto principal = (*store)->Authenticate(auth->substr(7), NowMicros());
  if (!principal.ok()) {
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      return deny(401, "invalid or expired token");
    }
    auto r = ErrorResponse(principal.status(), req);
    r.route = label;
    return r;
  }
  // Path parameters are checked before they are named in a permission.
  auto name = m.params.find("name");
  if (name != m.params.end() && !records::ValidName(name->second)) {
    return deny(404, "not found");
  }
  std::string wanted = ResolvePermission(m.route->access.permission, m.params);
  if (!rbac::Grants(principal->permissions, wanted)) {
    return deny(403, "the token lacks permission " + wanted);
  }
  ctx.store = store->get();
  ctx.principal = &*principal;
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
      tenant_(BuildTenantRouter(services)) {}

size_t PublicDispatcher::BodyLimit(std::string_view method, std::string_view target) const {
  std::string_view path = PathOf(target);
  if (platform_.Find(method, path).path_known) {
    return LimitFor(platform_, method, path, max_body_bytes_);
  }
  auto t = ResolveTenant("", "", path);
  return LimitFor(tenant_, method, t.kind == TenantTarget::Kind::kTenant ? t.path : path,
                  max_body_bytes_);
}

http::Response PublicDispatcher::Handle(const http::Request& req) {
  auto pm = platform_.Find(req.method, req.path);
  if (pm.path_known) {
    RequestContext ctx{req, pm.params, nullptr};
    return RunRoute(pm, ctx, pm.route ? pm.route->pattern : "unmatched", false);
  }
  auto host = req.Header("host");
  TenantTarget t = ResolveTenant(base_domain_, host.value_or(""), req.path);
  if (t.kind == TenantTarget::Kind::kMismatch) {
    return http::Problem(400, "tenant in Host and path disagree", req.request_id);
  }
  if (t.kind == TenantTarget::Kind::kNone) return NotFound(req);
  // Unknown and suspended tenants get the same answer as an unknown path, so
  // the public cannot tell which tenants exist.
  auto tenant = services_.tenants->FindActive(t.slug);
  if (!tenant) return NotFound(req);
  auto m = tenant_.Find(req.method, t.path);
  RequestContext ctx{req, m.params, &*tenant};
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
    services_.security_log->Append(
        {"operator.auth_failed", "anonymous", req.client_ip, req.method + " " + m.route->pattern});
  }
  RequestContext ctx{req, m.params, nullptr};
  return RunRoute(m, ctx, m.route ? m.route->pattern : "unmatched", operator_ok);
}

}  // namespace silo::api
