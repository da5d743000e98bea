// Identity, roles: the built-in ones and the tenant's own (behind identity.h).
#include <boost/json.hpp>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "cache/tenant_cache.h"
#include "rbac/grant_json.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

Status CheckRoleSpec(const rbac::Role& role) {
  std::vector<FieldError> errors;
  if (role.description.size() > 500) errors.push_back({"description", "must be at most 500 bytes"});
  if (role.permissions.size() + role.grants.size() > 200) {
    errors.push_back({"permissions", "at most 200"});
  }
  for (const auto& p : role.permissions) {
    if (!rbac::ValidPermission(p)) errors.push_back({"permissions", "unknown permission " + p});
  }
  for (const auto& g : role.grants) {
    if (std::string problem = rbac::CheckGrant(g); !problem.empty()) {
      errors.push_back({"permissions", problem});
    }
  }
  if (auto admin = rbac::AdministrativeIn(role); !admin.empty() && !role.require_mfa) {
    std::string names;
    for (const auto& p : admin) names += (names.empty() ? "" : ", ") + p;
    errors.push_back({"require_mfa", "must be true for a role holding " + names});
  }
  if (!errors.empty()) return InvalidArgument("invalid role").WithFields(std::move(errors));
  return Status::Ok();
}

// A tenant's own roles by name (nullopt: no such role), as RolesOf read them.
const cache::Namespace<std::optional<rbac::Role>> kTenantRoles{"tenant roles"};

// What a role takes in memory, roughly (the cache's byte budget).
size_t ApproximateSize(const rbac::Role& r) {
  size_t n = sizeof r + r.name.size() + r.description.size();
  for (const auto& p : r.permissions) n += sizeof p + p.size();
  for (const auto& g : r.grants) {
    n += sizeof g + g.permission.size();
    for (const auto& w : g.where) n += sizeof w + w.size();
    for (const auto& f : g.fields) n += sizeof f + f.size();
  }
  return n;
}

}  // namespace

Result<std::vector<rbac::Role>> Identity::ListRoles() {
  std::vector<rbac::Role> out(rbac::BuiltInRoles());
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto names, ColumnStrings(db, "SELECT name FROM roles ORDER BY name"));
    for (const auto& n : names) {
      SILO_ASSIGN_OR_RETURN(auto r, LoadRole(db, n));
      if (r) out.push_back(std::move(*r));
    }
    return Status::Ok();
  }));
  return out;
}

Result<rbac::Role> Identity::GetRole(const std::string& name) {
  std::optional<rbac::Role> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(out, LoadRole(db, name));
    return out ? Status::Ok() : NotFound("no such role");
  }));
  return std::move(*out);
}

Result<std::vector<rbac::Role>> Identity::RolesOf(const User& user) {
  // Every authenticated request asks: a tenant's own roles come from the
  // tenant cache while no write has happened since they were read (a role
  // edit is a write, so it is never served stale; cache/tenant_cache.h).
  cache::TenantCache& cache = db_->cache();
  const uint64_t generation = cache.generation();
  std::vector<rbac::Role> out;
  std::vector<std::string> missing;
  for (const auto& name : user.roles) {
    if (const rbac::Role* b = rbac::FindBuiltIn(name)) {
      out.push_back(*b);
    } else if (auto cached = cache.Get(kTenantRoles, name)) {
      if (*cached) out.push_back(**cached);  // a deleted role grants nothing
    } else {
      missing.push_back(name);
    }
  }
  if (missing.empty()) return out;
  SILO_RETURN_IF_ERROR(db_->ReadShort([&](Database& db) -> Status {
    for (const auto& name : missing) {
      SILO_ASSIGN_OR_RETURN(auto r, LoadRole(db, name));
      auto value = std::make_shared<const std::optional<rbac::Role>>(std::move(r));
      cache.Put(kTenantRoles, name, generation, value,
                ApproximateSize(value->value_or(rbac::Role{})));
      if (*value) out.push_back(**value);
    }
    return Status::Ok();
  }));
  return out;
}

Result<rbac::Role> Identity::CreateRole(const events::Origin& ctx, const rbac::Role& role) {
  if (!rbac::ValidRoleName(role.name)) {
    return InvalidArgument("invalid role")
        .WithFields({{"name", "must match [a-z][a-z0-9_]{0,39} and not be a built-in role"}});
  }
  SILO_RETURN_IF_ERROR(CheckRoleSpec(role));
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(auto existing, LoadRole(db, role.name));
    if (existing) return AlreadyExists("a role with this name exists");
    SILO_RETURN_IF_ERROR(ExecBound(db,
                                   "INSERT INTO roles (name, description, permissions, require_mfa,"
                                   " created_at_us, updated_at_us) VALUES (?, ?, ?, ?, ?, ?)",
                                   [&](storage::Statement& st) {
                                     st.Bind(1, role.name)
                                         .Bind(2, role.description)
                                         .Bind(3, JsonText(rbac::PermissionsJson(role)))
                                         .Bind(4, int64_t{role.require_mfa})
                                         .Bind(5, ctx.now_us)
                                         .Bind(6, ctx.now_us);
                                   }));
    return Audited{
        "role.created",
        "role",
        role.name,
        {Set("permissions", rbac::PermissionsJson(role)), Set("require_mfa", role.require_mfa)}};
  }));
  rbac::Role out = role;
  out.built_in = false;
  return out;
}

Result<rbac::Role> Identity::UpdateRole(const events::Origin& ctx, const rbac::Role& role) {
  if (rbac::FindBuiltIn(role.name) != nullptr) {
    return FailedPrecondition("built-in roles cannot be changed");
  }
  SILO_RETURN_IF_ERROR(CheckRoleSpec(role));
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(auto before, LoadRole(db, role.name));
    if (!before) return NotFound("no such role");
    SILO_RETURN_IF_ERROR(
        ExecBound(db,
                  "UPDATE roles SET description = ?, permissions = ?, require_mfa = ?,"
                  " updated_at_us = ? WHERE name = ?",
                  [&](storage::Statement& st) {
                    st.Bind(1, role.description)
                        .Bind(2, JsonText(rbac::PermissionsJson(role)))
                        .Bind(3, int64_t{role.require_mfa})
                        .Bind(4, ctx.now_us)
                        .Bind(5, role.name);
                  }));
    // Holders sign in again under the new definition.
    SILO_RETURN_IF_ERROR(ExecBound(db,
                                   "DELETE FROM sessions WHERE user_id IN"
                                   " (SELECT user_id FROM user_roles WHERE role = ?)",
                                   [&](storage::Statement& st) { st.Bind(1, role.name); }));
    return Audited{"role.updated",
                   "role",
                   role.name,
                   {{"permissions", JsonText(rbac::PermissionsJson(*before)),
                     JsonText(rbac::PermissionsJson(role)), false},
                    {"require_mfa", JsonText(json::value(before->require_mfa)),
                     JsonText(json::value(role.require_mfa)), false}}};
  }));
  return role;
}

Status Identity::DeleteRole(const events::Origin& ctx, const std::string& name) {
  if (rbac::FindBuiltIn(name) != nullptr) {
    return FailedPrecondition("built-in roles cannot be deleted");
  }
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(
        auto holders,
        ColumnStrings(db, "SELECT user_id FROM user_roles WHERE role = ? LIMIT 1", &name));
    if (!holders.empty()) return FailedPrecondition("users still hold this role");
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM roles WHERE name = ?",
                                   [&](storage::Statement& st) { st.Bind(1, name); }));
    if (db.Changes() == 0) return NotFound("no such role");
    return Audited{"role.deleted", "role", name, {}};
  });
}

}  // namespace silo::auth
