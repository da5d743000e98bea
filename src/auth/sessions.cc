// Identity, sessions: cookie sessions with idle and absolute timeouts
// (behind identity.h).
#include <algorithm>
#include <boost/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

// A session's idle clock is written at most this often (one write a minute,
// not one a request).
constexpr int64_t kIdleRefreshUs = 60'000'000;
constexpr size_t kMaxUserAgent = 200;

const storage::Migration kMigrations[] = {
    {11, "session_proof",
     "ALTER TABLE sessions ADD COLUMN proved_at_us INTEGER NOT NULL DEFAULT 0"},
    // "<kind>:<id>" of the actor that invited the user; "" before version 12.
    {12, "invited_by", "ALTER TABLE users ADD COLUMN invited_by TEXT NOT NULL DEFAULT ''"},
};

}  // namespace

std::span<const storage::Migration> AccountMigrations() { return kMigrations; }

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
  // An approval the tenant revoked after the backup was taken must not come
  // back with the copy: every operator access ends, with its tokens.
  SILO_RETURN_IF_ERROR(EndOperatorAccess(db, NowMicros()).status());
  return ended;
}

Result<std::pair<int64_t, int64_t>> ResealSecretFields(Database& db, const crypto::SecretKey& from,
                                                       const crypto::SecretKey& to) {
  if (!db.InTransaction()) return FailedPrecondition("re-sealing secrets needs a transaction");
  SILO_ASSIGN_OR_RETURN(
      auto identity,
      ColumnStrings(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'users'"));
  if (identity.empty()) return std::pair<int64_t, int64_t>{0, 0};  // a copy from before identity
  struct Row {
    std::string id;
    std::optional<std::string> secret, pending;
  };
  std::vector<Row> rows;
  {
    SILO_ASSIGN_OR_RETURN(auto q, db.Prepare("SELECT id, totp_secret, totp_pending FROM users"
                                             " WHERE totp_secret IS NOT NULL"
                                             " OR totp_pending IS NOT NULL"));
    for (;;) {
      SILO_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      Row r{q.ColumnText(0), std::nullopt, std::nullopt};
      if (!q.ColumnIsNull(1)) r.secret = q.ColumnBlob(1);
      if (!q.ColumnIsNull(2)) r.pending = q.ColumnBlob(2);
      rows.push_back(std::move(r));
    }
  }
  int64_t resealed = 0;
  auto reseal = [&](const std::string& user_id, std::optional<std::string>& sealed) -> Status {
    if (!sealed) return Status::Ok();
    auto secret = crypto::Open(from, *sealed, "totp:" + user_id);
    if (!secret.ok()) return DataLoss("a TOTP secret of the copy does not open under its key");
    sealed = crypto::Seal(to, *secret, "totp:" + user_id);
    crypto::WipeString(*secret);
    ++resealed;
    return Status::Ok();
  };
  for (Row& r : rows) {
    SILO_RETURN_IF_ERROR(reseal(r.id, r.secret));
    SILO_RETURN_IF_ERROR(reseal(r.id, r.pending));
    SILO_ASSIGN_OR_RETURN(
        auto update, db.Prepare("UPDATE users SET totp_secret = ?, totp_pending = ? WHERE id = ?"));
    if (r.secret) {
      update.BindBlob(1, *r.secret);
    } else {
      update.BindNull(1);
    }
    if (r.pending) {
      update.BindBlob(2, *r.pending);
    } else {
      update.BindNull(2);
    }
    update.Bind(3, r.id);
    SILO_RETURN_IF_ERROR(update.Run());
  }
  SILO_RETURN_IF_ERROR(db.Exec("DELETE FROM recovery_codes"));
  return std::pair<int64_t, int64_t>{resealed, db.Changes()};
}

std::string CsrfTokenOf(std::string_view session_token) {
  return crypto::Sha256Hex("silo csrf token v1\n" + std::string(session_token));
}

Result<IssuedSession> Identity::CreateSession(const events::Origin& ctx, const std::string& user_id,
                                              MfaPassed mfa, const std::string& user_agent) {
  IssuedSession out;
  out.token = crypto::RandomToken(32);
  out.csrf_token = CsrfTokenOf(out.token);
  Session& s = out.session;
  s.id = crypto::RandomId(16);
  s.user_id = user_id;
  s.mfa_passed = mfa == MfaPassed::kYes;
  // Every session is opened by a proof (a password, a second factor, a
  // setup or a password change).
  s.created_at_us = s.last_seen_us = s.proved_at_us = ctx.now_us;
  s.expires_at_us = ctx.now_us + timeouts_.session_absolute_us;
  s.client = ctx.client;
  s.user_agent = user_agent.substr(0, kMaxUserAgent);
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db,
                  "INSERT INTO sessions (id, hash, csrf_hash, user_id, mfa_passed,"
                  " created_at_us, last_seen_us, expires_at_us, client, user_agent,"
                  " proved_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  [&](storage::Statement& q) {
                    q.Bind(1, s.id)
                        .Bind(2, crypto::Sha256Hex(out.token))
                        .Bind(3, crypto::Sha256Hex(out.csrf_token))
                        .Bind(4, user_id)
                        .Bind(5, int64_t{s.mfa_passed})
                        .Bind(6, s.created_at_us)
                        .Bind(7, s.last_seen_us)
                        .Bind(8, s.expires_at_us)
                        .Bind(9, s.client)
                        .Bind(10, s.user_agent)
                        .Bind(11, s.proved_at_us);
                  }));
    // Expired sessions of this user are swept as new ones are made.
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "DELETE FROM sessions WHERE user_id = ? AND expires_at_us <= ?",
                  [&](storage::Statement& q) { q.Bind(1, user_id).Bind(2, ctx.now_us); }));
    return Audited{"session.created",
                   "session",
                   s.id,
                   {Set("user", json::string(user_id)), Set("mfa", s.mfa_passed)}};
  }));
  return out;
}

Result<SessionAuth> Identity::AuthenticateSession(const std::string& token, int64_t now_us,
                                                  IdleClock idle) {
  auto refused = [] { return Unauthenticated("invalid or expired session"); };
  if (token.size() != 43) return refused();
  std::optional<SessionAuth> out;
  SILO_RETURN_IF_ERROR(db_->ReadShort([&](Database& db) -> Status {
    auto st = db.Prepare(
        "SELECT id, user_id, mfa_passed, created_at_us, last_seen_us, expires_at_us, client,"
        " user_agent, csrf_hash, proved_at_us FROM sessions WHERE hash = ?");
    if (!st.ok()) return st.status();
    st->Bind(1, crypto::Sha256Hex(token));
    SILO_ASSIGN_OR_RETURN(bool found, st->Step());
    if (!found) return refused();
    SessionAuth a;
    a.session = {st->ColumnText(0), st->ColumnText(1), st->ColumnInt(2) != 0, st->ColumnInt(3),
                 st->ColumnInt(4),  st->ColumnInt(5),  st->ColumnText(6),     st->ColumnText(7)};
    a.csrf_hash = st->ColumnText(8);
    a.session.proved_at_us = st->ColumnInt(9);
    st->Reset();
    if (a.session.expires_at_us <= now_us ||
        a.session.last_seen_us + timeouts_.session_idle_us <= now_us) {
      return refused();
    }
    SILO_ASSIGN_OR_RETURN(auto u, LoadUser(db, "id", a.session.user_id));
    if (!u || u->user.status != "active") return refused();
    a.user = std::move(u->user);
    out = std::move(a);
    return Status::Ok();
  }));
  if (idle == IdleClock::kRefresh && out->session.last_seen_us + kIdleRefreshUs <= now_us) {
    Status touched = db_->Write([&](Database& db) {
      return ExecBound(db, "UPDATE sessions SET last_seen_us = ? WHERE id = ?",
                       [&](storage::Statement& q) { q.Bind(1, now_us).Bind(2, out->session.id); });
    });
    // A tenant that takes no write this moment (a re-key's pause) still
    // serves reads: the idle clock then stays where it was, and the next
    // request moves it.
    if (touched.ok()) {
      out->session.last_seen_us = now_us;
    } else if (touched.code() != StatusCode::kUnavailable) {
      return touched;
    }
  }
  out->ends_at_us =
      std::min(out->session.expires_at_us, out->session.last_seen_us + timeouts_.session_idle_us);
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
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "DELETE FROM sessions WHERE id = ? AND user_id = ?",
                  [&](storage::Statement& q) { q.Bind(1, session_id).Bind(2, user_id); }));
    if (db.Changes() == 0) return NotFound("no such session");
    return Audited{"session.revoked", "session", session_id, {Set("user", json::string(user_id))}};
  });
}

Status Identity::RecordStepUp(const events::Origin& ctx, const std::string& user_id,
                              const std::string& session_id) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(
        ExecBound(db, "UPDATE sessions SET proved_at_us = ? WHERE id = ? AND user_id = ?",
                  [&](storage::Statement& q) {
                    q.Bind(1, ctx.now_us).Bind(2, session_id).Bind(3, user_id);
                  }));
    if (db.Changes() == 0) return Unauthenticated("invalid or expired session");
    return Audited{
        "session.stepped_up", "session", session_id, {Set("user", json::string(user_id))}};
  });
}

Status Identity::RevokeSessions(const events::Origin& ctx, const std::string& user_id,
                                const std::string& keep) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_RETURN_IF_ERROR(DeleteSessions(db, user_id, keep));
    return Audited{"session.revoked_all", "user", user_id, {Set("kept", json::string(keep))}};
  });
}

}  // namespace silo::auth
