// Walks the real route tables: every route declares its policy (deny by
// default), and operator-only routes never appear on the public listener.
#include "api/routes.h"

#include <gtest/gtest.h>

namespace silo::api {
namespace {

TEST(RoutesTest, EveryRouteDeclaresItsAccess) {
  for (const Router& r : {BuildPlatformRouter(), BuildTenantRouter(), BuildOperatorRouter()}) {
    EXPECT_TRUE(UnguardedRoutes(r).empty()) << UnguardedRoutes(r)[0];
    for (const auto& route : r.routes()) {
      EXPECT_FALSE(route.method.empty()) << route.pattern;
    }
  }
}

TEST(RoutesTest, AnIncompleteDeclarationIsListed) {
  auto ok = [](Services&, RequestContext&) { return http::Json(200, "{}"); };
  Router r;
  r.Add(Get("/ok", ok).Allow(Access::Public()));
  r.Add(Post("/forgot-access", ok));
  r.Add(Get("/empty-permission", ok).Allow(Access::Permission("")));
  r.Add(Get("/things/{id}", ok).Allow(Access::Permission("records.{name}.read")));
  r.Add(Get("/things/{id}/x", ok).Allow(Access::Public()).Check({"name", [](std::string_view) {
                                                                   return true;
                                                                 }}));
  r.Add(Get("/no-handler", nullptr).Allow(Access::Public()));
  EXPECT_EQ(UnguardedRoutes(r), (std::vector<std::string>{
                                    "POST /forgot-access", "GET /empty-permission",
                                    "GET /things/{id}", "GET /things/{id}/x", "GET /no-handler"}));
}

TEST(RoutesTest, PublicListenerHasNoOperatorRoutes) {
  for (const Router& r : {BuildPlatformRouter(), BuildTenantRouter()}) {
    for (const auto& route : r.routes()) {
      EXPECT_NE(route.access.kind, Access::Kind::kOperator) << route.pattern;
    }
  }
}

TEST(RoutesTest, AnonymousTenantRoutesAreRateLimitedAndPasswordWorkIsSlow) {
  int slow = 0;
  const Router tenant = BuildTenantRouter();
  for (const auto& route : tenant.routes()) {
    // Those that answer from constants (the tenant root, tus discovery, the
    // console's embedded files) touch no tenant data.
    const bool constant = route.pattern == "/api/" || route.method == "OPTIONS" ||
                          route.pattern.starts_with("/console") || route.pattern == "/reset";
    if (route.access.kind == Access::Kind::kPublic && !constant) {
      EXPECT_NE(route.rate, nullptr) << route.method << " " << route.pattern;
    }
    // Every route that hashes a password runs on the slow pool.
    bool hashes = route.pattern.find("/auth/login") != std::string::npos ||
                  route.pattern.find("/auth/setup") != std::string::npos ||
                  route.pattern.find("/password/change") != std::string::npos ||
                  route.pattern.find("/password-reset/confirm") != std::string::npos ||
                  route.pattern.find("/auth/step-up") != std::string::npos;
    EXPECT_EQ(route.slow, hashes) << route.pattern;
    slow += route.slow;
  }
  EXPECT_EQ(slow, 5);
}

// Every capture that names a collection is checked before it reaches a
// permission or a store.
TEST(RoutesTest, CollectionCapturesAreChecked) {
  int checked = 0;
  const Router tenant = BuildTenantRouter();
  for (const auto& route : tenant.routes()) {
    if (route.pattern.find("{name}") == std::string::npos ||
        route.pattern.find("/roles/") != std::string::npos ||
        route.pattern.find("/channels/") != std::string::npos) {
      continue;
    }
    http::PathParams bad{{"name", "Not-A-Name"}}, good{{"name", "tickets"}};
    EXPECT_EQ(FailedCapture(route, bad), "name") << route.pattern;
    EXPECT_EQ(FailedCapture(route, good), std::nullopt) << route.pattern;
    ++checked;
  }
  EXPECT_EQ(checked, 13);
}

// A server publishes to a broadcast name or to user:<id>; anything else is
// answered 404 before the permission that names it.
TEST(RoutesTest, TheChannelCaptureIsChecked) {
  const Router tenant = BuildTenantRouter();
  auto m = tenant.Find("POST", "/api/channels/room:1/messages");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->access.ToString(), "channels.{name}.publish");
  for (const char* good : {"room:1", "user:u-1", "a.b_c-d"}) {
    EXPECT_EQ(FailedCapture(*m.route, {{"name", good}}), std::nullopt) << good;
  }
  for (const char* bad : {"Room", "-x", "user:", "a*", "a/b", ""}) {
    EXPECT_EQ(FailedCapture(*m.route, {{"name", bad}}), "name") << bad;
  }
}

// The upload route takes its collection and field from the query string and
// checks them like path captures; its permission names either action.
TEST(RoutesTest, TheUploadRouteChecksItsQueryCaptures) {
  const Router tenant = BuildTenantRouter();
  auto m = tenant.Find("POST", "/api/files");
  ASSERT_NE(m.route, nullptr);
  EXPECT_TRUE(m.route->streamed);
  EXPECT_EQ(m.route->access.ToString(), "records.{collection}.create|records.{collection}.update");
  http::PathParams bad{{"collection", "Not-A-Name"}, {"field", "scan"}};
  EXPECT_EQ(FailedCapture(*m.route, bad), "collection");
  http::PathParams bad_field{{"collection", "docs"}, {"field", "../x"}};
  EXPECT_EQ(FailedCapture(*m.route, bad_field), "field");
  http::PathParams good{{"collection", "docs"}, {"field", "scan"}};
  EXPECT_EQ(FailedCapture(*m.route, good), std::nullopt);
  auto d = tenant.Find("GET", "/api/collections/docs/records/r1/files/scan/not-a-file-id");
  ASSERT_NE(d.route, nullptr);
  EXPECT_EQ(FailedCapture(*d.route, d.params), "file");
}

// The enrolment gate: permission routes never pass it (rbac withholds every
// permission), and of the session routes only password change and token
// creation are closed.
TEST(RoutesTest, OnlyOwnAccountRoutesAreOpenDuringMfaEnrolment) {
  std::vector<std::string> closed;
  const Router tenant = BuildTenantRouter();
  for (const auto& route : tenant.routes()) {
    if (route.access.kind == Access::Kind::kPermission) {
      EXPECT_FALSE(route.during_mfa_enrolment) << route.pattern;
    }
    if (route.access.kind == Access::Kind::kSession && !route.during_mfa_enrolment) {
      closed.push_back(route.method + " " + route.pattern);
    }
  }
  EXPECT_EQ(closed,
            (std::vector<std::string>{"POST /api/auth/password/change", "POST /api/tokens"}));
}

TEST(RoutesTest, OperatorRoutesAllNeedTheTokenExceptHealth) {
  const Router op = BuildOperatorRouter();
  for (const auto& route : op.routes()) {
    if (route.pattern == "/healthz") continue;
    EXPECT_EQ(route.access.kind, Access::Kind::kOperator) << route.pattern;
  }
}

// That no operator route reads tenant records is checked by behaviour, not by
// the spelling of paths: tests/e2e/test_operator_boundary.py calls every one.

}  // namespace
}  // namespace silo::api
