// Signed checkpoints of a tenant's chains (issue 22, rollback detection).
//
// Page authentication cannot tell an older authentic copy of a tenant's
// database from the current one. A checkpoint closes that: the last entry
// (sequence number and chain hash) of the tenant's event and audit logs,
// signed with the platform's Ed25519 key (SILO_SIGNING_KEY) and kept off the
// tenant's disk (here in <data>/platform/checkpoints/, and beside each backup
// in the backup target). A tenant whose log no longer holds an entry a
// checkpoint saw, or holds another one in its place, lost entries it once had:
// Check names it. The format is docs/formats.md "Checkpoints".
//
// The audit log never goes back (an in-place restore keeps the live one); the
// event log goes back only with a restore, after which a "restore" checkpoint
// replaces the kept one. Thread-safe.
#ifndef SILO_CHECKPOINT_BOOK_H_
#define SILO_CHECKPOINT_BOOK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/secret_key.h"
#include "events/event_log.h"
#include "storage/tenant_databases.h"

namespace silo::checkpoint {

struct Checkpoint {
  std::string tenant_id;
  std::string slug;
  events::ChainPoint events;
  events::ChainPoint audit;
  int64_t at_us = 0;
  std::string reason;  // "backup", "schedule", "restore", "request"
};

// The bytes a checkpoint's signature covers (docs/formats.md).
std::string CanonicalText(const Checkpoint& c);
// 16 hex characters naming a public key: the start of its SHA-256.
std::string KeyId(std::string_view public_key);
// The checkpoint as signed JSON (one object, the public key and signature in
// base64), made with `seed`.
std::string Encode(const Checkpoint& c, const crypto::SecretKey& seed);
// A signed checkpoint's contents, when `text` is one that
// `trusted_public_key` signed. DataLoss naming why not: malformed, signed by
// another key, or a signature that does not match (any changed field).
Result<Checkpoint> Decode(std::string_view text, std::string_view trusted_public_key);

// What `db` lost of `c`: "" when both logs still hold the entries `c` saw,
// else a sentence naming the log, the entry and where the log ends.
Result<std::string> Lost(const Checkpoint& c, storage::Database& db);

struct Verdict {
  std::optional<Checkpoint> newest;  // nullopt: none kept yet (or refused)
  bool ok = true;
  std::string problem;  // what the tenant lost, or why its checkpoint is refused
};

class Book {
 public:
  // `dir`: where the newest checkpoint of each tenant is kept.
  Book(std::string dir, crypto::SecretKey seed,
       std::shared_ptr<storage::TenantDatabases> databases);

  const std::string& public_key() const { return public_key_; }  // raw, 32 bytes
  std::string Sign(const Checkpoint& c) const { return Encode(c, seed_); }
  // The platform key's Ed25519 signature of `message` (incident reports are
  // signed like checkpoints, platform/incident.h).
  std::string SignMessage(std::string_view message) const;

  // Keeps `c` (signed as `text`) as the tenant's newest unless the kept one
  // saw a later audit entry; a "restore" checkpoint always replaces it.
  Status Keep(const Checkpoint& c, const std::string& text) EXCLUDES(mu_);
  // Signs the tenant's chain heads as of now and keeps them; returns the
  // signed text. FailedPrecondition (nothing kept) when the tenant lost
  // entries of its kept checkpoint, unless `reason` is "restore": a new
  // checkpoint must not bless a rollback.
  Result<std::string> Take(const std::string& tenant_id, const std::string& slug,
                           const std::string& reason) EXCLUDES(mu_);
  // The tenant's chains against its kept checkpoint. A kept file that does
  // not verify (forged, altered, another key's) is not ok, with why.
  Result<Verdict> Check(const std::string& tenant_id) EXCLUDES(mu_);
  // Forgets a deleted tenant's checkpoint.
  Status Forget(const std::string& tenant_id) EXCLUDES(mu_);

 private:
  std::string PathOf(const std::string& tenant_id) const;
  // The kept checkpoint's text, or nullopt.
  Result<std::optional<std::string>> Read(const std::string& tenant_id) const REQUIRES(mu_);
  Status KeepLocked(const Checkpoint& c, const std::string& text) REQUIRES(mu_);

  const std::string dir_;
  const crypto::SecretKey seed_;
  const std::string public_key_;
  const std::shared_ptr<storage::TenantDatabases> databases_;
  Mutex mu_;  // one read-compare-write of a tenant's file at a time
};

}  // namespace silo::checkpoint

#endif  // SILO_CHECKPOINT_BOOK_H_
