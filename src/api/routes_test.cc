// Walks the real route tables: every route declares its access (deny by
// default), and operator-only routes never appear on the public listener.
#include "api/routes.h"

#include <gtest/gtest.h>

namespace silo::api {
namespace {

using http::Access;

TEST(RoutesTest, EveryRouteDeclaresItsAccess) {
  Services s;
  std::vector<Router> all;
  all.push_back(BuildPlatformRouter(s));
  all.push_back(BuildTenantRouter(s));
  all.push_back(BuildOperatorRouter(s));
  for (const Router& r : all) {
    EXPECT_TRUE(r.UnguardedRoutes().empty()) << r.UnguardedRoutes()[0];
    for (const auto& route : r.routes()) {
      EXPECT_TRUE(route.handler) << route.pattern;
      EXPECT_FALSE(route.method.empty()) << route.pattern;
    }
  }
}

TEST(RoutesTest, PublicListenerHasNoOperatorRoutes) {
  Services s;
  std::vector<Router> pub;
  pub.push_back(BuildPlatformRouter(s));
  pub.push_back(BuildTenantRouter(s));
  for (const Router& r : pub) {
    for (const auto& route : r.routes()) {
      EXPECT_NE(route.access.kind, Access::Kind::kOperator) << route.pattern;
    }
  }
}

TEST(RoutesTest, AnonymousTenantRoutesAreRateLimitedAndPasswordWorkIsSlow) {
  Services s;
  Router t = BuildTenantRouter(s);
  int slow = 0;
  for (const auto& route : t.routes()) {
    if (route.access.kind == Access::Kind::kPublic && route.pattern != "/api/") {
      EXPECT_FALSE(route.rate_label.empty()) << route.method << " " << route.pattern;
    }
    // Every route that hashes a password runs on the slow pool.
    bool hashes = route.pattern.find("/auth/login") != std::string::npos ||
                  route.pattern.find("/auth/setup") != std::string::npos ||
                  route.pattern.find("/password/change") != std::string::npos ||
                  route.pattern.find("/password-reset/confirm") != std::string::npos;
    EXPECT_EQ(route.slow, hashes) << route.pattern;
    slow += route.slow;
  }
  EXPECT_EQ(slow, 4);
}

TEST(RoutesTest, OperatorRoutesAllNeedTheTokenExceptHealth) {
  Services s;
  const Router op = BuildOperatorRouter(s);
  for (const auto& route : op.routes()) {
    if (route.pattern == "/healthz") continue;
    EXPECT_EQ(route.access.kind, Access::Kind::kOperator) << route.pattern;
  }
}

// That no operator route reads tenant records is checked by behaviour, not by
// the spelling of paths: tests/e2e/test_operator_boundary.py calls every one.

}  // namespace
}  // namespace silo::api
