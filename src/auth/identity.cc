#include "auth/identity.h"

#include <boost/json.hpp>
#include <set>

#include "auth/totp.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

const storage::Migration kMigrations[] = {
    {6, "identity",
     "CREATE TABLE users ("
     " id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL DEFAULT '',"
     " status TEXT NOT NULL,"                 // invited | active | disabled
     " totp_secret BLOB, totp_pending BLOB,"  // sealed with the secret-field key
     " totp_last_step INTEGER NOT NULL DEFAULT 0,"
     " created_at_us INTEGER NOT NULL, updated_at_us INTEGER NOT NULL) STRICT;"
     "CREATE TABLE user_roles (user_id TEXT NOT NULL, role TEXT NOT NULL,"
     " PRIMARY KEY (user_id, role)) STRICT;"
     "CREATE INDEX user_roles_role ON user_roles (role);"
     "CREATE TABLE roles (name TEXT PRIMARY KEY, description TEXT NOT NULL,"
     " permissions TEXT NOT NULL, require_mfa INTEGER NOT NULL,"
     " created_at_us INTEGER NOT NULL, updated_at_us INTEGER NOT NULL) STRICT;"
     "CREATE TABLE sessions (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,"
     " csrf_hash TEXT NOT NULL, user_id TEXT NOT NULL, mfa_passed INTEGER NOT NULL,"
     " created_at_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL, client TEXT NOT NULL, user_agent TEXT NOT NULL) STRICT;"
     "CREATE INDEX sessions_user ON sessions (user_id);"
     // setup, reset and MFA challenge tokens; deleted when used.
     "CREATE TABLE one_time_tokens (hash TEXT PRIMARY KEY, purpose TEXT NOT NULL,"
     " user_id TEXT NOT NULL, expires_at_us INTEGER NOT NULL,"
     " attempts INTEGER NOT NULL DEFAULT 0) STRICT;"
     "CREATE TABLE recovery_codes (user_id TEXT NOT NULL, hash TEXT NOT NULL,"
     " PRIMARY KEY (user_id, hash)) STRICT;"
     "CREATE TABLE outbox (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,"
     " subject TEXT NOT NULL, body TEXT NOT NULL, created_at_us INTEGER NOT NULL,"
     " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_us INTEGER NOT NULL,"
     " sent_at_us INTEGER, last_error TEXT) STRICT"},
};

constexpr int64_t kIdleRefreshUs = 60'000'000;
constexpr size_t kMaxUserAgent = 200;

constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

std::string RandomBase36(size_t n) {
  std::string out;
  while (out.size() < n) {
    for (unsigned char b : crypto::RandomBytes(n)) {
      if (b < 252 && out.size() < n) out += kBase36[b % 36];
    }
  }
  return out;
}

std::string JsonText(const json::value& v) { return json::serialize(v); }

json::array ToArray(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

events::Change Set(std::string field, const json::value& v) {
  return {std::move(field), std::nullopt, JsonText(v), false};
}
events::Change Secret(std::string field) {
  return {std::move(field), std::nullopt, std::nullopt, true};
}

// The first column of every row of `sql` (bound to `arg` when given).
Result<std::vector<std::string>> ColumnStrings(Database& db, std::string_view sql,
                                               const std::string* arg = nullptr) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  if (arg != nullptr) st->Bind(1, *arg);
  std::vector<std::string> out;
  while (true) {
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(st->ColumnText(0));
  }
}

Result<std::vector<std::string>> LoadRoles(Database& db, const std::string& user_id) {
  return ColumnStrings(db, "SELECT role FROM user_roles WHERE user_id = ? ORDER BY role", &user_id);
}

constexpr std::string_view kUserColumns =
    "id, email, status, totp_secret IS NOT NULL, created_at_us, updated_at_us, password_hash";

Result<std::optional<std::pair<User, std::string>>> LoadUser(Database& db, std::string_view where,
                                                             const std::string& value) {
  auto st = db.Prepare("SELECT " + std::string(kUserColumns) + " FROM users WHERE " +
                       std::string(where) + " = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, value);
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<std::pair<User, std::string>>();
  User u;
  u.id = st->ColumnText(0);
  u.email = st->ColumnText(1);
  u.status = st->ColumnText(2);
  u.totp_enabled = st->ColumnInt(3) != 0;
  u.created_at_us = st->ColumnInt(4);
  u.updated_at_us = st->ColumnInt(5);
  std::string hash = st->ColumnText(6);
  st->Reset();
  auto roles = LoadRoles(db, u.id);
  if (!roles.ok()) return roles.status();
  u.roles = std::move(*roles);
  return std::optional<std::pair<User, std::string>>(std::make_pair(std::move(u), std::move(hash)));
}

Result<std::optional<rbac::Role>> LoadRole(Database& db, const std::string& name) {
  if (const rbac::Role* b = rbac::FindBuiltIn(name)) return std::optional<rbac::Role>(*b);
  auto st = db.Prepare("SELECT description, permissions, require_mfa FROM roles WHERE name = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, name);
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<rbac::Role>();
  rbac::Role r;
  r.name = name;
  r.description = st->ColumnText(0);
  boost::system::error_code ec;
  json::value perms = json::parse(st->ColumnText(1), ec);
  if (ec || !perms.is_array()) return DataLoss("role with malformed permissions");
  for (const auto& p : perms.as_array()) {
    if (p.is_string()) r.permissions.emplace_back(p.as_string());
  }
  r.require_mfa = st->ColumnInt(2) != 0;
  return std::optional<rbac::Role>(std::move(r));
}

// Active users holding the owner role.
Result<int64_t> ActiveOwners(Database& db) {
  auto st = db.Prepare(
      "SELECT count(*) FROM user_roles r JOIN users u ON u.id = r.user_id"
      " WHERE r.role = 'owner' AND u.status = 'active'");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  return st->ColumnInt(0);
}

Status ExecBound(Database& db, std::string_view sql,
                 const std::function<void(storage::Statement&)>& bind) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  bind(*st);
  return st->Run();
}

Status DeleteSessions(Database& db, const std::string& user_id, const std::string& keep) {
  return ExecBound(db, "DELETE FROM sessions WHERE user_id = ? AND id != ?",
                   [&](storage::Statement& s) { s.Bind(1, user_id).Bind(2, keep); });
}

Status InsertToken(Database& db, const std::string& token, std::string_view purpose,
                   const std::string& user_id, int64_t expires_at_us) {
  return ExecBound(db,
                   "INSERT INTO one_time_tokens (hash, purpose, user_id, expires_at_us)"
                   " VALUES (?, ?, ?, ?)",
                   [&](storage::Statement& s) {
                     s.Bind(1, crypto::Sha256Hex(token))
                         .Bind(2, purpose)
                         .Bind(3, user_id)
                         .Bind(4, expires_at_us);
                   });
}

// Deletes and returns the token's user when it exists, has `purpose` and has
// not expired (an expired one is deleted too).
Result<std::optional<std::string>> TakeToken(Database& db, const std::string& token,
                                             std::string_view purpose, int64_t now_us) {
  auto st = db.Prepare(
      "DELETE FROM one_time_tokens WHERE hash = ? AND purpose = ? RETURNING user_id,"
      " expires_at_us");
  if (!st.ok()) return st.status();
  st->Bind(1, crypto::Sha256Hex(token)).Bind(2, purpose);
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<std::string>();
  std::string user = st->ColumnText(0);
  int64_t expires = st->ColumnInt(1);
  while (true) {  // finish the statement so the delete completes
    auto more = st->Step();
    if (!more.ok()) return more.status();
    if (!*more) break;
  }
  if (expires <= now_us) return std::optional<std::string>();
  return std::optional<std::string>(std::move(user));
}

// An e-mail address in the audit log: keyed BLAKE2b, 16 bytes, hex.
std::string EmailTagUnder(const crypto::SecretKey& key, const std::string& address) {
  return crypto::HexEncode(crypto::KeyedHash(key, "email:" + address, 16));
}

// A device cookie's MAC over the address and nonce, hex.
std::string DeviceMac(const crypto::SecretKey& key, const std::string& address,
                      const std::string& nonce) {
  return crypto::HexEncode(crypto::KeyedHash(key, "device:" + address + ":" + nonce, 32));
}

// How a recovery code is stored: keyed BLAKE2b under the secret-field key.
std::string RecoveryHash(const crypto::SecretKey& key, const std::string& user_id,
                         const std::string& normalised_code) {
  return crypto::HexEncode(
      crypto::KeyedHash(key, "recovery:" + user_id + ":" + normalised_code, 32));
}

std::string NormaliseRecoveryCode(std::string_view code) {
  std::string out;
  for (char c : code) {
    if (c == '-' || c == ' ') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

Status CheckRoleSpec(const rbac::Role& role) {
  std::vector<FieldError> errors;
  if (role.description.size() > 500) errors.push_back({"description", "must be at most 500 bytes"});
  if (role.permissions.size() > 200) errors.push_back({"permissions", "at most 200"});
  for (const auto& p : role.permissions) {
    if (!rbac::ValidPermission(p)) errors.push_back({"permissions", "unknown permission " + p});
  }
  if (!errors.empty()) return InvalidArgument("invalid role").WithFields(std::move(errors));
  return Status::Ok();
}

}  // namespace

std::span<const storage::Migration> IdentityMigrations() { return kMigrations; }

Result<int64_t> EndSessionsAndOneTimeTokens(Database& db) {
  if (!db.InTransaction()) return FailedPrecondition("ending sessions needs a transaction");
  SILO_ASSIGN_OR_RETURN(
      auto tables, ColumnStrings(db,
                                 "SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN"
                                 " ('sessions', 'one_time_tokens') ORDER BY name"));
  int64_t ended = 0;
  for (const std::string& table : tables) {  // only these two names, from the query
    SILO_RETURN_IF_ERROR(db.Exec("DELETE FROM " + table));
    if (table == "sessions") ended = db.Changes();
  }
  return ended;
}

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

Result<std::unique_ptr<Identity>> IdentityStores::Open(const std::string& tenant_id) {
  auto db = databases_->Acquire(tenant_id);
  if (!db.ok()) return db.status();
  return std::make_unique<Identity>(
      std::move(db).value(), [this, tenant_id] { return secret_key_fn_(tenant_id); }, timeouts_);
}

Identity::Identity(std::shared_ptr<storage::TenantDatabase> db, crypto::SecretKey secret_fields,
                   Timeouts timeouts)
    : db_(std::move(db)), secret_fields_(std::move(secret_fields)), timeouts_(timeouts) {}

Identity::Identity(std::shared_ptr<storage::TenantDatabase> db,
                   std::function<Result<crypto::SecretKey>()> secret_fields, Timeouts timeouts)
    : db_(std::move(db)), secret_fields_fn_(std::move(secret_fields)), timeouts_(timeouts) {}

Result<const crypto::SecretKey*> Identity::SecretFields() {
  if (!secret_fields_) {
    auto key = secret_fields_fn_();
    if (!key.ok()) return key.status();
    secret_fields_ = std::move(key).value();
  }
  return &*secret_fields_;
}

// --- users ---

Result<std::pair<User, std::string>> Identity::InviteUser(const events::Origin& ctx,
                                                          const std::string& email,
                                                          const std::vector<std::string>& roles) {
  auto normal = NormaliseEmail(email);
  if (!normal.ok()) return normal.status();
  std::pair<User, std::string> out;
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    std::set<std::string> unique(roles.begin(), roles.end());
    for (const auto& r : unique) {
      auto role = LoadRole(db, r);
      if (!role.ok()) return role.status();
      if (!*role) {
        return InvalidArgument("unknown role").WithFields({{"roles", "unknown role " + r}});
      }
    }
    auto existing = LoadUser(db, "email", *normal);
    if (!existing.ok()) return existing.status();
    if (*existing) {
      return AlreadyExists("a user with this e-mail exists")
          .WithFields({{"email", "already used"}});
    }
    User u;
    u.id = RandomBase36(16);
    u.email = *normal;
    u.status = "invited";
    u.roles.assign(unique.begin(), unique.end());
    u.created_at_us = u.updated_at_us = ctx.now_us;
    if (Status i =
            ExecBound(db,
                      "INSERT INTO users (id, email, status, created_at_us, updated_at_us)"
                      " VALUES (?, ?, 'invited', ?, ?)",
                      [&](storage::Statement& st) {
                        st.Bind(1, u.id).Bind(2, u.email).Bind(3, ctx.now_us).Bind(4, ctx.now_us);
                      });
        !i.ok()) {
      return i;
    }
    for (const auto& r : u.roles) {
      if (Status i = ExecBound(db, "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
                               [&](storage::Statement& st) { st.Bind(1, u.id).Bind(2, r); });
          !i.ok()) {
        return i;
      }
    }
    std::string token = crypto::RandomToken(32);
    if (Status i = InsertToken(db, token, "setup", u.id, ctx.now_us + timeouts_.setup_token_us);
        !i.ok()) {
      return i;
    }
    if (Status a = events::AppendAudit(db, ctx, "user.invited", "user", u.id,
                                       {Set("email", json::string(u.email)),
                                        Set("roles", ToArray(u.roles)), Secret("setup_token")});
        !a.ok()) {
      return a;
    }
    out = {u, token};
    return tx->Commit();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<User>> Identity::ListUsers() {
  std::vector<User> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto ids = ColumnStrings(db, "SELECT id FROM users ORDER BY created_at_us, id");
    if (!ids.ok()) return ids.status();
    for (const auto& id : *ids) {
      auto u = LoadUser(db, "id", id);
      if (!u.ok()) return u.status();
      if (*u) out.push_back(std::move((*u)->first));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<User> Identity::GetUser(const std::string& id) {
  std::optional<User> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto u = LoadUser(db, "id", id);
    if (!u.ok()) return u.status();
    if (!*u) return NotFound("no such user");
    out = std::move((*u)->first);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return std::move(*out);
}

Result<std::pair<User, std::string>> Identity::FindLogin(const std::string& email) {
  auto normal = NormaliseEmail(email);
  if (!normal.ok()) return NotFound("no such user");
  std::optional<std::pair<User, std::string>> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto u = LoadUser(db, "email", *normal);
    if (!u.ok()) return u.status();
    if (!*u) return NotFound("no such user");
    out = std::move(**u);
    return Status::Ok();
  });
  if (!s.ok()) return s;
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
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto user_id = TakeToken(db, token, purpose, ctx.now_us);
    if (!user_id.ok()) return user_id.status();
    if (!*user_id) return Unauthenticated(refused);
    // Setup activates an invited user; a reset needs an active one.
    if (Status u = ExecBound(db,
                             setup ? "UPDATE users SET password_hash = ?, status = 'active',"
                                     " updated_at_us = ? WHERE id = ? AND status = 'invited'"
                                   : "UPDATE users SET password_hash = ?, updated_at_us = ?"
                                     " WHERE id = ? AND status = 'active'",
                             [&](storage::Statement& st) {
                               st.Bind(1, password_hash).Bind(2, ctx.now_us).Bind(3, **user_id);
                             });
        !u.ok()) {
      return u;
    }
    if (db.Changes() == 0) return Unauthenticated(refused);
    if (!setup) {
      if (Status d = DeleteSessions(db, **user_id, ""); !d.ok()) return d;
    }
    events::Origin as_user = ctx;
    as_user.actor = {"user", **user_id};
    std::vector<events::Change> changes = {Secret("password")};
    if (setup) {
      changes.insert(changes.begin(), {"status", JsonText(json::string("invited")),
                                       JsonText(json::string("active")), false});
    }
    if (Status a =
            events::AppendAudit(db, as_user, setup ? "user.setup_completed" : "password.reset",
                                "user", **user_id, std::move(changes));
        !a.ok()) {
      return a;
    }
    auto u = LoadUser(db, "id", **user_id);
    if (!u.ok()) return u.status();
    out = std::move((*u)->first);
    return tx->Commit();
  });
  if (!s.ok()) return s;
  return std::move(*out);
}

Status Identity::SetUserRoles(const events::Origin& ctx, const std::string& user_id,
                              const std::vector<std::string>& roles, bool by_owner) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto u = LoadUser(db, "id", user_id);
    if (!u.ok()) return u.status();
    if (!*u) return NotFound("no such user");
    std::set<std::string> wanted(roles.begin(), roles.end());
    for (const auto& r : wanted) {
      auto role = LoadRole(db, r);
      if (!role.ok()) return role.status();
      if (!*role)
        return InvalidArgument("unknown role").WithFields({{"roles", "unknown role " + r}});
    }
    const auto& before = (*u)->first.roles;
    bool had_owner = std::find(before.begin(), before.end(), "owner") != before.end();
    bool has_owner = wanted.count("owner") != 0;
    if (had_owner != has_owner && !by_owner) {
      return PermissionDenied("only an owner grants or removes the owner role");
    }
    if (Status d = ExecBound(db, "DELETE FROM user_roles WHERE user_id = ?",
                             [&](storage::Statement& st) { st.Bind(1, user_id); });
        !d.ok()) {
      return d;
    }
    for (const auto& r : wanted) {
      if (Status i = ExecBound(db, "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
                               [&](storage::Statement& st) { st.Bind(1, user_id).Bind(2, r); });
          !i.ok()) {
        return i;
      }
    }
    if (had_owner && !has_owner) {
      auto owners = ActiveOwners(db);
      if (!owners.ok()) return owners.status();
      if (*owners == 0) return FailedPrecondition("the tenant must keep at least one active owner");
    }
    std::vector<std::string> after(wanted.begin(), wanted.end());
    if (Status a = events::AppendAudit(
            db, ctx, "user.roles_changed", "user", user_id,
            {{"roles", JsonText(ToArray(before)), JsonText(ToArray(after)), false}});
        !a.ok()) {
      return a;
    }
    // A privilege change ends the user's sessions: they sign in again with
    // the new roles (and MFA, if a new role requires it).
    if (Status d = DeleteSessions(db, user_id, ""); !d.ok()) return d;
    return tx->Commit();
  });
}

Status Identity::SetUserDisabled(const events::Origin& ctx, const std::string& user_id,
                                 bool disabled, bool by_owner) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto u = LoadUser(db, "id", user_id);
    if (!u.ok()) return u.status();
    if (!*u) return NotFound("no such user");
    const User& user = (*u)->first;
    bool is_owner = std::find(user.roles.begin(), user.roles.end(), "owner") != user.roles.end();
    if (is_owner && !by_owner) return PermissionDenied("only an owner disables an owner");
    std::string before = user.status;
    std::string after = disabled ? "disabled" : ((*u)->second.empty() ? "invited" : "active");
    if (Status up = ExecBound(db, "UPDATE users SET status = ?, updated_at_us = ? WHERE id = ?",
                              [&](storage::Statement& st) {
                                st.Bind(1, after).Bind(2, ctx.now_us).Bind(3, user_id);
                              });
        !up.ok()) {
      return up;
    }
    if (is_owner && disabled) {
      auto owners = ActiveOwners(db);
      if (!owners.ok()) return owners.status();
      if (*owners == 0) return FailedPrecondition("the tenant must keep at least one active owner");
    }
    if (disabled) {
      if (Status d = DeleteSessions(db, user_id, ""); !d.ok()) return d;
    }
    if (Status a = events::AppendAudit(
            db, ctx, disabled ? "user.disabled" : "user.enabled", "user", user_id,
            {{"status", JsonText(json::string(before)), JsonText(json::string(after)), false}});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

Status Identity::ReplacePasswordHash(const events::Origin& ctx, const std::string& user_id,
                                     const std::string& hash) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status u =
            ExecBound(db, "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash != ''",
                      [&](storage::Statement& st) { st.Bind(1, hash).Bind(2, user_id); });
        !u.ok()) {
      return u;
    }
    if (db.Changes() == 0) return NotFound("no such user with a password");
    if (Status a = events::AppendAudit(db, ctx, "user.password_rehashed", "user", user_id,
                                       {Secret("password_hash")});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

Status Identity::ChangePassword(const events::Origin& ctx, const std::string& user_id,
                                const std::string& hash) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status up = ExecBound(
            db,
            "UPDATE users SET password_hash = ?, updated_at_us = ?"
            " WHERE id = ? AND status = 'active'",
            [&](storage::Statement& st) { st.Bind(1, hash).Bind(2, ctx.now_us).Bind(3, user_id); });
        !up.ok()) {
      return up;
    }
    if (db.Changes() == 0) return NotFound("no such active user");
    if (Status d = DeleteSessions(db, user_id, ""); !d.ok()) return d;
    if (Status a = events::AppendAudit(db, ctx, "user.password_changed", "user", user_id,
                                       {Secret("password")});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

// --- roles ---

Result<std::vector<rbac::Role>> Identity::ListRoles() {
  std::vector<rbac::Role> out(rbac::BuiltInRoles());
  Status s = db_->Read([&](Database& db) -> Status {
    auto names = ColumnStrings(db, "SELECT name FROM roles ORDER BY name");
    if (!names.ok()) return names.status();
    for (const auto& n : *names) {
      auto r = LoadRole(db, n);
      if (!r.ok()) return r.status();
      if (*r) out.push_back(std::move(**r));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<rbac::Role> Identity::GetRole(const std::string& name) {
  std::optional<rbac::Role> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto r = LoadRole(db, name);
    if (!r.ok()) return r.status();
    if (!*r) return NotFound("no such role");
    out = std::move(**r);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return std::move(*out);
}

Result<std::vector<rbac::Role>> Identity::RolesOf(const User& user) {
  std::vector<rbac::Role> out;
  Status s = db_->Read([&](Database& db) -> Status {
    for (const auto& name : user.roles) {
      auto r = LoadRole(db, name);
      if (!r.ok()) return r.status();
      if (*r) out.push_back(std::move(**r));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<rbac::Role> Identity::CreateRole(const events::Origin& ctx, const rbac::Role& role) {
  if (!rbac::ValidRoleName(role.name)) {
    return InvalidArgument("invalid role")
        .WithFields({{"name", "must match [a-z][a-z0-9_]{0,39} and not be a built-in role"}});
  }
  if (Status c = CheckRoleSpec(role); !c.ok()) return c;
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto existing = LoadRole(db, role.name);
    if (!existing.ok()) return existing.status();
    if (*existing) return AlreadyExists("a role with this name exists");
    std::string perms = JsonText(ToArray(role.permissions));
    if (Status i = ExecBound(db,
                             "INSERT INTO roles (name, description, permissions, require_mfa,"
                             " created_at_us, updated_at_us) VALUES (?, ?, ?, ?, ?, ?)",
                             [&](storage::Statement& st) {
                               st.Bind(1, role.name)
                                   .Bind(2, role.description)
                                   .Bind(3, perms)
                                   .Bind(4, int64_t{role.require_mfa})
                                   .Bind(5, ctx.now_us)
                                   .Bind(6, ctx.now_us);
                             });
        !i.ok()) {
      return i;
    }
    if (Status a = events::AppendAudit(
            db, ctx, "role.created", "role", role.name,
            {Set("permissions", ToArray(role.permissions)), Set("require_mfa", role.require_mfa)});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
  if (!s.ok()) return s;
  rbac::Role out = role;
  out.built_in = false;
  return out;
}

Result<rbac::Role> Identity::UpdateRole(const events::Origin& ctx, const rbac::Role& role) {
  if (rbac::FindBuiltIn(role.name) != nullptr) {
    return FailedPrecondition("built-in roles cannot be changed");
  }
  if (Status c = CheckRoleSpec(role); !c.ok()) return c;
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto before = LoadRole(db, role.name);
    if (!before.ok()) return before.status();
    if (!*before) return NotFound("no such role");
    if (Status u = ExecBound(db,
                             "UPDATE roles SET description = ?, permissions = ?, require_mfa = ?,"
                             " updated_at_us = ? WHERE name = ?",
                             [&](storage::Statement& st) {
                               st.Bind(1, role.description)
                                   .Bind(2, JsonText(ToArray(role.permissions)))
                                   .Bind(3, int64_t{role.require_mfa})
                                   .Bind(4, ctx.now_us)
                                   .Bind(5, role.name);
                             });
        !u.ok()) {
      return u;
    }
    if (Status a =
            events::AppendAudit(db, ctx, "role.updated", "role", role.name,
                                {{"permissions", JsonText(ToArray((*before)->permissions)),
                                  JsonText(ToArray(role.permissions)), false},
                                 {"require_mfa", JsonText(json::value((*before)->require_mfa)),
                                  JsonText(json::value(role.require_mfa)), false}});
        !a.ok()) {
      return a;
    }
    // Holders sign in again under the new definition.
    if (Status d = ExecBound(db,
                             "DELETE FROM sessions WHERE user_id IN"
                             " (SELECT user_id FROM user_roles WHERE role = ?)",
                             [&](storage::Statement& st) { st.Bind(1, role.name); });
        !d.ok()) {
      return d;
    }
    return tx->Commit();
  });
  if (!s.ok()) return s;
  return role;
}

Status Identity::DeleteRole(const events::Origin& ctx, const std::string& name) {
  if (rbac::FindBuiltIn(name) != nullptr)
    return FailedPrecondition("built-in roles cannot be deleted");
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto held = db.Prepare("SELECT count(*) FROM user_roles WHERE role = ?");
    if (!held.ok()) return held.status();
    held->Bind(1, name);
    auto row = held->Step();
    if (!row.ok()) return row.status();
    if (held->ColumnInt(0) > 0) return FailedPrecondition("users still hold this role");
    held->Reset();
    if (Status d = ExecBound(db, "DELETE FROM roles WHERE name = ?",
                             [&](storage::Statement& st) { st.Bind(1, name); });
        !d.ok()) {
      return d;
    }
    if (db.Changes() == 0) return NotFound("no such role");
    if (Status a = events::AppendAudit(db, ctx, "role.deleted", "role", name, {}); !a.ok())
      return a;
    return tx->Commit();
  });
}

// --- sessions ---

Result<IssuedSession> Identity::CreateSession(const events::Origin& ctx, const std::string& user_id,
                                              bool mfa_passed, const std::string& user_agent) {
  IssuedSession out;
  out.token = crypto::RandomToken(32);
  out.csrf_token = crypto::RandomToken(32);
  Session& s = out.session;
  s.id = RandomBase36(16);
  s.user_id = user_id;
  s.mfa_passed = mfa_passed;
  s.created_at_us = s.last_seen_us = ctx.now_us;
  s.expires_at_us = ctx.now_us + timeouts_.session_absolute_us;
  s.client = ctx.client;
  s.user_agent = user_agent.substr(0, kMaxUserAgent);
  Status st = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status i = ExecBound(db,
                             "INSERT INTO sessions (id, hash, csrf_hash, user_id, mfa_passed,"
                             " created_at_us, last_seen_us, expires_at_us, client, user_agent)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             [&](storage::Statement& q) {
                               q.Bind(1, s.id)
                                   .Bind(2, crypto::Sha256Hex(out.token))
                                   .Bind(3, crypto::Sha256Hex(out.csrf_token))
                                   .Bind(4, user_id)
                                   .Bind(5, int64_t{mfa_passed})
                                   .Bind(6, s.created_at_us)
                                   .Bind(7, s.last_seen_us)
                                   .Bind(8, s.expires_at_us)
                                   .Bind(9, s.client)
                                   .Bind(10, s.user_agent);
                             });
        !i.ok()) {
      return i;
    }
    // Expired sessions of this user are swept as new ones are made.
    if (Status d =
            ExecBound(db, "DELETE FROM sessions WHERE user_id = ? AND expires_at_us <= ?",
                      [&](storage::Statement& q) { q.Bind(1, user_id).Bind(2, ctx.now_us); });
        !d.ok()) {
      return d;
    }
    if (Status a =
            events::AppendAudit(db, ctx, "session.created", "session", s.id,
                                {Set("user", json::string(user_id)), Set("mfa", mfa_passed)});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
  if (!st.ok()) return st;
  return out;
}

Result<SessionAuth> Identity::AuthenticateSession(const std::string& token, int64_t now_us) {
  auto refused = [] { return Unauthenticated("invalid or expired session"); };
  if (token.size() != 43) return refused();
  std::optional<SessionAuth> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto st = db.Prepare(
        "SELECT id, user_id, mfa_passed, created_at_us, last_seen_us, expires_at_us, client,"
        " user_agent, csrf_hash FROM sessions WHERE hash = ?");
    if (!st.ok()) return st.status();
    st->Bind(1, crypto::Sha256Hex(token));
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return refused();
    SessionAuth a;
    a.session = {st->ColumnText(0), st->ColumnText(1), st->ColumnInt(2) != 0, st->ColumnInt(3),
                 st->ColumnInt(4),  st->ColumnInt(5),  st->ColumnText(6),     st->ColumnText(7)};
    a.csrf_hash = st->ColumnText(8);
    st->Reset();
    if (a.session.expires_at_us <= now_us ||
        a.session.last_seen_us + timeouts_.session_idle_us <= now_us) {
      return refused();
    }
    auto u = LoadUser(db, "id", a.session.user_id);
    if (!u.ok()) return u.status();
    if (!*u || (*u)->first.status != "active") return refused();
    a.user = std::move((*u)->first);
    out = std::move(a);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  if (out->session.last_seen_us + kIdleRefreshUs <= now_us) {
    Status w = db_->Write([&](Database& db) {
      return ExecBound(db, "UPDATE sessions SET last_seen_us = ? WHERE id = ?",
                       [&](storage::Statement& q) { q.Bind(1, now_us).Bind(2, out->session.id); });
    });
    if (!w.ok()) return w;
    out->session.last_seen_us = now_us;
  }
  return std::move(*out);
}

Result<std::vector<Session>> Identity::ListSessions(const std::string& user_id) {
  std::vector<Session> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto st = db.Prepare(
        "SELECT id, user_id, mfa_passed, created_at_us, last_seen_us, expires_at_us, client,"
        " user_agent FROM sessions WHERE user_id = ? ORDER BY created_at_us, id");
    if (!st.ok()) return st.status();
    st->Bind(1, user_id);
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::Ok();
      out.push_back({st->ColumnText(0), st->ColumnText(1), st->ColumnInt(2) != 0, st->ColumnInt(3),
                     st->ColumnInt(4), st->ColumnInt(5), st->ColumnText(6), st->ColumnText(7)});
    }
  });
  if (!s.ok()) return s;
  return out;
}

Status Identity::RevokeSession(const events::Origin& ctx, const std::string& user_id,
                               const std::string& session_id) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status d =
            ExecBound(db, "DELETE FROM sessions WHERE id = ? AND user_id = ?",
                      [&](storage::Statement& q) { q.Bind(1, session_id).Bind(2, user_id); });
        !d.ok()) {
      return d;
    }
    if (db.Changes() == 0) return NotFound("no such session");
    if (Status a = events::AppendAudit(db, ctx, "session.revoked", "session", session_id,
                                       {Set("user", json::string(user_id))});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

Status Identity::RevokeSessions(const events::Origin& ctx, const std::string& user_id,
                                const std::string& keep) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status d = DeleteSessions(db, user_id, keep); !d.ok()) return d;
    if (Status a = events::AppendAudit(db, ctx, "session.revoked_all", "user", user_id,
                                       {Set("kept", json::string(keep))});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

// --- second factor ---

Result<std::string> Identity::CreateMfaChallenge(const std::string& user_id, int64_t now_us) {
  std::string token = crypto::RandomToken(32);
  Status s = db_->Write([&](Database& db) {
    return InsertToken(db, token, "mfa", user_id, now_us + timeouts_.mfa_challenge_us);
  });
  if (!s.ok()) return s;
  return token;
}

Result<std::string> Identity::AttemptMfaChallenge(const std::string& token, int64_t now_us) {
  std::optional<std::string> user;
  Status s = db_->Write([&](Database& db) -> Status {
    auto st = db.Prepare(
        "UPDATE one_time_tokens SET attempts = attempts + 1 WHERE hash = ? AND purpose = 'mfa'"
        " RETURNING user_id, expires_at_us, attempts");
    if (!st.ok()) return st.status();
    st->Bind(1, crypto::Sha256Hex(token));
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
    std::string id = st->ColumnText(0);
    bool live = st->ColumnInt(1) > now_us && st->ColumnInt(2) <= kMaxMfaAttempts;
    st->Reset();
    if (live) {
      user = id;
      return Status::Ok();
    }
    return ExecBound(db, "DELETE FROM one_time_tokens WHERE hash = ?",
                     [&](storage::Statement& q) { q.Bind(1, crypto::Sha256Hex(token)); });
  });
  if (!s.ok()) return s;
  if (!user) return Unauthenticated("invalid or expired MFA token");
  return *user;
}

Status Identity::EndMfaChallenge(const std::string& token) {
  return db_->Write([&](Database& db) {
    return ExecBound(db, "DELETE FROM one_time_tokens WHERE hash = ? AND purpose = 'mfa'",
                     [&](storage::Statement& q) { q.Bind(1, crypto::Sha256Hex(token)); });
  });
}

Result<std::string> Identity::StartTotp(const events::Origin& ctx, const std::string& user_id) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  const crypto::SecretKey& secret_key = **key;
  std::string secret = NewTotpSecret();
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status u = ExecBound(
            db, "UPDATE users SET totp_pending = ? WHERE id = ? AND status = 'active'",
            [&](storage::Statement& q) {
              q.BindBlob(1, crypto::Seal(secret_key, secret, "totp:" + user_id)).Bind(2, user_id);
            });
        !u.ok()) {
      return u;
    }
    if (db.Changes() == 0) return NotFound("no such active user");
    if (Status a = events::AppendAudit(db, ctx, "totp.enrolment_started", "user", user_id,
                                       {Secret("totp_pending")});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
  if (!s.ok()) return s;
  return secret;
}

Result<std::vector<std::string>> Identity::ConfirmTotp(const events::Origin& ctx,
                                                       const std::string& user_id,
                                                       const std::string& code) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  const crypto::SecretKey& secret_key = **key;
  std::vector<std::string> codes;
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto st =
        db.Prepare("SELECT totp_pending FROM users WHERE id = ? AND totp_pending IS NOT NULL");
    if (!st.ok()) return st.status();
    st->Bind(1, user_id);
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return FailedPrecondition("no TOTP enrolment in progress");
    auto secret = crypto::Open(secret_key, st->ColumnBlob(0), "totp:" + user_id);
    st->Reset();
    if (!secret.ok()) return secret.status();
    auto step = VerifyTotp(*secret, code, ctx.now_us / 1'000'000, 0);
    if (!step.ok()) return step.status();
    if (Status u = ExecBound(
            db,
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL,"
            " totp_last_step = ?, updated_at_us = ? WHERE id = ?",
            [&](storage::Statement& q) { q.Bind(1, *step).Bind(2, ctx.now_us).Bind(3, user_id); });
        !u.ok()) {
      return u;
    }
    if (Status d = ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ?",
                             [&](storage::Statement& q) { q.Bind(1, user_id); });
        !d.ok()) {
      return d;
    }
    for (int i = 0; i < kRecoveryCodes; ++i) {
      std::string raw = RandomBase36(16);
      std::string shown = raw.substr(0, 4) + "-" + raw.substr(4, 4) + "-" + raw.substr(8, 4) + "-" +
                          raw.substr(12, 4);
      if (Status ins =
              ExecBound(db, "INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)",
                        [&](storage::Statement& q) {
                          q.Bind(1, user_id).Bind(2, RecoveryHash(secret_key, user_id, raw));
                        });
          !ins.ok()) {
        return ins;
      }
      codes.push_back(shown);
    }
    if (Status a = events::AppendAudit(db, ctx, "totp.enabled", "user", user_id,
                                       {Secret("totp_secret"), Secret("recovery_codes")});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
  if (!s.ok()) return s;
  return codes;
}

Status Identity::CheckTotp(const events::Origin& ctx, const std::string& user_id,
                           const std::string& code) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  const crypto::SecretKey& secret_key = **key;
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto st = db.Prepare(
        "SELECT totp_secret, totp_last_step FROM users WHERE id = ? AND totp_secret IS NOT NULL");
    if (!st.ok()) return st.status();
    st->Bind(1, user_id);
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return Unauthenticated("invalid code");
    auto secret = crypto::Open(secret_key, st->ColumnBlob(0), "totp:" + user_id);
    int64_t last = st->ColumnInt(1);
    st->Reset();
    if (!secret.ok()) return secret.status();
    auto step = VerifyTotp(*secret, code, ctx.now_us / 1'000'000, last);
    if (!step.ok()) {
      // A right code for a step already used is a replay: worth its own entry.
      bool replay = VerifyTotp(*secret, code, ctx.now_us / 1'000'000, 0).ok();
      if (Status a = events::AppendAudit(db, ctx, replay ? "mfa.replayed" : "mfa.failed", "user",
                                         user_id, {});
          !a.ok()) {
        return a;
      }
      if (Status c = tx->Commit(); !c.ok()) return c;
      return step.status();
    }
    if (Status u = ExecBound(db, "UPDATE users SET totp_last_step = ? WHERE id = ?",
                             [&](storage::Statement& q) { q.Bind(1, *step).Bind(2, user_id); });
        !u.ok()) {
      return u;
    }
    return tx->Commit();
  });
}

Status Identity::UseRecoveryCode(const events::Origin& ctx, const std::string& user_id,
                                 const std::string& code) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  const crypto::SecretKey& secret_key = **key;
  std::string raw = NormaliseRecoveryCode(code);
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status d = ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ? AND hash = ?",
                             [&](storage::Statement& q) {
                               q.Bind(1, user_id).Bind(2, RecoveryHash(secret_key, user_id, raw));
                             });
        !d.ok()) {
      return d;
    }
    if (db.Changes() == 0) return Unauthenticated("invalid recovery code");
    if (Status a = events::AppendAudit(db, ctx, "mfa.recovery_code_used", "user", user_id, {});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

Status Identity::DisableTotp(const events::Origin& ctx, const std::string& user_id) {
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status u =
            ExecBound(db,
                      "UPDATE users SET totp_secret = NULL, totp_pending = NULL,"
                      " totp_last_step = 0, updated_at_us = ? WHERE id = ?",
                      [&](storage::Statement& q) { q.Bind(1, ctx.now_us).Bind(2, user_id); });
        !u.ok()) {
      return u;
    }
    if (Status d = ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ?",
                             [&](storage::Statement& q) { q.Bind(1, user_id); });
        !d.ok()) {
      return d;
    }
    if (Status a =
            events::AppendAudit(db, ctx, "totp.disabled", "user", user_id, {Secret("totp_secret")});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

// --- password reset ---

Status Identity::RequestReset(
    const events::Origin& ctx, const std::string& email,
    const std::function<std::pair<std::string, std::string>(const std::string&)>& compose) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  const crypto::SecretKey& secret_key = **key;
  auto normal = NormaliseEmail(email);
  std::string address = normal.ok() ? *normal : "";
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    std::optional<std::pair<User, std::string>> user;
    if (!address.empty()) {
      auto u = LoadUser(db, "email", address);
      if (!u.ok()) return u.status();
      user = std::move(*u);
    }
    bool known = user && user->first.status == "active";
    if (known) {
      const std::string& id = user->first.id;
      // A new request replaces older tokens of the user.
      if (Status d =
              ExecBound(db, "DELETE FROM one_time_tokens WHERE user_id = ? AND purpose = 'reset'",
                        [&](storage::Statement& q) { q.Bind(1, id); });
          !d.ok()) {
        return d;
      }
      std::string token = crypto::RandomToken(32);
      if (Status i = InsertToken(db, token, "reset", id, ctx.now_us + timeouts_.reset_token_us);
          !i.ok()) {
        return i;
      }
      // Not a structured binding: clang 14 cannot capture one in a lambda.
      const auto mail = compose(token);
      const auto& subject = mail.first;
      const auto& body = mail.second;
      if (Status i = ExecBound(db,
                               "INSERT INTO outbox (recipient, subject, body, created_at_us,"
                               " next_attempt_us) VALUES (?, ?, ?, ?, ?)",
                               [&](storage::Statement& q) {
                                 q.Bind(1, address)
                                     .Bind(2, subject)
                                     .Bind(3, body)
                                     .Bind(4, ctx.now_us)
                                     .Bind(5, ctx.now_us);
                               });
          !i.ok()) {
        return i;
      }
    }
    // The same entry either way; the address is kept as a keyed hash so the
    // log does not become a list of guessed addresses.
    std::string tag = EmailTagUnder(secret_key, address);
    if (Status a = events::AppendAudit(db, ctx, "password.reset_requested", "email", tag, {});
        !a.ok()) {
      return a;
    }
    return tx->Commit();
  });
}

Result<User> Identity::ConfirmReset(const events::Origin& ctx, const std::string& token,
                                    const std::string& password_hash) {
  return SetPasswordWithToken(ctx, token, "reset", password_hash);
}

// --- keyed tags and device cookies ---

Result<std::string> Identity::EmailTag(const std::string& normalised_email) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  return EmailTagUnder(**key, normalised_email);
}

Result<std::string> Identity::IssueDeviceCookie(const std::string& normalised_email) {
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  std::string nonce = crypto::HexEncode(crypto::RandomBytes(16));
  return nonce + "." + DeviceMac(**key, normalised_email, nonce);
}

Result<std::optional<std::string>> Identity::DeviceOf(std::string_view cookie,
                                                      const std::string& normalised_email) {
  size_t dot = cookie.find('.');
  if (dot != 32 || cookie.size() != 32 + 1 + 64) return std::optional<std::string>();
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  std::string nonce(cookie.substr(0, dot));
  if (!crypto::ConstantTimeEquals(cookie.substr(dot + 1),
                                  DeviceMac(**key, normalised_email, nonce))) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(nonce);
}

// --- outbox ---

Result<std::vector<Mail>> Identity::DueMail(int64_t now_us, int limit) {
  std::vector<Mail> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto st = db.Prepare(
        "SELECT id, recipient, subject, body, attempts FROM outbox"
        " WHERE sent_at_us IS NULL AND next_attempt_us <= ? ORDER BY id LIMIT ?");
    if (!st.ok()) return st.status();
    st->Bind(1, now_us).Bind(2, int64_t{limit});
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::Ok();
      out.push_back({st->ColumnInt(0), st->ColumnText(1), st->ColumnText(2), st->ColumnText(3),
                     static_cast<int>(st->ColumnInt(4))});
    }
  });
  if (!s.ok()) return s;
  return out;
}

Status Identity::MarkMailSent(int64_t id, int64_t now_us) {
  return db_->Write([&](Database& db) {
    return ExecBound(db,
                     "UPDATE outbox SET sent_at_us = ?, body = '', attempts = attempts + 1,"
                     " last_error = NULL WHERE id = ?",
                     [&](storage::Statement& q) { q.Bind(1, now_us).Bind(2, id); });
  });
}

Status Identity::MarkMailFailed(int64_t id, const std::string& error, int64_t retry_at_us) {
  return db_->Write([&](Database& db) {
    return ExecBound(
        db,
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
        " next_attempt_us = ? WHERE id = ?",
        [&](storage::Statement& q) { q.Bind(1, error).Bind(2, retry_at_us).Bind(3, id); });
  });
}

Status Identity::Audit(const events::Origin& ctx, const std::string& type,
                       const std::string& subject_kind, const std::string& subject_id,
                       const json::object& details) {
  std::vector<events::Change> changes;
  for (const auto& kv : details) changes.push_back(Set(std::string(kv.key()), kv.value()));
  return db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status a = events::AppendAudit(db, ctx, type, subject_kind, subject_id, changes); !a.ok())
      return a;
    return tx->Commit();
  });
}

}  // namespace silo::auth
