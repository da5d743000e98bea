// Incident reports on the operator listener (issue 22): POST /v1/incidents
// builds one (platform/incident.h) from the platform's security log and the
// tenants' audit logs over a window, signs it with the platform key, and
// writes an `incident.reported` entry into every affected tenant's audit log
// (the tenant sees that its log was read, and for what). Only the metadata of
// security-relevant entries is read (type, time, actor, client, subject),
// never records or the changes an entry holds. POST /v1/incidents/verify
// checks a report kept since.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "base/log.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "crypto/crypto.h"
#include "platform/incident.h"
#include "platform/security_log.h"
#include "records/tenant_store.h"
#include "tenant/registry.h"

namespace silo::api {
namespace {

namespace json = boost::json;

constexpr int64_t kMaxWindowUs = 400LL * 86400 * 1'000'000;
constexpr int64_t kMaxEntriesPerTenant = 20000;

// A required RFC 3339 member; the error names it.
Result<int64_t> TimeOf(const json::object& body, std::string_view name) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr || !v->is_string()) {
    return InvalidArgument("invalid incident report")
        .WithFields({{std::string(name), "must be an RFC 3339 date-time"}});
  }
  auto us = ParseRfc3339(v->as_string());
  if (!us.ok()) {
    return InvalidArgument("invalid incident report")
        .WithFields({{std::string(name), "must be an RFC 3339 date-time"}});
  }
  return *us;
}

std::string ClientOf(const events::StoredEvent& e) {
  if (!e.body) return "";
  boost::system::error_code ec;
  json::value v = json::parse(*e.body, ec);
  if (ec || !v.is_object()) return "";
  const json::value* c = v.as_object().if_contains("client");
  return c != nullptr && c->is_string() ? std::string(c->as_string()) : "";
}

// The security-relevant audit entries of one tenant in the window.
Result<std::vector<platform::TenantEntry>> EntriesOf(records::TenantStore& store, int64_t from_us,
                                                     int64_t to_us) {
  std::vector<platform::TenantEntry> out;
  records::AuditQuery q;
  q.from_us = from_us;
  q.to_us = to_us;
  q.limit = 1000;
  while (static_cast<int64_t>(out.size()) < kMaxEntriesPerTenant) {
    SILO_ASSIGN_OR_RETURN(auto page, store.QueryAudit(q));
    for (const auto& e : page) {
      q.after = e.seq;
      if (!platform::SecurityRelevant(e.type)) continue;
      out.push_back({e.at_us, e.type, e.actor, ClientOf(e), e.subject_kind + " " + e.subject_id});
    }
    if (static_cast<int>(page.size()) < q.limit) break;
  }
  return out;
}

}  // namespace

http::Response CreateIncidentReport(Services& s, RequestContext& ctx) {
  const auto& req = ctx.request;
  http::Response error;
  auto body = JsonObjectBody(req, &error);
  if (!body) return error;
  for (const auto& kv : *body) {
    if (kv.key() != "from" && kv.key() != "to" && kv.key() != "discovered" &&
        kv.key() != "tenant") {
      return ErrorResponse(InvalidArgument("invalid incident report")
                               .WithFields({{std::string(kv.key()), "unknown member"}}),
                           req);
    }
  }
  auto from = TimeOf(*body, "from");
  if (!from.ok()) return ErrorResponse(from.status(), req);
  auto to = TimeOf(*body, "to");
  if (!to.ok()) return ErrorResponse(to.status(), req);
  auto discovered = TimeOf(*body, "discovered");
  if (!discovered.ok()) return ErrorResponse(discovered.status(), req);
  if (*to < *from || *to - *from > kMaxWindowUs) {
    return ErrorResponse(InvalidArgument("invalid incident report")
                             .WithFields({{"to", "must be after from, at most 400 days later"}}),
                         req);
  }
  if (s.checkpoints == nullptr) return ErrorResponse(Unavailable("no signing key"), req);
  platform::IncidentInput in;
  in.id = crypto::RandomId(16);
  in.generated_at_us = NowMicros();
  in.from_us = *from;
  in.to_us = *to;
  in.discovered_us = *discovered;
  std::vector<tenant::TenantInfo> targets;
  if (const json::value* t = body->if_contains("tenant"); t != nullptr && !t->is_null()) {
    if (!t->is_string()) {
      return ErrorResponse(
          InvalidArgument("invalid incident report").WithFields({{"tenant", "must be a slug"}}),
          req);
    }
    auto info = s.tenants->Find(std::string(t->as_string()));
    if (!info) return http::Problem(404, "no such tenant", req.request_id);
    in.tenant = info->slug;
    targets.push_back(*info);
  } else {
    targets = s.tenants->List();
  }
  auto platform_events = s.security_log->Read(*from, *to);
  if (!platform_events.ok()) return ErrorResponse(platform_events.status(), req);
  for (auto& e : *platform_events) {
    // One tenant's report keeps the platform events that name it.
    if (in.tenant && !platform::NamesTenant(e.event.detail, *in.tenant)) continue;
    in.platform.push_back(std::move(e));
  }
  std::map<std::string, std::unique_ptr<records::TenantStore>> stores;
  for (const auto& t : targets) {
    auto store = s.stores->Open(t.id);
    if (!store.ok()) return ErrorResponse(store.status(), req);
    auto entries = EntriesOf(**store, *from, *to);
    if (!entries.ok()) return ErrorResponse(entries.status(), req);
    if (!entries->empty()) {
      in.tenants[t.slug] = std::move(*entries);
      stores[t.slug] = std::move(*store);
    }
  }
  platform::IncidentReport r = platform::BuildIncidentReport(in);
  const std::string public_key = s.checkpoints->public_key();
  const std::string signature =
      s.checkpoints->SignMessage(platform::IncidentSignedText(r.report, r.markdown));
  // Each affected tenant learns that its log went into a report.
  const events::Origin origin{{"operator", "operator"}, req.request_id, req.client_ip, NowMicros()};
  for (auto& [slug, store] : stores) {
    json::object details{{"from", FormatRfc3339Micros(*from)},
                         {"to", FormatRfc3339Micros(*to)},
                         {"entries", static_cast<int64_t>(in.tenants[slug].size())}};
    if (Status a = store->Audit(origin, {"incident.reported", "incident", in.id, details});
        !a.ok()) {
      return ErrorResponse(a, req);
    }
  }
  s.security_log->AppendOrLog({"incident.reported", "operator", req.client_ip, in.id},
                              req.request_id);
  json::object out{{"report", std::move(r.report)},
                   {"markdown", std::move(r.markdown)},
                   {"key_id", checkpoint::KeyId(public_key)},
                   {"public_key", crypto::Base64Encode(public_key)},
                   {"signature", crypto::Base64Encode(signature)}};
  return http::Json(201, JsonText(out));
}

http::Response VerifyIncidentReport(Services& s, RequestContext& ctx) {
  const auto& req = ctx.request;
  http::Response error;
  auto body = JsonObjectBody(req, &error);
  if (!body) return error;
  auto refused = [&](const std::string& why) {
    return http::Json(200, JsonText(json::object{{"ok", false}, {"problem", why}}));
  };
  const json::value* report = body->if_contains("report");
  const json::value* markdown = body->if_contains("markdown");
  const json::value* pk = body->if_contains("public_key");
  const json::value* sig = body->if_contains("signature");
  if (report == nullptr || !report->is_object() || markdown == nullptr || !markdown->is_string() ||
      pk == nullptr || !pk->is_string() || sig == nullptr || !sig->is_string()) {
    return refused("not a signed incident report");
  }
  if (s.checkpoints == nullptr) return ErrorResponse(Unavailable("no signing key"), req);
  auto key = crypto::Base64Decode(pk->as_string());
  auto signature = crypto::Base64Decode(sig->as_string());
  if (!key.ok() || !signature.ok()) return refused("not a signed incident report");
  if (*key != s.checkpoints->public_key()) return refused("signed by another key");
  if (!crypto::VerifySignature(
          *key, platform::IncidentSignedText(report->as_object(), markdown->as_string()),
          *signature)) {
    return refused("the report or its Markdown was changed after it was signed");
  }
  return http::Json(200, JsonText(json::object{{"ok", true}}));
}

}  // namespace silo::api
