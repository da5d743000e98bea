// The three checks of a tenant request, one at a time: Authenticate against a
// real tenant database (the server's own service graph, not started),
// CheckCsrf and Authorize as the pure functions they are.
#include "api/tenant_access.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "api/services.h"
#include "app/app.h"
#include "app/test_config.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "tenant/registry.h"

namespace silo::api {
namespace {

http::Request Req(std::string method, std::vector<std::pair<std::string, std::string>> headers) {
  http::Request r;
  r.method = std::move(method);
  r.path = r.target = "/api/x";
  r.request_id = "rid";
  r.headers = std::move(headers);
  return r;
}

class AuthenticateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-access-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto app = app::App::Create(app::testing::ConfigFor(dir_, std::string(40, 'o')));
    ASSERT_OK(app);
    app_ = std::move(*app);
    auto t = app_->services().tenants->Create("acme", "", "");
    ASSERT_OK(t);
    auto id = app_->services().identities->Open(t->id);
    ASSERT_OK(id);
    identity_ = std::move(*id);
  }
  void TearDown() override {
    identity_.reset();
    app_.reset();
    std::filesystem::remove_all(dir_);
  }
  events::Origin Op() { return {{"operator", "test"}, "rid", "127.0.0.1", NowMicros()}; }
  // An active user with `roles`.
  auth::User Active(const std::string& email, std::vector<std::string> roles) {
    auto inv = identity_->InviteUser(Op(), email, roles);
    EXPECT_OK(inv);
    auto u = identity_->CompleteSetup(Op(), inv->setup_token, "h");
    EXPECT_OK(u);
    return *u;
  }
  std::string Token(std::string owner, std::vector<std::string> permissions) {
    auth::TokenSpec spec;
    spec.name = "t";
    spec.owner = std::move(owner);
    spec.permissions = std::move(permissions);
    spec.expires_at_us = NowMicros() + 3600LL * 1'000'000;
    spec.platform_permits_operator_access = true;  // the lockbox: access_requests_test.cc
    auto issued = identity_->Tokens().Create(Op(), spec);
    EXPECT_OK(issued);
    return issued.ok() ? issued->token : "";
  }
  Result<Caller> Auth(const http::Request& r) {
    auth::ApiTokens tokens = identity_->Tokens();
    return Authenticate(r, "acme", *identity_, tokens, NowMicros());
  }
  std::string dir_;
  std::unique_ptr<app::App> app_;
  std::unique_ptr<auth::Identity> identity_;
};

TEST_F(AuthenticateTest, NoCredentialsOrWrongOnesAreUnauthenticated) {
  EXPECT_STATUS(StatusCode::kUnauthenticated, Auth(Req("GET", {})));
  auto bad_token = Auth(Req("GET", {{"authorization", "Bearer silo_nosuch"}}));
  EXPECT_STATUS(StatusCode::kUnauthenticated, bad_token);
  EXPECT_EQ(bad_token.status().message(), "invalid or expired token");
  auto bad_cookie = Auth(Req("GET", {{"cookie", SessionCookieName("acme") + "=nosuch"}}));
  EXPECT_STATUS(StatusCode::kUnauthenticated, bad_cookie);
  EXPECT_EQ(bad_cookie.status().message(), "invalid or expired session");
  // Another scheme is no credential at all.
  EXPECT_EQ(Auth(Req("GET", {{"authorization", "Basic abc"}})).status().message(),
            "authentication required");
}

TEST_F(AuthenticateTest, AUserTokenHoldsNoMoreThanItsOwnerHoldsNow) {
  auth::User ed = Active("ed@acme.test", {"viewer"});
  const std::string op_token = Token("operator", {"users.manage", "records.*.read"});
  const std::string ed_token = Token("user:" + ed.id, {"users.manage", "records.*.read"});
  auto op = Auth(Req("GET", {{"authorization", "Bearer " + op_token}}));
  ASSERT_OK(op);
  EXPECT_EQ(op->actor.kind, "token");
  EXPECT_FALSE(op->session);
  EXPECT_EQ(op->permissions, (std::vector<std::string>{"users.manage", "records.*.read"}));
  auto by_ed = Auth(Req("GET", {{"authorization", "Bearer " + ed_token}}));
  ASSERT_OK(by_ed);
  EXPECT_EQ(by_ed->permissions, (std::vector<std::string>{"records.*.read"}));
  // Its owner disabled: the token is as good as unknown.
  ASSERT_OK(
      identity_->SetAccountState(Op(), ed.id, auth::Account::kDisabled, auth::Caller::kOwner));
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                Auth(Req("GET", {{"authorization", "Bearer " + ed_token}})));
}

TEST_F(AuthenticateTest, ACookieSessionCarriesTheEnrolmentGateAndTheBearerComesFirst) {
  auth::User owner = Active("owner@acme.test", {"owner"});
  auto session = identity_->CreateSession(Op(), owner.id, auth::MfaPassed::kNo, "ua");
  ASSERT_OK(session);
  const std::string cookie = SessionCookieName("acme") + "=" + session->token;
  auto c = Auth(Req("GET", {{"cookie", cookie}}));
  ASSERT_OK(c);
  EXPECT_EQ(c->actor.kind, "user");
  EXPECT_EQ(c->actor.id, owner.id);
  ASSERT_TRUE(c->session);
  EXPECT_EQ(c->session->csrf_hash, crypto::Sha256Hex(session->csrf_token));
  EXPECT_TRUE(c->mfa_enrolment_pending);  // owner requires MFA, no TOTP yet
  // A request with both is judged by its bearer token alone.
  auto both = Auth(Req("GET", {{"authorization", "Bearer silo_nosuch"}, {"cookie", cookie}}));
  EXPECT_STATUS(StatusCode::kUnauthenticated, both);
  // The same secret under another tenant's cookie name is not this tenant's
  // cookie (each tenant reads only its own name), nor is the old shared name.
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                Auth(Req("GET", {{"cookie", SessionCookieName("beta") + "=" + session->token}})));
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                Auth(Req("GET", {{"cookie", "__Host-silo_session=" + session->token}})));
}

Caller WithSession(std::string csrf_token) {
  Caller c;
  c.actor = {"user", "u1"};
  c.session.emplace();
  c.session->csrf_hash = crypto::Sha256Hex(csrf_token);
  return c;
}

TEST(CheckCsrfTest, AnUnsafeCookieRequestNeedsTheTokenAndTheSameOrigin) {
  const Caller c = WithSession("right");
  EXPECT_OK(CheckCsrf(Req("GET", {{"sec-fetch-site", "cross-site"}}), c));
  EXPECT_STATUS(StatusCode::kPermissionDenied, CheckCsrf(Req("POST", {}), c));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                CheckCsrf(Req("POST", {{"x-csrf-token", "wrong"}}), c));
  EXPECT_OK(CheckCsrf(Req("POST", {{"x-csrf-token", "right"}}), c));
  EXPECT_OK(
      CheckCsrf(Req("DELETE", {{"x-csrf-token", "right"}, {"sec-fetch-site", "same-origin"}}), c));
  for (std::string site : {"cross-site", "same-site"}) {
    auto st = CheckCsrf(Req("POST", {{"x-csrf-token", "right"}, {"sec-fetch-site", site}}), c);
    EXPECT_STATUS(StatusCode::kPermissionDenied, st);
    EXPECT_EQ(st.message(), "cross-site request refused");
  }
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                CheckCsrf(Req("POST", {{"x-csrf-token", "right"},
                                       {"origin", "https://evil.test"},
                                       {"host", "acme.test"}}),
                          c));
  EXPECT_OK(CheckCsrf(
      Req("POST",
          {{"x-csrf-token", "right"}, {"origin", "https://acme.test"}, {"host", "acme.test"}}),
      c));
  // A bearer caller has no session: a browser does not send its token alone.
  Caller token;
  token.actor = {"token", "t1"};
  EXPECT_OK(CheckCsrf(Req("POST", {}), token));
}

Route For(Access a) { return Get("/api/collections/{name}/records", nullptr).Allow(std::move(a)); }

TEST(AuthorizeTest, TheRoutesAccessDecides) {
  const http::PathParams params{{"name", "tickets"}};
  Caller reader = WithSession("x");
  reader.permissions = {"records.*.read"};
  EXPECT_OK(Authorize(For(Access::Public()), params, Caller{}));
  EXPECT_OK(Authorize(For(Access::Permission("records.{name}.read")), params, reader));
  EXPECT_EQ(RequiredPermission(For(Access::Permission("records.{name}.read")), params),
            "records.tickets.read");
  auto denied = Authorize(For(Access::Permission("records.{name}.delete")), params, reader);
  EXPECT_STATUS(StatusCode::kPermissionDenied, denied);
  EXPECT_EQ(denied.message(), "missing permission records.tickets.delete");
  EXPECT_OK(Authorize(For(Access::Session()), params, reader));
  Caller token;
  token.permissions = {"records.*.read"};
  EXPECT_STATUS(StatusCode::kPermissionDenied, Authorize(For(Access::Session()), params, token));
  EXPECT_STATUS(StatusCode::kPermissionDenied, Authorize(For(Access::Operator()), params, reader));
  EXPECT_STATUS(StatusCode::kInternal, Authorize(For(Access{}), params, reader));
}

TEST(AuthorizeTest, AnyOneAlternativeSufficesAndTheRefusalNamesThemAll) {
  const http::PathParams params{{"name", "tickets"}};
  const Access either = Access::Permission("records.{name}.create|records.{name}.update");
  Caller creator = WithSession("x");
  creator.permissions = {"records.tickets.create"};
  Caller updater = WithSession("y");
  updater.permissions = {"records.tickets.update"};
  Caller reader = WithSession("z");
  reader.permissions = {"records.*.read", "records.other.create"};
  EXPECT_OK(Authorize(For(either), params, creator));
  EXPECT_OK(Authorize(For(either), params, updater));
  auto denied = Authorize(For(either), params, reader);
  EXPECT_STATUS(StatusCode::kPermissionDenied, denied);
  EXPECT_EQ(denied.message(),
            "missing permission records.tickets.create or records.tickets.update");
  creator.mfa_enrolment_pending = true;
  EXPECT_EQ(Authorize(For(either), params, creator).message(),
            "enrol a second factor first (POST /api/auth/totp/enroll)");
}

TEST(AuthorizeTest, TheEnrolmentGateOpensOnlyTheRoutesThatSaySo) {
  const http::PathParams params{{"name", "tickets"}};
  Caller pending = WithSession("x");
  pending.permissions = {"records.*.read", "users.manage"};
  pending.mfa_enrolment_pending = true;
  const std::string enrol = "enrol a second factor first (POST /api/auth/totp/enroll)";
  auto perm = Authorize(For(Access::Permission("records.{name}.read")), params, pending);
  EXPECT_STATUS(StatusCode::kPermissionDenied, perm);
  EXPECT_EQ(perm.message(), enrol);
  auto closed = Authorize(For(Access::Session()), params, pending);
  EXPECT_EQ(closed.message(), enrol);
  EXPECT_OK(Authorize(For(Access::Session()).DuringMfaEnrolment(), params, pending));
}

}  // namespace
}  // namespace silo::api
