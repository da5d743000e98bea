// Definitions for identity_internal.h.
#include "auth/identity_internal.h"

#include <boost/json.hpp>

#include "crypto/crypto.h"
#include "rbac/grant_json.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

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

Result<std::vector<std::string>> ColumnStrings(Database& db, std::string_view sql,
                                               const std::string* arg) {
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

Result<std::optional<LoginRecord>> LoadUser(Database& db, std::string_view column,
                                            const std::string& value) {
  auto st = db.Prepare("SELECT " + std::string(kUserColumns) + " FROM users WHERE " +
                       std::string(column) + " = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, value);
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return std::optional<LoginRecord>();
  LoginRecord r;
  r.user.id = st->ColumnText(0);
  r.user.email = st->ColumnText(1);
  r.user.status = st->ColumnText(2);
  r.user.totp_enabled = st->ColumnInt(3) != 0;
  r.user.created_at_us = st->ColumnInt(4);
  r.user.updated_at_us = st->ColumnInt(5);
  r.password_hash = st->ColumnText(6);
  st->Reset();
  SILO_ASSIGN_OR_RETURN(r.user.roles, LoadRoles(db, r.user.id));
  return std::optional<LoginRecord>(std::move(r));
}

Result<std::vector<std::string>> ParsePermissionList(const std::string& json_text,
                                                     std::string_view what) {
  boost::system::error_code ec;
  json::value perms = json::parse(json_text, ec);
  if (ec || !perms.is_array()) return DataLoss(std::string(what) + " with malformed permissions");
  std::vector<std::string> out;
  for (const auto& p : perms.as_array()) {
    if (p.is_string()) out.emplace_back(p.as_string());
  }
  return out;
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
  if (ec || !rbac::ParsePermissionsJson(perms, &r).ok()) {
    return DataLoss("role with malformed permissions");
  }
  r.require_mfa = st->ColumnInt(2) != 0;
  return std::optional<rbac::Role>(std::move(r));
}

Result<int64_t> CountBound(Database& db, std::string_view sql,
                           const std::function<void(storage::Statement&)>& bind) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  bind(*st);
  SILO_RETURN_IF_ERROR(st->Step());
  return st->ColumnInt(0);
}

Result<int64_t> ActiveOwners(Database& db) {
  return CountBound(db,
                    "SELECT count(*) FROM user_roles r JOIN users u ON u.id = r.user_id"
                    " WHERE r.role = ? AND u.status = 'active'",
                    [](storage::Statement& q) { q.Bind(1, rbac::kOwnerRole); });
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

}  // namespace silo::auth
