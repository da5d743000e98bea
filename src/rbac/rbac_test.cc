#include "rbac/rbac.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rbac/grant_json.h"

namespace silo::rbac {
namespace {

TEST(Rbac, CatalogueIsClosed) {
  EXPECT_TRUE(ValidPermission("users.manage"));
  EXPECT_TRUE(ValidPermission("records.tickets.export"));
  EXPECT_TRUE(ValidPermission("records.*.read"));
  for (const char* bad : {"", "users", "users.*", "*", "records.*.*", "records.Tickets.read",
                          "records..read", "records.tickets.drop", "records.tickets",
                          "records.a.b.read", "settings.everything", "USERS.MANAGE"}) {
    EXPECT_FALSE(ValidPermission(bad)) << bad;
  }
}

TEST(Rbac, WildcardGrantsEveryCollectionForOneActionOnly) {
  std::vector<std::string> held = {"records.*.read", "audit.read"};
  EXPECT_TRUE(Grants(held, "records.tickets.read"));
  EXPECT_TRUE(Grants(held, "records.*.read"));
  EXPECT_FALSE(Grants(held, "records.tickets.update"));
  EXPECT_FALSE(Grants(held, "audit.verify"));
  EXPECT_FALSE(Grants({"records.tickets.read"}, "records.*.read"));
  EXPECT_FALSE(Grants({"records.tickets.read"}, "records.other.read"));
}

TEST(Rbac, ChannelPatternsCoverTheirChannelsForOneActionOnly) {
  for (const char* good :
       {"channels.room.subscribe", "channels.room:*.publish", "channels.*.presence",
        "channels.user:u1.publish", "channels.a.b.subscribe"}) {
    EXPECT_TRUE(ValidPermission(good)) << good;
  }
  for (const char* bad :
       {"channels.room", "channels..subscribe", "channels.Room.subscribe", "channels.room.read",
        "channels.-x.publish", "channels.r*m.publish", "channels.*.*"}) {
    EXPECT_FALSE(ValidPermission(bad)) << bad;
  }
  const std::vector<std::string> held = {"channels.room:*.subscribe"};
  EXPECT_TRUE(Grants(held, "channels.room:1.subscribe"));
  EXPECT_TRUE(Grants(held, "channels.room:lobby:2.subscribe"));
  EXPECT_TRUE(Grants(held, "channels.room:x*.subscribe"));  // a narrower pattern
  EXPECT_FALSE(Grants(held, "channels.room.subscribe"));    // not the prefix "room:"
  EXPECT_FALSE(Grants(held, "channels.room:1.publish"));
  EXPECT_FALSE(Grants(held, "channels.*.subscribe"));
  EXPECT_FALSE(Grants({"channels.room:1.subscribe"}, "channels.room:*.subscribe"));
  EXPECT_TRUE(Grants({"channels.*.publish"}, "channels.user:u1.publish"));
  EXPECT_TRUE(IsSubset({"channels.room:*.subscribe"}, FindBuiltIn("admin")->permissions));
  EXPECT_FALSE(IsSubset({"channels.room:*.subscribe"}, FindBuiltIn("editor")->permissions));
}

TEST(Rbac, SubsetNeverExceedsTheHolder) {
  std::vector<std::string> editor = FindBuiltIn("editor")->permissions;
  EXPECT_TRUE(IsSubset({"records.tickets.read", "records.*.update"}, editor));
  EXPECT_FALSE(IsSubset({"records.tickets.read", "users.manage"}, editor));
  EXPECT_FALSE(IsSubset({"records.*.export"}, editor));
  EXPECT_TRUE(IsSubset({}, editor));
}

TEST(Rbac, AuthorizeDefaultsToDeny) {
  Subject nobody;
  for (const auto& p : SystemPermissions()) {
    EXPECT_EQ(Authorize(nobody, p), Decision::kDenyNoPermission) << p;
  }
  Subject owner{FindBuiltIn("owner")->permissions, false};
  for (const auto& p : SystemPermissions()) EXPECT_EQ(Authorize(owner, p), Decision::kAllow) << p;
  EXPECT_EQ(Authorize(owner, "records.anything.export"), Decision::kAllow);
  // An invalid permission is never granted, even by a holder listing it.
  Subject odd{{"made.up"}, false};
  EXPECT_EQ(Authorize(odd, "made.up"), Decision::kDenyNoPermission);
  // MFA enrolment pending withholds everything.
  Subject pending{FindBuiltIn("owner")->permissions, true};
  EXPECT_EQ(Authorize(pending, "records.tickets.read"), Decision::kDenyMfaEnrolmentRequired);
}

TEST(Rbac, BuiltInRolesAreLeastPrivilege) {
  auto perms = [](const char* role) { return Subject{FindBuiltIn(role)->permissions, false}; };
  EXPECT_EQ(Authorize(perms("viewer"), "records.t.update"), Decision::kDenyNoPermission);
  EXPECT_EQ(Authorize(perms("viewer"), "records.t.read"), Decision::kAllow);
  EXPECT_EQ(Authorize(perms("editor"), "users.manage"), Decision::kDenyNoPermission);
  EXPECT_EQ(Authorize(perms("auditor"), "records.t.update"), Decision::kDenyNoPermission);
  EXPECT_EQ(Authorize(perms("auditor"), "audit.verify"), Decision::kAllow);
  EXPECT_EQ(Authorize(perms("security_admin"), "records.t.read"), Decision::kDenyNoPermission);
  EXPECT_TRUE(FindBuiltIn("owner")->require_mfa);
  EXPECT_TRUE(FindBuiltIn("admin")->require_mfa);
  EXPECT_FALSE(FindBuiltIn("viewer")->require_mfa);
  for (const auto& r : BuiltInRoles()) {
    for (const auto& p : r.permissions) EXPECT_TRUE(ValidPermission(p)) << r.name << " " << p;
  }
}

TEST(Rbac, RoleNames) {
  EXPECT_TRUE(ValidRoleName("support_lead"));
  for (const char* bad : {"", "owner", "viewer", "Support", "9lives", "a-b", "x y"}) {
    EXPECT_FALSE(ValidRoleName(bad)) << bad;
  }
  EXPECT_EQ(PermissionsOf({*FindBuiltIn("viewer"), *FindBuiltIn("viewer")}).size(),
            FindBuiltIn("viewer")->permissions.size());
}

TEST(Rbac, GrantsCoverOnlyNarrowerOrEqualConditionsAndFields) {
  const Grant mine{"records.tickets.read", {"assignee:eq:@me"}, {"title", "state"}};
  EXPECT_TRUE(Covers(mine, mine));
  EXPECT_TRUE(
      Covers(mine, {"records.tickets.read", {"assignee:eq:@me", "state:eq:open"}, {"title"}}));
  // Wider: no condition, another condition, more fields, no field list.
  EXPECT_FALSE(Covers(mine, {"records.tickets.read", {}, {"title"}}));
  EXPECT_FALSE(Covers(mine, {"records.tickets.read", {"state:eq:open"}, {"title"}}));
  EXPECT_FALSE(Covers(mine, {"records.tickets.read", {"assignee:eq:@me"}, {"title", "secret"}}));
  EXPECT_FALSE(Covers(mine, {"records.tickets.read", {"assignee:eq:@me"}, {}}));
  EXPECT_FALSE(Covers(mine, {"records.tickets.update", {"assignee:eq:@me"}, {"title"}}));
  const Grant plain{"records.*.read", {}, {}};
  EXPECT_TRUE(Covers(plain, mine));
  EXPECT_TRUE(WithinGrants({mine, plain}, {"records.x.read", {}, {}}));
  EXPECT_FALSE(WithinGrants({mine}, {"records.tickets.read", {}, {}}));
  // A token's permission narrows its owner's grant, never widens it.
  auto n = Narrow("records.tickets.read", {"records.*.read", {"created_by:eq:@me"}, {}});
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, (Grant{"records.tickets.read", {"created_by:eq:@me"}, {}}));
  EXPECT_EQ(*Narrow("records.*.read", mine), mine);
  EXPECT_FALSE(Narrow("records.tickets.update", mine).has_value());
  // Grants on a role: plain ones and conditional ones together.
  Role r;
  r.permissions = {"records.a.read"};
  r.grants = {mine};
  EXPECT_EQ(PermissionsOf({r}),
            (std::vector<std::string>{"records.a.read", "records.tickets.read"}));
  EXPECT_EQ(GrantsOf({r}).size(), 2u);
  EXPECT_EQ(Granting(GrantsOf({r}), "records.tickets.read"), std::vector<Grant>{mine});
}

TEST(Rbac, GrantsAreCheckedAndRoundTripThroughJson) {
  for (const auto& [g, why] : std::vector<std::pair<Grant, std::string>>{
           {{"users.read", {"x:eq:1"}, {}}, "record permissions"},
           {{"records.t.export", {"x:eq:1"}, {}}, "export"},
           {{"records.*.read", {}, {"title"}}, "need a collection"},
           {{"records.t.delete", {}, {"title"}}, "delete takes no fields"},
           {{"records.t.read", {}, {}}, "needs a condition or fields"},
           {{"records.t.nope", {"x:eq:1"}, {}}, "unknown permission"}}) {
    EXPECT_NE(CheckGrant(g).find(why), std::string::npos) << g.permission << ": " << CheckGrant(g);
  }
  Role r;
  auto json = boost::json::parse(R"(["records.t.create",
      {"permission":"records.t.read","where":"owner:eq:@me"},
      {"permission":"records.t.update","where":["owner:eq:@me","state:ne:closed"],
       "fields":["state"]}])");
  ASSERT_TRUE(ParsePermissionsJson(json, &r).ok());
  EXPECT_EQ(r.permissions, std::vector<std::string>{"records.t.create"});
  ASSERT_EQ(r.grants.size(), 2u);
  EXPECT_EQ(r.grants[1].where.size(), 2u);
  Role again;
  ASSERT_TRUE(ParsePermissionsJson(PermissionsJson(r), &again).ok());
  EXPECT_EQ(again.grants, r.grants);
  for (const char* bad : {R"([{"permission":"records.t.read","where":7}])",
                          R"([{"permission":"records.t.read","who":"x"}])", R"([3])",
                          R"([{"where":"a:eq:b"}])", R"({})"}) {
    Status st = ParsePermissionsJson(boost::json::parse(bad), &again);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
  }
}

// ASVS 4.3.1: a role stored before the rule (flag false) still requires MFA
// once it administers anything; a role that only reads keeps its flag.
TEST(Rbac, AdministrativePermissionsRequireMfaWhateverTheFlag) {
  Role helpdesk;
  helpdesk.permissions = {"users.read", "tokens.manage", "users.manage"};
  EXPECT_EQ(AdministrativeIn(helpdesk),
            (std::vector<std::string>{"users.manage", "tokens.manage"}));
  EXPECT_TRUE(RequiresMfa(helpdesk));
  Role reader;
  reader.permissions = {"users.read", "records.*.read", "settings.manage"};
  EXPECT_TRUE(AdministrativeIn(reader).empty());
  EXPECT_FALSE(RequiresMfa(reader));
  EXPECT_FALSE(AnyRequiresMfa({reader}));
  EXPECT_TRUE(AnyRequiresMfa({reader, helpdesk}));
  reader.require_mfa = true;
  EXPECT_TRUE(RequiresMfa(reader));
  for (const auto& p : AdministrativePermissions()) EXPECT_TRUE(ValidPermission(p)) << p;
}

}  // namespace
}  // namespace silo::rbac
