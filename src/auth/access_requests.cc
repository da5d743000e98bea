// Identity, the operator's access requests (the lockbox, issue 22): the
// operator asks for scoped, time-boxed access to a tenant's data; an owner
// or security admin decides with a fresh second factor (the API checks it);
// the tenant can end an approval at any time. Each step is an entry in the
// tenant's audit log, which the tenant reads.
#include <algorithm>
#include <boost/json.hpp>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

const storage::Migration kMigrations[] = {
    {13, "access_requests",
     "CREATE TABLE access_requests ("
     " id TEXT PRIMARY KEY,"
     " scopes TEXT NOT NULL,"  // JSON array of permissions
     " reason TEXT NOT NULL,"
     " duration_us INTEGER NOT NULL,"
     " requested_at_us INTEGER NOT NULL,"
     // pending, approved, denied or revoked ("expired" is computed)
     " state TEXT NOT NULL,"
     " decided_by TEXT NOT NULL DEFAULT '',"
     " decided_at_us INTEGER NOT NULL DEFAULT 0,"
     " expires_at_us INTEGER NOT NULL DEFAULT 0) STRICT"},
    // The request an operator's token was minted under ("" for none).
    {14, "api_token_access_request",
     "ALTER TABLE api_tokens ADD COLUMN access_request TEXT NOT NULL DEFAULT ''"},
};

constexpr size_t kMaxScopes = 20;
constexpr size_t kMaxReason = 500;
constexpr int64_t kMinDurationUs = 60LL * 1'000'000;

constexpr std::string_view kColumns =
    "id, scopes, reason, duration_us, state, requested_at_us, decided_by, decided_at_us,"
    " expires_at_us";

// The stored state as of `now_us`: an approval past its end and a request
// not decided in time read as "expired".
std::string EffectiveState(const std::string& stored, int64_t requested_at_us,
                           int64_t expires_at_us, int64_t now_us) {
  if (stored == "approved" && now_us >= expires_at_us) return "expired";
  if (stored == "pending" && now_us >= requested_at_us + kAccessDecisionUs) return "expired";
  return stored;
}

Result<AccessRequest> RowOf(storage::Statement& st, int64_t now_us) {
  AccessRequest r;
  r.id = st.ColumnText(0);
  SILO_ASSIGN_OR_RETURN(r.scopes, ParsePermissionList(st.ColumnText(1), "access request"));
  r.reason = st.ColumnText(2);
  r.duration_us = st.ColumnInt(3);
  r.requested_at_us = st.ColumnInt(5);
  r.decided_by = st.ColumnText(6);
  r.decided_at_us = st.ColumnInt(7);
  r.expires_at_us = st.ColumnInt(8);
  r.state = EffectiveState(st.ColumnText(4), r.requested_at_us, r.expires_at_us, now_us);
  return r;
}

Result<std::optional<AccessRequest>> LoadRequest(Database& db, const std::string& id,
                                                 int64_t now_us) {
  auto st = db.Prepare("SELECT " + std::string(kColumns) + " FROM access_requests WHERE id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return std::optional<AccessRequest>();
  SILO_ASSIGN_OR_RETURN(AccessRequest r, RowOf(*st, now_us));
  return std::optional<AccessRequest>(std::move(r));
}

Result<AccessRequest> MustLoad(Database& db, const std::string& id, int64_t now_us) {
  SILO_ASSIGN_OR_RETURN(auto r, LoadRequest(db, id, now_us));
  if (!r) return NotFound("no such access request");
  return std::move(*r);
}

// Whether an approved, live request grants every one of `wanted`; the
// reason it does not, or "".
std::string Refusal(const AccessRequest& r, const std::vector<std::string>& wanted) {
  if (r.state != "approved") return "the access request is " + r.state + ", not approved";
  if (!rbac::IsSubset(wanted, r.scopes)) return "outside the access request's scope";
  return "";
}

bool PrintableText(std::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// The e-mail addresses of the active users who may decide access requests.
Result<std::vector<std::string>> Approvers(Database& db) {
  SILO_ASSIGN_OR_RETURN(auto ids,
                        ColumnStrings(db,
                                      "SELECT id FROM users WHERE status = 'active' ORDER BY"
                                      " email"));
  std::vector<std::string> out;
  for (const std::string& id : ids) {
    SILO_ASSIGN_OR_RETURN(auto user, LoadUser(db, "id", id));
    if (!user) continue;
    std::vector<rbac::Role> roles;
    for (const std::string& name : user->user.roles) {
      SILO_ASSIGN_OR_RETURN(auto role, LoadRole(db, name));
      if (role) roles.push_back(std::move(*role));
    }
    if (rbac::Grants(rbac::PermissionsOf(roles), kAccessApprover)) {
      out.push_back(user->user.email);
    }
  }
  return out;
}

std::string Minutes(int64_t us) { return std::to_string(us / 60'000'000) + " minutes"; }

}  // namespace

std::span<const storage::Migration> AccessRequestMigrations() { return kMigrations; }

Result<int64_t> AccessGrantEnd(Database& db, const std::string& id,
                               const std::vector<std::string>& wanted, int64_t now_us) {
  SILO_ASSIGN_OR_RETURN(AccessRequest r, MustLoad(db, id, now_us));
  if (std::string why = Refusal(r, wanted); !why.empty()) return PermissionDenied(why);
  return r.expires_at_us;
}

Result<int64_t> EndOperatorAccess(Database& db, int64_t now_us) {
  if (!db.InTransaction()) return FailedPrecondition("ending access needs a transaction");
  SILO_ASSIGN_OR_RETURN(int64_t tables,
                        CountBound(db,
                                   "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND"
                                   " name = 'access_requests'",
                                   [](storage::Statement&) {}));
  if (tables == 0) return int64_t{0};
  SILO_RETURN_IF_ERROR(db.Exec("DELETE FROM api_tokens WHERE access_request != ''"));
  SILO_RETURN_IF_ERROR(ExecBound(db,
                                 "UPDATE access_requests SET state = 'revoked', decided_by = '',"
                                 " decided_at_us = ? WHERE state IN ('pending', 'approved')",
                                 [&](storage::Statement& st) { st.Bind(1, now_us); }));
  return static_cast<int64_t>(db.Changes());
}

Result<AccessRequest> Identity::RequestAccess(const events::Origin& ctx,
                                              const AccessRequestSpec& spec) {
  std::vector<FieldError> errors;
  if (spec.scopes.empty() || spec.scopes.size() > kMaxScopes) {
    errors.push_back({"scopes", "must list 1 to 20 permissions"});
  }
  for (const auto& p : spec.scopes) {
    if (!rbac::ValidPermission(p)) errors.push_back({"scopes", "unknown permission " + p});
  }
  if (spec.reason.empty() || spec.reason.size() > kMaxReason || !PrintableText(spec.reason)) {
    errors.push_back({"reason", "must be 1 to 500 bytes of text without control characters"});
  }
  if (spec.duration_us < kMinDurationUs || spec.duration_us > kMaxAccessUs) {
    errors.push_back({"duration_s", "must be 1 minute to 24 hours"});
  }
  if (!errors.empty())
    return InvalidArgument("invalid access request").WithFields(std::move(errors));
  AccessRequest out;
  out.id = crypto::RandomId(16);
  out.scopes = spec.scopes;
  std::sort(out.scopes.begin(), out.scopes.end());
  out.scopes.erase(std::unique(out.scopes.begin(), out.scopes.end()), out.scopes.end());
  out.reason = spec.reason;
  out.duration_us = spec.duration_us;
  out.state = "pending";
  out.requested_at_us = ctx.now_us;
  const std::string scopes_text = JsonText(ToArray(out.scopes));
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(std::string setting, LoadOperatorAccess(db));
    if (setting == "never") {
      return PermissionDenied("the tenant does not allow operator access to its data");
    }
    SILO_ASSIGN_OR_RETURN(
        int64_t pending,
        CountBound(db,
                   "SELECT count(*) FROM access_requests WHERE state = 'pending' AND"
                   " requested_at_us > ?",
                   [&](storage::Statement& st) { st.Bind(1, ctx.now_us - kAccessDecisionUs); }));
    if (pending >= kMaxPendingAccessRequests) {
      return FailedPrecondition("at most " + std::to_string(kMaxPendingAccessRequests) +
                                " access requests may wait for a decision");
    }
    SILO_RETURN_IF_ERROR(ExecBound(
        db,
        "INSERT INTO access_requests (id, scopes, reason, duration_us, requested_at_us, state)"
        " VALUES (?, ?, ?, ?, ?, 'pending')",
        [&](storage::Statement& st) {
          st.Bind(1, out.id)
              .Bind(2, scopes_text)
              .Bind(3, out.reason)
              .Bind(4, out.duration_us)
              .Bind(5, ctx.now_us);
        }));
    SILO_ASSIGN_OR_RETURN(auto approvers, Approvers(db));
    std::string scopes_line;
    for (const auto& p : out.scopes) scopes_line += (scopes_line.empty() ? "" : ", ") + p;
    const std::string body =
        "The platform operator asks for access to your tenant's data.\n\n"
        "Request: " +
        out.id + "\nPermissions: " + scopes_line + "\nFor: " + Minutes(out.duration_us) +
        " once approved\nReason given: " + out.reason +
        "\nAsked at: " + FormatRfc3339Micros(ctx.now_us) +
        "\n\nNothing is open until an owner or security admin approves it with a second "
        "factor (console, or POST /api/access-requests/" +
        out.id + "/approve). Deny it the same way; an approval can be revoked at any time.\n";
    for (const auto& to : approvers) {
      SILO_RETURN_IF_ERROR(
          QueueMail(db, to, "Operator access request for your data", body, ctx.now_us));
    }
    return Audited{"access.requested",
                   "access_request",
                   out.id,
                   {Set("scopes", ToArray(out.scopes)), Set("reason", json::string(out.reason)),
                    Set("duration_s", out.duration_us / 1'000'000),
                    Set("approvers_notified", static_cast<int64_t>(approvers.size()))}};
  }));
  return out;
}

Result<std::vector<AccessRequest>> Identity::ListAccessRequests() {
  std::vector<AccessRequest> out;
  const int64_t now = NowMicros();
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    auto st = db.Prepare("SELECT " + std::string(kColumns) +
                         " FROM access_requests ORDER BY requested_at_us DESC, id LIMIT 200");
    if (!st.ok()) return st.status();
    while (true) {
      SILO_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) return Status::Ok();
      SILO_ASSIGN_OR_RETURN(AccessRequest r, RowOf(*st, now));
      out.push_back(std::move(r));
    }
  }));
  return out;
}

Result<AccessRequest> Identity::GetAccessRequest(const std::string& id) {
  std::optional<AccessRequest> out;
  const int64_t now = NowMicros();
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(out, MustLoad(db, id, now));
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<AccessRequest> Identity::DecideAccessRequest(const events::Origin& ctx,
                                                    const std::string& id,
                                                    AccessDecision decision) {
  const bool approve = decision == AccessDecision::kApprove;
  std::optional<AccessRequest> out;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(AccessRequest r, MustLoad(db, id, ctx.now_us));
    if (r.state != "pending") {
      return FailedPrecondition("the access request is " + r.state + "; only a pending one can" +
                                " be decided");
    }
    SILO_ASSIGN_OR_RETURN(std::string setting, LoadOperatorAccess(db));
    if (approve && setting == "never") {
      return FailedPrecondition(
          "the tenant does not allow operator access (operator_access is"
          " never)");
    }
    r.state = approve ? "approved" : "denied";
    r.decided_by = ctx.actor.id;
    r.decided_at_us = ctx.now_us;
    r.expires_at_us = approve ? ctx.now_us + r.duration_us : 0;
    SILO_RETURN_IF_ERROR(ExecBound(db,
                                   "UPDATE access_requests SET state = ?, decided_by = ?,"
                                   " decided_at_us = ?, expires_at_us = ? WHERE id = ?",
                                   [&](storage::Statement& st) {
                                     st.Bind(1, r.state)
                                         .Bind(2, r.decided_by)
                                         .Bind(3, r.decided_at_us)
                                         .Bind(4, r.expires_at_us)
                                         .Bind(5, id);
                                   }));
    std::vector<events::Change> changes = {
        events::Change{"state", JsonText(json::string("pending")), JsonText(json::string(r.state))},
        Set("scopes", ToArray(r.scopes))};
    if (approve)
      changes.push_back(Set("expires_at", json::string(FormatRfc3339Micros(r.expires_at_us))));
    out = r;
    return Audited{approve ? "access.approved" : "access.denied", "access_request", id,
                   std::move(changes)};
  }));
  return std::move(*out);
}

Result<AccessRequest> Identity::RevokeAccessRequest(const events::Origin& ctx,
                                                    const std::string& id) {
  std::optional<AccessRequest> out;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(AccessRequest r, MustLoad(db, id, ctx.now_us));
    if (r.state != "approved") {
      return FailedPrecondition("the access request is " + r.state + "; only an approved one can" +
                                " be revoked");
    }
    SILO_ASSIGN_OR_RETURN(
        auto tokens, ColumnStrings(db, "SELECT id FROM api_tokens WHERE access_request = ?", &id));
    SILO_RETURN_IF_ERROR(ExecBound(db, "DELETE FROM api_tokens WHERE access_request = ?",
                                   [&](storage::Statement& st) { st.Bind(1, id); }));
    // Each token's end is an entry of its own, as a revoked token's is (the
    // realtime hub re-checks its connections on it).
    for (const std::string& token : tokens) {
      SILO_RETURN_IF_ERROR(events::AppendAudit(db, ctx, "token.revoked", "token", token,
                                               {Set("access_request", json::string(id))}));
    }
    r.state = "revoked";
    r.decided_by = ctx.actor.id;
    r.decided_at_us = ctx.now_us;
    SILO_RETURN_IF_ERROR(ExecBound(
        db,
        "UPDATE access_requests SET state = 'revoked', decided_by = ?, decided_at_us = ?"
        " WHERE id = ?",
        [&](storage::Statement& st) { st.Bind(1, r.decided_by).Bind(2, ctx.now_us).Bind(3, id); }));
    out = r;
    return Audited{"access.revoked",
                   "access_request",
                   id,
                   {events::Change{"state", JsonText(json::string("approved")),
                                   JsonText(json::string("revoked"))},
                    Set("tokens_ended", static_cast<int64_t>(tokens.size()))}};
  }));
  return std::move(*out);
}

Status Identity::UseAccess(const events::Origin& ctx, const std::string& id,
                           const std::vector<std::string>& wanted, const std::string& what) {
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(AccessRequest r, MustLoad(db, id, ctx.now_us));
    SILO_ASSIGN_OR_RETURN(std::string setting, LoadOperatorAccess(db));
    if (setting == "never") {
      return PermissionDenied("the tenant does not allow operator access to its data");
    }
    if (std::string why = Refusal(r, wanted); !why.empty()) return PermissionDenied(why);
    return Audited{"access.used",
                   "access_request",
                   id,
                   {Set("what", json::string(what)), Set("permissions", ToArray(wanted))}};
  });
}

}  // namespace silo::auth
