#include "api/dispatchers.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file_util.h"
#include "crypto/keyring.h"
#include "http/metrics.h"
#include "platform/security_log.h"

namespace silo::api {
namespace {

using Kind = TenantTarget::Kind;

TEST(ResolveTenantTest, PathAndHostForms) {
  auto t = ResolveTenant("", "", "/t/acme/api/");
  EXPECT_EQ(t.kind, Kind::kTenant);
  EXPECT_EQ(t.slug, "acme");
  EXPECT_EQ(t.path, "/api/");
  t = ResolveTenant("example.com", "ACME.example.com:8443", "/api/");
  EXPECT_EQ(t.kind, Kind::kTenant);
  EXPECT_EQ(t.slug, "acme");
  EXPECT_EQ(t.path, "/api/");
  EXPECT_EQ(ResolveTenant("example.com", "a.b.example.com", "/api/").kind, Kind::kNone);
  EXPECT_EQ(ResolveTenant("example.com", "example.com", "/api/").kind, Kind::kNone);
  EXPECT_EQ(ResolveTenant("example.com", "evilexample.com", "/api/").kind, Kind::kNone);
  EXPECT_EQ(ResolveTenant("", "acme.example.com", "/api/").kind, Kind::kNone);
  EXPECT_EQ(ResolveTenant("", "", "/t//api/").kind, Kind::kNone);
}

TEST(ResolveTenantTest, DisagreementIsNeverSilent) {
  EXPECT_EQ(ResolveTenant("example.com", "acme.example.com", "/t/beta/api/").kind, Kind::kMismatch);
  EXPECT_EQ(ResolveTenant("example.com", "acme.example.com", "/t/acme/api/").kind, Kind::kTenant);
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-dispatch-XXXXXX";
    dir_ = mkdtemp(tmpl);
    keyring_ =
        std::move(crypto::Keyring::Open(dir_ + "/keyring", crypto::SecretKey::Random())).value();
    registry_ = std::move(tenant::TenantRegistry::Open(dir_, keyring_.get())).value();
    seclog_ = std::move(platform::SecurityLog::Open(dir_ + "/security.log")).value();
    services_.tenants = registry_.get();
    services_.security_log = seclog_.get();
    services_.metrics = &metrics_;
    services_.ready = &ready_;
    ASSERT_TRUE(registry_->Create("acme", "", "").ok());
    ASSERT_TRUE(registry_->Create("sleepy", "", "").ok());
    ASSERT_TRUE(registry_->SetState("sleepy", tenant::TenantState::kSuspended).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  http::Request Req(std::string method, std::string path, std::string host = "") {
    http::Request r;
    r.method = std::move(method);
    r.path = path;
    r.target = path;
    r.request_id = "rid";
    r.client_ip = "127.0.0.1";
    if (!host.empty()) r.headers.emplace_back("host", host);
    return r;
  }
  std::string dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<tenant::TenantRegistry> registry_;
  std::unique_ptr<platform::SecurityLog> seclog_;
  http::Metrics metrics_;
  std::atomic<bool> ready_{true};
  Services services_;
};

TEST_F(DispatcherTest, TenantRootAndUnknownOrSuspendedLookTheSame) {
  PublicDispatcher d(services_, "example.com", 1 << 20);
  auto ok = d.Handle(Req("GET", "/t/acme/api/"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, R"({"tenant":"acme"})");
  auto by_host = d.Handle(Req("GET", "/api/", "acme.example.com"));
  EXPECT_EQ(by_host.body, R"({"tenant":"acme"})");
  auto unknown = d.Handle(Req("GET", "/t/nobody/api/"));
  auto suspended = d.Handle(Req("GET", "/t/sleepy/api/"));
  auto no_route = d.Handle(Req("GET", "/t/acme/nothing-here"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(suspended.status, 404);
  EXPECT_EQ(unknown.body, suspended.body);
  EXPECT_EQ(unknown.body, no_route.body);
  auto mismatch = d.Handle(Req("GET", "/t/acme/api/", "sleepy.example.com"));
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_EQ(d.Handle(Req("POST", "/t/acme/api/")).status, 405);
}

TEST_F(DispatcherTest, OperatorRoutesAreNotOnThePublicListener) {
  PublicDispatcher d(services_, "", 1 << 20);
  EXPECT_EQ(d.Handle(Req("GET", "/v1/tenants")).status, 404);
  EXPECT_EQ(d.Handle(Req("GET", "/metrics")).status, 404);
}

TEST_F(DispatcherTest, OperatorTokenRequiredAndFailuresLogged) {
  const std::string token(40, 'k');
  OperatorDispatcher d(services_, token);
  auto anon = d.Handle(Req("GET", "/v1/tenants"));
  EXPECT_EQ(anon.status, 401);
  EXPECT_EQ(anon.body.find("acme"), std::string::npos);
  auto wrong = Req("GET", "/v1/tenants");
  wrong.headers.emplace_back("authorization", "Bearer " + std::string(40, 'j'));
  EXPECT_EQ(d.Handle(wrong).status, 401);
  auto prefix = Req("GET", "/v1/tenants");
  prefix.headers.emplace_back("authorization", "Bearer " + token.substr(0, 39));
  EXPECT_EQ(d.Handle(prefix).status, 401);
  auto good = Req("GET", "/v1/tenants");
  good.headers.emplace_back("authorization", "Bearer " + token);
  auto res = d.Handle(good);
  EXPECT_EQ(res.status, 200);
  EXPECT_NE(res.body.find("\"acme\""), std::string::npos);
  auto log = ReadFile(dir_ + "/security.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("operator.auth_failed"), std::string::npos);
  EXPECT_EQ(log->find(token), std::string::npos);
  EXPECT_EQ(d.Handle(Req("GET", "/healthz")).status, 200);
}

TEST_F(DispatcherTest, BodyLimitsComeFromTheRoute) {
  PublicDispatcher d(services_, "", 1 << 20);
  EXPECT_EQ(d.BodyLimit("GET", "/healthz"), 0u);
  EXPECT_EQ(d.BodyLimit("GET", "/t/acme/api/?x=1"), 0u);
  EXPECT_EQ(d.BodyLimit("POST", "/unknown"), 1u << 20);
  OperatorDispatcher o(services_, std::string(40, 'k'));
  EXPECT_EQ(o.BodyLimit("POST", "/v1/tenants"), 16u * 1024);
}

}  // namespace
}  // namespace silo::api
