#include "api/tenant_access.h"

#include <algorithm>

#include "api/handlers.h"
#include "auth/api_tokens.h"
#include "crypto/crypto.h"
#include "rbac/rbac.h"

namespace silo::api {
namespace {

constexpr char kEnrolFirst[] = "enrol a second factor first (POST /api/auth/totp/enroll)";

bool SafeMethod(std::string_view m) { return m == "GET" || m == "HEAD" || m == "OPTIONS"; }

// Fetch Metadata first, Origin as the fallback (CSRF cheat sheet): a
// cross-site or same-site (sibling subdomain) request never changes state
// with the cookie; a request without either header (not a browser) passes
// on the CSRF token alone.
bool SameOriginRequest(const http::Request& req) {
  if (auto site = req.Header("sec-fetch-site")) return *site == "same-origin" || *site == "none";
  return !ForeignOrigin(req);
}

Result<Caller> ByToken(std::string_view secret, auth::Identity& identity, auth::ApiTokens& tokens,
                       int64_t now_us) {
  auto principal = tokens.Authenticate(secret, now_us);
  if (!principal.ok()) {
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      return Unauthenticated("invalid or expired token");
    }
    return principal.status();
  }
  Caller c;
  c.actor = {"token", principal->token_id};
  c.permissions = principal->permissions;
  c.ends_at_us = principal->expires_at_us;
  if (principal->owner.rfind("user:", 0) == 0) {
    // A user's token never does more than its owner may do now: its
    // permissions within the owner's, with the owner's conditions and fields.
    auto owner = identity.GetUser(principal->owner.substr(5));
    if (!owner.ok() || owner->status != "active") {
      return Unauthenticated("invalid or expired token");
    }
    SILO_ASSIGN_OR_RETURN(std::vector<rbac::Role> owner_roles, identity.RolesOf(*owner));
    auto held = rbac::PermissionsOf(owner_roles);
    std::erase_if(c.permissions, [&](const std::string& p) { return !rbac::Grants(held, p); });
    const std::vector<rbac::Grant> owner_grants = rbac::GrantsOf(owner_roles);
    for (const auto& p : c.permissions) {
      for (const auto& g : owner_grants) {
        if (auto narrowed = rbac::Narrow(p, g)) c.grants.push_back(std::move(*narrowed));
      }
    }
    c.user_id = owner->id;
  } else {
    for (const auto& p : c.permissions) c.grants.push_back({p, {}, {}});
  }
  return c;
}

Result<Caller> BySession(std::string_view cookie, auth::Identity& identity, int64_t now_us,
                         auth::IdleClock idle) {
  auto session = identity.AuthenticateSession(std::string(cookie), now_us, idle);
  if (!session.ok()) {
    if (session.status().code() == StatusCode::kUnauthenticated) {
      return Unauthenticated("invalid or expired session");
    }
    return session.status();
  }
  SILO_ASSIGN_OR_RETURN(std::vector<rbac::Role> roles, identity.RolesOf(session->user));
  Caller c;
  c.actor = {"user", session->user.id};
  c.permissions = rbac::PermissionsOf(roles);
  c.grants = rbac::GrantsOf(roles);
  c.user_id = session->user.id;
  c.mfa_enrolment_pending = rbac::AnyRequiresMfa(roles) && !session->user.totp_enabled;
  c.ends_at_us = session->ends_at_us;
  c.session = std::move(*session);
  return c;
}

}  // namespace

records::RulesProvider RulesOf(std::vector<rbac::Grant> grants, records::Variables vars) {
  return [grants = std::move(grants), vars = std::move(vars)](
             const records::CollectionSchema& schema,
             std::string_view action) -> Result<records::RecordRules> {
    records::RecordRules out;
    for (const rbac::Grant& g :
         rbac::Granting(grants, "records." + schema.name + "." + std::string(action))) {
      auto rule = records::ParseRule(schema, g.where, g.fields, vars);
      if (rule.ok()) out.rules.push_back(std::move(*rule));
    }
    return out;
  };
}

std::string SessionCookieName(std::string_view tenant_slug) {
  return std::string(kSessionCookiePrefix) + std::string(tenant_slug);
}

std::optional<Credentials> CredentialsOf(const http::Request& req, std::string_view tenant_slug) {
  auto bearer = req.Header("authorization");
  if (bearer && bearer->substr(0, 7) == "Bearer ") {
    return Credentials{Credentials::Kind::kToken, std::string(bearer->substr(7))};
  }
  if (auto cookie = req.Cookie(SessionCookieName(tenant_slug))) {
    return Credentials{Credentials::Kind::kSession, std::string(*cookie)};
  }
  return std::nullopt;
}

Result<Caller> AuthenticateWith(const Credentials& credentials, auth::Identity& identity,
                                auth::ApiTokens& tokens, int64_t now_us, auth::IdleClock idle) {
  if (credentials.kind == Credentials::Kind::kToken) {
    return ByToken(credentials.secret, identity, tokens, now_us);
  }
  return BySession(credentials.secret, identity, now_us, idle);
}

Result<Caller> Authenticate(const http::Request& req, std::string_view tenant_slug,
                            auth::Identity& identity, auth::ApiTokens& tokens, int64_t now_us) {
  auto credentials = CredentialsOf(req, tenant_slug);
  if (!credentials) return Unauthenticated("authentication required");
  return AuthenticateWith(*credentials, identity, tokens, now_us);
}

std::optional<std::string> ForeignOrigin(const http::Request& req) {
  auto origin = req.Header("origin");
  if (!origin) return std::nullopt;
  auto host = req.Header("host");
  if (host && *origin == "https://" + std::string(*host)) return std::nullopt;
  return std::string(*origin);
}

Status CheckCsrf(const http::Request& req, const Caller& caller) {
  if (!caller.session) return Status::Ok();
  // CORS is for API tokens: a browser sends Origin with every cross-origin
  // fetch, so a session cookie that comes with another origin is refused
  // whatever the method (no Access-Control-Allow-Credentials is ever sent
  // either; this holds even where a same-site page gets the cookie sent).
  if (ForeignOrigin(req)) {
    return PermissionDenied("a session cannot be used from another origin; use an API token");
  }
  if (SafeMethod(req.method)) return Status::Ok();
  if (!SameOriginRequest(req)) return PermissionDenied("cross-site request refused");
  auto csrf = req.Header("x-csrf-token");
  if (!csrf || !crypto::ConstantTimeEquals(crypto::Sha256Hex(*csrf), caller.session->csrf_hash)) {
    return PermissionDenied("missing or wrong X-CSRF-Token");
  }
  return Status::Ok();
}

std::string RequiredPermission(const Route& route, const http::PathParams& params) {
  if (route.access.kind != Access::Kind::kPermission) return "";
  const std::string& pattern = route.access.permission;
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    size_t close = pattern[i] == '{' ? pattern.find('}', i) : std::string::npos;
    if (close == std::string::npos) {
      out += pattern[i++];
      continue;
    }
    auto it = params.find(pattern.substr(i + 1, close - i - 1));
    out += it == params.end() ? "" : it->second;
    i = close + 1;
  }
  return out;
}

Status Authorize(const Route& route, const http::PathParams& params, const Caller& caller) {
  switch (route.access.kind) {
    case Access::Kind::kPublic: return Status::Ok();
    case Access::Kind::kSession:
      if (!caller.session) return PermissionDenied("this route needs a signed-in session");
      if (caller.mfa_enrolment_pending && !route.during_mfa_enrolment) {
        return PermissionDenied(kEnrolFirst);
      }
      return Status::Ok();
    case Access::Kind::kPermission: {
      // Alternatives: any one allows; the enrolment gate, if it is what
      // refused, is named.
      const std::string wanted = RequiredPermission(route, params);
      bool enrol_first = false;
      for (size_t at = 0; at <= wanted.size();) {
        size_t bar = std::min(wanted.find('|', at), wanted.size());
        switch (rbac::Authorize({caller.permissions, caller.mfa_enrolment_pending},
                                wanted.substr(at, bar - at))) {
          case rbac::Decision::kAllow: return Status::Ok();
          case rbac::Decision::kDenyMfaEnrolmentRequired: enrol_first = true; break;
          case rbac::Decision::kDenyNoPermission: break;
        }
        at = bar + 1;
      }
      if (enrol_first) return PermissionDenied(kEnrolFirst);
      std::string named = wanted;
      for (size_t bar = named.find('|'); bar != std::string::npos; bar = named.find('|', bar)) {
        named.replace(bar, 1, " or ");
      }
      return PermissionDenied("missing permission " + named);
    }
    case Access::Kind::kAuthenticated:
      // The handler names the permission; none passes during enrolment.
      if (caller.mfa_enrolment_pending) return PermissionDenied(kEnrolFirst);
      return Status::Ok();
    case Access::Kind::kOperator: return PermissionDenied("operator route");
    case Access::Kind::kUnset: return Internal("route without a declared access");
  }
  return Internal("route without a declared access");
}

Status CheckPermission(RequestContext& ctx, const std::string& permission) {
  switch (rbac::Authorize({ctx.permissions, ctx.mfa_enrolment_pending}, permission)) {
    case rbac::Decision::kAllow: return Status::Ok();
    case rbac::Decision::kDenyMfaEnrolmentRequired: return PermissionDenied(kEnrolFirst);
    case rbac::Decision::kDenyNoPermission: break;
  }
  const auto& req = ctx.request;
  (void)ctx.identity->Audit(OriginOf(ctx), "access.denied", "route", req.method + " " + req.path,
                            {{"permission", permission}});
  return PermissionDenied("missing permission " + permission);
}

}  // namespace silo::api
