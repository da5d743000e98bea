// Identity, the second factor: MFA challenges, TOTP enrolment and checks,
// recovery codes (behind identity.h).
#include <boost/json.hpp>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "auth/totp.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

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

}  // namespace

Result<std::string> Identity::CreateMfaChallenge(const std::string& user_id, int64_t now_us) {
  std::string token = crypto::RandomToken(32);
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) {
    return InsertToken(db, token, "mfa", user_id, now_us + timeouts_.mfa_challenge_us);
  }));
  return token;
}

Result<std::string> Identity::AttemptMfaChallenge(const std::string& token, int64_t now_us) {
  std::optional<std::string> user;
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    auto st = db.Prepare(
        "UPDATE one_time_tokens SET attempts = attempts + 1 WHERE hash = ? AND purpose = 'mfa'"
        " RETURNING user_id, expires_at_us, attempts");
    if (!st.ok()) return st.status();
    st->Bind(1, crypto::Sha256Hex(token));
    SILO_ASSIGN_OR_RETURN(bool found, st->Step());
    if (!found) return Status::Ok();
    std::string id = st->ColumnText(0);
    bool live = st->ColumnInt(1) > now_us && st->ColumnInt(2) <= kMaxMfaAttempts;
    st->Reset();
    if (live) {
      user = id;
      return Status::Ok();
    }
    return ExecBound(db, "DELETE FROM one_time_tokens WHERE hash = ?",
                     [&](storage::Statement& q) { q.Bind(1, crypto::Sha256Hex(token)); });
  }));
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
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  std::string secret = NewTotpSecret();
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "UPDATE users SET totp_pending = ? WHERE id = ? AND status = 'active'",
                  [&](storage::Statement& q) {
                    q.BindBlob(1, crypto::Seal(*key, secret, "totp:" + user_id)).Bind(2, user_id);
                  }));
    if (db.Changes() == 0) return NotFound("no such active user");
    return Audited{"totp.enrolment_started", "user", user_id, {Secret("totp_pending")}};
  }));
  return secret;
}

Result<std::vector<std::string>> Identity::ConfirmTotp(const events::Origin& ctx,
                                                       const std::string& user_id,
                                                       const std::string& code) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  std::vector<std::string> codes;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    auto st =
        db.Prepare("SELECT totp_pending FROM users WHERE id = ? AND totp_pending IS NOT NULL");
    if (!st.ok()) return st.status();
    st->Bind(1, user_id);
    SILO_ASSIGN_OR_RETURN(bool pending, st->Step());
    if (!pending) return FailedPrecondition("no TOTP enrolment in progress");
    auto secret = crypto::Open(*key, st->ColumnBlob(0), "totp:" + user_id);
    st->Reset();
    if (!secret.ok()) return secret.status();
    SILO_ASSIGN_OR_RETURN(int64_t step, VerifyTotp(*secret, code, ctx.now_us / 1'000'000, 0));
    SILO_RETURN_IF_ERROR(ExecBound(
        db,
        "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL,"
        " totp_last_step = ?, updated_at_us = ? WHERE id = ?",
        [&](storage::Statement& q) { q.Bind(1, step).Bind(2, ctx.now_us).Bind(3, user_id); }));
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ?",
                                   [&](storage::Statement& q) { q.Bind(1, user_id); }));
    for (int i = 0; i < kRecoveryCodes; ++i) {
      std::string raw = crypto::RandomId(16);
      SILO_RETURN_IF_ERROR(ExecBound(db, "INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)",
                                     [&](storage::Statement& q) {
                                       q.Bind(1, user_id).Bind(2, RecoveryHash(*key, user_id, raw));
                                     }));
      codes.push_back(raw.substr(0, 4) + "-" + raw.substr(4, 4) + "-" + raw.substr(8, 4) + "-" +
                      raw.substr(12, 4));
    }
    SILO_RETURN_IF_ERROR(
        NotifyUser(db, ctx, user_id, "Two-factor sign-in (TOTP) was turned on for your account"));
    return Audited{
        "totp.enabled", "user", user_id, {Secret("totp_secret"), Secret("recovery_codes")}};
  }));
  return codes;
}

// Not an AuditedWrite: a wrong code is refused and still leaves its entry.
Status Identity::CheckTotp(const events::Origin& ctx, const std::string& user_id,
                           const std::string& code) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  return db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    auto st = db.Prepare(
        "SELECT totp_secret, totp_last_step FROM users WHERE id = ? AND totp_secret IS NOT NULL");
    if (!st.ok()) return st.status();
    st->Bind(1, user_id);
    SILO_ASSIGN_OR_RETURN(bool enrolled, st->Step());
    if (!enrolled) return Unauthenticated("invalid code");
    auto secret = crypto::Open(*key, st->ColumnBlob(0), "totp:" + user_id);
    int64_t last = st->ColumnInt(1);
    st->Reset();
    if (!secret.ok()) return secret.status();
    auto step = VerifyTotp(*secret, code, ctx.now_us / 1'000'000, last);
    if (!step.ok()) {
      // A right code for a step already used is a replay: worth its own entry.
      bool replay = VerifyTotp(*secret, code, ctx.now_us / 1'000'000, 0).ok();
      const std::string type = replay ? "mfa.replayed" : "mfa.failed";
      SILO_RETURN_IF_ERROR(events::AppendAudit(db, ctx, type, "user", user_id, {}));
      // A replayed code was seen by someone: the user must hear of it.
      if (replay) {
        SILO_RETURN_IF_ERROR(NotifyUser(
            db, ctx, user_id, "A two-factor code already used was presented again and refused"));
      }
      SILO_RETURN_IF_ERROR(tx.Commit());
      if (observer_) observer_({ctx, type, "user", user_id});
      return step.status();
    }
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "UPDATE users SET totp_last_step = ? WHERE id = ?",
                  [&](storage::Statement& q) { q.Bind(1, *step).Bind(2, user_id); }));
    return tx.Commit();
  });
}

Status Identity::UseRecoveryCode(const events::Origin& ctx, const std::string& user_id,
                                 const std::string& code) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  std::string raw = NormaliseRecoveryCode(code);
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ? AND hash = ?",
                                   [&](storage::Statement& q) {
                                     q.Bind(1, user_id).Bind(2, RecoveryHash(*key, user_id, raw));
                                   }));
    if (db.Changes() == 0) return Unauthenticated("invalid recovery code");
    SILO_RETURN_IF_ERROR(
        NotifyUser(db, ctx, user_id, "A recovery code was used to sign in to your account"));
    return Audited{"mfa.recovery_code_used", "user", user_id, {}};
  });
}

Status Identity::DisableTotp(const events::Origin& ctx, const std::string& user_id) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db,
                  "UPDATE users SET totp_secret = NULL, totp_pending = NULL,"
                  " totp_last_step = 0, updated_at_us = ? WHERE id = ?",
                  [&](storage::Statement& q) { q.Bind(1, ctx.now_us).Bind(2, user_id); }));
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM recovery_codes WHERE user_id = ?",
                                   [&](storage::Statement& q) { q.Bind(1, user_id); }));
    SILO_RETURN_IF_ERROR(
        NotifyUser(db, ctx, user_id, "Two-factor sign-in (TOTP) was turned off for your account"));
    return Audited{"totp.disabled", "user", user_id, {Secret("totp_secret")}};
  });
}

}  // namespace silo::auth
