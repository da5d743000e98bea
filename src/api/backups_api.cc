// Operator routes for backups (issue: backups): run, list, verify, restore,
// drill, prune. Each action is written to the platform security log; the
// backup service writes the tenant's audit entries.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "backup/service.h"
#include "base/log.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "records/query.h"
#include "tenant/registry.h"

namespace silo::api {
namespace {

namespace json = boost::json;

void Log(Services& s, const RequestContext& ctx, const std::string& type,
         const std::string& detail) {
  s.security_log->AppendOrLog({type, "operator", ctx.request.client_ip, detail},
                              ctx.request.request_id);
}

// A backup that fails its checks is a refusal the operator must read, not a
// server error: 422 with the reason (which names no key material).
http::Response Refused(const Status& status, const RequestContext& ctx) {
  if (status.code() == StatusCode::kDataLoss) {
    if (!status.cause().empty()) {
      log::Warn("backup refused",
                {{"request_id", ctx.request.request_id}, {"cause", status.ToString()}});
    }
    return http::Problem(422, status.message(), ctx.request.request_id);
  }
  return ErrorResponse(status, ctx.request);
}

json::object ManifestJson(const backup::Manifest& m) {
  return {{"id", m.id},
          {"tenant", m.tenant_slug},
          {"tenant_id", m.tenant_id},
          {"taken_at", FormatRfc3339Micros(m.taken_at_us)},
          {"format", m.format},
          {"events",
           json::object{{"seq", m.events.seq}, {"count", m.events.count}, {"head", m.events.hash}}},
          {"audit",
           json::object{{"seq", m.audit.seq}, {"count", m.audit.count}, {"head", m.audit.hash}}},
          {"image_bytes", m.image_bytes},
          {"stored_bytes", m.stored_bytes},
          {"files", m.files},
          {"files_bytes", m.files_bytes},
          {"sha256", m.sha256},
          {"key_id", m.key_id}};
}

std::optional<tenant::TenantInfo> FindTenant(Services& s, const std::string& slug) {
  return s.tenants->Find(slug);
}

}  // namespace

http::Response RunBackup(Services& s, RequestContext& ctx) {
  auto t = FindTenant(s, ctx.params["slug"]);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  auto m = s.backups->Run(*t);
  if (!m.ok()) {
    Log(s, ctx, "backup.failed", t->slug + ": " + m.status().message());
    return Refused(m.status(), ctx);
  }
  Log(s, ctx, "backup.created", t->slug + " " + m->id);
  json::object o = ManifestJson(*m);
  o["target"] = s.backups->target_description();
  return http::Json(201, JsonText(o));
}

http::Response ListBackups(Services& s, RequestContext& ctx) {
  std::optional<std::string> tenant_id;
  {
    auto parsed = records::ParseQueryString(ctx.request.query);
    if (!parsed.ok()) return http::Problem(400, "malformed query string", ctx.request.request_id);
    for (const auto& [key, value] : *parsed) {
      if (key != "tenant") {
        return http::Problem(400, "unknown parameter " + key, ctx.request.request_id);
      }
      auto t = FindTenant(s, value);
      if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
      tenant_id = t->id;
    }
  }
  auto listed = s.backups->List(tenant_id);
  if (!listed.ok()) return Refused(listed.status(), ctx);
  json::array out;
  for (const auto& l : *listed) {
    json::object o = ManifestJson(l.manifest);
    o["good"] = l.good;
    if (l.shredded) o["shredded"] = true;
    if (!l.good) o["problem"] = l.problem;
    out.push_back(std::move(o));
  }
  return http::Json(
      200, JsonText(json::object{{"target", s.backups->target_description()}, {"items", out}}));
}

http::Response VerifyBackup(Services& s, RequestContext& ctx) {
  auto m = s.backups->Verify(ctx.params["id"]);
  if (!m.ok()) {
    Log(s, ctx, "backup.verify_failed", ctx.params["id"] + ": " + m.status().message());
    return Refused(m.status(), ctx);
  }
  json::object o = ManifestJson(*m);
  o["verified"] = true;
  return http::Json(200, JsonText(o));
}

http::Response RestoreBackup(Services& s, RequestContext& ctx) {
  backup::RestoreRequest r;
  r.backup_id = ctx.params["id"];
  r.request_id = ctx.request.request_id;
  if (!ctx.request.body.empty()) {
    http::Response error;
    auto body = JsonObjectBody(ctx.request, &error);
    if (!body) return error;
    for (const auto& kv : *body) {
      if (kv.key() == "as" && kv.value().is_string()) {
        r.as_slug = std::string(kv.value().as_string());
      } else if (kv.key() == "at" && kv.value().is_string()) {
        auto at = ParseRfc3339(kv.value().as_string());
        if (!at.ok()) return http::Problem(422, "at: not an RFC 3339 time", ctx.request.request_id);
        r.at_us = *at;
      } else {
        return http::Problem(422, "unknown or mistyped field " + std::string(kv.key()),
                             ctx.request.request_id);
      }
    }
  }
  auto report = s.backups->Restore(r);
  if (!report.ok()) {
    Log(s, ctx, "backup.restore_refused", r.backup_id + ": " + report.status().message());
    return Refused(report.status(), ctx);
  }
  Log(s, ctx, "backup.restored", r.backup_id + " -> " + report->tenant_slug);
  // The restored event log may be shorter than the kept checkpoint saw: a
  // new line of checkpoints starts here (the restore itself is audited).
  if (s.checkpoints != nullptr) {
    if (auto taken = s.checkpoints->Take(report->tenant_id, report->tenant_slug, "restore");
        !taken.ok()) {
      log::Error("no checkpoint after a restore", {{"tenant", report->tenant_slug},
                                                   {"cause", taken.status().message()},
                                                   {"request_id", ctx.request.request_id}});
    }
  }
  // Open realtime connections learn the new epoch (reset) at once.
  if (s.realtime != nullptr) s.realtime->AfterWrite(report->tenant_id);
  json::object o{{"backup_id", report->backup_id},
                 {"tenant", report->tenant_slug},
                 {"tenant_id", report->tenant_id},
                 {"new_tenant", report->new_tenant},
                 {"events", report->events},
                 {"events_dropped", report->events_dropped},
                 {"audit_dropped", report->audit_dropped},
                 {"sessions_ended", report->sessions_ended},
                 {"image_bytes", report->image_bytes},
                 {"audit_kept", report->audit_kept},
                 {"files", report->files},
                 {"files_fetched", report->files_fetched},
                 {"files_present", report->files_present},
                 {"files_resealed", report->files_resealed},
                 {"links_dropped", report->links_dropped},
                 {"secrets_resealed", report->secrets_resealed},
                 {"recovery_codes_dropped", report->recovery_codes_dropped},
                 {"seconds", report->seconds}};
  // In place on a cluster node: the swap ended the tenant's chain, and the
  // followers copy the restored tenant anew (as after a re-key).
  if (s.await_copies && !report->new_tenant) {
    const auto [followers, copied] = s.await_copies(report->tenant_id);
    o["followers"] = followers;
    o["followers_copied"] = copied;
  }
  if (!report->pre_restore_backup_id.empty()) {
    o["pre_restore_backup_id"] = report->pre_restore_backup_id;
  }
  return http::Json(200, JsonText(o));
}

http::Response DrillBackup(Services& s, RequestContext& ctx) {
  auto t = FindTenant(s, ctx.params["slug"]);
  if (!t) return http::Problem(404, "no such tenant", ctx.request.request_id);
  auto report = s.backups->Drill(*t);
  if (!report.ok()) {
    Log(s, ctx, "backup.drill_failed", t->slug + ": " + report.status().message());
    return Refused(report.status(), ctx);
  }
  Log(s, ctx, report->ok ? "backup.drill_passed" : "backup.drill_failed",
      t->slug + " " + report->backup_id);
  return http::Json(200, report->ToJson());
}

http::Response PruneBackups(Services& s, RequestContext& ctx) {
  auto pruned = s.backups->Prune(NowMicros());
  if (!pruned.ok()) return Refused(pruned.status(), ctx);
  json::array ids;
  for (const auto& id : *pruned) ids.push_back(json::string(id));
  if (!pruned->empty()) Log(s, ctx, "backup.pruned", std::to_string(pruned->size()) + " backups");
  return http::Json(200, JsonText(json::object{{"pruned", ids}}));
}

}  // namespace silo::api
