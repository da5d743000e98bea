#include "rbac/rbac.h"

#include <algorithm>
#include <set>

namespace silo::rbac {
namespace {

bool ValidCollectionName(std::string_view s) {
  if (s.empty() || s.size() > 63 || s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::vector<std::string> RecordPermissions(std::initializer_list<std::string_view> actions) {
  std::vector<std::string> out;
  for (auto a : actions) out.push_back("records.*." + std::string(a));
  return out;
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<Role> MakeBuiltIns() {
  std::vector<std::string> all_records =
      RecordPermissions({"create", "read", "update", "delete", "history", "export"});
  return {
      {"owner", "Everything, including granting the owner role",
       Concat(SystemPermissions(), all_records), true, true},
      {"admin", "Everything except granting or removing the owner role",
       Concat(SystemPermissions(), all_records), true, true},
      {"security_admin",
       "Users, roles, tokens and the audit log; no record data",
       {"users.read", "users.manage", "roles.read", "roles.manage", "tokens.read", "tokens.manage",
        "audit.read", "audit.verify"},
       true,
       true},
      {"auditor", "Reads the audit log, the event feed, records and their history",
       Concat({"collections.read", "events.read", "audit.read", "audit.verify", "users.read",
               "roles.read"},
              RecordPermissions({"read", "history"})),
       false, true},
      {"editor", "Creates, reads, updates and deletes records",
       Concat({"collections.read"},
              RecordPermissions({"create", "read", "update", "delete", "history"})),
       false, true},
      {"viewer", "Reads records", Concat({"collections.read"}, RecordPermissions({"read"})), false,
       true},
  };
}

}  // namespace

const std::vector<std::string>& SystemPermissions() {
  static const std::vector<std::string> kAll = {
      "users.read",  "users.manage",  "roles.read",       "roles.manage",
      "tokens.read", "tokens.manage", "collections.read", "collections.manage",
      "events.read", "audit.read",    "audit.verify"};
  return kAll;
}

const std::vector<std::string>& RecordActions() {
  static const std::vector<std::string> kActions = {"create", "read",    "update",
                                                    "delete", "history", "export"};
  return kActions;
}

bool ValidPermission(std::string_view p) {
  const auto& sys = SystemPermissions();
  if (std::find(sys.begin(), sys.end(), p) != sys.end()) return true;
  if (p.substr(0, 8) != "records.") return false;
  std::string_view rest = p.substr(8);
  size_t dot = rest.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string_view collection = rest.substr(0, dot);
  std::string_view action = rest.substr(dot + 1);
  if (collection != "*" && !ValidCollectionName(collection)) return false;
  const auto& actions = RecordActions();
  return std::find(actions.begin(), actions.end(), action) != actions.end();
}

bool Grants(const std::vector<std::string>& held, std::string_view wanted) {
  for (const auto& p : held) {
    if (p == wanted) return true;
    if (p.substr(0, 10) == "records.*." && wanted.substr(0, 8) == "records.") {
      std::string_view action = std::string_view(p).substr(10);
      size_t dot = wanted.rfind('.');
      if (dot != std::string_view::npos && dot >= 8 && wanted.substr(dot + 1) == action) {
        return true;
      }
    }
  }
  return false;
}

bool IsSubset(const std::vector<std::string>& requested, const std::vector<std::string>& held) {
  return std::all_of(requested.begin(), requested.end(),
                     [&](const std::string& p) { return Grants(held, p); });
}

const std::vector<Role>& BuiltInRoles() {
  static const std::vector<Role> kRoles = MakeBuiltIns();
  return kRoles;
}

const Role* FindBuiltIn(std::string_view name) {
  for (const auto& r : BuiltInRoles()) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

bool ValidRoleName(std::string_view s) {
  if (s.empty() || s.size() > 40 || s[0] < 'a' || s[0] > 'z') return false;
  if (FindBuiltIn(s) != nullptr) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::vector<std::string> PermissionsOf(const std::vector<Role>& roles) {
  std::set<std::string> all;
  for (const auto& r : roles) all.insert(r.permissions.begin(), r.permissions.end());
  return {all.begin(), all.end()};
}

bool AnyRequiresMfa(const std::vector<Role>& roles) {
  return std::any_of(roles.begin(), roles.end(), [](const Role& r) { return r.require_mfa; });
}

Decision Authorize(const Subject& subject, std::string_view permission) {
  if (!ValidPermission(permission)) return Decision::kDenyNoPermission;
  if (subject.mfa_enrolment_pending) return Decision::kDenyMfaEnrolmentRequired;
  return Grants(subject.permissions, permission) ? Decision::kAllow : Decision::kDenyNoPermission;
}

}  // namespace silo::rbac
