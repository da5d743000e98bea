// Roles and permissions (DESIGN section 6): a closed catalogue of system
// permissions plus per-collection record permissions, the built-in roles, and
// the one pure Authorize() every tenant request passes. No I/O, no clock: the
// caller gathers what the subject holds, Authorize() only decides.
#ifndef SILO_RBAC_RBAC_H_
#define SILO_RBAC_RBAC_H_

#include <string>
#include <string_view>
#include <vector>

namespace silo::rbac {

// The system permissions, in catalogue order.
const std::vector<std::string>& SystemPermissions();
// The actions of `records.<collection>.<action>`.
const std::vector<std::string>& RecordActions();

// A system permission, or records.<collection or *>.<action> where the
// collection is a valid collection name (lowercase letter, then [a-z0-9_],
// at most 63 bytes, as records::ValidName).
bool ValidPermission(std::string_view permission);
// Whether `held` grants `wanted`: equal, or records.*.<a> for
// records.<any>.<a>.
bool Grants(const std::vector<std::string>& held, std::string_view wanted);
// Whether every permission in `requested` is granted by `held` (what a token
// may carry: never more than its creator holds).
bool IsSubset(const std::vector<std::string>& requested, const std::vector<std::string>& held);

struct Role {
  std::string name;
  std::string description;
  std::vector<std::string> permissions;
  bool require_mfa = false;
  bool built_in = false;
};

// owner, admin, security_admin, auditor, editor, viewer. Owner, admin and
// security_admin require MFA.
const std::vector<Role>& BuiltInRoles();
const Role* FindBuiltIn(std::string_view name);
// A tenant-defined role name: [a-z][a-z0-9_]{0,39}, not a built-in name.
bool ValidRoleName(std::string_view name);
inline constexpr std::string_view kOwnerRole = "owner";

// The union of the roles' permissions, sorted, without duplicates.
std::vector<std::string> PermissionsOf(const std::vector<Role>& roles);
bool AnyRequiresMfa(const std::vector<Role>& roles);

// What a request's caller holds, as gathered by the dispatcher.
struct Subject {
  std::vector<std::string> permissions;
  // A user holding a role that requires MFA who has not enrolled TOTP: may
  // only enrol (every permission is withheld).
  bool mfa_enrolment_pending = false;
};

enum class Decision { kAllow, kDenyNoPermission, kDenyMfaEnrolmentRequired };

// Default deny: allows only a valid permission that the subject holds.
Decision Authorize(const Subject& subject, std::string_view permission);

}  // namespace silo::rbac

#endif  // SILO_RBAC_RBAC_H_
