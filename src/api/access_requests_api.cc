// The operator's access requests (the lockbox, issue 22), from both sides:
// the operator asks on its listener (/v1/tenants/{slug}/access-requests);
// the tenant's owners and security admins see them and decide with a fresh
// TOTP code under the tenant (/api/access-requests), and may revoke an
// approval at any time. Each step is in the tenant's audit log and the
// platform's security log.
#include <boost/json.hpp>

#include "api/auth_handlers.h"
#include "api/handlers.h"
#include "api/json_text.h"
#include "api/routes.h"
#include "auth/identity.h"
#include "base/time_util.h"
#include "platform/security_log.h"
#include "realtime/hub.h"

namespace silo::api {
namespace {

namespace json = boost::json;

http::Response Fail(const Status& st, const RequestContext& ctx) {
  return ErrorResponse(st, ctx.request);
}

json::object RequestJson(const auth::AccessRequest& r) {
  json::array scopes;
  for (const auto& p : r.scopes) scopes.emplace_back(p);
  json::object o{{"id", r.id},
                 {"state", r.state},
                 {"scopes", std::move(scopes)},
                 {"reason", r.reason},
                 {"duration_s", r.duration_us / 1'000'000},
                 {"requested_at", FormatRfc3339Micros(r.requested_at_us)}};
  o["decided_at"] = r.decided_at_us ? json::value(FormatRfc3339Micros(r.decided_at_us)) : nullptr;
  o["expires_at"] = r.expires_at_us ? json::value(FormatRfc3339Micros(r.expires_at_us)) : nullptr;
  return o;
}

// The tenant side's view also names who decided (a user id of the tenant's:
// the operator's view leaves it out).
json::object TenantRequestJson(const auth::AccessRequest& r) {
  json::object o = RequestJson(r);
  o["decided_by"] = r.decided_by.empty() ? json::value(nullptr) : json::value(r.decided_by);
  return o;
}

events::Origin OperatorOrigin(const RequestContext& ctx) {
  return {{"operator", "operator"}, ctx.request.request_id, ctx.request.client_ip, NowMicros()};
}

void SecurityNote(Services& s, const RequestContext& ctx, const std::string& type,
                  const std::string& actor, const std::string& tenant) {
  s.security_log->AppendOrLog({type, actor, ctx.request.client_ip, tenant}, ctx.request.request_id);
}

// Approve or deny: a signed-in user (not a token: the second factor is a
// person's) with TOTP on, and a fresh code in the body, checked (and spent)
// before the decision. A wrong or replayed code is 403.
http::Response Decide(Services& s, RequestContext& ctx, auth::AccessDecision decision) {
  if (ctx.session == nullptr) {
    return Fail(PermissionDenied("deciding on operator access needs a signed-in user's second"
                                 " factor, not an API token"),
                ctx);
  }
  const std::string& id = ctx.params.at("id");
  // An unknown request is 404 before the body is read (as every route with
  // an id answers), and before a code is spent on it.
  if (auto known = ctx.identity->GetAccessRequest(id); !known.ok()) {
    return Fail(known.status(), ctx);
  }
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  const json::value* code = body->if_contains("code");
  if (body->size() > (code == nullptr ? 0u : 1u)) {
    return Fail(InvalidArgument("invalid request")
                    .WithFields({{"code", "the body holds only code, a current TOTP code"}}),
                ctx);
  }
  const auth::User& user = ctx.session->user;
  const events::Origin origin = OriginOf(ctx);
  if (!user.totp_enabled) {
    return Fail(PermissionDenied("deciding on operator access needs TOTP on your account"), ctx);
  }
  // The guesses share the second factor's budget for this account.
  RateVerdict v = TakeRate(s, kMfaPerAccount, "acct:" + ctx.tenant->id + ":" + user.id, NowMicros(),
                           ctx.client);
  if (!v.allowed) return TooManyAttempts(ctx.request, v);
  // No code, a wrong one and a replayed one are the same refusal.
  Status checked = code == nullptr || !code->is_string()
                       ? Unauthenticated("no code")
                       : ctx.identity->CheckTotp(origin, user.id, std::string(code->as_string()));
  if (!checked.ok()) {
    s.MailQueued(ctx.tenant->id);  // a replayed code tells the user
    (void)ctx.identity->Audit(origin, "access.decision_refused", "access_request", id,
                              {{"reason", "no current TOTP code"}});
    return Fail(PermissionDenied("a current TOTP code is needed to decide on operator access"),
                ctx);
  }
  auto decided = ctx.identity->DecideAccessRequest(origin, id, decision);
  if (!decided.ok()) return Fail(decided.status(), ctx);
  SecurityNote(s, ctx,
               decision == auth::AccessDecision::kApprove ? "access.approved" : "access.denied",
               "user", ctx.tenant->slug);
  return http::Json(200, JsonText(TenantRequestJson(*decided)));
}

}  // namespace

// --- the tenant's side ---

http::Response ListAccessRequests(Services& /*s*/, RequestContext& ctx) {
  auto list = ctx.identity->ListAccessRequests();
  if (!list.ok()) return Fail(list.status(), ctx);
  json::array items;
  for (const auto& r : *list) items.push_back(TenantRequestJson(r));
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response ApproveAccessRequest(Services& s, RequestContext& ctx) {
  return Decide(s, ctx, auth::AccessDecision::kApprove);
}

http::Response DenyAccessRequest(Services& s, RequestContext& ctx) {
  return Decide(s, ctx, auth::AccessDecision::kDeny);
}

// Ending access needs no second factor: taking access away is never the
// dangerous direction.
http::Response RevokeAccessRequest(Services& s, RequestContext& ctx) {
  auto revoked = ctx.identity->RevokeAccessRequest(OriginOf(ctx), ctx.params.at("id"));
  if (!revoked.ok()) return Fail(revoked.status(), ctx);
  SecurityNote(s, ctx, "access.revoked", ctx.actor.kind, ctx.tenant->slug);
  // Connections that authenticated with the request's tokens end now.
  if (s.realtime != nullptr) s.realtime->AfterWrite(ctx.tenant->id);
  return http::Json(200, JsonText(TenantRequestJson(*revoked)));
}

// --- the operator's side ---

http::Response CreateAccessRequest(Services& s, RequestContext& ctx) {
  const auto& req = ctx.request;
  http::Response error;
  auto body = JsonObjectBody(req, &error);
  if (!body) return error;
  auth::AccessRequestSpec spec;
  std::vector<FieldError> errors;
  for (const auto& kv : *body) {
    if (kv.key() == "scopes" && kv.value().is_array()) {
      for (const auto& p : kv.value().as_array()) {
        if (p.is_string()) {
          spec.scopes.emplace_back(p.as_string());
        } else {
          errors.push_back({"scopes", "must be strings"});
        }
      }
    } else if (kv.key() == "reason" && kv.value().is_string()) {
      spec.reason = kv.value().as_string();
    } else if (kv.key() == "duration_s" && kv.value().is_int64()) {
      const int64_t seconds = kv.value().as_int64();
      spec.duration_us =
          seconds > 0 && seconds <= auth::kMaxAccessUs / 1'000'000 ? seconds * 1'000'000 : -1;
    } else {
      errors.push_back({std::string(kv.key()), "unknown member or wrong type"});
    }
  }
  if (!errors.empty()) {
    return ErrorResponse(InvalidArgument("invalid access request").WithFields(std::move(errors)),
                         req);
  }
  auto t = s.tenants->Find(ctx.params["slug"]);
  if (!t) return http::Problem(404, "no such tenant", req.request_id);
  auto identity = s.identities->Open(t->id);
  if (!identity.ok()) return ErrorResponse(identity.status(), req);
  auto made = (*identity)->RequestAccess(OperatorOrigin(ctx), spec);
  if (!made.ok()) return ErrorResponse(made.status(), req);
  s.MailQueued(t->id);
  SecurityNote(s, ctx, "access.requested", "operator", t->slug);
  return http::Json(201, JsonText(RequestJson(*made)));
}

http::Response ListOperatorAccessRequests(Services& s, RequestContext& ctx) {
  auto t = s.tenants->Find(ctx.params["slug"]);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  auto identity = s.identities->Open(t->id);
  if (!identity.ok()) return ErrorResponse(identity.status(), ctx.request);
  auto list = (*identity)->ListAccessRequests();
  if (!list.ok()) return ErrorResponse(list.status(), ctx.request);
  json::array items;
  for (const auto& r : *list) items.push_back(RequestJson(r));
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response GetOperatorAccessRequest(Services& s, RequestContext& ctx) {
  auto t = s.tenants->Find(ctx.params["slug"]);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  auto identity = s.identities->Open(t->id);
  if (!identity.ok()) return ErrorResponse(identity.status(), ctx.request);
  auto r = (*identity)->GetAccessRequest(ctx.params["id"]);
  if (!r.ok()) return ErrorResponse(r.status(), ctx.request);
  return http::Json(200, JsonText(RequestJson(*r)));
}

}  // namespace silo::api
