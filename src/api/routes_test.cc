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

TEST(RoutesTest, OperatorRoutesAllNeedTheTokenExceptHealth) {
  Services s;
  const Router op = BuildOperatorRouter(s);
  for (const auto& route : op.routes()) {
    if (route.pattern == "/healthz") continue;
    EXPECT_EQ(route.access.kind, Access::Kind::kOperator) << route.pattern;
  }
}

TEST(RoutesTest, NoOperatorRouteReadsTenantRecordsOrFiles) {
  Services s;
  const Router op = BuildOperatorRouter(s);
  for (const auto& route : op.routes()) {
    EXPECT_EQ(route.pattern.find("records"), std::string::npos) << route.pattern;
    EXPECT_EQ(route.pattern.find("files"), std::string::npos) << route.pattern;
  }
}

}  // namespace
}  // namespace silo::api
