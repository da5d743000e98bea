// The follower's side of a tenant's replication: applies segments
// (segment.h) to a keyless copy of the tenant's `tenant.db` and
// `tenant.db-wal` in one directory, byte for byte and in order, making a
// change durable (in its journal or its files) wherever the primary made it
// durable. It uses no key and
// never opens SQLite: the copy is ciphertext, readable only by a node that
// holds the tenant's key (at promotion, promotion.h).
//
// Each segment taken is first appended to `replica.next`, the journal of
// what is not yet recorded, and no byte of a segment reaches the files
// before its journal record is durable. The position (lineage, term, seq,
// hash, last commit frame) is recorded in `replica.pos`, two alternating
// checksummed slots overwritten in place (a torn write of one leaves the
// other), after every segment that changes the database or starts a WAL,
// and whenever the journal's records not yet recorded pass 16 MiB; then the
// files are made durable first. Recorded records stay in the journal as the
// copy's history; once it holds 8 MiB it becomes `replica.prev` (replacing
// the one before) at a position write and a new journal starts, so the copy
// keeps on disk at least the last 8 MiB of segments it applied (History):
// what a promoted copy resumes a follower behind it from, also after the
// copy's node restarted.
//
// A run of segments that only append WAL frames is made durable by one
// fsync of the journal (Apply's `may_defer`, then Flush); their frames then
// go to the WAL unsynced. A copy opened after its process died or its
// machine lost power rolls forward: the journal's segments that continue
// its chain are applied again whole (writes and truncates are absolute, so
// doing them twice changes nothing) and recorded. Since its files never
// hold a byte the journal did not hold durably, the copy then matches its
// position exactly (and can be promoted) without its primary resending
// anything.
//
// Thread-compatible: one Applier per directory, used by one thread at a time.
#ifndef SILO_REPLICATION_APPLIER_H_
#define SILO_REPLICATION_APPLIER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "replication/segment.h"

namespace silo::replication {

struct Segment;  // segment.h

inline constexpr char kReplicaDatabaseName[] = "tenant.db";
inline constexpr char kReplicaWalName[] = "tenant.db-wal";
inline constexpr char kReplicaPositionName[] = "replica.pos";
inline constexpr char kReplicaJournalName[] = "replica.next";
inline constexpr char kReplicaHistoryName[] = "replica.prev";

// Bounds the segments copies keep in memory for a promotion
// (Applier::TakeRecent): each copy at most `per_copy` bytes, and the copies
// sharing one budget (a node's: Replicas) at most `total` together, past
// which a copy that applies another keeps only its newest. `held` is what
// they keep now. Per copy as much as a primary retains for a follower that
// was away a moment (ShipperOptions::retain_bytes): a checkpoint's segment
// alone may be several MiB.
//
// A copy closed while idle (Replicas::CloseIdle) gives its segments to
// Replicas, which keeps those of such copies, `closed_total` bytes at most
// together (the least recently closed go first; not counted in `held`), for
// the copy's next open (Applier::Seed) or a promotion: a tenant idle for a
// minute is still promoted with them.
struct RecentBudget {
  size_t per_copy = size_t{8} << 20;
  size_t total = size_t{128} << 20;
  size_t closed_total = size_t{64} << 20;
  std::atomic<size_t> held{0};
};

class Applier {
 public:
  // Opens the copy in `dir` (created 0700 if missing), reads its position
  // and rolls it forward through its journal. DataLoss if `replica.pos`
  // exists but neither slot is intact; Internal if the disk failed. With
  // `recent`, the copy keeps its newest segments within it (TakeRecent);
  // without, none.
  static Result<std::unique_ptr<Applier>> Open(const std::string& dir,
                                               std::shared_ptr<RecentBudget> recent = nullptr);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // Applies `encoded` if it is the next link of this copy's chain: the
  // first segment of a lineage on an empty copy, or seq + 1 of the same
  // lineage whose prev_hash is this copy's hash, under a term no lower than
  // the last one seen. The segment this copy already holds is accepted again
  // without change (a resend). Anything else is refused with nothing
  // written: DataLoss (damaged, or a chain that does not link: diverged),
  // FailedPrecondition (another lineage, a gap, or behind: the copy needs a
  // snapshot), PermissionDenied (a term lower than one already seen: the
  // sender was deposed), Internal (the disk failed; reopen the copy).
  //
  // With `may_defer`, a segment that only appends WAL frames is journaled
  // but not made durable, and its bytes are held back from the files:
  // deferred() until the next Apply without it, or Flush, makes it durable
  // (a segment of any other kind first makes the deferred ones durable).
  // Whoever acknowledges a deferred segment must Flush first.
  Status Apply(std::string_view encoded, bool may_defer = false);
  // Makes what deferred Applies took durable (one journal fsync) and writes
  // their bytes to the files. Internal when the disk failed (reopen the
  // copy).
  Status Flush();
  // Records the position now: the files made durable and `replica.pos`
  // written. For a copy about to be closed for a while
  // (Replicas::CloseIdle): nothing is then left to roll forward at its
  // next open. Internal when the disk failed.
  Status Settle();
  bool deferred() const { return deferred_; }

  // The newest segments this copy applied, oldest first, their seqs
  // contiguous and the last its position's (within the RecentBudget given
  // to Open, at least the last; empty before one was applied since it was
  // opened, or without a budget); they are taken, and the copy keeps none
  // after. What a promoted copy gives its shipper (Shipper::ContinueFrom),
  // so that a follower a little behind it when its primary was lost
  // streams on from where it is with no snapshot. Held in memory: a copy
  // reopened starts with none (those of its journal it rolls forward
  // excepted) unless given back with Seed; History reads them from disk.
  std::vector<std::string> TakeRecent();
  // Gives back what TakeRecent took from this copy's last open (the copy
  // closed, then opened again): kept as if applied here, within the
  // budget, when they end at this copy's position and it keeps none yet;
  // dropped otherwise.
  void Seed(std::vector<std::string> segments);

  // The position of the last segment applied (durable unless deferred()).
  const ReplicaPosition& position() const { return position_; }

  // The position `replica.pos` in `dir` records, without rolling the copy
  // forward through its journal. DataLoss as Open.
  static Result<ReplicaPosition> RecordedPosition(const std::string& dir);

  // The newest segments the copy in `dir` applied up to its recorded
  // position, oldest first, as TakeRecent gives them: what its history and
  // journal still hold that links to that position, each checked whole
  // (DecodeSegment), at most `max_bytes` together (at least the last).
  // Empty when none does or the files cannot be read. What a promotion
  // resumes followers from when the copy's memory holds fewer (its node
  // restarted since). REQUIRES: no Applier open on `dir` that has not
  // settled.
  static std::vector<std::string> History(const std::string& dir, size_t max_bytes);

  // Sets the position of the copy in `dir` (after a snapshot replaced its
  // files), durably, and removes its journal and history. REQUIRES: no
  // Applier open on `dir`.
  static Status Install(const std::string& dir, const ReplicaPosition& position);

 private:
  struct Files;
  Applier(ReplicaPosition position, std::unique_ptr<Files> files,
          std::shared_ptr<RecentBudget> recent);
  // Apply after decoding; `journal`: append the segment to the journal
  // first (not when it comes from the journal).
  Status ApplyDecoded(Segment segment, std::string_view encoded, bool may_defer, bool journal);
  // Makes the journal durable, then writes the deferred segments' bytes to
  // the files (not synced).
  Status WriteUnapplied();
  // WriteUnapplied, then makes the files durable and records position_ in
  // `replica.pos`: the journal is history from then on.
  Status Record();
  // Applies the journal's segments past the recorded position that continue
  // the chain and records them; the journal goes on from its last record
  // kept (what ended the roll forward is cut off).
  Status RollForward();
  // Keeps segment `seq` (just applied) among the recent ones.
  void Remember(uint64_t seq, std::string_view encoded);

  ReplicaPosition position_;
  std::unique_ptr<Files> files_;
  bool deferred_ = false;
  std::vector<Segment> unapplied_;  // deferred, journaled, not in the files yet
  size_t unapplied_bytes_ = 0;
  const std::shared_ptr<RecentBudget> budget_;           // null: keeps none
  std::deque<std::pair<uint64_t, std::string>> recent_;  // TakeRecent's
  size_t recent_bytes_ = 0;                              // counted in budget_->held too
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_APPLIER_H_
