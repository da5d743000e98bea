#include "api/dispatchers.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>

#include "app/app.h"
#include "app/test_config.h"
#include "base/file_util.h"
#include "base/status_matchers.h"
#include "tenant/registry.h"

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
  // The fully qualified form (trailing dot) is the same host, not no host.
  EXPECT_EQ(ResolveTenant("example.com", "acme.example.com.", "/t/beta/api/").kind,
            Kind::kMismatch);
  EXPECT_EQ(ResolveTenant("example.com", "ACME.example.com.:443", "/t/beta/api/").kind,
            Kind::kMismatch);
  auto t = ResolveTenant("example.com", "acme.example.com.", "/api/");
  EXPECT_EQ(t.kind, Kind::kTenant);
  EXPECT_EQ(t.slug, "acme");
}

// The service graph is the server's own (app::App), created but not started:
// the tests call the dispatchers directly.
class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-dispatch-XXXXXX";
    dir_ = mkdtemp(tmpl);
    config::Config c = app::testing::ConfigFor(dir_, std::string(40, 'o'));
    c.trusted_proxies = {"10.0.0.1"};
    c.security.honeypot_paths = {"/.env", "/phpmyadmin/"};
    auto app = app::App::Create(std::move(c));
    ASSERT_OK(app);
    app_ = std::move(*app);
    tenant::TenantRegistry& registry = *app_->services().tenants;
    ASSERT_OK(registry.Create("acme", "", ""));
    ASSERT_OK(registry.Create("sleepy", "", ""));
    ASSERT_OK(registry.SetState("sleepy", tenant::TenantState::kSuspended));
  }
  void TearDown() override {
    app_.reset();
    std::filesystem::remove_all(dir_);
  }
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
  std::string SecurityLog() {
    auto log = ReadFile(dir_ + "/platform/security.log");
    EXPECT_OK(log);
    return log.ok() ? *log : "";
  }
  std::string dir_;
  std::unique_ptr<app::App> app_;
  Services& services() { return app_->services(); }
};

TEST_F(DispatcherTest, AHoneypotHitBansThatClientAndNoOther) {
  PublicDispatcher d(services(), "", 1 << 20);
  auto from = [&](std::string ip, std::string path) {
    auto r = Req("GET", std::move(path));
    r.client_ip = std::move(ip);
    return d.Handle(r);
  };
  auto probe = from("192.0.2.9", "/.env");
  auto unknown = from("192.0.2.8", "/no-such-thing");
  EXPECT_EQ(probe.status, 404);
  EXPECT_EQ(probe.body.substr(0, 40), unknown.body.substr(0, 40));  // answers like any unknown path
  EXPECT_EQ(from("192.0.2.9", "/t/acme/api/").status, 403);
  EXPECT_EQ(from("192.0.2.8", "/t/acme/api/").status, 200);
  // Under a directory and under a tenant prefix too.
  EXPECT_EQ(from("192.0.2.7", "/t/acme/phpmyadmin/index.php").status, 404);
  EXPECT_EQ(from("192.0.2.7", "/healthz").status, 403);
  // A spoofed X-Forwarded-For from an untrusted peer neither escapes the ban
  // nor pins it on someone else.
  auto spoof = Req("GET", "/.env");
  spoof.client_ip = "192.0.2.20";
  spoof.headers.emplace_back("x-forwarded-for", "198.51.100.1");
  d.Handle(spoof);
  EXPECT_EQ(from("198.51.100.1", "/healthz").status, 200);
  EXPECT_EQ(from("192.0.2.20", "/healthz").status, 403);
  // Through the trusted proxy, the forwarded address is the client.
  auto via = Req("GET", "/.env");
  via.client_ip = "10.0.0.1";
  via.headers.emplace_back("x-forwarded-for", "203.0.113.4");
  d.Handle(via);
  EXPECT_EQ(from("10.0.0.1", "/healthz").status, 200);
  auto banned = Req("GET", "/healthz");
  banned.client_ip = "10.0.0.1";
  banned.headers.emplace_back("x-forwarded-for", "203.0.113.4");
  EXPECT_EQ(d.Handle(banned).status, 403);
}

TEST_F(DispatcherTest, TenantRootAndUnknownOrSuspendedLookTheSame) {
  PublicDispatcher d(services(), "example.com", 1 << 20);
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
  // Two Host headers are refused whichever order they come in: the first
  // alone would otherwise choose the tenant.
  for (auto hosts : {std::pair{"acme.example.com", "sleepy.example.com"},
                     std::pair{"sleepy.example.com", "acme.example.com"}}) {
    auto twice = Req("GET", "/api/", hosts.first);
    twice.headers.emplace_back("host", hosts.second);
    auto r = d.Handle(twice);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("more than one Host header"), std::string::npos);
  }
}

TEST_F(DispatcherTest, ATenantAnotherClusterNodeLeadsIsRedirectedThereAndNoOther) {
  // What a cluster node knows from etcd: "beta" is led at another node.
  // Tenants served here are served here, whatever the hook says.
  services().primary_elsewhere = [](const std::string& slug) -> std::optional<std::string> {
    if (slug == "beta" || slug == "acme") return "https://n2.example:8443";
    if (slug == "moving") return "";  // the cluster's, led by no node this moment
    return std::nullopt;
  };
  PublicDispatcher d(services(), "example.com", 1 << 20);
  auto post = Req("POST", "/t/beta/api/collections/tickets/records");
  post.target = post.path + "?expand=a";
  post.query = "expand=a";
  auto r = d.Handle(post);
  EXPECT_EQ(r.status, 307);  // method and body kept
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "location");
  EXPECT_EQ(r.headers[0].second,
            "https://n2.example:8443/t/beta/api/collections/tickets/records?expand=a");
  EXPECT_TRUE(r.body.empty());
  // The Host form is sent on in the path form.
  auto by_host = d.Handle(Req("GET", "/api/", "beta.example.com"));
  EXPECT_EQ(by_host.status, 307);
  EXPECT_EQ(by_host.headers[0].second, "https://n2.example:8443/t/beta/api/");
  EXPECT_EQ(d.Handle(Req("GET", "/t/acme/api/")).status, 200);
  EXPECT_EQ(d.Handle(Req("GET", "/t/nobody/api/")).status, 404);
  EXPECT_EQ(d.Handle(Req("GET", "/t/sleepy/api/")).status, 404);
  auto moving = d.Handle(Req("GET", "/t/moving/api/"));
  EXPECT_EQ(moving.status, 503);
  ASSERT_EQ(moving.headers.size(), 1u);
  EXPECT_EQ(moving.headers[0], (std::pair<std::string, std::string>{"retry-after", "1"}));
}

TEST_F(DispatcherTest, OperatorRoutesAreNotOnThePublicListener) {
  PublicDispatcher d(services(), "", 1 << 20);
  EXPECT_EQ(d.Handle(Req("GET", "/v1/tenants")).status, 404);
  EXPECT_EQ(d.Handle(Req("GET", "/metrics")).status, 404);
}

TEST_F(DispatcherTest, OperatorTokenRequiredAndFailuresLogged) {
  const std::string token(40, 'k');
  OperatorDispatcher d(services(), token);
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
  const std::string log = SecurityLog();
  EXPECT_NE(log.find("operator.auth_failed"), std::string::npos);
  EXPECT_EQ(log.find(token), std::string::npos);
  EXPECT_EQ(d.Handle(Req("GET", "/healthz")).status, 200);
}

TEST_F(DispatcherTest, AnOperatorCommandForATenantAnotherNodeLeadsSaysWhereNotThatItIsGone) {
  services().primary_elsewhere = [](const std::string& slug) -> std::optional<std::string> {
    if (slug == "beta" || slug == "acme") return "https://n2.example:8443";
    if (slug == "moving") return "";
    return std::nullopt;
  };
  const std::string token(40, 'k');
  OperatorDispatcher d(services(), token);
  auto call = [&](const std::string& method, const std::string& path) {
    auto r = Req(method, path);
    r.headers.emplace_back("authorization", "Bearer " + token);
    return d.Handle(r);
  };
  auto there = call("DELETE", "/v1/tenants/beta");
  EXPECT_EQ(there.status, 409);
  EXPECT_NE(there.body.find("https://n2.example:8443"), std::string::npos);
  EXPECT_EQ(call("POST", "/v1/tenants/moving/backups").status, 503);
  EXPECT_EQ(call("POST", "/v1/tenants/nobody/suspend").status, 404);
  // A tenant this node has is this node's, whatever the hook says.
  EXPECT_EQ(call("POST", "/v1/tenants/acme/suspend").status, 200);
  // Without the operator token nothing is told.
  auto anon = d.Handle(Req("DELETE", "/v1/tenants/beta"));
  EXPECT_EQ(anon.status, 401);
  EXPECT_EQ(anon.body.find("n2.example"), std::string::npos);
}

TEST_F(DispatcherTest, AHoneypotHitABrowserMadeForAnotherSiteIsLoggedButBansNobody) {
  PublicDispatcher d(services(), "", 1 << 20);
  auto hit = [&](std::string ip, std::string path,
                 std::vector<std::pair<std::string, std::string>> headers) {
    auto r = Req("GET", std::move(path));
    r.client_ip = std::move(ip);
    for (auto& h : headers) r.headers.push_back(std::move(h));
    return d.Handle(r);
  };
  // <img src=".../wp-login.php"> on another site, a no-cors fetch, a script.
  EXPECT_EQ(hit("192.0.2.30", "/.env", {{"sec-fetch-site", "cross-site"}}).status, 404);
  EXPECT_EQ(hit("192.0.2.30", "/.env", {{"sec-fetch-dest", "image"}}).status, 404);
  EXPECT_EQ(hit("192.0.2.30", "/.env", {{"sec-fetch-mode", "no-cors"}}).status, 404);
  EXPECT_EQ(hit("192.0.2.30", "/t/acme/api/", {}).status, 200);
  EXPECT_NE(SecurityLog().find("honeypot.hit_not_banned"), std::string::npos);
  // A scanner's variants of the path (no Fetch Metadata) still ban.
  EXPECT_EQ(hit("192.0.2.31", "//.ENV/", {}).status, 404);
  EXPECT_EQ(hit("192.0.2.31", "/t/acme/api/", {}).status, 403);
  EXPECT_EQ(hit("192.0.2.32", "/t/acme/%2e%65nv", {}).status, 404);
  EXPECT_EQ(hit("192.0.2.32", "/healthz", {}).status, 403);
  // So does a user's own navigation to it (Sec-Fetch-Site: none).
  EXPECT_EQ(hit("192.0.2.33", "/.env", {{"sec-fetch-site", "none"}}).status, 404);
  EXPECT_EQ(hit("192.0.2.33", "/healthz", {}).status, 403);
}

TEST_F(DispatcherTest, BodyLimitsComeFromTheRoute) {
  PublicDispatcher d(services(), "", 1 << 20);
  EXPECT_EQ(d.BodyLimit("GET", "/healthz"), 0u);
  EXPECT_EQ(d.BodyLimit("GET", "/t/acme/api/?x=1"), 0u);
  EXPECT_EQ(d.BodyLimit("POST", "/t/acme/api/collections"), 16u * 1024);
  // No route for the path, or none for the method: the server answers 404 or
  // 405 without reading the body (whatever its size), never 413.
  EXPECT_EQ(d.BodyLimit("POST", "/unknown"), http::Dispatcher::kNoRoute);
  EXPECT_EQ(d.BodyLimit("PUT", "/t/acme/api/collections/c/records/r"), http::Dispatcher::kNoRoute);
  EXPECT_EQ(d.Handle(Req("PUT", "/t/acme/api/collections/c/records/r")).status, 405);
  OperatorDispatcher o(services(), std::string(40, 'k'));
  EXPECT_EQ(o.BodyLimit("POST", "/v1/tenants"), 16u * 1024);
  EXPECT_EQ(o.BodyLimit("PUT", "/v1/tenants"), http::Dispatcher::kNoRoute);
}

}  // namespace
}  // namespace silo::api
