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

std::vector<std::string> Without(std::vector<std::string> a, std::string_view drop) {
  std::erase(a, std::string(drop));
  return a;
}

Role BuiltIn(std::string name, std::string description, std::vector<std::string> permissions,
             bool require_mfa) {
  Role r;
  r.name = std::move(name);
  r.description = std::move(description);
  r.permissions = std::move(permissions);
  r.require_mfa = require_mfa;
  r.built_in = true;
  return r;
}

std::vector<Role> MakeBuiltIns() {
  std::vector<std::string> all_records =
      RecordPermissions({"create", "read", "update", "delete", "history", "export"});
  const std::vector<std::string> all_channels = {"channels.*.subscribe", "channels.*.publish",
                                                 "channels.*.presence"};
  return {
      BuiltIn("owner", "Everything, including granting the owner role",
              Concat(Concat(SystemPermissions(), all_records), all_channels), true),
      // Not access_requests.manage: letting the operator in is for the
      // tenant's owners and security admins (issue 22) to decide.
      BuiltIn("admin",
              "Everything except granting or removing the owner role and deciding on the "
              "operator's access requests",
              Concat(Concat(Without(SystemPermissions(), "access_requests.manage"), all_records),
                     all_channels),
              true),
      BuiltIn("security_admin",
              "Users, roles, tokens, the audit log and the operator's access requests; no record "
              "data",
              {"users.read", "users.manage", "roles.read", "roles.manage", "tokens.read",
               "tokens.manage", "audit.read", "audit.verify", "settings.read", "settings.manage",
               "access_requests.manage"},
              true),
      BuiltIn("auditor", "Reads the audit log, the event feed, records and their history",
              Concat({"collections.read", "events.read", "audit.read", "audit.verify", "users.read",
                      "roles.read"},
                     RecordPermissions({"read", "history"})),
              false),
      BuiltIn("editor", "Creates, reads, updates and deletes records",
              Concat({"collections.read"},
                     RecordPermissions({"create", "read", "update", "delete", "history"})),
              false),
      BuiltIn("viewer", "Reads records", Concat({"collections.read"}, RecordPermissions({"read"})),
              false),
  };
}

}  // namespace

const std::vector<std::string>& SystemPermissions() {
  static const std::vector<std::string> kAll = {
      "users.read",       "users.manage",          "roles.read",
      "roles.manage",     "tokens.read",           "tokens.manage",
      "collections.read", "collections.manage",    "events.read",
      "audit.read",       "audit.verify",          "settings.read",
      "settings.manage",  "access_requests.manage"};
  return kAll;
}

const std::vector<std::string>& RecordActions() {
  static const std::vector<std::string> kActions = {"create", "read",    "update",
                                                    "delete", "history", "export"};
  return kActions;
}

const std::vector<std::string>& ChannelActions() {
  static const std::vector<std::string> kActions = {"subscribe", "publish", "presence"};
  return kActions;
}

namespace {

// channels.<pattern>.<action>: the pattern, or "" when `p` is not one.
// A pattern is a channel name ([a-z0-9][a-z0-9_.:-]{0,127}), the name of a
// user channel ("user:<id>"), or either's prefix followed by '*'.
std::string_view ChannelPattern(std::string_view p) {
  if (p.substr(0, 9) != "channels.") return "";
  size_t dot = p.rfind('.');
  if (dot <= 9) return "";
  std::string_view pattern = p.substr(9, dot - 9);
  std::string_view action = p.substr(dot + 1);
  const auto& actions = ChannelActions();
  if (std::find(actions.begin(), actions.end(), action) == actions.end()) return "";
  std::string_view name = pattern;
  if (name.back() == '*') name.remove_suffix(1);
  if (name.size() > 128) return "";
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (i > 0 && (c == '_' || c == '.' || c == ':' || c == '-'));
    if (!ok) return "";
  }
  return pattern;
}

// Whether a held channel permission grants a wanted one (either may be a
// pattern): the same action, and the held pattern covers the wanted one.
bool ChannelGrants(std::string_view held, std::string_view wanted) {
  std::string_view h = ChannelPattern(held), w = ChannelPattern(wanted);
  if (h.empty() || w.empty()) return false;
  if (held.substr(held.rfind('.')) != wanted.substr(wanted.rfind('.'))) return false;
  if (h.back() != '*') return h == w;
  h.remove_suffix(1);
  return w.substr(0, h.size()) == h;
}

}  // namespace

bool ValidPermission(std::string_view p) {
  const auto& sys = SystemPermissions();
  if (std::find(sys.begin(), sys.end(), p) != sys.end()) return true;
  if (!ChannelPattern(p).empty()) return true;
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
    if (ChannelGrants(p, wanted)) return true;
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
  for (const auto& r : roles) {
    all.insert(r.permissions.begin(), r.permissions.end());
    for (const auto& g : r.grants) all.insert(g.permission);
  }
  return {all.begin(), all.end()};
}

std::vector<Grant> GrantsOf(const std::vector<Role>& roles) {
  std::vector<Grant> out;
  for (const auto& r : roles) {
    for (const auto& p : r.permissions) out.push_back(Grant{p, {}, {}});
    out.insert(out.end(), r.grants.begin(), r.grants.end());
  }
  return out;
}

std::vector<Grant> Granting(const std::vector<Grant>& held, std::string_view wanted) {
  std::vector<Grant> out;
  for (const auto& g : held) {
    if (Grants({g.permission}, wanted)) out.push_back(g);
  }
  return out;
}

bool Covers(const Grant& held, const Grant& given) {
  if (!Grants({held.permission}, given.permission)) return false;
  for (const auto& w : held.where) {
    if (std::find(given.where.begin(), given.where.end(), w) == given.where.end()) return false;
  }
  if (held.fields.empty()) return true;
  if (given.fields.empty()) return false;
  return std::all_of(given.fields.begin(), given.fields.end(), [&](const std::string& f) {
    return std::find(held.fields.begin(), held.fields.end(), f) != held.fields.end();
  });
}

bool WithinGrants(const std::vector<Grant>& held, const Grant& given) {
  return std::any_of(held.begin(), held.end(), [&](const Grant& h) { return Covers(h, given); });
}

std::optional<Grant> Narrow(std::string_view permission, const Grant& owner) {
  if (Grants({owner.permission}, permission)) {
    return Grant{std::string(permission), owner.where, owner.fields};
  }
  if (Grants({std::string(permission)}, owner.permission)) return owner;
  return std::nullopt;
}

std::string CheckGrant(const Grant& g) {
  if (!ValidPermission(g.permission)) return "unknown permission " + g.permission;
  std::string_view p = g.permission;
  if (p.substr(0, 8) != "records.") return "conditions and fields apply to record permissions";
  std::string_view action = p.substr(p.rfind('.') + 1);
  if (action == "export") return "export takes no conditions or fields";
  if (g.where.size() > kMaxConditions) return "at most 8 conditions";
  if (!g.fields.empty()) {
    if (p.substr(0, 10) == "records.*.") return "fields need a collection (not records.*)";
    if (action == "delete") return "delete takes no fields";
    if (g.fields.size() > 64) return "at most 64 fields";
  }
  if (g.where.empty() && g.fields.empty()) return "a grant needs a condition or fields";
  return "";
}

const std::vector<std::string>& AdministrativePermissions() {
  static const std::vector<std::string> kAdministrative = {
      "users.manage", "roles.manage", "tokens.manage", "access_requests.manage"};
  return kAdministrative;
}

std::vector<std::string> AdministrativeIn(const Role& role) {
  std::vector<std::string> out;
  for (const auto& p : AdministrativePermissions()) {
    if (std::find(role.permissions.begin(), role.permissions.end(), p) != role.permissions.end()) {
      out.push_back(p);
    }
  }
  return out;
}

bool RequiresMfa(const Role& role) { return role.require_mfa || !AdministrativeIn(role).empty(); }

bool AnyRequiresMfa(const std::vector<Role>& roles) {
  return std::any_of(roles.begin(), roles.end(), [](const Role& r) { return RequiresMfa(r); });
}

Decision Authorize(const Subject& subject, std::string_view permission) {
  if (!ValidPermission(permission)) return Decision::kDenyNoPermission;
  if (subject.mfa_enrolment_pending) return Decision::kDenyMfaEnrolmentRequired;
  return Grants(subject.permissions, permission) ? Decision::kAllow : Decision::kDenyNoPermission;
}

}  // namespace silo::rbac
