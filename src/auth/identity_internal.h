// What the sections of Identity share (users.cc, roles.cc, sessions.cc,
// second_factor.cc, password_reset.cc, outbox.cc): row loaders and the
// statements more than one section runs. Only auth's own .cc files include
// this header; everyone else goes through identity.h.
#ifndef SILO_AUTH_IDENTITY_INTERNAL_H_
#define SILO_AUTH_IDENTITY_INTERNAL_H_

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/identity.h"
#include "base/status.h"
#include "events/event_log.h"
#include "rbac/rbac.h"
#include "storage/database.h"

namespace silo::auth {

// Audit change helpers: a value that was set, and a secret that changed
// (recorded without its value).
events::Change Set(std::string field, const boost::json::value& v);
events::Change Secret(std::string field);
boost::json::array ToArray(const std::vector<std::string>& v);
std::string JsonText(const boost::json::value& v);

// Runs `sql` with the parameters `bind` sets, to completion.
Status ExecBound(storage::Database& db, std::string_view sql,
                 const std::function<void(storage::Statement&)>& bind);
// The integer of the one row `sql` returns (a count), with the parameters
// `bind` sets.
Result<int64_t> CountBound(storage::Database& db, std::string_view sql,
                           const std::function<void(storage::Statement&)>& bind);
// The first column of every row of `sql` (bound to `arg` when given).
Result<std::vector<std::string>> ColumnStrings(storage::Database& db, std::string_view sql,
                                               const std::string* arg = nullptr);

// A user's role names, sorted.
Result<std::vector<std::string>> LoadRoles(storage::Database& db, const std::string& user_id);
// The user whose `column` ("id" or "email", never request input) equals
// `value`, with its password hash; nullopt when there is none.
Result<std::optional<LoginRecord>> LoadUser(storage::Database& db, std::string_view column,
                                            const std::string& value);
// A stored JSON array of permission names (roles, API tokens); non-strings
// are skipped. DataLoss naming `what` ("role", "token") when it does not parse.
Result<std::vector<std::string>> ParsePermissionList(const std::string& json_text,
                                                     std::string_view what);
// A built-in role or the tenant's own; nullopt when neither has `name`.
// DataLoss for a stored role whose permissions do not parse.
Result<std::optional<rbac::Role>> LoadRole(storage::Database& db, const std::string& name);
// How many active users hold the owner role.
Result<int64_t> ActiveOwners(storage::Database& db);

// Ends every session of `user_id` but `keep` (a session id, or "").
Status DeleteSessions(storage::Database& db, const std::string& user_id, const std::string& keep);
// Stores a one-time token (hashed) of `purpose` for `user_id`.
Status InsertToken(storage::Database& db, const std::string& token, std::string_view purpose,
                   const std::string& user_id, int64_t expires_at_us);
// Deletes and returns the token's user when it exists, has `purpose` and has
// not expired (an expired one is deleted too).
Result<std::optional<std::string>> TakeToken(storage::Database& db, const std::string& token,
                                             std::string_view purpose, int64_t now_us);

// Puts a mail in the outbox (outbox.cc), due now.
Status QueueMail(storage::Database& db, const std::string& recipient, const std::string& subject,
                 const std::string& body, int64_t now_us);
// Tells `user_id` by mail, in the caller's transaction, that `what` ("Your
// password was changed") happened to their account at ctx.now_us from
// ctx.client (ASVS 2.2.3, 2.5.5, 2.8.5). The mail names no secret. Nothing
// is queued for a user that does not exist (an operator-issued token).
Status NotifyUser(storage::Database& db, const events::Origin& ctx, const std::string& user_id,
                  std::string_view what);

// The tenant's operator_access setting as stored (settings.cc): "" when
// never set. ValidOperatorAccess: one of approval, never, allowed.
bool ValidOperatorAccess(std::string_view value);
Result<std::string> LoadOperatorAccess(storage::Database& db);

// Revokes every pending or approved access request and deletes the tokens
// minted under any; nothing for a copy without the table. Returns how many
// requests it ended.
// REQUIRES: db.InTransaction().
Result<int64_t> EndOperatorAccess(storage::Database& db, int64_t now_us);

// For a token minted under access request `id` (access_requests.cc): the
// request's end, when it is approved, live at `now_us` and grants every
// one of `wanted`; PermissionDenied saying which it is not, NotFound for an
// unknown request. Run in the transaction that inserts the token.
Result<int64_t> AccessGrantEnd(storage::Database& db, const std::string& id,
                               const std::vector<std::string>& wanted, int64_t now_us);

}  // namespace silo::auth

#endif  // SILO_AUTH_IDENTITY_INTERNAL_H_
