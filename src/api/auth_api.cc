// Sign-in and the signed-in user's own account under the tenant prefix:
// setup, login, MFA, logout, password change and reset, sessions, TOTP.
// Password hashing happens here, on the slow pool (routes marked slow).
#include <boost/json.hpp>
#include <optional>

#include "api/auth_handlers.h"
#include "api/handlers.h"
#include "api/json_text.h"
#include "api/routes.h"
#include "api/tenant_access.h"
#include "auth/identity.h"
#include "auth/password.h"
#include "auth/totp.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "platform/security_log.h"

namespace silo::api {
namespace {

namespace json = boost::json;

// A browser that signed in before (OWASP "device cookies"): its attempts for
// that account are limited on their own, so a third party's failures cannot
// lock the account's owner out. One per tenant, as the session cookie.
std::string DeviceCookie(const RequestContext& ctx) {
  return "__Host-silo_device_" + ctx.tenant->slug;
}
constexpr int kDeviceCookieDays = 365;

auth::PasswordCost Cost(const Services& s) {
  return {s.security->password_memory_kib, s.security->password_iterations};
}

http::Response Fail(const Status& st, const RequestContext& ctx) {
  return ErrorResponse(st, ctx.request);
}

// A string member of the body; InvalidArgument naming it when absent.
Result<std::string> Member(const json::object& body, std::string_view name) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr || !v->is_string()) {
    return InvalidArgument("invalid request").WithFields({{std::string(name), "must be a string"}});
  }
  return std::string(v->as_string());
}

std::string SessionCookie(const RequestContext& ctx, const std::string& token) {
  return SessionCookieName(ctx.tenant->slug) + "=" + token +
         "; Path=/; Secure; HttpOnly; SameSite=Strict";
}

http::Response WithSession(const RequestContext& ctx, int status, json::object body,
                           const auth::IssuedSession& s) {
  body["csrf_token"] = s.csrf_token;
  auto r = http::Json(status, JsonText(body));
  r.headers.emplace_back("Set-Cookie", SessionCookie(ctx, s.token));
  return r;
}

std::string UserAgent(const http::Request& req) {
  return std::string(req.Header("user-agent").value_or(""));
}

bool RequiresMfa(auth::Identity& id, const auth::User& u) {
  auto roles = id.RolesOf(u);
  return roles.ok() && rbac::AnyRequiresMfa(*roles);
}

// A fresh session for `user` and the answer carrying it, with a device
// cookie for the account (a new one each time: the nonce is the device's
// rate-limit key, and a sign-in proves the browser again).
http::Response StartSession(RequestContext& ctx, const auth::User& user, auth::MfaPassed mfa) {
  events::Origin c = OriginOf(ctx);
  c.actor = {"user", user.id};
  auto session = ctx.identity->CreateSession(c, user.id, mfa, UserAgent(ctx.request));
  if (!session.ok()) return Fail(session.status(), ctx);
  json::object body{
      {"user", UserJson(user)},
      {"mfa_enrolment_required", !user.totp_enabled && RequiresMfa(*ctx.identity, user)}};
  http::Response r = WithSession(ctx, 200, std::move(body), *session);
  if (auto device = ctx.identity->IssueDeviceCookie(user.email); device.ok()) {
    r.headers.emplace_back("Set-Cookie", DeviceCookie(ctx) + "=" + *device +
                                             "; Path=/; Secure; HttpOnly; SameSite=Strict; "
                                             "Max-Age=" +
                                             std::to_string(kDeviceCookieDays * 86400));
  }
  return r;
}

// Takes from a per-account rule (routes.h); the 429 when its bucket is empty.
std::optional<http::Response> Throttle(Services& s, const RateRule& rule, const std::string& key,
                                       const RequestContext& ctx) {
  RateVerdict v = TakeRate(s, rule, key, NowMicros(), ctx.client);
  if (v.allowed) return std::nullopt;
  return TooManyAttempts(ctx.request, v);
}

}  // namespace

std::optional<http::Response> NeedsStepUp(const Services& s, const RequestContext& ctx) {
  if (ctx.session == nullptr) return std::nullopt;
  const int64_t window = int64_t{s.security->step_up_minutes} * 60'000'000;
  if (NowMicros() - ctx.session->session.proved_at_us <= window) return std::nullopt;
  http::Response r = http::Problem(401,
                                   "this action needs a fresh proof of identity: POST"
                                   " /api/auth/step-up with your password or a TOTP code",
                                   ctx.request.request_id);
  json::object body = json::parse(r.body).as_object();
  body["step_up_required"] = true;
  r.body = JsonText(body);
  return r;
}

json::object UserJson(const auth::User& u) {
  json::array roles;
  for (const auto& r : u.roles) roles.emplace_back(r);
  return {{"id", u.id},
          {"email", u.email},
          {"status", u.status},
          {"roles", std::move(roles)},
          {"totp_enabled", u.totp_enabled},
          {"created_at", FormatRfc3339Micros(u.created_at_us)}};
}

http::Response AuthSetup(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto token = Member(*body, "token");
  auto password = Member(*body, "password");
  if (!token.ok()) return Fail(token.status(), ctx);
  if (!password.ok()) return Fail(password.status(), ctx);
  if (Status p = auth::CheckPasswordPolicy(*password, ""); !p.ok()) return Fail(p, ctx);
  auto hash = auth::HashPassword(*password, Cost(s));
  if (!hash.ok()) return Fail(hash.status(), ctx);
  auto user = ctx.identity->CompleteSetup(OriginOf(ctx), *token, *hash);
  if (!user.ok()) return Fail(user.status(), ctx);
  return http::Json(200, JsonText(json::object{{"user", UserJson(*user)}}));
}

http::Response AuthLogin(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto email = Member(*body, "email");
  auto password = Member(*body, "password");
  if (!email.ok()) return Fail(email.status(), ctx);
  if (!password.ok()) return Fail(password.status(), ctx);
  if (password->size() > auth::kMaxPasswordBytes) {
    return http::Problem(401, "invalid e-mail or password", ctx.request.request_id);
  }
  auto normalised = auth::NormaliseEmail(*email);
  std::string normal = normalised.ok() ? *normalised : *email;
  const int64_t now = NowMicros();
  // Per account as well as per client: many addresses cannot be spread over
  // one account, and one address cannot rotate through many accounts. A
  // browser with a valid device cookie for this account has a bucket of its
  // own instead, which nobody else's failures drain.
  std::optional<std::string> device;
  if (auto cookie = ctx.request.Cookie(DeviceCookie(ctx))) {
    auto d = ctx.identity->DeviceOf(*cookie, normal);
    if (d.ok()) device = *d;
  }
  const std::string bucket =
      device ? "device:" + ctx.tenant->id + ":" + *device : "acct:" + ctx.tenant->id + ":" + normal;
  if (auto refused = Throttle(s, kSignInPerAccount, bucket, ctx)) return *refused;
  auto found = ctx.identity->FindLogin(normal);
  if (!found.ok() && found.status().code() != StatusCode::kNotFound)
    return Fail(found.status(), ctx);
  // The same work whether or not the account exists: one Argon2id check and
  // one audit entry.
  const std::string& hash =
      found.ok() && !found->password_hash.empty() ? found->password_hash : s.dummy_password_hash;
  bool ok = auth::VerifyPassword(hash, *password);
  bool usable = found.ok() && found->user.status == "active" && !found->password_hash.empty();
  events::Origin c = OriginOf(ctx);
  if (!ok || !usable) {
    // An unknown address is recorded as a keyed hash: an audit reader cannot
    // confirm a guessed address with it.
    std::string subject;
    if (usable) {
      subject = found->user.id;
    } else if (auto tag = ctx.identity->EmailTag(normal); tag.ok()) {
      subject = *tag;
    } else {
      return Fail(tag.status(), ctx);
    }
    if (Status a = ctx.identity->Audit(c, "login.failed", usable ? "user" : "email", subject, {});
        !a.ok()) {
      return Fail(a, ctx);
    }
    return http::Problem(401, "invalid e-mail or password", ctx.request.request_id);
  }
  const auth::User& user = found->user;
  if (auth::NeedsRehash(found->password_hash, Cost(s))) {
    if (auto rehash = auth::HashPassword(*password, Cost(s)); rehash.ok()) {
      events::Origin as_user = c;
      as_user.actor = {"user", user.id};
      (void)ctx.identity->ReplacePasswordHash(as_user, user.id, *rehash);
    }
  }
  if (user.totp_enabled) {
    auto challenge = ctx.identity->CreateMfaChallenge(user.id, now);
    if (!challenge.ok()) return Fail(challenge.status(), ctx);
    c.actor = {"user", user.id};
    (void)ctx.identity->Audit(c, "login.password_passed", "user", user.id, {});
    return http::Json(200,
                      JsonText(json::object{{"mfa_required", true}, {"mfa_token", *challenge}}));
  }
  return StartSession(ctx, user, auth::MfaPassed::kNo);
}

http::Response AuthMfa(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto token = Member(*body, "mfa_token");
  if (!token.ok()) return Fail(token.status(), ctx);
  auto code = Member(*body, "code");
  auto recovery = Member(*body, "recovery_code");
  if (code.ok() == recovery.ok()) {
    return Fail(InvalidArgument("invalid request")
                    .WithFields({{"code", "give either code or recovery_code"}}),
                ctx);
  }
  auto user_id = ctx.identity->AttemptMfaChallenge(*token, NowMicros());
  if (!user_id.ok()) return Fail(user_id.status(), ctx);
  // Per account too: new challenges (a password each) cannot multiply the
  // guesses at one user's codes beyond the login rate.
  if (auto refused = Throttle(s, kMfaPerAccount, "acct:" + ctx.tenant->id + ":" + *user_id, ctx)) {
    return *refused;
  }
  events::Origin c = OriginOf(ctx);
  c.actor = {"user", *user_id};
  Status checked = code.ok() ? ctx.identity->CheckTotp(c, *user_id, *code)
                             : ctx.identity->UseRecoveryCode(c, *user_id, *recovery);
  s.MailQueued(ctx.tenant->id);  // a recovery code used or a code replayed
  if (!checked.ok()) return Fail(checked, ctx);
  (void)ctx.identity->EndMfaChallenge(*token);
  auto user = ctx.identity->GetUser(*user_id);
  if (!user.ok() || user->status != "active") {
    return http::Problem(401, "invalid or expired MFA token", ctx.request.request_id);
  }
  return StartSession(ctx, *user, auth::MfaPassed::kYes);
}

http::Response AuthLogout(Services& /*s*/, RequestContext& ctx) {
  Status st =
      ctx.identity->RevokeSession(OriginOf(ctx), ctx.session->user.id, ctx.session->session.id);
  if (!st.ok()) return Fail(st, ctx);
  http::Response r;
  r.status = 204;
  r.headers.emplace_back("Set-Cookie",
                         SessionCookieName(ctx.tenant->slug) +
                             "=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
  r.headers.emplace_back("Clear-Site-Data", "\"cookies\"");
  return r;
}

http::Response AuthMe(Services& /*s*/, RequestContext& ctx) {
  json::array perms;
  for (const auto& p : ctx.permissions) perms.emplace_back(p);
  const auth::Session& se = ctx.session->session;
  json::object body{{"user", UserJson(ctx.session->user)},
                    {"permissions", std::move(perms)},
                    {"mfa_enrolment_required", ctx.mfa_enrolment_pending},
                    {"session",
                     {{"id", se.id},
                      {"mfa", se.mfa_passed},
                      {"created_at", FormatRfc3339Micros(se.created_at_us)},
                      {"expires_at", FormatRfc3339Micros(se.expires_at_us)}}}};
  // The CSRF token again, for a page that was reloaded (it keeps no token in
  // browser storage). Only this request's cookie yields it, and another
  // site's page cannot read this answer (no CORS; the cookie is SameSite).
  if (auto cookie = ctx.request.Cookie(SessionCookieName(ctx.tenant->slug))) {
    std::string csrf = auth::CsrfTokenOf(*cookie);
    if (crypto::ConstantTimeEquals(crypto::Sha256Hex(csrf), ctx.session->csrf_hash)) {
      body["csrf_token"] = std::move(csrf);
    }
  }
  return http::Json(200, JsonText(body));
}

http::Response AuthChangePassword(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto current = Member(*body, "current_password");
  auto next = Member(*body, "new_password");
  if (!current.ok()) return Fail(current.status(), ctx);
  if (!next.ok()) return Fail(next.status(), ctx);
  const auth::User& user = ctx.session->user;
  auto login = ctx.identity->FindLogin(user.email);
  if (!login.ok()) return Fail(login.status(), ctx);
  if (current->size() > auth::kMaxPasswordBytes ||
      !auth::VerifyPassword(login->password_hash, *current)) {
    (void)ctx.identity->Audit(OriginOf(ctx), "password.change_failed", "user", user.id, {});
    return Fail(InvalidArgument("the current password is wrong")
                    .WithFields({{"current_password", "is wrong"}}),
                ctx);
  }
  if (Status p = auth::CheckPasswordPolicy(*next, user.email, "new_password"); !p.ok()) {
    return Fail(p, ctx);
  }
  auto hash = auth::HashPassword(*next, Cost(s));
  if (!hash.ok()) return Fail(hash.status(), ctx);
  // Every session ends, this one too; the caller gets a fresh one.
  if (Status c = ctx.identity->ChangePassword(OriginOf(ctx), user.id, *hash); !c.ok())
    return Fail(c, ctx);
  s.MailQueued(ctx.tenant->id);
  return StartSession(
      ctx, user, ctx.session->session.mfa_passed ? auth::MfaPassed::kYes : auth::MfaPassed::kNo);
}

http::Response AuthListSessions(Services& /*s*/, RequestContext& ctx) {
  auto sessions = ctx.identity->ListSessions(ctx.session->user.id);
  if (!sessions.ok()) return Fail(sessions.status(), ctx);
  json::array out;
  for (const auto& se : *sessions) {
    out.push_back(json::object{{"id", se.id},
                               {"current", se.id == ctx.session->session.id},
                               {"mfa", se.mfa_passed},
                               {"client", se.client},
                               {"user_agent", se.user_agent},
                               {"created_at", FormatRfc3339Micros(se.created_at_us)},
                               {"last_seen_at", FormatRfc3339Micros(se.last_seen_us)},
                               {"expires_at", FormatRfc3339Micros(se.expires_at_us)}});
  }
  return http::Json(200, JsonText(json::object{{"items", std::move(out)}}));
}

http::Response AuthRevokeOtherSessions(Services& s, RequestContext& ctx) {
  if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  Status st =
      ctx.identity->RevokeSessions(OriginOf(ctx), ctx.session->user.id, ctx.session->session.id);
  if (!st.ok()) return Fail(st, ctx);
  http::Response r;
  r.status = 204;
  return r;
}

http::Response AuthRevokeSession(Services& s, RequestContext& ctx) {
  if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  Status st = ctx.identity->RevokeSession(OriginOf(ctx), ctx.session->user.id, ctx.params.at("id"));
  if (!st.ok()) return Fail(st, ctx);
  http::Response r;
  r.status = 204;
  return r;
}

http::Response AuthStepUp(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto password = Member(*body, "password");
  auto code = Member(*body, "code");
  if (password.ok() == code.ok() || body->size() != 1) {
    return Fail(InvalidArgument("invalid request")
                    .WithFields({{"password", "give either password or code (a TOTP code)"}}),
                ctx);
  }
  const auth::User& user = ctx.session->user;
  // The guesses share the second factor's budget for this account.
  if (auto refused = Throttle(s, kMfaPerAccount, "acct:" + ctx.tenant->id + ":" + user.id, ctx)) {
    return *refused;
  }
  const events::Origin origin = OriginOf(ctx);
  if (password.ok()) {
    auto login = ctx.identity->FindLogin(user.email);
    if (!login.ok()) return Fail(login.status(), ctx);
    if (password->size() > auth::kMaxPasswordBytes ||
        !auth::VerifyPassword(login->password_hash, *password)) {
      (void)ctx.identity->Audit(origin, "step_up.failed", "user", user.id, {});
      return Fail(Unauthenticated("wrong password or code"), ctx);
    }
  } else if (Status checked = ctx.identity->CheckTotp(origin, user.id, *code); !checked.ok()) {
    s.MailQueued(ctx.tenant->id);  // a replayed code tells the user
    return Fail(Unauthenticated("wrong password or code"), ctx);
  }
  Status st = ctx.identity->RecordStepUp(origin, user.id, ctx.session->session.id);
  if (!st.ok()) return Fail(st, ctx);
  const int64_t until = origin.now_us + int64_t{s.security->step_up_minutes} * 60'000'000;
  return http::Json(200, JsonText(json::object{{"step_up_until", FormatRfc3339Micros(until)}}));
}

http::Response TotpEnroll(Services& s, RequestContext& ctx) {
  if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  const auth::User& user = ctx.session->user;
  if (user.totp_enabled) {
    return Fail(FailedPrecondition("TOTP is already on; remove it first (DELETE /api/auth/totp)"),
                ctx);
  }
  auto secret = ctx.identity->StartTotp(OriginOf(ctx), user.id);
  if (!secret.ok()) return Fail(secret.status(), ctx);
  std::string uri = auth::OtpauthUri("Silo " + ctx.tenant->slug, user.email, *secret);
  auto svg = auth::QrSvg(uri);
  if (!svg.ok()) return Fail(svg.status(), ctx);
  return http::Json(
      200, JsonText(json::object{
               {"secret", auth::Base32(*secret)}, {"otpauth_uri", uri}, {"qr_svg", *svg}}));
}

http::Response TotpConfirm(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto code = Member(*body, "code");
  if (!code.ok()) return Fail(code.status(), ctx);
  const auth::User& user = ctx.session->user;
  auto codes = ctx.identity->ConfirmTotp(OriginOf(ctx), user.id, *code);
  if (!codes.ok()) return Fail(codes.status(), ctx);
  s.MailQueued(ctx.tenant->id);
  // The factor changed: a new session that passed MFA replaces this one.
  (void)ctx.identity->RevokeSession(OriginOf(ctx), user.id, ctx.session->session.id);
  auth::User now_on = user;
  now_on.totp_enabled = true;
  events::Origin c = OriginOf(ctx);
  auto session =
      ctx.identity->CreateSession(c, user.id, auth::MfaPassed::kYes, UserAgent(ctx.request));
  if (!session.ok()) return Fail(session.status(), ctx);
  json::array list;
  for (const auto& rc : *codes) list.emplace_back(rc);
  return WithSession(ctx, 200,
                     json::object{{"recovery_codes", std::move(list)}, {"user", UserJson(now_on)}},
                     *session);
}

http::Response TotpDisable(Services& s, RequestContext& ctx) {
  // Removing a factor needs the factor (or a recovery code), never the
  // password alone.
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto code = Member(*body, "code");
  auto recovery = Member(*body, "recovery_code");
  if (code.ok() == recovery.ok()) {
    return Fail(InvalidArgument("invalid request")
                    .WithFields({{"code", "give either code or recovery_code"}}),
                ctx);
  }
  const auth::User& user = ctx.session->user;
  Status checked = code.ok() ? ctx.identity->CheckTotp(OriginOf(ctx), user.id, *code)
                             : ctx.identity->UseRecoveryCode(OriginOf(ctx), user.id, *recovery);
  s.MailQueued(ctx.tenant->id);
  if (!checked.ok()) return Fail(checked, ctx);
  if (Status d = ctx.identity->DisableTotp(OriginOf(ctx), user.id); !d.ok()) return Fail(d, ctx);
  http::Response r;
  r.status = 204;
  return r;
}

http::Response PasswordReset(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto email = Member(*body, "email");
  if (!email.ok()) return Fail(email.status(), ctx);
  auto normalised = auth::NormaliseEmail(*email);
  std::string normal = normalised.ok() ? *normalised : "";
  const int64_t now = NowMicros();
  RateVerdict v =
      TakeRate(s, kResetMailPerAccount, "acct:" + ctx.tenant->id + ":" + normal, now, ctx.client);
  // Over the limit the answer is the same; only no mail leaves (no mailbox
  // flooding, no hint that the account exists).
  if (v.allowed) {
    std::string base = s.security->public_url.empty() ? "" : s.security->public_url;
    std::string slug = ctx.tenant->slug;
    const std::string minutes = std::to_string(s.security->reset_token_minutes);
    auto compose = [&](const std::string& token) {
      std::string body_text =
          "Someone asked to reset the password of this account on " + slug + ".\r\n\r\n";
      if (!base.empty()) {
        body_text += "Open " + base + "/t/" + slug + "/reset#token=" + token + "\r\n";
      }
      body_text += "Reset code: " + token + "\r\n\r\nIt works once, within " + minutes +
                   " minutes. If it was not you, ignore this mail;"
                   " your password is unchanged.\r\n";
      return std::make_pair(std::string("Password reset"), body_text);
    };
    Status st = ctx.identity->RequestReset(OriginOf(ctx), normal, compose);
    if (!st.ok()) return Fail(st, ctx);
    s.MailQueued(ctx.tenant->id);
  } else {
    // One audit write here too, so a throttled request costs what another does.
    auto tag = ctx.identity->EmailTag(normal);
    if (!tag.ok()) return Fail(tag.status(), ctx);
    Status st = ctx.identity->Audit(OriginOf(ctx), "password.reset_throttled", "email", *tag, {});
    if (!st.ok()) return Fail(st, ctx);
  }
  return http::Json(
      202, R"({"status":"if the address belongs to an account, a reset mail is on its way"})");
}

http::Response PasswordResetConfirm(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto token = Member(*body, "token");
  auto password = Member(*body, "new_password");
  if (!token.ok()) return Fail(token.status(), ctx);
  if (!password.ok()) return Fail(password.status(), ctx);
  if (Status p = auth::CheckPasswordPolicy(*password, "", "new_password"); !p.ok()) {
    return Fail(p, ctx);
  }
  auto hash = auth::HashPassword(*password, Cost(s));
  if (!hash.ok()) return Fail(hash.status(), ctx);
  // Not signed in afterwards, and MFA still applies at the next login.
  auto user = ctx.identity->ConfirmReset(OriginOf(ctx), *token, *hash);
  if (!user.ok()) return Fail(user.status(), ctx);
  s.MailQueued(ctx.tenant->id);
  return http::Json(200, R"({"status":"password changed; sign in again"})");
}

}  // namespace silo::api
