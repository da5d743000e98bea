#include "checkpoint/book.h"

#include <unistd.h>

#include <boost/json.hpp>

#include "base/file_util.h"
#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::checkpoint {
namespace json = boost::json;

namespace {

constexpr std::string_view kFormat = "silo-checkpoint-1";

json::object PointJson(const events::ChainPoint& p) { return {{"seq", p.seq}, {"hash", p.hash}}; }

Result<events::ChainPoint> PointOf(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr || !v->is_object()) return DataLoss("a malformed checkpoint");
  const json::value* seq = v->as_object().if_contains("seq");
  const json::value* hash = v->as_object().if_contains("hash");
  if (seq == nullptr || !seq->is_int64() || hash == nullptr || !hash->is_string()) {
    return DataLoss("a malformed checkpoint");
  }
  return events::ChainPoint{seq->as_int64(), std::string(hash->as_string())};
}

Result<std::string> StringOf(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr || !v->is_string()) return DataLoss("a malformed checkpoint");
  return std::string(v->as_string());
}

std::string LogName(events::Log log) { return log == events::Log::kAudit ? "audit" : "event"; }

// What `db`'s log lost of `point`, or "".
Result<std::string> LostOf(const events::ChainPoint& point, events::Log log, storage::Database& db,
                           int64_t at_us) {
  if (point.seq == 0) return std::string();
  SILO_ASSIGN_OR_RETURN(auto hash, events::HashAt(db, point.seq, log));
  const std::string when = FormatRfc3339Micros(at_us);
  if (!hash) {
    SILO_ASSIGN_OR_RETURN(events::ChainPoint last, events::LastPoint(db, log));
    return "its " + LogName(log) + " log ends at entry " + std::to_string(last.seq) +
           ", but the checkpoint of " + when + " saw entry " + std::to_string(point.seq) +
           ": entries it once had are gone (an older copy?)";
  }
  if (*hash != point.hash) {
    return "its " + LogName(log) + " entry " + std::to_string(point.seq) +
           " is not the one the checkpoint of " + when + " saw";
  }
  return std::string();
}

}  // namespace

std::string CanonicalText(const Checkpoint& c) {
  return std::string(kFormat) + "\ntenant " + c.tenant_id + "\nslug " + c.slug + "\nevents " +
         std::to_string(c.events.seq) + " " + c.events.hash + "\naudit " +
         std::to_string(c.audit.seq) + " " + c.audit.hash + "\nat " + std::to_string(c.at_us) +
         "\nreason " + c.reason + "\n";
}

std::string KeyId(std::string_view public_key) {
  return crypto::Sha256Hex(public_key).substr(0, 16);
}

std::string Encode(const Checkpoint& c, const crypto::SecretKey& seed) {
  const std::string public_key = crypto::SigningPublicKey(seed);
  json::object o{{"format", kFormat},
                 {"tenant", c.tenant_id},
                 {"slug", c.slug},
                 {"events", PointJson(c.events)},
                 {"audit", PointJson(c.audit)},
                 {"at_us", c.at_us},
                 {"at", FormatRfc3339Micros(c.at_us)},
                 {"reason", c.reason},
                 {"key_id", KeyId(public_key)},
                 {"public_key", crypto::Base64Encode(public_key)},
                 {"signature", crypto::Base64Encode(crypto::Sign(seed, CanonicalText(c)))}};
  return json::serialize(o) + "\n";
}

Result<Checkpoint> Decode(std::string_view text, std::string_view trusted_public_key) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return DataLoss("a malformed checkpoint");
  const json::object& o = v.as_object();
  SILO_ASSIGN_OR_RETURN(std::string format, StringOf(o, "format"));
  if (format != kFormat) return DataLoss("a checkpoint of an unknown format");
  Checkpoint c;
  SILO_ASSIGN_OR_RETURN(c.tenant_id, StringOf(o, "tenant"));
  SILO_ASSIGN_OR_RETURN(c.slug, StringOf(o, "slug"));
  SILO_ASSIGN_OR_RETURN(c.events, PointOf(o, "events"));
  SILO_ASSIGN_OR_RETURN(c.audit, PointOf(o, "audit"));
  SILO_ASSIGN_OR_RETURN(c.reason, StringOf(o, "reason"));
  const json::value* at = o.if_contains("at_us");
  if (at == nullptr || !at->is_int64()) return DataLoss("a malformed checkpoint");
  c.at_us = at->as_int64();
  SILO_ASSIGN_OR_RETURN(std::string pk64, StringOf(o, "public_key"));
  SILO_ASSIGN_OR_RETURN(std::string sig64, StringOf(o, "signature"));
  auto pk = crypto::Base64Decode(pk64);
  auto sig = crypto::Base64Decode(sig64);
  if (!pk.ok() || !sig.ok()) return DataLoss("a malformed checkpoint");
  if (*pk != trusted_public_key) {
    return DataLoss("a checkpoint signed by another key (" + KeyId(*pk) + ", not " +
                    KeyId(trusted_public_key) + ")");
  }
  if (!crypto::VerifySignature(trusted_public_key, CanonicalText(c), *sig)) {
    return DataLoss("a checkpoint whose signature does not match its contents (forged or altered)");
  }
  return c;
}

Result<std::string> Lost(const Checkpoint& c, storage::Database& db) {
  SILO_ASSIGN_OR_RETURN(std::string audit, LostOf(c.audit, events::Log::kAudit, db, c.at_us));
  if (!audit.empty()) return audit;
  return LostOf(c.events, events::Log::kEvents, db, c.at_us);
}

Book::Book(std::string dir, crypto::SecretKey seed,
           std::shared_ptr<storage::TenantDatabases> databases)
    : dir_(std::move(dir)),
      seed_(std::move(seed)),
      public_key_(crypto::SigningPublicKey(seed_)),
      databases_(std::move(databases)) {}

std::string Book::SignMessage(std::string_view message) const {
  return crypto::Sign(seed_, message);
}

std::string Book::PathOf(const std::string& tenant_id) const {
  return dir_ + "/" + tenant_id + ".json";
}

Result<std::optional<std::string>> Book::Read(const std::string& tenant_id) const {
  if (!PathExists(PathOf(tenant_id))) return std::optional<std::string>();
  SILO_ASSIGN_OR_RETURN(std::string text, ReadFile(PathOf(tenant_id)));
  return std::optional<std::string>(std::move(text));
}

Status Book::KeepLocked(const Checkpoint& c, const std::string& text) {
  SILO_ASSIGN_OR_RETURN(auto kept, Read(c.tenant_id));
  if (kept && c.reason != "restore") {
    // A kept checkpoint that does not verify is replaced: it protects nothing.
    auto old = Decode(*kept, public_key_);
    if (old.ok() && old->audit.seq > c.audit.seq) return Status::Ok();
  }
  SILO_RETURN_IF_ERROR(MakeDirs(dir_, 0700));
  return WriteFileAtomic(PathOf(c.tenant_id), text, 0600);
}

Status Book::Keep(const Checkpoint& c, const std::string& text) {
  MutexLock lock(mu_);
  return KeepLocked(c, text);
}

Result<std::string> Book::Take(const std::string& tenant_id, const std::string& slug,
                               const std::string& reason) {
  MutexLock lock(mu_);
  std::optional<Checkpoint> kept;
  SILO_ASSIGN_OR_RETURN(auto kept_text, Read(tenant_id));
  if (kept_text) {
    if (auto old = Decode(*kept_text, public_key_); old.ok()) kept = std::move(*old);
  }
  Checkpoint c;
  c.tenant_id = tenant_id;
  c.slug = slug;
  c.reason = reason;
  SILO_ASSIGN_OR_RETURN(auto db, databases_->Acquire(tenant_id));
  std::string lost;
  SILO_RETURN_IF_ERROR(db->Read([&](storage::Database& d) -> Status {
    if (kept && reason != "restore") {
      SILO_ASSIGN_OR_RETURN(lost, Lost(*kept, d));
    }
    SILO_ASSIGN_OR_RETURN(c.events, events::LastPoint(d, events::Log::kEvents));
    SILO_ASSIGN_OR_RETURN(c.audit, events::LastPoint(d, events::Log::kAudit));
    return Status::Ok();
  }));
  if (!lost.empty()) return FailedPrecondition("not checkpointed: " + lost);
  c.at_us = NowMicros();
  std::string text = Sign(c);
  SILO_RETURN_IF_ERROR(KeepLocked(c, text));
  return text;
}

Result<Verdict> Book::Check(const std::string& tenant_id) {
  MutexLock lock(mu_);
  Verdict v;
  SILO_ASSIGN_OR_RETURN(auto kept_text, Read(tenant_id));
  if (!kept_text) return v;
  auto kept = Decode(*kept_text, public_key_);
  if (!kept.ok()) {
    v.ok = false;
    v.problem = "its checkpoint is refused: " + kept.status().message();
    return v;
  }
  if (kept->tenant_id != tenant_id) {
    v.ok = false;
    v.problem = "its checkpoint is refused: it names another tenant";
    return v;
  }
  v.newest = *kept;
  SILO_ASSIGN_OR_RETURN(auto db, databases_->Acquire(tenant_id));
  SILO_RETURN_IF_ERROR(db->Read([&](storage::Database& d) -> Status {
    SILO_ASSIGN_OR_RETURN(v.problem, Lost(*kept, d));
    return Status::Ok();
  }));
  v.ok = v.problem.empty();
  return v;
}

Status Book::Forget(const std::string& tenant_id) {
  MutexLock lock(mu_);
  if (::unlink(PathOf(tenant_id).c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove a checkpoint");
  }
  return Status::Ok();
}

}  // namespace silo::checkpoint
