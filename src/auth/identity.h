// A tenant's users, roles, sessions, second factors, one-time tokens and
// outgoing mail, in the tenant's own encrypted database (DESIGN section 6).
//
// Secrets are never stored as given: session, setup, reset and MFA tokens as
// SHA-256 (256 random bits each, so a fast hash suffices), recovery codes as
// a keyed hash under the tenant's secret-field key, TOTP secrets sealed with
// that key, passwords as Argon2id strings made by the caller (hashing is the
// caller's, on the password pool). Every change is an entry in the tenant's
// hash-chained audit log with old and new values (secrets as "changed").
//
// Thread-safety: an Identity is not thread-safe (it caches the secret-field
// key without a lock): one per request. Any number of them may work on the
// same tenant at once; the database serialises their writes, and every write
// is one transaction. IdentityStores is thread-safe.
//
// Outcomes: each method says which codes it returns for expected failures;
// any other failure is a storage error (Internal, Unavailable when the
// database is busy, DataLoss when stored data fails authentication).
//
// The sections are implemented in users.cc, roles.cc, sessions.cc,
// second_factor.cc, password_reset.cc and outbox.cc.
#ifndef SILO_AUTH_IDENTITY_H_
#define SILO_AUTH_IDENTITY_H_

#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "crypto/secret_key.h"
#include "events/event_log.h"
#include "rbac/rbac.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::auth {

class ApiTokens;

// The identity tables, numbered from `first_version` (they follow the
// records module's migrations in the tenant schema).
std::span<const storage::Migration> IdentityMigrations();
// The tenant settings table (version 10: after the files catalogue's).
std::span<const storage::Migration> SettingsMigrations();
// Later identity columns, after the settings table: version 11, when each
// session last proved its user (sessions.proved_at_us); 12, who invited a
// pending user (users.invited_by, for the cap on pending invitations).
std::span<const storage::Migration> AccountMigrations();

// The access_requests table and the api_tokens column naming the request a
// token was minted under: versions 13 and 14 (access_requests.cc).
std::span<const storage::Migration> AccessRequestMigrations();

// For a restored copy before it goes live (backup's ForgetOnRestore, wired by
// app): ends every session, every one-time token (setup, reset and MFA
// links) and every operator access (pending and approved requests are
// revoked, the tokens minted under them deleted), so that nothing of the
// past comes back to life. A copy without the
// identity tables (an older schema) has nothing to end. Returns how many
// sessions ended.
// REQUIRES: db.InTransaction().
Result<int64_t> EndSessionsAndOneTimeTokens(storage::Database& db);

// A copy of a tenant's database that becomes another tenant (restore --as)
// holds its TOTP secrets sealed under the original tenant's secret-fields
// sub-key (KeyPurpose::kSecretFields): each is opened under `from` and
// sealed again under `to`, the copy's (same AD, "totp:" + user id), so its
// users pass MFA. Recovery codes are kept only as hashes keyed with `from`
// and cannot move: they are deleted (the users make new ones). DataLoss when
// a secret does not open under `from`. Returns (secrets re-sealed, recovery
// codes deleted). REQUIRES: db.InTransaction().
Result<std::pair<int64_t, int64_t>> ResealSecretFields(storage::Database& db,
                                                       const crypto::SecretKey& from,
                                                       const crypto::SecretKey& to);

struct User {
  std::string id;
  std::string email;
  std::string status;  // "invited", "active" or "disabled"
  std::vector<std::string> roles;
  bool totp_enabled = false;
  int64_t created_at_us = 0;
  int64_t updated_at_us = 0;
};

struct Session {
  std::string id;  // public handle, for listing and revoking
  std::string user_id;
  bool mfa_passed = false;
  int64_t created_at_us = 0;
  int64_t last_seen_us = 0;
  int64_t expires_at_us = 0;  // absolute
  std::string client;
  std::string user_agent;
  // The last proof of identity in this session: the password or second
  // factor that opened it, or a step-up (RecordStepUp). 0 for sessions
  // opened before this was kept.
  int64_t proved_at_us = 0;
};

struct IssuedSession {
  Session session;
  std::string token;       // for the cookie; shown once
  std::string csrf_token;  // for X-CSRF-Token: CsrfTokenOf(token)
};

// The CSRF token of the session whose cookie holds `session_token`: a hash of
// it under a label of its own, so the token can be given again (after a page
// reload, by GET /api/auth/me) without being stored, and only to a request
// that carries the cookie; it tells nothing of the cookie. Sessions made
// before it was derived keep the random token they were given (their stored
// hash does not match, and /me does not offer one).
std::string CsrfTokenOf(std::string_view session_token);

struct SessionAuth {
  Session session;
  User user;
  std::string csrf_hash;  // SHA-256 hex of the session's CSRF token
  // When the session ends unless used again: its absolute expiry or its idle
  // limit, whichever comes first.
  int64_t ends_at_us = 0;
};

// Whether checking a session counts as using it (an HTTP request does; a
// realtime connection's checks do not, so an unattended tab still times out).
enum class IdleClock { kRefresh, kKeep };

// InviteUser's answer: the new user and its one-time setup token (shown once).
struct Invitation {
  User user;
  std::string setup_token;
};

// FindLogin's answer: the user and its Argon2id password hash ("" before setup).
struct LoginRecord {
  User user;
  std::string password_hash;
};

// Whether the caller holds the owner role: only an owner grants or removes
// it, or disables an owner.
enum class Caller { kNotOwner, kOwner };
// An account's state as SetAccountState sets it.
enum class Account { kEnabled, kDisabled };
// Whether a new session has passed the second factor.
enum class MfaPassed { kNo, kYes };

struct Mail {
  int64_t id = 0;
  std::string recipient;
  std::string subject;
  std::string body;
  int attempts = 0;
};

// What a tenant's admins set for the whole tenant (settings.cc).
struct TenantSettings {
  // Origins ("https://app.example.com": scheme, host, port; no path) whose
  // pages may call the API across origins with an API token (CORS). A
  // session cookie is never accepted across origins.
  std::vector<std::string> cors_origins;
  // Whether the platform's operator may reach the tenant's data (issue 22),
  // as an owner set it ("" when never set; EffectiveOperatorAccess says what
  // holds): "approval" (only through an access request an owner or security
  // admin approved), "never" (no request can be made or used), or "allowed"
  // (the operator needs no request; only where the platform permits it,
  // SILO_OPERATOR_ACCESS=allowed, and only while it does).
  std::string operator_access;
};

// What holds for a tenant whose owners set `stored` ("" for nothing) on a
// platform that does or does not permit "allowed": an unset tenant follows
// the platform ("allowed" where permitted, else "approval"); "allowed" on a
// platform that no longer permits it is "approval".
std::string EffectiveOperatorAccess(const std::string& stored, bool platform_permits);
// What is wrong with `value` as an owner's operator_access ("" when it is
// fine): one of approval, never, and allowed only where the platform
// permits it.
std::string CheckOperatorAccess(std::string_view value, bool platform_permits);

// The operator's request for access to a tenant's data (the lockbox,
// access_requests.cc): the permissions it wants, why, and for how long once
// approved. Its state as of the time it was read: "pending", "approved",
// "denied", "revoked", or "expired" (approved and past its end, or pending
// and not decided within kAccessDecisionUs).
struct AccessRequest {
  std::string id;
  std::vector<std::string> scopes;
  std::string reason;
  int64_t duration_us = 0;
  std::string state;
  int64_t requested_at_us = 0;
  std::string decided_by;  // the user who approved, denied or revoked it
  int64_t decided_at_us = 0;
  int64_t expires_at_us = 0;  // the approval's end; 0 until approved
};

struct AccessRequestSpec {
  std::vector<std::string> scopes;  // 1 to 20 valid permissions
  std::string reason;               // 1 to 500 bytes
  int64_t duration_us = 0;          // 1 minute to kMaxAccessUs
};

inline constexpr int64_t kMaxAccessUs = 24LL * 3600 * 1'000'000;
// A request not decided within this lapses.
inline constexpr int64_t kAccessDecisionUs = 24LL * 3600 * 1'000'000;
// Undecided requests at once (each mails every approver).
inline constexpr int kMaxPendingAccessRequests = 10;
// The permission that sees, decides and revokes access requests.
inline constexpr std::string_view kAccessApprover = "access_requests.manage";
enum class AccessDecision { kApprove, kDeny };

// What a CORS origin must look like: "https://host[:port]", or "http://"
// for localhost and 127.0.0.1 (a front end's development server); lower
// case, no path, no wildcard. An error message naming the problem, or "".
std::string CheckCorsOrigin(std::string_view origin);
inline constexpr size_t kMaxCorsOrigins = 20;

struct Timeouts {
  int64_t session_idle_us = 30LL * 60 * 1'000'000;
  int64_t session_absolute_us = 12LL * 3600 * 1'000'000;
  int64_t setup_token_us = 72LL * 3600 * 1'000'000;
  int64_t reset_token_us = 10LL * 60 * 1'000'000;  // SILO_RESET_TOKEN_MINUTES
  int64_t mfa_challenge_us = 5LL * 60 * 1'000'000;
};

// Told of each entry the identity module wrote to a tenant's audit log, once
// its transaction committed: every one is security-relevant (sign-ins and
// their failures, factors, sessions, users, roles, settings). The app ships
// them off the box (platform/event_shipper.h). Must not block.
struct AuditNotice {
  const events::Origin& origin;
  const std::string& type;
  const std::string& subject_kind;
  const std::string& subject_id;
};
using AuditObserver = std::function<void(const AuditNotice&)>;

inline constexpr int kRecoveryCodes = 10;
// Pending invitations one actor may have made (ASVS 11.1.4); over it,
// InviteUser is FailedPrecondition (409).
inline constexpr int kMaxPendingInvitations = 50;
inline constexpr int kMaxMfaAttempts = 5;

class Identity {
 public:
  friend class IdentityStores;  // sets observer_
  Identity(std::shared_ptr<storage::TenantDatabase> db, crypto::SecretKey secret_fields,
           Timeouts timeouts);
  // With the secret-field key fetched on first use: most requests (a token
  // or session check) never need it, and unwrapping it costs a keyring
  // lookup and guarded memory on every request.
  Identity(std::shared_ptr<storage::TenantDatabase> db,
           std::function<Result<crypto::SecretKey>()> secret_fields, Timeouts timeouts);

  // --- users ---
  // A new user with `roles`, and its one-time setup token. AlreadyExists for
  // a used e-mail; InvalidArgument for a bad e-mail or an unknown role.
  Result<Invitation> InviteUser(const events::Origin& ctx, const std::string& email,
                                const std::vector<std::string>& roles);
  // Every user, by e-mail.
  Result<std::vector<User>> ListUsers();
  // NotFound.
  Result<User> GetUser(const std::string& id);
  // The user with this (normalised) e-mail and its password hash. NotFound.
  Result<LoginRecord> FindLogin(const std::string& email);
  // Sets the first password with a setup token (single use). Unauthenticated
  // for an unknown, used or expired token.
  Result<User> CompleteSetup(const events::Origin& ctx, const std::string& token,
                             const std::string& password_hash);
  // Replaces the roles. NotFound; InvalidArgument for an unknown role;
  // PermissionDenied when a non-owner grants or removes the owner role;
  // FailedPrecondition when the tenant would be left without an active owner.
  Status SetUserRoles(const events::Origin& ctx, const std::string& user_id,
                      const std::vector<std::string>& roles, Caller caller);
  // Disabling ends every session of the user. NotFound; PermissionDenied
  // when a non-owner disables an owner; FailedPrecondition for the last
  // active owner.
  Status SetAccountState(const events::Origin& ctx, const std::string& user_id, Account state,
                         Caller caller);
  // A new hash for the same password (parameter upgrade), not a change; an
  // audit entry. NotFound for a user without a password.
  Status ReplacePasswordHash(const events::Origin& ctx, const std::string& user_id,
                             const std::string& password_hash);
  // A password change: ends every session of the user. NotFound for a user
  // that is not active.
  Status ChangePassword(const events::Origin& ctx, const std::string& user_id,
                        const std::string& password_hash);

  // --- tenant settings (settings.cc) ---
  // From the tenant cache while no write happened since they were read
  // (every cross-origin request asks).
  Result<TenantSettings> Settings();
  // Replaces the CORS origins (audited with the old and new lists).
  // InvalidArgument naming cors_origins[i] for a bad origin, or more than
  // kMaxCorsOrigins.
  Result<TenantSettings> SetCorsOrigins(const events::Origin& ctx,
                                        std::vector<std::string> origins);
  // Sets operator_access (audited with the old and new value).
  // InvalidArgument for a value other than approval, never or allowed, and
  // for allowed unless `platform_permits` (SILO_OPERATOR_ACCESS=allowed).
  // REQUIRES: the caller is an owner (the API checks), or the operator
  // creating the tenant on a platform that permits allowed.
  Result<TenantSettings> SetOperatorAccess(const events::Origin& ctx, const std::string& value,
                                           bool platform_permits);

  // --- the operator's access requests (access_requests.cc) ---
  // A pending request, with a mail to every active user who may decide it
  // (holds kAccessApprover). InvalidArgument naming bad fields;
  // PermissionDenied when the tenant set operator_access to "never";
  // FailedPrecondition with kMaxPendingAccessRequests undecided.
  Result<AccessRequest> RequestAccess(const events::Origin& ctx, const AccessRequestSpec& spec);
  // Newest first, at most 200.
  Result<std::vector<AccessRequest>> ListAccessRequests();
  // NotFound.
  Result<AccessRequest> GetAccessRequest(const std::string& id);
  // Approves (its end: now + its duration) or denies a pending request.
  // NotFound; FailedPrecondition when it is no longer pending (decided,
  // lapsed: a second approval is refused).
  // REQUIRES: the caller checked the decider's fresh second factor.
  Result<AccessRequest> DecideAccessRequest(const events::Origin& ctx, const std::string& id,
                                            AccessDecision decision);
  // Ends an approved request at once, and every token minted under it (in
  // the same transaction). NotFound; FailedPrecondition unless approved
  // and not yet expired.
  Result<AccessRequest> RevokeAccessRequest(const events::Origin& ctx, const std::string& id);
  // For the operator's use of an approved request other than a token (an
  // export): an audit entry "access.used" naming `what`, written only when
  // the request is approved, live and grants every one of `wanted`.
  // NotFound; PermissionDenied otherwise (the reason in the message).
  Status UseAccess(const events::Origin& ctx, const std::string& id,
                   const std::vector<std::string>& wanted, const std::string& what);

  // --- roles (built-in ones first, then the tenant's, by name) ---
  Result<std::vector<rbac::Role>> ListRoles();
  // NotFound.
  Result<rbac::Role> GetRole(const std::string& name);
  // The user's roles; a role name that no longer exists is skipped (a
  // deleted role grants nothing).
  Result<std::vector<rbac::Role>> RolesOf(const User& user);
  // AlreadyExists for a taken name; InvalidArgument for a bad or built-in
  // name, an unknown permission or a field over its limit.
  Result<rbac::Role> CreateRole(const events::Origin& ctx, const rbac::Role& role);
  // NotFound; FailedPrecondition for a built-in role; InvalidArgument as above.
  Result<rbac::Role> UpdateRole(const events::Origin& ctx, const rbac::Role& role);
  // NotFound; FailedPrecondition for a built-in role or while a user holds it.
  Status DeleteRole(const events::Origin& ctx, const std::string& name);

  // --- sessions ---
  // A new session; its token and CSRF token are shown once. Sweeps the
  // user's expired sessions.
  // REQUIRES: `user_id` is an active user the caller has just proven.
  Result<IssuedSession> CreateSession(const events::Origin& ctx, const std::string& user_id,
                                      MfaPassed mfa, const std::string& user_agent);
  // Unauthenticated for an unknown, idle, expired or disabled user's session.
  // With kRefresh, refreshes the idle clock (at most once a minute: one
  // write per minute).
  Result<SessionAuth> AuthenticateSession(const std::string& token, int64_t now_us,
                                          IdleClock idle = IdleClock::kRefresh);
  // The user's sessions (expired ones until swept), oldest first.
  Result<std::vector<Session>> ListSessions(const std::string& user_id);
  // NotFound for a session that is not the user's.
  Status RevokeSession(const events::Origin& ctx, const std::string& user_id,
                       const std::string& session_id);
  // Records a fresh proof (password or TOTP, checked by the caller) in the
  // session: the step-up that dangerous actions need (ASVS 4.3.3). Audited.
  Status RecordStepUp(const events::Origin& ctx, const std::string& user_id,
                      const std::string& session_id);
  // Every session of the user except `keep` (a session id, or "").
  Status RevokeSessions(const events::Origin& ctx, const std::string& user_id,
                        const std::string& keep);

  // --- second factor ---
  // A single-use token naming the user who passed the password step.
  Result<std::string> CreateMfaChallenge(const std::string& user_id, int64_t now_us);
  // The challenge's user; counts an attempt (at most kMaxMfaAttempts, then
  // the challenge is gone). Unauthenticated when unknown or expired.
  Result<std::string> AttemptMfaChallenge(const std::string& token, int64_t now_us);
  Status EndMfaChallenge(const std::string& token);
  // Starts (or restarts) enrolment: a new secret, kept pending until
  // confirmed. NotFound for a user that is not active.
  Result<std::string> StartTotp(const events::Origin& ctx, const std::string& user_id);
  // Confirms the pending secret with a code: TOTP on, ten new recovery codes.
  // FailedPrecondition without a pending secret; Unauthenticated for a wrong
  // code.
  Result<std::vector<std::string>> ConfirmTotp(const events::Origin& ctx,
                                               const std::string& user_id, const std::string& code);
  // Checks a code (each step accepted once). Unauthenticated; a wrong code or
  // a replayed one is an audit entry (mfa.failed, mfa.replayed) all the same.
  Status CheckTotp(const events::Origin& ctx, const std::string& user_id, const std::string& code);
  // Uses up one recovery code. Unauthenticated.
  Status UseRecoveryCode(const events::Origin& ctx, const std::string& user_id,
                         const std::string& code);
  // TOTP off and the recovery codes gone.
  Status DisableTotp(const events::Origin& ctx, const std::string& user_id);

  // --- password reset ---
  // For an active user with this e-mail: a reset token and a mail in the
  // outbox, made by `compose(token)` -> {subject, body}. Either way one audit
  // entry, so known and unknown addresses cost the same write.
  Status RequestReset(
      const events::Origin& ctx, const std::string& email,
      const std::function<std::pair<std::string, std::string>(const std::string& token)>& compose);
  // Sets the password (single-use token, reset_token_us), revokes every
  // session. Returns the user. Unauthenticated for a bad token.
  Result<User> ConfirmReset(const events::Origin& ctx, const std::string& token,
                            const std::string& password_hash);

  // --- keyed tags ---
  // How an e-mail address appears where it must be recognisable but not
  // readable (audit entries for failed logins and reset requests): a keyed
  // hash under the secret-field key, so a reader of the log cannot confirm
  // a guessed address.
  Result<std::string> EmailTag(const std::string& normalised_email);

  // --- device cookies (OWASP "device cookies") ---
  // A value for the __Host-silo_device cookie of a browser that signed in as
  // `normalised_email`: a random nonce and a MAC binding it to the address
  // under this tenant's secret-field key.
  Result<std::string> IssueDeviceCookie(const std::string& normalised_email);
  // The nonce of a device cookie issued for this address by this tenant, or
  // nullopt (another account's, another tenant's, forged or malformed).
  Result<std::optional<std::string>> DeviceOf(std::string_view cookie,
                                              const std::string& normalised_email);

  // --- outbox ---
  // Unsent mail whose next attempt is due, oldest first, at most `limit`.
  Result<std::vector<Mail>> DueMail(int64_t now_us, int limit);
  // Sent: the body (which may hold a token) is erased.
  Status MarkMailSent(int64_t id, int64_t now_us);
  Status MarkMailFailed(int64_t id, const std::string& error, int64_t retry_at_us);

  // --- API tokens (api_tokens.h) ---
  // The tenant's API tokens, over this Identity's database (no second
  // lookup of the tenant's database per request).
  ApiTokens Tokens() const;

  // --- audit ---
  // One audit entry for what a caller did outside this class (login failures,
  // denials); `details` become changes with no old value.
  Status Audit(const events::Origin& ctx, const std::string& type, const std::string& subject_kind,
               const std::string& subject_id, const boost::json::object& details);

 private:
  // What an audited write did, named once the change is made.
  struct Audited {
    std::string type;
    std::string subject_kind;
    std::string subject_id;
    std::vector<events::Change> changes;
  };
  // The write protocol of every audited change (as SqliteTenantStore's
  // WriteEvent is for records): in one write transaction `change` runs and
  // names its audit entry, the entry is appended, and the transaction commits
  // only if both succeed; on any failure nothing is written.
  Status AuditedWrite(const events::Origin& ctx,
                      const std::function<Result<Audited>(storage::Database&)>& change);

  // Setup and reset: takes the single-use token of `purpose`, sets the hash.
  Result<User> SetPasswordWithToken(const events::Origin& ctx, const std::string& token,
                                    std::string_view purpose, const std::string& password_hash);

  // The secret-field key, fetched once on first use.
  Result<const crypto::SecretKey*> SecretFields();

  std::shared_ptr<storage::TenantDatabase> db_;
  std::function<Result<crypto::SecretKey>()> secret_fields_fn_;
  AuditObserver observer_;  // may be empty
  std::optional<crypto::SecretKey> secret_fields_;
  const Timeouts timeouts_;
};

// Every tenant's identity store, over the same open databases as the tenant
// stores. Thread-safe.
class IdentityStores {
 public:
  using KeyFn = std::function<Result<crypto::SecretKey>(const std::string& tenant_id)>;
  // `secret_key_fn` gives a tenant's KeyPurpose::kSecretFields sub-key.
  IdentityStores(std::shared_ptr<storage::TenantDatabases> databases, KeyFn secret_key_fn,
                 Timeouts timeouts)
      : databases_(std::move(databases)),
        secret_key_fn_(std::move(secret_key_fn)),
        timeouts_(timeouts) {}
  Result<std::unique_ptr<Identity>> Open(const std::string& tenant_id);
  const Timeouts& timeouts() const { return timeouts_; }
  // Before the first Open (not thread-safe): `observer` gets the tenant's id
  // and each committed identity audit entry of every Identity opened.
  void SetObserver(std::function<void(const std::string& tenant_id, const AuditNotice&)> observer) {
    observer_ = std::move(observer);
  }

 private:
  std::shared_ptr<storage::TenantDatabases> databases_;
  KeyFn secret_key_fn_;
  Timeouts timeouts_;
  std::function<void(const std::string& tenant_id, const AuditNotice&)> observer_;
};

// A syntactically plausible e-mail address (one '@', no spaces or control
// characters, at most 254 bytes), lowercased. InvalidArgument otherwise.
Result<std::string> NormaliseEmail(std::string_view email);

}  // namespace silo::auth

#endif  // SILO_AUTH_IDENTITY_H_
