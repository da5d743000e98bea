// The primary's side of a tenant's replication: turns the changes the
// replication shim reports (storage/repl_vfs.h) into hash-chained segments
// (segment.h) and hands each one over at its publish point:
//
//  - a sync of either file (a commit, under synchronous=FULL; the two halves
//    of a checkpoint);
//  - a truncate of the WAL (a TRUNCATE checkpoint) and a delete of either
//    file (the last connection closing).
//
// Changes after the last publish point stay buffered until the next one, or
// until they reach kCutBytes (a long transaction: any in-order prefix of the
// changes is a state the primary's disk could hold at a crash, in which
// SQLite ignores frames after the last commit).
#ifndef SILO_REPLICATION_RECORDER_H_
#define SILO_REPLICATION_RECORDER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "replication/live_head.h"
#include "replication/segment.h"
#include "storage/repl_vfs.h"

namespace silo::replication {

// Where a chain stands: the last segment's number and hash (seq 0 and a
// zero hash before the first).
struct ChainHead {
  uint64_t seq = 0;
  std::string hash = std::string(kHashSize, '\0');
};

class SegmentRecorder : public storage::repl::Recorder {
 public:
  // Written bytes after which a segment is cut without a publish point
  // (well inside kMaxSegmentBytes).
  static constexpr size_t kCutBytes = size_t{16} << 20;

  // Receives each segment, encoded, in order. Its answer is the sync's: a
  // synchronous replica answers once a follower has made it durable.
  using Publish = std::function<Status(uint64_t seq, const std::string& encoded)>;

  // Continues the chain of `lineage` after `head`, under `term`. A new
  // chain over files that are empty (or absent) starts from the zero head;
  // over files that already hold data it must start from a head whose hash
  // is not zero (random), so that no empty follower takes its first segment
  // as a whole history: such a follower needs a snapshot first.
  SegmentRecorder(std::string lineage, uint64_t term, ChainHead head, Publish publish);

  // The WAL's last commit frame at the head this recorder continues from,
  // when known (a promoted copy's, a recorded head's; 0 with no WAL);
  // unknown (files of another history) until the WAL begins anew. Before
  // the first change.
  void SetCommitFrame(std::optional<uint32_t> wal_commit_frame);
  // Keeps `live` (beside the files) dirty before the first change after a
  // cut and clean at the position of each cut whose commit frame is known.
  // Between changes, with the files attached (or about to be) where `live`
  // lies; ignored when one is kept already.
  void KeepLiveHead(std::unique_ptr<LiveHead> live);
  bool keeps_live_head() const { return live_ != nullptr; }

  void BeforeChange() override;
  void Write(storage::repl::File file, int64_t offset, std::string_view bytes) override;
  void Truncate(storage::repl::File file, int64_t size) override;
  void Delete(storage::repl::File file) override;
  Status Sync(storage::repl::File file) override;

  // The last segment cut. Called between changes only (the shim serialises
  // the calls above; this reads what they wrote).
  ChainHead head() const { return head_; }

 private:
  // Cuts a segment of the buffered ops and publishes it. The chain advances
  // even when publishing fails: the changes are on this disk either way.
  Status Cut();

  std::string lineage_;
  uint64_t term_;
  ChainHead head_;
  Publish publish_;
  std::vector<Op> pending_;
  size_t pending_bytes_ = 0;
  Status deferred_;  // a failed publish of a cut that no sync has answered yet
  std::unique_ptr<LiveHead> live_;
  ReplicaPosition position_;  // the head's, with its commit frame
  bool frame_known_ = false;  // position_.wal_commit_frame is the files'
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_RECORDER_H_
