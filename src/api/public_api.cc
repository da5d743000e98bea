// Anonymous entry points: public contact forms and security.txt.
#include <boost/json.hpp>

#include "api/auth_handlers.h"
#include "api/handlers.h"
#include "base/time_util.h"
#include "platform/security_log.h"
#include "records/tenant_store.h"

namespace silo::api {

http::Response PublicSubmit(Services& s, RequestContext& ctx) {
  // The same answer for accepted and silently dropped submissions; a
  // collection that is not public answers like an unknown one.
  const auto accepted = [] { return http::Json(202, R"({"status":"received"})"); };
  auto c = ctx.store->GetCollection(ctx.params.at("name"));
  if (!c.ok() || !c->schema.public_create) {
    return http::Problem(404, "not found", ctx.request.request_id);
  }
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  if (!c->schema.honeypot_field.empty()) {
    const boost::json::value* bait = body->if_contains(c->schema.honeypot_field);
    bool filled =
        bait != nullptr && !(bait->is_string() && bait->as_string().empty()) && !bait->is_null();
    if (filled) {
      s.security_log->AppendOrLog({"public_form.honeypot", "anonymous", ctx.client,
                                   ctx.tenant->slug + " " + c->schema.name},
                                  ctx.request.request_id);
      return accepted();
    }
    body->erase(c->schema.honeypot_field);
  }
  body->erase("id");  // the caller does not choose ids
  // A relation names records the caller cannot see: whether a submission
  // naming an id is accepted would tell an anonymous caller that it exists.
  for (const auto& f : c->schema.fields) {
    if (f.type == records::FieldType::kRelation && body->contains(f.name)) {
      return ErrorResponse(InvalidArgument("invalid record")
                               .WithFields({{f.name, "relations cannot be set by a public form"}}),
                           ctx.request);
    }
  }
  auto r = ctx.store->CreateRecord(
      {{"anonymous", "public_form"}, ctx.request.request_id, ctx.client, NowMicros()},
      c->schema.name, *body);
  if (!r.ok()) return ErrorResponse(r.status(), ctx.request);
  return accepted();
}

http::Response SecurityTxt(Services& s, RequestContext& ctx) {
  if (s.security->security_contact.empty()) {
    return http::Problem(404, "not found", ctx.request.request_id);
  }
  // Expires: 180 days ahead, at midnight UTC (RFC 9116 recommends < 1 year).
  int64_t day = 86'400LL * 1'000'000;
  int64_t expires = (NowMicros() / day + 180) * day;
  std::string text = "Contact: " + s.security->security_contact + "\n" +
                     "Expires: " + FormatRfc3339Micros(expires).substr(0, 19) + "Z\n" +
                     "Preferred-Languages: en\n";
  if (!s.security->security_policy.empty()) text += "Policy: " + s.security->security_policy + "\n";
  http::Response r;
  r.status = 200;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(text);
  return r;
}

}  // namespace silo::api
