#include "auth/api_tokens.h"

#include <boost/json.hpp>
#include <functional>

#include "auth/identity_internal.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "rbac/rbac.h"

namespace silo::auth {
namespace {

namespace json = boost::json;
using storage::Database;

const storage::Migration kMigrations[] = {
    {4, "api_tokens",
     "CREATE TABLE api_tokens ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " hash TEXT NOT NULL UNIQUE,"  // SHA-256 of the token (256 random bits)
     " permissions TEXT NOT NULL,"
     " created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL) STRICT"},
    {5, "api_token_owners",
     // Who issued the token: "operator" or "user:<id>" (whose permissions
     // then bound the token's for as long as it lives).
     "ALTER TABLE api_tokens ADD COLUMN owner TEXT NOT NULL DEFAULT 'operator'"},
};

constexpr size_t kMaxName = 100;
constexpr size_t kMaxPermissions = 100;
constexpr int64_t kDayUs = 86400LL * 1'000'000;

// A token change as an event in the event log and an entry in the audit log,
// in one transaction with the change itself. `change` makes the change and
// names the event (type, subject, changes).
Status WriteTokenEvent(storage::TenantDatabase& tenant_db, const events::Origin& ctx,
                       const ApiTokens::Observer& observer,
                       const std::function<Status(Database&, events::Event&)>& change) {
  events::Event e;
  SILO_RETURN_IF_ERROR(tenant_db.Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_RETURN_IF_ERROR(change(db, e));
    e.at_us = ctx.now_us;  // Append moves it past the last event's time
    e.actor = ctx.actor;
    e.request_id = ctx.request_id;
    e.client = ctx.client;
    SILO_RETURN_IF_ERROR(events::Append(db, e));
    SILO_RETURN_IF_ERROR(events::AppendAudit(db, ctx, e.type, e.subject_kind, e.subject_id));
    return tx.Commit();
  }));
  if (observer) observer(ctx, e.type, e.subject_id);
  return Status::Ok();
}

}  // namespace

std::span<const storage::Migration> ApiTokenMigrations() { return kMigrations; }

Result<IssuedToken> ApiTokens::Create(const events::Origin& ctx, const TokenSpec& spec) {
  std::vector<FieldError> errors;
  if (spec.name.empty() || spec.name.size() > kMaxName) {
    errors.push_back({"name", "must be 1 to 100 bytes"});
  }
  if (spec.permissions.empty() || spec.permissions.size() > kMaxPermissions) {
    errors.push_back({"permissions", "must list 1 to 100 permissions"});
  }
  for (const auto& p : spec.permissions) {
    if (!rbac::ValidPermission(p)) errors.push_back({"permissions", "unknown permission " + p});
  }
  if (spec.expires_at_us <= ctx.now_us) errors.push_back({"expires_at", "must be in the future"});
  if (spec.max_days > 0 && spec.expires_at_us - ctx.now_us > int64_t{spec.max_days} * kDayUs) {
    errors.push_back({"expires_at", "must be at most " + std::to_string(spec.max_days) +
                                        " days ahead (SILO_TOKEN_MAX_DAYS)"});
  }
  if (!errors.empty()) return InvalidArgument("invalid token").WithFields(std::move(errors));
  IssuedToken issued{crypto::RandomId(16), std::string(kTokenPrefix) + crypto::RandomToken(32)};
  json::array perms;
  for (const auto& p : spec.permissions) perms.push_back(json::string(p));
  const std::string perms_text = json::serialize(perms);
  int64_t expires_at_us = spec.expires_at_us;  // cut to the access request's end
  SILO_RETURN_IF_ERROR(
      WriteTokenEvent(*db_, ctx, observer_, [&](Database& db, events::Event& e) -> Status {
        SILO_ASSIGN_OR_RETURN(
            int64_t live,
            CountBound(db, "SELECT count(*) FROM api_tokens WHERE owner = ? AND expires_at_us > ?",
                       [&](storage::Statement& q) { q.Bind(1, spec.owner).Bind(2, ctx.now_us); }));
        if (live >= kMaxTokensPerOwner) {
          return FailedPrecondition("at most " + std::to_string(kMaxTokensPerOwner) +
                                    " live API tokens per owner; revoke one first");
        }
        if (spec.owner == "operator") {
          SILO_ASSIGN_OR_RETURN(std::string stored, LoadOperatorAccess(db));
          const std::string setting =
              EffectiveOperatorAccess(stored, spec.platform_permits_operator_access);
          if (setting == "never") {
            return PermissionDenied("the tenant does not allow operator access to its data");
          }
          if (!spec.access_request.empty()) {
            SILO_ASSIGN_OR_RETURN(
                int64_t end, AccessGrantEnd(db, spec.access_request, spec.permissions, ctx.now_us));
            expires_at_us = std::min(expires_at_us, end);
          } else if (setting != "allowed") {
            return PermissionDenied(
                "operator access to tenant data needs the tenant's approval: name an approved"
                " access request");
          }
        }
        auto ins = db.Prepare(
            "INSERT INTO api_tokens (id, name, hash, permissions, created_at_us, expires_at_us,"
            " owner, access_request) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins.ok()) return ins.status();
        ins->Bind(1, issued.id)
            .Bind(2, spec.name)
            .Bind(3, crypto::Sha256Hex(issued.token))
            .Bind(4, perms_text)
            .Bind(5, ctx.now_us)
            .Bind(6, expires_at_us)
            .Bind(7, spec.owner)
            .Bind(8, spec.access_request);
        SILO_RETURN_IF_ERROR(ins->Run());
        if (spec.owner.starts_with("user:")) {
          SILO_RETURN_IF_ERROR(
              NotifyUser(db, ctx, spec.owner.substr(5),
                         "An API token named \"" + spec.name + "\" was created on your account"));
        }
        e.type = "token.created";
        e.subject_kind = "token";
        e.subject_id = issued.id;
        e.changes = {{"name", std::nullopt, json::serialize(json::string(spec.name)), false},
                     {"permissions", std::nullopt, perms_text, false},
                     {"expires_at", std::nullopt,
                      json::serialize(json::string(FormatRfc3339Micros(expires_at_us))), false},
                     {"secret", std::nullopt, std::nullopt, true}};
        if (!spec.access_request.empty()) {
          e.changes.push_back({"access_request", std::nullopt,
                               json::serialize(json::string(spec.access_request)), false});
        }
        return Status::Ok();
      }));
  issued.expires_at_us = expires_at_us;
  return issued;
}

Result<Principal> ApiTokens::Authenticate(std::string_view token, int64_t now_us) {
  auto refused = [] { return Unauthenticated("invalid or expired token"); };
  if (token.size() != kTokenPrefix.size() + 43 ||
      token.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return refused();
  }
  std::optional<Principal> out;
  SILO_RETURN_IF_ERROR(db_->ReadShort([&](Database& db) -> Status {
    auto stmt =
        db.Prepare("SELECT id, permissions, expires_at_us, owner FROM api_tokens WHERE hash = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, crypto::Sha256Hex(token));
    SILO_ASSIGN_OR_RETURN(bool found, stmt->Step());
    if (!found || stmt->ColumnInt(2) <= now_us) return refused();
    Principal p;
    p.token_id = stmt->ColumnText(0);
    p.owner = stmt->ColumnText(3);
    p.expires_at_us = stmt->ColumnInt(2);
    SILO_ASSIGN_OR_RETURN(p.permissions, ParsePermissionList(stmt->ColumnText(1), "token"));
    out = std::move(p);
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<std::vector<TokenInfo>> ApiTokens::List(std::optional<std::string> owner) {
  std::vector<TokenInfo> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    auto stmt = db.Prepare(
        "SELECT id, name, permissions, created_at_us, expires_at_us, owner FROM api_tokens"
        " WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at_us, id");
    if (!stmt.ok()) return stmt.status();
    owner ? (void)stmt->Bind(1, *owner) : (void)stmt->BindNull(1);
    while (true) {
      SILO_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) return Status::Ok();
      TokenInfo t;
      t.id = stmt->ColumnText(0);
      t.name = stmt->ColumnText(1);
      SILO_ASSIGN_OR_RETURN(t.permissions, ParsePermissionList(stmt->ColumnText(2), "token"));
      t.created_at_us = stmt->ColumnInt(3);
      t.expires_at_us = stmt->ColumnInt(4);
      t.owner = stmt->ColumnText(5);
      out.push_back(std::move(t));
    }
  }));
  return out;
}

Status ApiTokens::Revoke(const events::Origin& ctx, const std::string& id,
                         std::optional<std::string> owner) {
  return WriteTokenEvent(*db_, ctx, observer_, [&](Database& db, events::Event& e) -> Status {
    auto del = db.Prepare("DELETE FROM api_tokens WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)");
    if (!del.ok()) return del.status();
    del->Bind(1, id);
    owner ? (void)del->Bind(2, *owner) : (void)del->BindNull(2);
    SILO_RETURN_IF_ERROR(del->Run());
    if (db.Changes() == 0) return NotFound("no such token");
    e.type = "token.revoked";
    e.subject_kind = "token";
    e.subject_id = id;
    return Status::Ok();
  });
}

}  // namespace silo::auth
