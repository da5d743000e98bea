// Operator actions on one tenant's data: issue an API token, rebuild the
// projections, export the records, verify the chains. Each is written to the
// platform security log and to the tenant's audit log. A token and an export
// read the tenant's data, so each needs the tenant's approval (an approved
// access request, access_requests_api.cc) unless the tenant opened itself to
// the operator where the platform permits it (SILO_OPERATOR_ACCESS=allowed).
#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/log.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "records/query.h"
#include "records/record_json.h"
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

// An operator's refused use of tenant data: in the platform's security log
// and the tenant's audit log (what it tried, under which request, why).
void Refused(Services& s, const RequestContext& ctx, auth::Identity& identity,
             const std::string& slug, const std::string& what, const std::string& request,
             const std::string& why) {
  s.security_log->AppendOrLog({"access.refused", "operator", ctx.request.client_ip, slug},
                              ctx.request.request_id);
  if (Status st = identity.Audit(OperatorWriter(ctx), "access.refused", "tenant", slug,
                                 {{"what", what}, {"access_request", request}, {"reason", why}});
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
    } else if (kv.key() == "access_request" && kv.value().is_string()) {
      spec.access_request = kv.value().as_string();
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
  spec.platform_permits_operator_access = s.security->operator_access_allowed;
  auto issued = (*identity)->Tokens().Create(OperatorWriter(ctx), spec);
  if (!issued.ok()) {
    if (issued.status().code() == StatusCode::kPermissionDenied ||
        issued.status().code() == StatusCode::kNotFound) {
      Refused(s, ctx, **identity, t->info.slug, "token", spec.access_request,
              issued.status().message());
    }
    return ErrorResponse(issued.status(), req);
  }
  s.security_log->AppendOrLog({"token.issued", "operator", req.client_ip, t->info.slug},
                              req.request_id);
  return http::Json(
      201, JsonText(json::object{{"id", issued->id},
                                 {"token", issued->token},
                                 {"expires_at", FormatRfc3339Micros(issued->expires_at_us)}}));
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

// Every live record of every collection as JSON lines (as of ?at=), under
// an approved access request whose scope holds records.*.export
// (?access_request=), or without one where the tenant set operator_access
// "allowed" and the platform permits it. The use is audited (access.used,
// tenant.exported) before any record leaves; a refusal is audited too.
http::Response ExportTenant(Services& s, RequestContext& ctx) {
  constexpr size_t kMaxExportBytes = 256u << 20;  // held in memory: answers are not streamed
  const auto& req = ctx.request;
  std::optional<int64_t> at;
  std::string access_request;
  {
    auto parsed = records::ParseQueryString(req.query);
    if (!parsed.ok()) return http::Problem(400, "malformed query string", req.request_id);
    for (const auto& [key, value] : *parsed) {
      if (key == "access_request") {
        access_request = value;
        continue;
      }
      auto us = key == "at" ? ParseRfc3339(value) : Result<int64_t>(InvalidArgument(""));
      if (!us.ok()) {
        return http::Problem(422, "only at=<RFC 3339> and access_request=<id> are accepted",
                             req.request_id);
      }
      at = *us;
    }
  }
  auto t = Open(s, ctx.params["slug"]);
  if (!t.ok()) return ErrorResponse(t.status(), req);
  auto identity = s.identities->Open(t->info.id);
  if (!identity.ok()) return ErrorResponse(identity.status(), req);
  const std::vector<std::string> wanted = {"records.*.export"};
  Status allowed;
  if (!access_request.empty()) {
    allowed = (*identity)->UseAccess(OperatorWriter(ctx), access_request, wanted, "export");
  } else {
    auto settings = (*identity)->Settings();
    if (!settings.ok()) return ErrorResponse(settings.status(), req);
    if (auth::EffectiveOperatorAccess(settings->operator_access,
                                      s.security->operator_access_allowed) != "allowed") {
      allowed = PermissionDenied(std::string(kNeedsTenantApproval) +
                                 ": name an approved access request (access_request=)");
    }
  }
  if (!allowed.ok()) {
    Refused(s, ctx, **identity, t->info.slug, "export", access_request, allowed.message());
    return ErrorResponse(allowed, req);
  }
  std::string lines;
  int64_t count = 0;
  Status st = t->store->Export(at, [&](const std::string& collection, const records::Record& r) {
    json::object o{{"collection", collection}};
    for (auto& kv : records::RecordMetaJson(r)) o[kv.key()] = kv.value();
    o["data"] = r.data;
    lines += JsonText(o);
    lines += '\n';
    ++count;
    if (lines.size() > kMaxExportBytes) {
      return FailedPrecondition("the export is larger than 256 MiB");
    }
    return Status::Ok();
  });
  if (!st.ok()) return ErrorResponse(st, req);
  json::object details{{"records", count}, {"access_request", access_request}};
  if (at) details["at"] = FormatRfc3339Micros(*at);
  s.security_log->AppendOrLog({"tenant.exported", "operator", req.client_ip, t->info.slug},
                              req.request_id);
  if (Status a = t->store->Audit(OperatorWriter(ctx),
                                 {"tenant.exported", "tenant", t->info.slug, details});
      !a.ok()) {
    return ErrorResponse(a, req);  // nothing leaves unaudited
  }
  http::Response r = http::Json(200, std::move(lines));
  r.content_type = "application/x-ndjson";
  return r;
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
    json::object o = ChainJson(info.slug, *report);
    bool ok = report->ok();
    // Whether the log still holds what its newest signed checkpoint saw (a
    // swapped-in older copy passes every chain check, not this one).
    if (s.checkpoints != nullptr) {
      auto v = s.checkpoints->Check(info.id);
      if (!v.ok()) return ErrorResponse(v.status(), ctx.request);
      json::object cp{{"ok", v->ok}};
      if (v->newest) {
        cp["at"] = FormatRfc3339Micros(v->newest->at_us);
        cp["reason"] = v->newest->reason;
        cp["audit_seq"] = v->newest->audit.seq;
        cp["events_seq"] = v->newest->events.seq;
      } else {
        cp["at"] = nullptr;
      }
      if (!v->ok) cp["problem"] = v->problem;
      o["checkpoint"] = std::move(cp);
      ok = ok && v->ok;
      o["ok"] = ok;
      if (!v->ok) {
        s.security_log->AppendOrLog({"audit.rollback_detected", "operator", ctx.request.client_ip,
                                     info.slug + ": " + v->problem},
                                    ctx.request.request_id);
      }
    }
    all_ok = all_ok && ok;
    results.push_back(std::move(o));
    OpenTenant t{info, std::move(*store)};
    Note(s, ctx, t, "audit.verified", {{"ok", ok}});
  }
  return http::Json(200, JsonText(json::object{{"ok", all_ok}, {"tenants", std::move(results)}}));
}

}  // namespace silo::api
