#include "platform/incident.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace silo::platform {
namespace {

namespace json = boost::json;

constexpr int64_t kS = 1'000'000;
constexpr int64_t kT0 = 1'796'000'000LL * kS;  // 2026-11-30T00:53:20Z

IncidentInput Input() {
  IncidentInput in;
  in.id = "r1";
  in.generated_at_us = kT0 + 100 * kS;
  in.from_us = kT0;
  in.to_us = kT0 + 90 * kS;
  in.discovered_us = kT0 + 3600 * kS;
  in.platform = {{kT0 + 5 * kS, {"honeypot.hit", "anonymous", "203.0.113.9", "/.env | x\nnew"}}};
  in.tenants["acme"] = {
      {kT0 + 2 * kS, "login.failed", "anonymous:", "203.0.113.9", "user u1"},
      {kT0 + 7 * kS, "tenant.exported", "operator:operator", "127.0.0.1", "tenant acme"},
      {kT0 + 8 * kS, "record.created", "user:u2", "10.0.0.1", "record r1"},  // not security
      {kT0 + 9 * kS, "session.revoked_all", "user:u1", "10.0.0.2", "user u1"},
      {kT0 + 10 * kS, "tenant.rekeyed", "operator:operator", "", "tenant acme"},
  };
  in.tenants["globex"] = {};
  return in;
}

TEST(IncidentTest, ATimelineInOrderWithDeadlineCategoriesAndMeasures) {
  IncidentReport r = BuildIncidentReport(Input());
  const json::object& o = r.report;
  EXPECT_EQ(o.at("notify_by").as_string(), "2026-12-03T01:53:20.000000Z");  // discovery + 72 h
  const auto& timeline = o.at("timeline").as_array();
  ASSERT_EQ(timeline.size(), 5u);  // record.created is not security-relevant
  EXPECT_EQ(timeline[0].at("type").as_string(), "login.failed");
  EXPECT_EQ(timeline[1].at("source").as_string(), "platform");
  EXPECT_EQ(timeline[3].at("type").as_string(), "session.revoked_all");
  EXPECT_EQ(timeline[4].at("type").as_string(), "tenant.rekeyed");
  const auto& affected = o.at("affected_tenants").as_array();
  ASSERT_EQ(affected.size(), 1u);  // globex recorded nothing
  EXPECT_EQ(affected[0].at("tenant").as_string(), "acme");
  EXPECT_EQ(affected[0].at("users").as_array(), json::array({"u1"}));
  EXPECT_EQ(affected[0].at("measures").as_array().size(), 2u);  // a re-key is one
  const std::string draft(o.at("drafts").at("acme").as_string());
  EXPECT_NE(draft.find("exports of records: 1"), std::string::npos) << draft;
  EXPECT_NE(draft.find("session.revoked_all (1)"), std::string::npos) << draft;
  EXPECT_NE(draft.find("tenant.rekeyed (1)"), std::string::npos) << draft;
  EXPECT_NE(draft.find("due by 2026-12-03T01:53:20.000000Z"), std::string::npos) << draft;
  // A detail with a pipe and a line break stays in its table cell.
  EXPECT_NE(r.markdown.find("| /.env \\| x new |"), std::string::npos) << r.markdown;
  EXPECT_TRUE(SecurityRelevant("access.approved"));
  EXPECT_FALSE(SecurityRelevant("record.updated"));
  // The signed text covers the Markdown too.
  EXPECT_NE(IncidentSignedText(o, r.markdown), IncidentSignedText(o, r.markdown + " "));
}

// A tenant's report keeps the platform events that name it, and not those
// of a tenant whose slug merely contains its own.
TEST(IncidentTest, APlatformEventNamesATenantOnlyByItsWholeSlug) {
  EXPECT_TRUE(NamesTenant("acme", "acme"));
  EXPECT_TRUE(NamesTenant("acme: restored from acme-20261130", "acme"));
  EXPECT_TRUE(NamesTenant("POST /t/acme/api/collections", "acme"));
  EXPECT_FALSE(NamesTenant("acme-eu", "acme"));
  EXPECT_FALSE(NamesTenant("POST /t/bigacme/api/", "acme"));
  EXPECT_FALSE(NamesTenant("acme2: token", "acme"));
  EXPECT_TRUE(NamesTenant("acme2 then acme", "acme"));
  EXPECT_FALSE(NamesTenant("anything", ""));
}

}  // namespace
}  // namespace silo::platform
