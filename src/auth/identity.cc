// Identity: the schema of the identity tables, the stores, and what every
// section shares (the secret-field key, audited writes). The sections live
// in users.cc, roles.cc, sessions.cc, second_factor.cc, password_reset.cc and
// outbox.cc, all behind identity.h.
#include "auth/identity.h"

#include <boost/json.hpp>

#include "auth/api_tokens.h"
#include "auth/identity_internal.h"

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

}  // namespace

std::span<const storage::Migration> IdentityMigrations() { return kMigrations; }

Result<std::unique_ptr<Identity>> IdentityStores::Open(const std::string& tenant_id) {
  auto db = databases_->Acquire(tenant_id);
  if (!db.ok()) return db.status();
  auto identity = std::make_unique<Identity>(
      std::move(db).value(), [this, tenant_id] { return secret_key_fn_(tenant_id); }, timeouts_);
  if (observer_) {
    identity->observer_ = [this, tenant_id](const AuditNotice& n) { observer_(tenant_id, n); };
  }
  return identity;
}

Identity::Identity(std::shared_ptr<storage::TenantDatabase> db, crypto::SecretKey secret_fields,
                   Timeouts timeouts)
    : db_(std::move(db)), secret_fields_(std::move(secret_fields)), timeouts_(timeouts) {}

Identity::Identity(std::shared_ptr<storage::TenantDatabase> db,
                   std::function<Result<crypto::SecretKey>()> secret_fields, Timeouts timeouts)
    : db_(std::move(db)), secret_fields_fn_(std::move(secret_fields)), timeouts_(timeouts) {}

Result<const crypto::SecretKey*> Identity::SecretFields() {
  if (!secret_fields_) {
    SILO_ASSIGN_OR_RETURN(secret_fields_, secret_fields_fn_());
  }
  return &*secret_fields_;
}

ApiTokens Identity::Tokens() const {
  if (!observer_) return ApiTokens(db_);
  return ApiTokens(db_, [observer = observer_](const events::Origin& origin,
                                               const std::string& type, const std::string& id) {
    observer({origin, type, "token", id});
  });
}

Status Identity::AuditedWrite(const events::Origin& ctx,
                              const std::function<Result<Audited>(Database&)>& change) {
  std::optional<Audited> written;
  SILO_RETURN_IF_ERROR(db_->WriteGrouped([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_ASSIGN_OR_RETURN(Audited entry, change(db));
    SILO_RETURN_IF_ERROR(events::AppendAudit(db, ctx, entry.type, entry.subject_kind,
                                             entry.subject_id, std::move(entry.changes)));
    SILO_RETURN_IF_ERROR(tx.Commit());
    written = std::move(entry);
    return Status::Ok();
  }));
  if (observer_ && written) {
    observer_({ctx, written->type, written->subject_kind, written->subject_id});
  }
  return Status::Ok();
}

Status Identity::Audit(const events::Origin& ctx, const std::string& type,
                       const std::string& subject_kind, const std::string& subject_id,
                       const json::object& details) {
  return AuditedWrite(ctx, [&](Database&) -> Result<Audited> {
    return Audited{type, subject_kind, subject_id, events::DetailChanges(details)};
  });
}

}  // namespace silo::auth
