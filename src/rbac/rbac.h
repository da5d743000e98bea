// Roles and permissions (DESIGN section 6): a closed catalogue of system
// permissions plus per-collection record permissions, the built-in roles, and
// the one pure Authorize() every tenant request passes. No I/O, no clock: the
// caller gathers what the subject holds, Authorize() only decides.
#ifndef SILO_RBAC_RBAC_H_
#define SILO_RBAC_RBAC_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace silo::rbac {

// The system permissions, in catalogue order.
const std::vector<std::string>& SystemPermissions();
// The actions of `records.<collection>.<action>`.
const std::vector<std::string>& RecordActions();

// The actions of `channels.<pattern>.<action>` (realtime channels).
const std::vector<std::string>& ChannelActions();

// A system permission, records.<collection or *>.<action> where the
// collection is a valid collection name (lowercase letter, then [a-z0-9_],
// at most 63 bytes, as records::ValidName), or channels.<pattern>.<action>
// where the pattern is a realtime channel name (a broadcast name, or
// user:<id> for server messages to one user), or a prefix of one followed by
// '*' ("channels.room:*.subscribe", "channels.*.publish").
bool ValidPermission(std::string_view permission);
// Whether `held` grants `wanted`: equal, records.*.<a> for
// records.<any>.<a>, or a channel pattern covering the wanted channel (or
// narrower pattern) for the same action.
bool Grants(const std::vector<std::string>& held, std::string_view wanted);
// Whether every permission in `requested` is granted by `held` (what a token
// may carry: never more than its creator holds).
bool IsSubset(const std::vector<std::string>& requested, const std::vector<std::string>& held);

// A record permission with a condition or a field list (record rules,
// records/rules.h): it grants the action on the records its condition
// matches (the listing filter syntax with @me and @now; every entry must
// hold), on the fields it lists. Empty: every record, every field.
struct Grant {
  std::string permission;
  std::vector<std::string> where;
  std::vector<std::string> fields;
  bool operator==(const Grant&) const = default;
};

struct Role {
  std::string name;
  std::string description;
  std::vector<std::string> permissions;  // plain: every record, every field
  bool require_mfa = false;
  bool built_in = false;
  std::vector<Grant> grants;  // with a condition or fields
};

inline constexpr size_t kMaxConditions = 8;  // in one grant's where

// "" when `g` is a valid conditional grant, else what is wrong: a record
// permission of one collection (or *, conditions only) whose action takes
// conditions (not export) and, for fields, one that reads or writes them
// (read, create, update, history); at most kMaxConditions conditions and 64
// fields. Whether the condition and fields fit the collection's schema is
// the caller's to check (records::ParseRule).
std::string CheckGrant(const Grant& g);

// owner, admin, security_admin, auditor, editor, viewer. Owner, admin and
// security_admin require MFA.
const std::vector<Role>& BuiltInRoles();
const Role* FindBuiltIn(std::string_view name);
// A tenant-defined role name: [a-z][a-z0-9_]{0,39}, not a built-in name.
bool ValidRoleName(std::string_view name);
inline constexpr std::string_view kOwnerRole = "owner";

// The union of the roles' permissions (plain or conditional: what the
// caller holds in some form), sorted, without duplicates.
std::vector<std::string> PermissionsOf(const std::vector<Role>& roles);
// Every grant of the roles, the plain ones as grants without condition.
std::vector<Grant> GrantsOf(const std::vector<Role>& roles);
// The grants among `held` that grant `wanted` (a record permission).
std::vector<Grant> Granting(const std::vector<Grant>& held, std::string_view wanted);
// Whether `held` gives at least what `given` gives: its permission grants
// given's, its conditions are all among given's (given is narrower or
// equal; compared as written), and given lists only fields it lists.
bool Covers(const Grant& held, const Grant& given);
bool WithinGrants(const std::vector<Grant>& held, const Grant& given);
// What a token holding `permission` gets of its owner's grant `owner`: the
// narrower permission of the two with the owner's condition and fields, or
// nullopt when neither grants the other.
std::optional<Grant> Narrow(std::string_view permission, const Grant& owner);
// The permissions that administer the tenant's accounts and access:
// users.manage, roles.manage, tokens.manage, access_requests.manage (the
// operator's requests for access to the tenant's data: see them, decide,
// revoke). A role holding any of them
// requires MFA whatever its flag says (ASVS 4.3.1). settings.manage is not
// among them: the only setting, the CORS origins, grants nothing by itself
// (a caller from a listed origin still needs a token; no cookie is ever
// honoured cross-origin), so a role may leave it to the tenant's choice.
const std::vector<std::string>& AdministrativePermissions();
// Those among the role's permissions, in the order above.
std::vector<std::string> AdministrativeIn(const Role& role);
// Its flag, or an administrative permission.
bool RequiresMfa(const Role& role);
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
