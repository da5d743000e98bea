// A tenant's append-only event log (DESIGN section 5): one row per change,
// hash-chained. This module owns the `events` and `audit` tables: no other
// module writes SQL against them; they call the functions below. Each row keeps the hash of its
// body, so retention can drop an old body (PurgeBodies) and the chain still verifies.
//
//   body      = canonical JSON of the event, its sequence number included
//   body_hash = SHA-256(body), hex
//   hash      = SHA-256(previous hash || body_hash), hex; the first event
//               chains from 64 zeros
//
// Secrets never enter a body: a change marked `secret` is recorded as
// {"field": f, "changed": true}, without values.
#ifndef SILO_EVENTS_EVENT_LOG_H_
#define SILO_EVENTS_EVENT_LOG_H_

#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "storage/database.h"

namespace silo::events {

struct Actor {
  std::string kind;  // "user", "token", "operator" or "system"
  std::string id;
};

// Who made a change, from where, and when: what every write to a tenant's
// logs is stamped with (one type for auth, records and backup).
struct Origin {
  Actor actor;
  std::string request_id;
  std::string client;  // client address
  int64_t now_us = 0;  // UTC, microseconds since the epoch
};

struct Change {
  std::string field;
  std::optional<std::string> old_json;  // JSON text; nullopt = absent before
  std::optional<std::string> new_json;  // JSON text; nullopt = absent after
  bool secret = false;                  // record that it changed, never the values
};

struct Event {
  int64_t at_us = 0;  // UTC, microseconds since the epoch
  Actor actor;
  std::string request_id;
  std::string client;  // client address
  std::string subject_kind;
  std::string subject_id;
  std::string type;
  std::vector<Change> changes;
};

struct StoredEvent {
  int64_t seq = 0;
  int64_t at_us = 0;
  std::string actor;  // "<kind>:<id>"
  std::string type;
  std::string subject_kind;
  std::string subject_id;
  std::optional<std::string> body;  // nullopt once purged
  std::string body_hash;
  std::string hash;
};

// Two logs share the format: the event log (changes to data, the source of
// the projections) and the audit log (security events), each its own chain.
enum class Log { kEvents, kAudit };

// The tables of both logs, as one migration's SQL for the tenant schema.
extern const std::string_view kEventLogSchema;

// Appends `event`; returns its sequence number. Times are strictly
// increasing per log: `event.at_us` is raised to one microsecond after the
// last entry's when it is not later (so "as of T" is always well defined),
// and the caller sees the stamped time. InvalidArgument for a change whose
// JSON text does not parse.
// REQUIRES: db.InTransaction() (the event and the projections it changes
// commit together or not at all).
Result<int64_t> Append(storage::Database& db, Event& event, Log log = Log::kEvents);

// Appends one audit entry stamped with `origin` (the one way every module
// writes the audit log). Same rules as Append.
// REQUIRES: db.InTransaction().
Status AppendAudit(storage::Database& db, const Origin& origin, std::string type,
                   std::string subject_kind, std::string subject_id,
                   std::vector<Change> changes = {});

// Audit details as changes: each member one change with no old value (what
// operator and system entries record). Never pass secrets.
std::vector<Change> DetailChanges(const boost::json::object& details);

// Events with seq > `after`, in order, at most `limit`.
Result<std::vector<StoredEvent>> ReadAfter(storage::Database& db, int64_t after, int limit,
                                           Log log = Log::kEvents);

// Entries matching `where`, SQL over the log's columns (seq, at_us, actor,
// type, subject_kind, subject_id) with placeholders that `bind` fills.
// `where` is the caller's constant text, never request input.
Result<std::vector<StoredEvent>> Query(storage::Database& db, Log log, std::string_view where,
                                       const std::function<void(storage::Statement&)>& bind);

struct VerifyResult {
  int64_t checked = 0;
  std::optional<int64_t> first_broken;  // seq of the first entry that fails
  std::string reason;
};

// Recomputes the whole chain: sequence without gaps, body hashes, column
// values against the body, and every link.
Result<VerifyResult> Verify(storage::Database& db, Log log = Log::kEvents);

// Drops the bodies of events with seq <= `up_to` (retention, erasure);
// hashes stay, so Verify still passes. Returns how many were purged.
Result<int64_t> PurgeBodies(storage::Database& db, int64_t up_to, Log log = Log::kEvents);

// The sequence number of the last entry stamped before `at_us`, or nullopt
// when there is none.
Result<std::optional<int64_t>> LastSeqBefore(storage::Database& db, int64_t at_us, Log log);

// A point of a chain: an entry's sequence number and its chain hash (hex).
// seq 0 and an empty hash: the empty log.
struct ChainPoint {
  int64_t seq = 0;
  std::string hash;
  bool operator==(const ChainPoint&) const = default;
};
// The log's last entry.
Result<ChainPoint> LastPoint(storage::Database& db, Log log);
// The chain hash of entry `seq`, or nullopt when the log holds no such entry.
Result<std::optional<std::string>> HashAt(storage::Database& db, int64_t seq, Log log);

// Drops every entry stamped after `at_us`; what remains is a prefix of the
// chain, so it still verifies. Returns how many were dropped. Only for a
// copy being cut back to a time (a restore "as of"), never a live tenant.
// REQUIRES: db.InTransaction().
Result<int64_t> TruncateAfter(storage::Database& db, int64_t at_us, Log log);

// Replaces `to`'s log with `from`'s, row for row (hashes and purged bodies
// as they are), so that it verifies exactly as it did in `from`. An in-place
// restore keeps the live audit log this way: it is never rolled back. Returns
// how many entries were copied.
// REQUIRES: to.InTransaction().
Result<int64_t> ReplaceWithCopy(storage::Database& from, storage::Database& to, Log log);

}  // namespace silo::events

#endif  // SILO_EVENTS_EVENT_LOG_H_
