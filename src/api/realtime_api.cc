// Realtime routes (realtime/hub.h): the WebSocket and event-stream upgrades,
// single-use tickets, and servers' messages to channels. The upgrades prove
// their caller here (see routes.cc): a ticket, else a bearer token, else the
// session cookie from a page of the tenant's own origin.
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "api/tenant_access.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "realtime/hub.h"
#include "records/query.h"

namespace silo::api {
namespace json = boost::json;
namespace {

realtime::Principal PrincipalOf(const Caller& c, int64_t now_us) {
  return {c.actor,   c.permissions, c.mfa_enrolment_pending, RulesOf(c.grants, {c.user_id, now_us}),
          c.user_id, c.ends_at_us};
}

// Re-reads `credentials` in the tenant's identity store, without counting
// as a session's use (an unattended tab still times out).
realtime::Reauthenticate ReauthenticateWith(Services& s, std::string tenant_id,
                                            Credentials credentials) {
  return [&s, tenant_id = std::move(tenant_id),
          credentials = std::move(credentials)](int64_t now_us) -> Result<realtime::Principal> {
    auto identity = s.identities->Open(tenant_id);
    if (!identity.ok()) return identity.status();
    auth::ApiTokens tokens = (*identity)->Tokens();
    auto caller = AuthenticateWith(credentials, **identity, tokens, now_us, auth::IdleClock::kKeep);
    if (!caller.ok()) return caller.status();
    return PrincipalOf(*caller, now_us);
  };
}

// The first value of query parameter `name`.
std::optional<std::string> QueryParam(const http::Request& req, std::string_view name) {
  auto params = records::ParseQueryString(req.query);
  if (!params.ok()) return std::nullopt;
  for (const auto& [k, v] : *params) {
    if (k == name) return v;
  }
  return std::nullopt;
}

bool SameOrigin(const http::Request& req) { return req.Header("origin") && !ForeignOrigin(req); }

// Who the upgrade is for. A cookie needs the tenant's own Origin: a
// WebSocket has no CORS, so another site's page could otherwise open one
// with the user's cookie (cross-site WebSocket hijacking). An event stream
// with an Origin needs the same.
Result<realtime::ConnectionSpec> SpecFor(Services& s, RequestContext& ctx, bool websocket) {
  const http::Request& req = ctx.request;
  const int64_t now = NowMicros();
  realtime::ConnectionSpec spec;
  spec.client = ctx.client;
  spec.request_id = req.request_id;
  spec.event_stream = !websocket;
  if (auto ticket = QueryParam(req, "ticket")) {
    auto redeemed = s.realtime->RedeemTicket(ctx.tenant->id, *ticket, now);
    if (!redeemed.ok()) return redeemed.status();
    spec.reauthenticate = std::move(*redeemed);
  } else {
    auto credentials = CredentialsOf(req, ctx.tenant->slug);
    if (!credentials)
      return Unauthenticated("authentication required (a token, the session or a ticket)");
    if (credentials->kind == Credentials::Kind::kSession && (websocket || req.Header("origin")) &&
        !SameOrigin(req)) {
      return PermissionDenied("a session connects only from the tenant's own origin; use a ticket");
    }
    spec.reauthenticate = ReauthenticateWith(s, ctx.tenant->id, std::move(*credentials));
  }
  auto principal = spec.reauthenticate(now);
  if (!principal.ok()) {
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      return Unauthenticated("invalid or expired credentials");
    }
    return principal.status();
  }
  spec.principal = std::move(*principal);
  return spec;
}

http::Response Refused(const Status& st, const http::Request& req) {
  http::Response r = ErrorResponse(st, req);
  if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  if (r.status == 429) r.headers.emplace_back("Retry-After", "5");
  return r;
}

}  // namespace

http::Response RealtimeConnect(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto upgrade = req.Header("upgrade");
  if (!upgrade || (*upgrade != "websocket" && *upgrade != "WebSocket")) {
    http::Response r = http::Problem(426, "this route upgrades to a WebSocket", req.request_id);
    r.headers.emplace_back("Upgrade", "websocket");
    return r;
  }
  auto spec = SpecFor(s, ctx, true);
  if (!spec.ok()) return Refused(spec.status(), req);
  auto handler = s.realtime->Connect(ctx.tenant->id, std::move(*spec));
  if (!handler.ok()) return Refused(handler.status(), req);
  http::Response r;
  r.status = 101;
  r.upgrade = http::Upgrade::kWebSocket;
  r.handler = std::move(*handler);
  return r;
}

http::Response RealtimeStream(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto channel = QueryParam(req, "channel");
  if (!channel) return http::Problem(422, "query parameter channel is required", req.request_id);
  // Every filter parameter, in the listing's syntax.
  std::string filter;
  if (auto params = records::ParseQueryString(req.query); params.ok()) {
    for (const auto& [k, v] : *params) {
      if (k != "filter") continue;
      filter += (filter.empty() ? "filter=" : "&filter=") +
                boost::urls::encode(v, boost::urls::unreserved_chars);
    }
  }
  // Last-Event-ID is "<epoch>:<seq>", as the stream's ids are.
  std::optional<int64_t> after;
  std::optional<std::string> epoch;
  if (auto last = req.Header("last-event-id")) {
    size_t colon = last->rfind(':');
    int64_t seq = -1;
    if (colon != std::string_view::npos) {
      try {
        seq = std::stoll(std::string(last->substr(colon + 1)));
      } catch (const std::exception&) {
        seq = -1;
      }
    }
    if (seq < 0)
      return http::Problem(400, "Last-Event-ID is not one of this stream's ids", req.request_id);
    after = seq;
    epoch = std::string(last->substr(0, colon));
  }
  auto spec = SpecFor(s, ctx, false);
  if (!spec.ok()) return Refused(spec.status(), req);
  auto handler = s.realtime->Connect(ctx.tenant->id, std::move(*spec));
  if (!handler.ok()) return Refused(handler.status(), req);
  Status st =
      s.realtime->SubscribeStream(ctx.tenant->id, **handler, *channel, filter, after, epoch);
  if (!st.ok()) {
    (*handler)->OnClose();
    return Refused(st, req);
  }
  http::Response r;
  r.upgrade = http::Upgrade::kEventStream;
  r.handler = std::move(*handler);
  return r;
}

http::Response CreateRealtimeTicket(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto credentials = CredentialsOf(req, ctx.tenant->slug);
  if (!credentials) return Refused(Unauthenticated("authentication required"), req);
  std::string ticket = s.realtime->IssueTicket(
      ctx.tenant->id, ReauthenticateWith(s, ctx.tenant->id, std::move(*credentials)), NowMicros());
  return http::Json(201, JsonText(json::object{{"ticket", ticket}, {"expires_in", 30}}));
}

http::Response PublishMessage(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  http::Response error;
  auto body = JsonObjectBody(req, &error);
  if (!body) return error;
  const json::value* event = body->if_contains("event");
  const json::value* payload = body->if_contains("payload");
  auto valid_event = [](std::string_view e) {
    return !e.empty() && e.size() <= 64 &&
           e.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") == std::string_view::npos;
  };
  if (event == nullptr || !event->is_string() || !valid_event(event->as_string())) {
    return http::Problem(422, "event must match [a-z0-9_.-]{1,64}", req.request_id);
  }
  if (payload == nullptr) return http::Problem(422, "payload is required", req.request_id);
  if (body->size() != 2)
    return http::Problem(422, "only event and payload are accepted", req.request_id);
  auto n = s.realtime->Publish(ctx.tenant->id, ctx.params.at("name"), event->as_string(), *payload);
  if (!n.ok()) return Refused(n.status(), req);
  return http::Json(202, JsonText(json::object{{"delivered", *n}}));
}

}  // namespace silo::api
