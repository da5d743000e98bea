#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "auth/identity.h"
#include "backup/service.h"
#include "base/log.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "realtime/protocol.h"
#include "records/query.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;

json::object TenantJson(const tenant::TenantInfo& t) {
  json::object o;
  o["id"] = t.id;
  o["slug"] = t.slug;
  o["name"] = t.name;
  o["owner_email"] = t.owner_email;
  o["state"] = tenant::TenantStateName(t.state);
  o["created_at"] = t.created_at;
  return o;
}

void Record(Services& s, const RequestContext& ctx, const std::string& type,
            const std::string& detail) {
  s.security_log->AppendOrLog({type, "operator", ctx.request.client_ip, detail},
                              ctx.request.request_id);
}

bool IsJson(const http::Request& req) {
  auto ct = req.Header("content-type");
  return ct && ct->substr(0, ct->find(';')) == "application/json";
}

}  // namespace

http::Response CreateTenant(Services& s, RequestContext& ctx) {
  const auto& req = ctx.request;
  if (!IsJson(req)) {
    return http::Problem(415, "Content-Type must be application/json", req.request_id);
  }
  std::string why;
  auto object = ParseJsonObject(req.body, &why);
  if (!object) return http::Problem(400, why, req.request_id);
  json::value body = std::move(*object);
  std::string fields[3];
  const char* names[3] = {"slug", "name", "owner_email"};
  for (const auto& kv : body.as_object()) {
    int idx = -1;
    for (int i = 0; i < 3; ++i) {
      if (kv.key() == names[i]) idx = i;
    }
    // Why: unknown fields are refused, not ignored (no mass assignment, and
    // a typo in "owner_email" must not silently create a tenant without one).
    if (idx < 0) {
      return http::Problem(422, "unknown field: " + std::string(kv.key()), req.request_id);
    }
    if (!kv.value().is_string()) {
      return http::Problem(422, std::string(names[idx]) + " must be a string", req.request_id);
    }
    fields[idx] = std::string(kv.value().as_string());
  }
  if (fields[0].empty()) return http::Problem(422, "slug is required", req.request_id);
  if (!fields[2].empty() && !auth::NormaliseEmail(fields[2]).ok()) {
    return http::Problem(422, "owner_email is not an e-mail address", req.request_id);
  }
  auto created = s.tenants->Create(fields[0], fields[1], fields[2]);
  if (!created.ok()) return ErrorResponse(created.status(), req);
  // A tenant exists with its database or not at all.
  if (Status st = s.stores->Create(created->id); !st.ok()) {
    s.stores->Close(created->id);
    if (Status undo = s.tenants->Delete(created->slug); !undo.ok()) {
      log::Error("tenant left without a database",
                 {{"slug", created->slug}, {"error", undo.message()}});
    }
    return ErrorResponse(st, req);
  }
  Record(s, ctx, "tenant.created", created->slug);
  json::object o = TenantJson(*created);
  if (!fields[2].empty()) {
    // The owner account, and its one-time setup token (shown here only).
    auto identity = s.identities->Open(created->id);
    if (!identity.ok()) return ErrorResponse(identity.status(), req);
    auto invited = (*identity)->InviteUser(
        {{"operator", "operator"}, req.request_id, ctx.client, NowMicros()}, fields[2], {"owner"});
    if (!invited.ok()) return ErrorResponse(invited.status(), req);
    o["owner_setup_token"] = invited->setup_token;
  }
  return http::Json(201, JsonText(o));
}

http::Response ListTenants(Services& s, RequestContext&) {
  json::array arr;
  for (const auto& t : s.tenants->List()) arr.push_back(TenantJson(t));
  json::object o;
  o["items"] = std::move(arr);
  return http::Json(200, JsonText(o));
}

namespace {

http::Response SetState(Services& s, RequestContext& ctx, tenant::TenantState state,
                        const char* event) {
  const std::string& slug = ctx.params["slug"];
  Status st = s.tenants->SetState(slug, state);
  if (!st.ok()) return ErrorResponse(st, ctx.request);
  if (state == tenant::TenantState::kSuspended) {
    if (auto t = s.tenants->Find(slug)) {
      if (s.realtime != nullptr) {
        s.realtime->CloseTenant(t->id, realtime::kCloseForbidden, "tenant suspended");
      }
      s.stores->Close(t->id);
    }
  }
  Record(s, ctx, event, slug);
  auto t = s.tenants->Find(slug);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  return http::Json(200, JsonText(TenantJson(*t)));
}

}  // namespace

http::Response SuspendTenant(Services& s, RequestContext& ctx) {
  return SetState(s, ctx, tenant::TenantState::kSuspended, "tenant.suspended");
}

http::Response ResumeTenant(Services& s, RequestContext& ctx) {
  return SetState(s, ctx, tenant::TenantState::kActive, "tenant.resumed");
}

// DELETE /v1/tenants/{slug}[?shred=true]. A shred (issue 22) first
// destroys the tenant's backup key in the target (backup::Service::Shred);
// when that fails the tenant is left as it was, so the operator can retry.
http::Response DeleteTenant(Services& s, RequestContext& ctx) {
  const std::string& slug = ctx.params["slug"];
  bool shred = false;
  {
    auto parsed = records::ParseQueryString(ctx.request.query);
    if (!parsed.ok()) return http::Problem(400, "malformed query string", ctx.request.request_id);
    for (const auto& [key, value] : *parsed) {
      if (key != "shred" || (value != "true" && value != "false")) {
        return http::Problem(422, "only shred=true|false is accepted", ctx.request.request_id);
      }
      shred = value == "true";
    }
  }
  std::optional<backup::ShredReport> shredded;
  if (auto t = s.tenants->Find(slug); t && shred && s.backups != nullptr) {
    auto report = s.backups->Shred(t->id, slug);
    if (!report.ok()) return ErrorResponse(report.status(), ctx.request);
    shredded = *report;
  }
  if (auto t = s.tenants->Find(slug)) {
    if (s.realtime != nullptr) {
      s.realtime->CloseTenant(t->id, realtime::kCloseForbidden, "tenant deleted");
    }
    s.stores->Close(t->id);
  }
  const auto deleted = s.tenants->Find(slug);
  Status st = s.tenants->Delete(slug);
  if (!st.ok()) return ErrorResponse(st, ctx.request);
  if (deleted && s.checkpoints != nullptr) (void)s.checkpoints->Forget(deleted->id);  // best effort
  json::object o;
  o["slug"] = slug;
  o["deleted"] = true;
  if (shred) {
    // Without a backup target there is no copy but the one just deleted.
    const int64_t backups = shredded ? shredded->backups : 0;
    o["shredded"] = json::object{
        {"backups", backups},
        {"target", s.backups != nullptr ? s.backups->target_description() : std::string("none")}};
    Record(s, ctx, "tenant.shredded", slug);
  } else {
    Record(s, ctx, "tenant.deleted", slug);
  }
  return http::Json(200, JsonText(o));
}

// POST /v1/tenants/{slug}/rekey (issue 22): the tenant's new data key
// (backup::Service::Rekey). On a cluster node the tenant's chain ends with
// the swap (no copy under the old key may be elected after it) and the
// followers take a snapshot of the re-keyed tenant, which the answer waits
// for a while (`followers`, `followers_copied`).
http::Response RekeyTenant(Services& s, RequestContext& ctx) {
  const std::string& slug = ctx.params["slug"];
  auto t = s.tenants->Find(slug);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  auto report = s.backups->Rekey(*t, ctx.request.request_id);
  if (!report.ok()) {
    Record(s, ctx, "tenant.rekey_failed", slug + ": " + report.status().message());
    return ErrorResponse(report.status(), ctx.request);
  }
  Record(s, ctx, "tenant.rekeyed", slug + " key_epoch=" + std::to_string(report->key_epoch));
  json::object o{{"tenant", report->tenant_slug},
                 {"tenant_id", report->tenant_id},
                 {"key_epoch", static_cast<int64_t>(report->key_epoch)},
                 {"database_bytes", report->database_bytes},
                 {"files", report->files},
                 {"files_missing", report->files_missing},
                 {"secrets_resealed", report->secrets_resealed},
                 {"recovery_codes_dropped", report->recovery_codes_dropped},
                 {"pause_seconds", report->pause_seconds},
                 {"seconds", report->seconds}};
  if (s.await_copies) {
    const auto [followers, copied] = s.await_copies(report->tenant_id);
    o["followers"] = followers;
    o["followers_copied"] = copied;
  }
  return http::Json(200, JsonText(o));
}

}  // namespace silo::api
