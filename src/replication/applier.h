// The follower's side of a tenant's replication: applies segments
// (segment.h) to a keyless copy of the tenant's `tenant.db` and
// `tenant.db-wal` in one directory, byte for byte and in order, making a
// file durable wherever the primary made it durable. It uses no key and
// never opens SQLite: the copy is ciphertext, readable only by a node that
// holds the tenant's key (at promotion, promotion.h).
//
// After each segment the applier makes every file it changed durable and
// records its position (lineage, term, seq, hash, last commit frame) in
// `replica.pos`, two alternating checksummed slots overwritten in place, so
// a torn write of one leaves the other. A follower killed mid-segment
// restarts from its position and applies that segment again: writes and
// truncates are absolute, so doing them twice changes nothing. A run of
// segments that only append WAL frames may be made durable together (Apply's
// `may_defer`, then Flush): two fsyncs for the run instead of two each.
//
// Each segment taken is first appended to `replica.next`, the journal of
// what is applied but not yet recorded, emptied at each position write. A
// copy opened after its process died mid-segment, mid-run or between a
// sync and the position write rolls forward: the journal's segments that
// continue its chain are applied again whole and recorded, so the copy
// matches its position (and can be promoted) without its primary resending
// them. The journal is not synced (that would double the follower's
// fsyncs): it covers a process crash, whose writes the kernel keeps, not a
// power loss, after which a copy past its position is refused at promotion.
//
// Thread-compatible: one Applier per directory, used by one thread at a time.
#ifndef SILO_REPLICATION_APPLIER_H_
#define SILO_REPLICATION_APPLIER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo::replication {

struct Segment;  // segment.h

inline constexpr char kReplicaDatabaseName[] = "tenant.db";
inline constexpr char kReplicaWalName[] = "tenant.db-wal";
inline constexpr char kReplicaPositionName[] = "replica.pos";
inline constexpr char kReplicaJournalName[] = "replica.next";

struct ReplicaPosition {
  std::string lineage;  // empty before the first segment or snapshot
  uint64_t term = 0;
  uint64_t seq = 0;  // 0: a snapshot taken before the lineage's first segment
  std::string hash;  // of segment `seq` (zeros for 0)
  // The WAL frame (from 1) of the last commit written since the WAL last
  // started; 0 when it holds none. What SQLite must recover at promotion:
  // fewer means the log ends early (a damaged frame), and the follower
  // refuses to be promoted.
  uint32_t wal_commit_frame = 0;
};

class Applier {
 public:
  // Opens the copy in `dir` (created 0700 if missing), reads its position
  // and rolls it forward through its journal. DataLoss if `replica.pos`
  // exists but neither slot is intact; Internal if the disk failed.
  static Result<std::unique_ptr<Applier>> Open(const std::string& dir);
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
  // With `may_defer`, a segment that only appends WAL frames is written but
  // not made durable, nor its position recorded: deferred() until the next
  // Apply without it, or Flush, does both (a segment of any other kind
  // first makes the deferred ones durable). Whoever acknowledges a deferred
  // segment must Flush first.
  Status Apply(std::string_view encoded, bool may_defer = false);
  // Makes what deferred Applies wrote durable and records the position.
  // Internal when the disk failed (reopen the copy).
  Status Flush();
  bool deferred() const { return deferred_; }

  // The position of the last segment applied (durable unless deferred()).
  const ReplicaPosition& position() const { return position_; }

  // The position `replica.pos` in `dir` records, without rolling the copy
  // forward (what a power loss now would leave). DataLoss as Open.
  static Result<ReplicaPosition> RecordedPosition(const std::string& dir);

  // Sets the position of the copy in `dir` (after a snapshot replaced its
  // files), durably, and empties its journal. REQUIRES: no Applier open on
  // `dir`.
  static Status Install(const std::string& dir, const ReplicaPosition& position);

 private:
  struct Files;
  Applier(ReplicaPosition position, std::unique_ptr<Files> files);
  // Apply after decoding; `journal`: append the segment to the journal
  // first (not when it comes from the journal).
  Status ApplyDecoded(const Segment& segment, std::string_view encoded, bool may_defer,
                      bool journal);
  // Applies the journal's segments that continue the chain, then empties it.
  Status RollForward();

  ReplicaPosition position_;
  std::unique_ptr<Files> files_;
  bool deferred_ = false;
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_APPLIER_H_
