// The primary's side of one tenant's replication: sends each segment the
// recorder cuts (recorder.h) to the tenant's followers over their node links,
// in order, and decides when a commit may be answered.
//
//  - sync mode (the default of a cluster): Publish returns once one
//    follower has acknowledged the segment, i.e. made it durable; a follower
//    that has not acknowledged within the ack timeout leaves the sync set
//    (only sync-set members may be promoted). If no follower acknowledged,
//    the commit is answered anyway with the sync set empty (logged), or,
//    with `strict`, the sync fails and so does the commit.
//  - async mode: Publish sends and returns.
//
// A follower that cannot continue the chain (kNeedSnapshot) gets no more
// segments until the owner sends it a snapshot: BeginSnapshot, taken while
// the tenant's changes are held (storage::repl::WithChangesHeld) so the
// file and chain head agree, marks the followers that need one and keeps
// every later segment for them in a backlog (bounded: past kBacklogBytes
// they need a new snapshot); SendSnapshot then ships the file in chunks
// while writes go on, and the backlog after it.
//
// Thread-safe. Publish calls come one at a time (the shim serialises a
// database's syncs).
#ifndef SILO_REPLICATION_SHIPPER_H_
#define SILO_REPLICATION_SHIPPER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "cluster/peer_link.h"
#include "replication/recorder.h"

namespace silo::replication {

struct ShipperOptions {
  bool sync = true;
  std::chrono::milliseconds ack_timeout{2000};
  bool strict = false;
};

struct FollowerLink {
  std::string node;
  std::shared_ptr<cluster::PeerClient> link;
};

class Shipper {
 public:
  static constexpr size_t kBacklogBytes = size_t{64} << 20;

  Shipper(std::string tenant, ShipperOptions options, std::vector<FollowerLink> followers);
  ~Shipper();
  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  // Adds follower `link.node`, or gives it a new link (the old one broke):
  // either way it needs a snapshot before it gets segments (it may have
  // missed some). What a node does as peers come and go.
  void SetFollower(FollowerLink link);

  // Stops shipping to `node` (it left the cluster); SetFollower takes it
  // back. Not listed by Followers(), SyncSet() or AckedSeqs() meanwhile.
  void RemoveFollower(const std::string& node);

  // Every follower needs a snapshot before it can follow: what the owner
  // says when it starts a chain over files that already hold data.
  void RequireSnapshot();

  // SegmentRecorder's Publish.
  Status Publish(uint64_t seq, const std::string& encoded);

  // Marks every follower that needs a snapshot as receiving one at chain
  // head `head` of `lineage`; later segments queue for them. REQUIRES: the
  // tenant's changes are held (nothing published meanwhile) and the file
  // the caller read under the same hold is what SendSnapshot ships.
  // Returns how many followers take it.
  size_t BeginSnapshot(const std::string& lineage, uint64_t term, const ChainHead& head);
  // Ships `database` (the file read in the same hold as BeginSnapshot) to
  // those followers, then their backlogs. A follower that fails needs a
  // snapshot again.
  Status SendSnapshot(const std::string& database);

  // The last segment published (0 before the first).
  uint64_t published() const { return published_; }
  // Followers that acknowledged the last segment they were sent (in sync).
  std::vector<std::string> SyncSet() const;
  // Followers that need a snapshot before they can follow.
  std::vector<std::string> NeedingSnapshot() const;
  // The highest seq each follower acknowledged (same order as given, those
  // removed left out).
  std::vector<uint64_t> AckedSeqs() const;

  struct FollowerStatus {
    std::string node;
    const char* state;  // "streaming", "needs_snapshot", "snapshotting"
    uint64_t sent = 0;
    uint64_t acked = 0;
  };
  // Where each follower stands, for `silo cluster status` and metrics.
  std::vector<FollowerStatus> Followers() const;

 private:
  struct Shared;  // what answers (on the links' threads) update; outlives this
  // Sends one segment to follower `i`; its answer updates the state.
  // REQUIRES: send_mu_ held (a follower's segments go in order).
  void SendSegment(size_t i, uint64_t seq, const std::string& encoded);

  const std::string tenant_;
  const ShipperOptions options_;
  std::mutex send_mu_;  // held across sends; never taken by answers
  std::atomic<uint64_t> published_{0};
  std::shared_ptr<Shared> shared_;
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_SHIPPER_H_
