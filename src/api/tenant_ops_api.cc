// Operator actions on one tenant's data: issue an API token, rebuild the
// projections, verify the chains. Each is written to the platform security
// log and to the tenant's audit log. Export is refused (see ExportTenant).
#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/log.h"
#include "base/time_util.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "records/query.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;

constexpr char kNeedsTenantApproval[] =
    "operator access to tenant data needs the tenant's approval";

struct OpenTenant {
  tenant::TenantInfo info;
  std::unique_ptr<records::TenantStore> store;
};

Result<OpenTenant> Open(Services& s, const std::string& slug) {
  auto t = s.tenants->Find(slug);
  if (!t) return NotFound("no such tenant");
  auto store = s.stores->Open(t->id);
  if (!store.ok()) return store.status();
  return OpenTenant{*t, std::move(*store)};
}

events::Origin OperatorWriter(const RequestContext& ctx) {
  return {{"operator", "operator"}, ctx.request.request_id, ctx.request.client_ip, NowMicros()};
}

void Note(Services& s, const RequestContext& ctx, OpenTenant& t, const std::string& type,
          json::object details) {
  s.security_log->AppendOrLog({type, "operator", ctx.request.client_ip, t.info.slug},
                              ctx.request.request_id);
  if (Status st = t.store->Audit(OperatorWriter(ctx), {type, "tenant", t.info.slug, details});
      !st.ok()) {
    log::Error("audit append failed", {{"request_id", ctx.request.request_id}});
  }
}

json::object ChainJson(const std::string& slug, const records::ChainReport& r) {
  json::object o;
  o["tenant"] = slug;
  o["ok"] = r.ok();
  o["events_checked"] = r.events_checked;
  o["audit_checked"] = r.audit_checked;
  o["events_first_broken"] =
      r.events_first_broken ? json::value(*r.events_first_broken) : json::value(nullptr);
  o["audit_first_broken"] =
      r.audit_first_broken ? json::value(*r.audit_first_broken) : json::value(nullptr);
  o["integrity"] = r.integrity;
  if (!r.ok())
    o["reason"] =
        r.events_first_broken || r.audit_first_broken ? r.reason : "integrity_check failed";
  return o;
}

}  // namespace

http::Response IssueToken(Services& s, RequestContext& ctx) {
  const auto& req = ctx.request;
  std::string why;
  auto object = ParseJsonObject(req.body, &why);
  if (!object) return http::Problem(400, why, req.request_id);
  json::value body = std::move(*object);
  auth::TokenSpec spec;
  spec.max_days = s.security->token_max_days;
  std::vector<FieldError> errors;
  for (const auto& kv : body.as_object()) {
    if (kv.key() == "name" && kv.value().is_string()) {
      spec.name = kv.value().as_string();
    } else if (kv.key() == "permissions" && kv.value().is_array()) {
      for (const auto& p : kv.value().as_array()) {
        if (p.is_string())
          spec.permissions.emplace_back(p.as_string());
        else
          errors.push_back({"permissions", "must be strings"});
      }
    } else if (kv.key() == "expires_at" && kv.value().is_string()) {
      auto us = ParseRfc3339(kv.value().as_string());
      if (us.ok())
        spec.expires_at_us = *us;
      else
        errors.push_back({"expires_at", "must be an RFC 3339 date-time"});
    } else {
      errors.push_back({std::string(kv.key()), "unknown member or wrong type"});
    }
  }
  if (!errors.empty()) {
    return ErrorResponse(InvalidArgument("invalid token").WithFields(std::move(errors)), req);
  }
  auto t = Open(s, ctx.params["slug"]);
  if (!t.ok()) return ErrorResponse(t.status(), req);
  auto identity = s.identities->Open(t->info.id);
  if (!identity.ok()) return ErrorResponse(identity.status(), req);
  auto issued = (*identity)->Tokens().Create(OperatorWriter(ctx), spec);
  if (!issued.ok()) return ErrorResponse(issued.status(), req);
  s.security_log->AppendOrLog({"token.issued", "operator", req.client_ip, t->info.slug},
                              req.request_id);
  return http::Json(201, JsonText(json::object{{"id", issued->id}, {"token", issued->token}}));
}

http::Response RebuildTenant(Services& s, RequestContext& ctx) {
  auto t = Open(s, ctx.params["slug"]);
  if (!t.ok()) return ErrorResponse(t.status(), ctx.request);
  int64_t started = NowMicros();
  auto report = t->store->Rebuild();
  if (!report.ok()) return ErrorResponse(report.status(), ctx.request);
  int64_t micros = std::max<int64_t>(1, NowMicros() - started);
  json::object o;
  o["tenant"] = t->info.slug;
  o["events"] = report->events;
  o["equal"] = report->equal();
  o["checksum_before"] = report->checksum_before;
  o["checksum_after"] = report->checksum_after;
  o["seconds"] = static_cast<double>(micros) / 1e6;
  o["events_per_second"] = static_cast<double>(report->events) * 1e6 / static_cast<double>(micros);
  Note(s, ctx, *t, "tenant.rebuilt", {{"equal", report->equal()}, {"events", report->events}});
  if (s.realtime != nullptr) s.realtime->AfterWrite(t->info.id);
  if (!report->equal()) {
    // The stored projections differ from what the log says: nothing was
    // replaced, so the evidence stays for inspection.
    http::Response r =
        http::Problem(409,
                      "projections differ from the event log (checksum " + report->checksum_before +
                          " stored, " + report->checksum_after + " rebuilt); nothing was changed",
                      ctx.request.request_id);
    return r;
  }
  return http::Json(200, JsonText(o));
}

// DESIGN: the operator API has no route that reads tenant records. The route
// stays in the table so that `silo tenant export` gets a reason rather than a
// 404, and answers 403 until operator access with the tenant's approval (the
// lockbox) exists to gate it. The attempt is in the security log.
http::Response ExportTenant(Services& s, RequestContext& ctx) {
  s.security_log->AppendOrLog(
      {"tenant.export_refused", "operator", ctx.request.client_ip, ctx.params["slug"]},
      ctx.request.request_id);
  return http::Problem(403, kNeedsTenantApproval, ctx.request.request_id);
}

http::Response VerifyTenants(Services& s, RequestContext& ctx) {
  std::vector<tenant::TenantInfo> targets;
  if (auto slug = ctx.params.find("slug"); slug != ctx.params.end()) {
    auto t = s.tenants->Find(slug->second);
    if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
    targets.push_back(*t);
  } else {
    targets = s.tenants->List();
  }
  json::array results;
  bool all_ok = true;
  for (const auto& info : targets) {
    auto store = s.stores->Open(info.id);
    if (!store.ok()) return ErrorResponse(store.status(), ctx.request);
    auto report = (*store)->VerifyChains();
    if (!report.ok()) return ErrorResponse(report.status(), ctx.request);
    all_ok = all_ok && report->ok();
    results.push_back(ChainJson(info.slug, *report));
    OpenTenant t{info, std::move(*store)};
    Note(s, ctx, t, "audit.verified", {{"ok", report->ok()}});
  }
  return http::Json(200, JsonText(json::object{{"ok", all_ok}, {"tenants", std::move(results)}}));
}

}  // namespace silo::api
