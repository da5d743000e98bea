// Identity, the outbox: mail waiting to be sent by app's mailer (behind
// identity.h).
#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "base/time_util.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

Status QueueMail(Database& db, const std::string& recipient, const std::string& subject,
                 const std::string& body, int64_t now_us) {
  return ExecBound(
      db,
      "INSERT INTO outbox (recipient, subject, body, created_at_us,"
      " next_attempt_us) VALUES (?, ?, ?, ?, ?)",
      [&](storage::Statement& q) {
        q.Bind(1, recipient).Bind(2, subject).Bind(3, body).Bind(4, now_us).Bind(5, now_us);
      });
}

Status NotifyUser(Database& db, const events::Origin& ctx, const std::string& user_id,
                  std::string_view what) {
  SILO_ASSIGN_OR_RETURN(auto user, LoadUser(db, "id", user_id));
  if (!user) return Status::Ok();
  const std::string& address = user->user.email;
  std::string when = FormatRfc3339Micros(ctx.now_us);
  when = when.substr(0, 19) + "Z";  // to the second
  std::string body = std::string(what) + ".\r\n\r\nAccount: " + address + "\r\nWhen: " + when +
                     " (UTC)\r\nFrom address: " + (ctx.client.empty() ? "unknown" : ctx.client) +
                     "\r\n\r\nIf this was not you, reset your password now and tell your"
                     " administrator.\r\n";
  return QueueMail(db, address, "Security notice: " + std::string(what), body, ctx.now_us);
}

Result<std::vector<Mail>> Identity::DueMail(int64_t now_us, int limit) {
  std::vector<Mail> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    auto st = db.Prepare(
        "SELECT id, recipient, subject, body, attempts FROM outbox"
        " WHERE sent_at_us IS NULL AND next_attempt_us <= ? ORDER BY id LIMIT ?");
    if (!st.ok()) return st.status();
    st->Bind(1, now_us).Bind(2, int64_t{limit});
    while (true) {
      SILO_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) return Status::Ok();
      out.push_back({st->ColumnInt(0), st->ColumnText(1), st->ColumnText(2), st->ColumnText(3),
                     static_cast<int>(st->ColumnInt(4))});
    }
  }));
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

}  // namespace silo::auth
