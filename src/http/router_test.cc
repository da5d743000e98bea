#include "http/router.h"

#include <gtest/gtest.h>

#include "http/message.h"

namespace silo::http {
namespace {

// The router stores what the application declares and hands it back.
struct TestRoute {
  std::string method;
  std::string pattern;
  int payload = 0;
};

TEST(MatchPatternTest, LiteralsAndCaptures) {
  PathParams p;
  EXPECT_TRUE(MatchPattern("/v1/tenants/{slug}/suspend", "/v1/tenants/acme/suspend", &p));
  EXPECT_EQ(p["slug"], "acme");
  p.clear();
  EXPECT_FALSE(MatchPattern("/v1/tenants/{slug}", "/v1/tenants/", &p));
  EXPECT_FALSE(MatchPattern("/v1/tenants/{slug}", "/v1/tenants/a/b", &p));
  EXPECT_FALSE(MatchPattern("/api/", "/api", &p));
  EXPECT_TRUE(MatchPattern("/api/", "/api/", &p));
  EXPECT_FALSE(MatchPattern("/healthz", "healthz", &p));
}

TEST(RouterTest, FindsRouteAndReports405) {
  Router<TestRoute> r;
  r.Add({"GET", "/things/{id}", 1});
  r.Add({"DELETE", "/things/{id}", 2});
  auto m = r.Find("GET", "/things/7");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->payload, 1);
  EXPECT_EQ(m.params["id"], "7");
  auto wrong = r.Find("PUT", "/things/7");
  EXPECT_EQ(wrong.route, nullptr);
  EXPECT_TRUE(wrong.path_known);
  EXPECT_EQ(wrong.allow, "GET, DELETE");
  auto none = r.Find("GET", "/other");
  EXPECT_FALSE(none.path_known);
  EXPECT_TRUE(none.params.empty());
  EXPECT_FALSE(r.Find("GET", "/things/").path_known);  // an empty capture matches nothing
}

TEST(ProblemTest, IsProblemJsonWithRequestIdAndEscapes) {
  Response r = Problem(404, "no \"such\" thing\n", "rid-1");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/problem+json");
  EXPECT_NE(r.body.find("\"request_id\":\"rid-1\""), std::string::npos);
  EXPECT_NE(r.body.find("no \\\"such\\\" thing\\n"), std::string::npos);
  EXPECT_NE(r.body.find("\"title\":\"Not Found\""), std::string::npos);
}

}  // namespace
}  // namespace silo::http
