// Identity, users: invitation, setup, roles of a user, enabling and
// disabling, passwords (behind identity.h).
#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

Result<std::string> NormaliseEmail(std::string_view email) {
  auto bad = [] {
    return InvalidArgument("invalid e-mail address")
        .WithFields({{"email", "is not an e-mail address"}});
  };
  if (email.empty() || email.size() > 254) return bad();
  size_t at = email.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 >= email.size() ||
      email.find('@', at + 1) != std::string_view::npos ||
      email.find('.', at) == std::string_view::npos) {
    return bad();
  }
  std::string out;
  for (unsigned char c : email) {
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' ||
        c == '\\') {
      return bad();
    }
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

namespace {

bool HoldsOwner(const std::vector<std::string>& roles) {
  return std::find(roles.begin(), roles.end(), rbac::kOwnerRole) != roles.end();
}

// InvalidArgument naming the first role of `names` that does not exist.
Status CheckRolesExist(Database& db, const std::set<std::string>& names) {
  for (const auto& r : names) {
    SILO_ASSIGN_OR_RETURN(auto role, LoadRole(db, r));
    if (!role) return InvalidArgument("unknown role").WithFields({{"roles", "unknown role " + r}});
  }
  return Status::Ok();
}

Status InsertRoles(Database& db, const std::string& user_id, const std::set<std::string>& roles) {
  for (const auto& r : roles) {
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
                  [&](storage::Statement& st) { st.Bind(1, user_id).Bind(2, r); }));
  }
  return Status::Ok();
}

// FailedPrecondition when the change just made left no active owner.
Status KeepAnOwner(Database& db) {
  SILO_ASSIGN_OR_RETURN(int64_t owners, ActiveOwners(db));
  if (owners == 0) return FailedPrecondition("the tenant must keep at least one active owner");
  return Status::Ok();
}

}  // namespace

Result<Invitation> Identity::InviteUser(const events::Origin& ctx, const std::string& email,
                                        const std::vector<std::string>& roles) {
  SILO_ASSIGN_OR_RETURN(std::string normal, NormaliseEmail(email));
  Invitation out;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    std::set<std::string> unique(roles.begin(), roles.end());
    SILO_RETURN_IF_ERROR(CheckRolesExist(db, unique));
    SILO_ASSIGN_OR_RETURN(auto existing, LoadUser(db, "email", normal));
    if (existing) {
      return AlreadyExists("a user with this e-mail exists")
          .WithFields({{"email", "already used"}});
    }
    // ASVS 11.1.4: at most kMaxPendingInvitations per inviter.
    const std::string inviter = ctx.actor.kind + ":" + ctx.actor.id;
    SILO_ASSIGN_OR_RETURN(
        int64_t pending,
        CountBound(db, "SELECT count(*) FROM users WHERE status = 'invited' AND invited_by = ?",
                   [&](storage::Statement& q) { q.Bind(1, inviter); }));
    if (pending >= kMaxPendingInvitations) {
      return FailedPrecondition("at most " + std::to_string(kMaxPendingInvitations) +
                                " pending invitations per inviter; wait for some to be"
                                " accepted or remove them");
    }
    User u;
    u.id = crypto::RandomId(16);
    u.email = normal;
    u.status = "invited";
    u.roles.assign(unique.begin(), unique.end());
    u.created_at_us = u.updated_at_us = ctx.now_us;
    SILO_RETURN_IF_ERROR(
        ExecBound(db,
                  "INSERT INTO users (id, email, status, created_at_us, updated_at_us, invited_by)"
                  " VALUES (?, ?, 'invited', ?, ?, ?)",
                  [&](storage::Statement& st) {
                    st.Bind(1, u.id)
                        .Bind(2, u.email)
                        .Bind(3, ctx.now_us)
                        .Bind(4, ctx.now_us)
                        .Bind(5, inviter);
                  }));
    SILO_RETURN_IF_ERROR(InsertRoles(db, u.id, unique));
    std::string token = crypto::RandomToken(32);
    SILO_RETURN_IF_ERROR(
        InsertToken(db, token, "setup", u.id, ctx.now_us + timeouts_.setup_token_us));
    out = {u, token};
    return Audited{"user.invited",
                   "user",
                   u.id,
                   {Set("email", json::string(u.email)), Set("roles", ToArray(u.roles)),
                    Secret("setup_token")}};
  }));
  return out;
}

Result<std::vector<User>> Identity::ListUsers() {
  std::vector<User> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto ids,
                          ColumnStrings(db, "SELECT id FROM users ORDER BY created_at_us, id"));
    for (const auto& id : ids) {
      SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", id));
      if (u) out.push_back(std::move(u->user));
    }
    return Status::Ok();
  }));
  return out;
}

Result<User> Identity::GetUser(const std::string& id) {
  std::optional<User> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", id));
    if (!u) return NotFound("no such user");
    out = std::move(u->user);
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<LoginRecord> Identity::FindLogin(const std::string& email) {
  auto normal = NormaliseEmail(email);
  if (!normal.ok()) return NotFound("no such user");
  std::optional<LoginRecord> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(out, LoadUser(db, "email", *normal));
    return out ? Status::Ok() : NotFound("no such user");
  }));
  return std::move(*out);
}

Result<User> Identity::CompleteSetup(const events::Origin& ctx, const std::string& token,
                                     const std::string& password_hash) {
  return SetPasswordWithToken(ctx, token, "setup", password_hash);
}

Result<User> Identity::SetPasswordWithToken(const events::Origin& ctx, const std::string& token,
                                            std::string_view purpose,
                                            const std::string& password_hash) {
  const bool setup = purpose == "setup";
  const std::string refused = "invalid or expired " + std::string(purpose) + " token";
  std::optional<User> out;
  // The token names the user, who is then the actor of the entry.
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    SILO_ASSIGN_OR_RETURN(auto user_id, TakeToken(db, token, purpose, ctx.now_us));
    if (!user_id) return Unauthenticated(refused);
    // Setup activates an invited user; a reset needs an active one.
    SILO_RETURN_IF_ERROR(
        ExecBound(db,
                  setup ? "UPDATE users SET password_hash = ?, status = 'active',"
                          " updated_at_us = ? WHERE id = ? AND status = 'invited'"
                        : "UPDATE users SET password_hash = ?, updated_at_us = ?"
                          " WHERE id = ? AND status = 'active'",
                  [&](storage::Statement& st) {
                    st.Bind(1, password_hash).Bind(2, ctx.now_us).Bind(3, *user_id);
                  }));
    if (db.Changes() == 0) return Unauthenticated(refused);
    if (!setup) {
      SILO_RETURN_IF_ERROR(DeleteSessions(db, *user_id, ""));
      SILO_RETURN_IF_ERROR(NotifyUser(db, ctx, *user_id, "Your password was reset"));
    }
    events::Origin as_user = ctx;
    as_user.actor = {"user", *user_id};
    std::vector<events::Change> changes = {Secret("password")};
    if (setup) {
      changes.insert(changes.begin(), {"status", JsonText(json::string("invited")),
                                       JsonText(json::string("active")), false});
    }
    const std::string type = setup ? "user.setup_completed" : "password.reset";
    SILO_RETURN_IF_ERROR(
        events::AppendAudit(db, as_user, type, "user", *user_id, std::move(changes)));
    SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", *user_id));
    out = std::move(u->user);
    SILO_RETURN_IF_ERROR(tx->Commit());
    if (observer_) observer_({as_user, type, "user", *user_id});
    return Status::Ok();
  }));
  return std::move(*out);
}

Status Identity::SetUserRoles(const events::Origin& ctx, const std::string& user_id,
                              const std::vector<std::string>& roles, Caller caller) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", user_id));
    if (!u) return NotFound("no such user");
    std::set<std::string> wanted(roles.begin(), roles.end());
    SILO_RETURN_IF_ERROR(CheckRolesExist(db, wanted));
    const std::vector<std::string>& before = u->user.roles;
    const bool had_owner = HoldsOwner(before);
    const bool has_owner = wanted.count(std::string(rbac::kOwnerRole)) != 0;
    if (had_owner != has_owner && caller != Caller::kOwner) {
      return PermissionDenied("only an owner grants or removes the owner role");
    }
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM user_roles WHERE user_id = ?",
                                   [&](storage::Statement& st) { st.Bind(1, user_id); }));
    SILO_RETURN_IF_ERROR(InsertRoles(db, user_id, wanted));
    if (had_owner && !has_owner) SILO_RETURN_IF_ERROR(KeepAnOwner(db));
    // A privilege change ends the user's sessions: they sign in again with
    // the new roles (and MFA, if a new role requires it).
    SILO_RETURN_IF_ERROR(DeleteSessions(db, user_id, ""));
    std::vector<std::string> after(wanted.begin(), wanted.end());
    return Audited{"user.roles_changed",
                   "user",
                   user_id,
                   {{"roles", JsonText(ToArray(before)), JsonText(ToArray(after)), false}}};
  });
}

Status Identity::SetAccountState(const events::Origin& ctx, const std::string& user_id,
                                 Account state, Caller caller) {
  const bool disable = state == Account::kDisabled;
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", user_id));
    if (!u) return NotFound("no such user");
    const bool is_owner = HoldsOwner(u->user.roles);
    if (is_owner && caller != Caller::kOwner) {
      return PermissionDenied("only an owner disables an owner");
    }
    std::string before = u->user.status;
    std::string after = disable ? "disabled" : (u->password_hash.empty() ? "invited" : "active");
    SILO_RETURN_IF_ERROR(ExecBound(
        db, "UPDATE users SET status = ?, updated_at_us = ? WHERE id = ?",
        [&](storage::Statement& st) { st.Bind(1, after).Bind(2, ctx.now_us).Bind(3, user_id); }));
    if (is_owner && disable) SILO_RETURN_IF_ERROR(KeepAnOwner(db));
    if (disable) SILO_RETURN_IF_ERROR(DeleteSessions(db, user_id, ""));
    return Audited{
        disable ? "user.disabled" : "user.enabled",
        "user",
        user_id,
        {{"status", JsonText(json::string(before)), JsonText(json::string(after)), false}}};
  });
}

Status Identity::ReplacePasswordHash(const events::Origin& ctx, const std::string& user_id,
                                     const std::string& hash) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash != ''",
                  [&](storage::Statement& st) { st.Bind(1, hash).Bind(2, user_id); }));
    if (db.Changes() == 0) return NotFound("no such user with a password");
    return Audited{"user.password_rehashed", "user", user_id, {Secret("password_hash")}};
  });
}

Status Identity::ChangePassword(const events::Origin& ctx, const std::string& user_id,
                                const std::string& hash) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(ExecBound(
        db,
        "UPDATE users SET password_hash = ?, updated_at_us = ?"
        " WHERE id = ? AND status = 'active'",
        [&](storage::Statement& st) { st.Bind(1, hash).Bind(2, ctx.now_us).Bind(3, user_id); }));
    if (db.Changes() == 0) return NotFound("no such active user");
    SILO_RETURN_IF_ERROR(DeleteSessions(db, user_id, ""));
    SILO_RETURN_IF_ERROR(NotifyUser(db, ctx, user_id, "Your password was changed"));
    return Audited{"user.password_changed", "user", user_id, {Secret("password")}};
  });
}

}  // namespace silo::auth
