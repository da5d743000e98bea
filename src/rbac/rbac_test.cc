#include "rbac/rbac.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace silo::rbac
