// A tenant's API tokens ("silo_" + 43 characters): who may call the tenant's
// API without a session. Stored as SHA-256 of the token (256 random bits, so
// a fast hash suffices), with a name, permissions, an expiry and an owner:
// the operator, or a user whose permissions then bound the token's for as
// long as it lives (the dispatcher cuts them down on every use).
//
// Issuing and revoking a token are events in the tenant's event log and
// entries in its audit log, in the same transaction as the change (the
// secret itself is recorded as "changed", never its value). A token a user
// issues also puts a notice for that user in the outbox (identity's tables,
// the same database).
//
// An ApiTokens is not thread-safe: one per request, like Identity; the
// database serialises writes across them.
#ifndef SILO_AUTH_API_TOKENS_H_
#define SILO_AUTH_API_TOKENS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "events/event_log.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::auth {

// Live (unexpired) tokens one owner may hold (ASVS 11.1.4); over it, Create
// is FailedPrecondition (409).
inline constexpr int kMaxTokensPerOwner = 50;

inline constexpr std::string_view kTokenPrefix = "silo_";

// The api_tokens table: migrations 4 and 5 of the tenant schema (after
// records' 1-3, before identity's 6).
std::span<const storage::Migration> ApiTokenMigrations();

// An API token's holder, as proven by the token.
struct Principal {
  std::string token_id;
  std::vector<std::string> permissions;
  std::string owner;  // "operator" or "user:<id>"
  int64_t expires_at_us = 0;
};

struct TokenSpec {
  std::string name;
  std::vector<std::string> permissions;  // each valid per rbac::ValidPermission()
  int64_t expires_at_us = 0;
  std::string owner = "operator";  // or "user:<id>"
  int max_days = 0;  // expires_at_us at most this many days ahead (SILO_TOKEN_MAX_DAYS); 0: any
  // The operator's tokens (issue 22): the approved access request the token
  // is minted under ("" for none), and whether the platform lets tenants
  // open themselves to the operator (SILO_OPERATOR_ACCESS=allowed).
  std::string access_request;
  bool platform_permits_operator_access = false;
};

// A token as listed (never its secret).
struct TokenInfo {
  std::string id;
  std::string name;
  std::vector<std::string> permissions;
  int64_t created_at_us = 0;
  int64_t expires_at_us = 0;
  std::string owner;
};

struct IssuedToken {
  std::string id;
  std::string token;          // shown once, stored hashed
  int64_t expires_at_us = 0;  // as asked, or the access request's end if sooner
};

class ApiTokens {
 public:
  // Told of each token event once its transaction committed: (origin,
  // type, token id). Identity::Tokens() forwards it to the identity
  // observer, so token events are shipped like the identity's own.
  using Observer = std::function<void(const events::Origin&, const std::string& type,
                                      const std::string& token_id)>;
  explicit ApiTokens(std::shared_ptr<storage::TenantDatabase> db, Observer observer = {})
      : db_(std::move(db)), observer_(std::move(observer)) {}

  // InvalidArgument naming each bad field: a name of 1 to 100 bytes, 1 to
  // 100 known permissions, an expiry in the future and within max_days.
  // An operator's token (owner "operator") also needs, checked in the same
  // transaction as its insert: an access request that is approved, live
  // and grants every permission (the token then ends with the request at
  // the latest, and a revocation of the request deletes it), unless the
  // tenant set operator_access "allowed" and the platform permits it;
  // PermissionDenied otherwise, and always when the tenant set "never".
  Result<IssuedToken> Create(const events::Origin& ctx, const TokenSpec& spec);
  // Unauthenticated for a malformed, unknown or expired token.
  Result<Principal> Authenticate(std::string_view token, int64_t now_us);
  // Tokens of one owner (every token when nullopt), oldest first.
  Result<std::vector<TokenInfo>> List(std::optional<std::string> owner);
  // NotFound unless the token exists (and is `owner`'s, when given).
  Status Revoke(const events::Origin& ctx, const std::string& id, std::optional<std::string> owner);

 private:
  std::shared_ptr<storage::TenantDatabase> db_;
  Observer observer_;  // may be empty
};

}  // namespace silo::auth

#endif  // SILO_AUTH_API_TOKENS_H_
