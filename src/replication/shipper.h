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
// while writes go on, and the backlog after it. A follower whose copy holds
// a database (it left the chain: diverged, ahead of a new primary, too far
// behind) is sent only the pages that differ from its own (protocol.h,
// SnapshotPages), and installs the result only if it is this file.
//
// A tenant's file blobs go beside the segments: ShipBlob sends a new blob
// to every follower before the commit that names it, and a snapshot first
// gives its follower every blob it lacks. A follower that misses a blob
// (its link broke, it was away, it refused) needs a snapshot before it
// streams again, even where the retained segments would let it resume, so
// no copy holds a commit that names a blob it lacks. A resumable upload's
// part goes too, each request's bytes before it is answered
// (ShipUploadPart), but a copy that misses some needs no snapshot: its
// part is only shorter, and a client resumes from what it holds.
//
// Thread-safe. Publish and Send calls come one at a time (the shim
// serialises a database's syncs); AwaitAck calls may overlap them.
#ifndef SILO_REPLICATION_SHIPPER_H_
#define SILO_REPLICATION_SHIPPER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/histogram.h"
#include "base/status.h"
#include "cluster/peer_link.h"
#include "replication/protocol.h"
#include "replication/recorder.h"

namespace silo::replication {

// Bounds the segments the shippers of one node's led tenants keep together
// (each within its ShipperOptions::retain_bytes): past `total`, a shipper
// that sends another keeps only its newest. `held` is what they keep now.
// Without it, a node leading many busy tenants would keep retain_bytes for
// each (8 MiB times SILO_MAX_OPEN_TENANTS, 2 GiB by default).
struct RetainBudget {
  explicit RetainBudget(size_t total_bytes = size_t{128} << 20) : total(total_bytes) {}
  const size_t total;
  std::atomic<size_t> held{0};
};

struct ShipperOptions {
  bool sync = true;
  std::chrono::milliseconds ack_timeout{2000};
  bool strict = false;
  // The newest segments kept (at most this many bytes, at least the last;
  // those ContinueFrom was given kept on top until this many of the chain
  // follow them) so that a follower that was away a moment resumes without
  // a snapshot.
  size_t retain_bytes = size_t{8} << 20;
  // Shared with the node's other led tenants' shippers; null: unbounded.
  std::shared_ptr<RetainBudget> budget = nullptr;
  // Sync mode: records a new sync set durably where an election reads it
  // (etcd). The sync set is the promotable followers of which at least one
  // holds every commit answered so far (copies are prefixes, so the most
  // advanced member holds them all): a commit is answered once a member
  // holds it (while no member streams, once any promotable follower
  // does); when none does in time, the followers that hold it (or, not
  // strict, none) become the set, recorded before the answer. An election
  // hears every member and takes the most advanced. MaintainSyncSet lets
  // members that stopped streaming go and adds followers that caught up.
  // A failure to record fails the commit. Empty: the set is kept here only.
  std::function<Status(const std::vector<std::string>& nodes)> record_sync_set = nullptr;
  // The tenant's files directory (tenants/<id>/files): its blobs go to
  // followers with each snapshot (the ones a copy lacks) and by ShipBlob.
  // Empty: no blobs are shipped.
  std::string files_dir = std::string();
  // Where each streamed segment's acknowledgement time goes: seconds from
  // its send (at the commit) to the follower's answer that it is durable
  // there, i.e. the replica's lag behind this copy. Null: not measured.
  std::shared_ptr<Histogram> ack_seconds = nullptr;
};

struct FollowerLink {
  std::string node;
  std::shared_ptr<cluster::PeerClient> link;
  // False for a keyless node's copy: it could never take the tenant over,
  // so its acknowledgement does not answer a sync commit, and it is not in
  // the sync set.
  bool promotable = true;
};

class Shipper {
 public:
  static constexpr size_t kBacklogBytes = size_t{64} << 20;

  Shipper(std::string tenant, ShipperOptions options, std::vector<FollowerLink> followers);
  ~Shipper();
  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  // Adds follower `link.node`, or gives it a new link (the old one broke,
  // the node restarted): it is asked where it stands (Resume) before it
  // gets segments. What a node does as peers come and go.
  void SetFollower(FollowerLink link);

  // Asks each follower whose link is new, or that fell out of step (a
  // segment not acknowledged in time, refused), where its copy stands (one
  // round trip, at most a second) and, when the retained segments continue
  // its chain from there, sends them and streams on; otherwise it needs a
  // snapshot. One that does not answer is asked again on the next call.
  // Returns how many resumed.
  size_t Resume();

  // Stops shipping to `node` (it left the cluster); SetFollower takes it
  // back. Not listed by Followers(), SyncSet() or AckedSeqs() meanwhile.
  void RemoveFollower(const std::string& node);

  // Drops every retained segment, keeping only the newest one's position:
  // what the owner does to a shipper it keeps while the tenant is closed,
  // once the closed ones keep too much (a follower asked later resumes if
  // it holds the newest, else takes a snapshot).
  void TrimRetained();
  // The retained segments, oldest first, the last the newest published
  // (empty before the first): copies. What a node stopping keeps beside a
  // tenant's files (ClusterMember's chain.recent), so that its chain, going
  // on from there after a restart (ContinueFrom), resumes a follower that
  // was behind with no snapshot.
  std::vector<std::string> Retained();
  // Their size in bytes.
  size_t RetainedBytes();

  // Every follower needs a snapshot before it can follow: what the owner
  // says when it starts a chain over files that already hold data.
  void RequireSnapshot();

  // The chain goes on from `head`, where this node's files stand: a
  // promoted copy's position, which other followers of the same lineage
  // may hold too. A follower asked where it stands (Resume) that holds
  // exactly `head` streams on from there, with no snapshot; every follower
  // is asked first. `recent` (Applier::TakeRecent: the segments the copy
  // applied last, oldest first, the last at `head`) are retained as if
  // sent here: a follower behind `head` whose chain they continue is given
  // every blob it lacks (it may have missed one those segments name), then
  // them, and streams on. Any other follower needs a snapshot. Segments
  // that do not form a chain ending at `head` are dropped whole (logged).
  // REQUIRES: called before the first Send.
  void ContinueFrom(const ChainHead& head, std::vector<std::string> recent = {});

  // SegmentRecorder's Publish: Send, then AwaitAck.
  Status Publish(uint64_t seq, const std::string& encoded);

  // A segment sent, to the followers at these indices.
  struct Sent {
    uint64_t seq = 0;
    std::vector<size_t> targets;
  };
  // Publish's first half: keeps segment `seq` for resuming followers and
  // sends it to the streaming ones (queues it for those being given a
  // snapshot). Calls come one at a time, in seq order.
  Sent Send(uint64_t seq, const std::string& encoded);
  // Publish's second half: whether the commit of `sent` may be answered
  // (the sync rule above; always OK in async mode). Thread-safe, and may
  // run after later segments were sent, concurrently with their waits (a
  // commit waiting outside the write lock, storage::repl::CommitWaits):
  // sync-set decisions are made in seq order, a wait whose segment a later
  // decision already covered returning OK.
  Status AwaitAck(const Sent& sent);
  bool sync() const { return options_.sync; }

  // Marks every follower that needs a snapshot as receiving one at chain
  // head `head` of `lineage`; later segments queue for them. REQUIRES: the
  // tenant's changes are held (nothing published meanwhile) and the file
  // the caller read under the same hold is what SendSnapshot ships.
  // Returns how many followers take it.
  size_t BeginSnapshot(const std::string& lineage, uint64_t term, const ChainHead& head);
  // Ships the file at `path` (a copy of the database made in the same hold
  // as BeginSnapshot) to those followers, then their backlogs; read a chunk
  // (kSnapshotChunkBytes) at a time, so memory does not grow with the
  // tenant. A follower that fails needs a snapshot again.
  Status SendSnapshot(const std::string& path);

  // Sends blob `id` (files_dir's files/b/<aa>/<id>.sf, complete and
  // synced) to every follower (one that needs a snapshot gets it with
  // its snapshot) and waits for each to make it durable, at
  // most the ack timeout past the last piece sent (one that refused a
  // piece, or whose window stayed shut for the ack timeout, is given up
  // then and not waited for again). One that does not (or that is away)
  // needs a snapshot before it streams again. Call it before
  // the commit that records the blob: whether the commit is answered is
  // then the sync rule's (Publish), since a follower that lacks the blob
  // gets no later segment. Fails only when the blob cannot be read.
  //
  // With `from_part`, the blob is a completed resumable upload: a follower
  // whose part (ShipUploadPart) is the blob, byte for byte (size and
  // SHA-256), makes it the blob in place, and only the others are sent it.
  Status ShipBlob(const std::string& id, bool from_part = false);
  // Tells the followers that blob `id` is gone, under `term` (a copy that
  // has seen a higher one refuses). Best effort: a copy that misses it
  // keeps the blob as an orphan, which a promoted copy's file collection
  // (files::FileStore::CollectExpired) removes.
  void RemoveBlob(const std::string& id, uint64_t term);
  // A resumable upload in progress (files_dir/u/<id>.part, made durable
  // here first): its bytes from `from` (a byte offset of that file) go to
  // every streaming follower, which makes them durable, before the request
  // that wrote them is answered; a copy that missed earlier bytes (it was
  // away or needed a snapshot) is sent the part whole. So a client that
  // resumes the upload on a promoted copy goes on from what that copy
  // holds (tus: HEAD names the offset). Best effort: a follower that does
  // not take it is logged and costs only bytes sent again after a
  // failover; it may hold the request up to the ack timeout. Fails only
  // when the part cannot be read.
  Status ShipUploadPart(const std::string& id, uint64_t from);
  // Tells the followers that upload `id`'s part is gone (terminated,
  // expired, or removed), under `term`. Best effort, not waited for.
  void RemoveUploadPart(const std::string& id, uint64_t term);
  // Removes, under `term`, the blobs a follower holds that this copy no
  // longer does, from each streaming follower that may have missed a
  // removal: one new or back on a new link (it was away), or one a
  // RemoveBlob did not reach. Without it, a file purged here would stay on
  // such a copy, sealed but whole, until that copy is promoted. A blob is
  // always here before it is on a follower (ShipBlob), so one held there
  // and not here was removed here, never one on its way. Called by the
  // owner now and then (a cluster node: each loop turn); a follower that
  // does not answer is tried again on the next call. Returns how many
  // blobs went.
  size_t ReconcileBlobs(uint64_t term);

  // The last segment published (0 before the first).
  uint64_t published() const { return published_; }
  // The bytes of database pages every snapshot so far sent, to all its
  // followers together: a copy given the pages that differ from its own
  // (SnapshotPages) counts those only.
  uint64_t snapshot_bytes_sent() const { return snapshot_bytes_sent_; }
  // The sync set (ShipperOptions::record_sync_set), sorted. Starts empty.
  std::vector<std::string> SyncSet() const;
  // Takes out members that stopped streaming (when those that stay hold
  // everything published) and adds promotable streaming followers that
  // hold everything published, recording the new set first. Called by the
  // owner now and then (a cluster node: each loop turn).
  Status MaintainSyncSet();
  // Ends this chain as a source of promotable copies: the sync set is
  // recorded empty (sync mode) and stays so, whatever MaintainSyncSet or a
  // commit's wait would add. For a tenant whose files are about to be
  // replaced under it (a re-key): the followers' copies of this chain are
  // of the old files, and none may be elected from now on. Unavailable
  // when the empty set cannot be recorded (then nothing changed).
  Status Retire();
  // Followers that need a snapshot before they can follow.
  std::vector<std::string> NeedingSnapshot() const;
  // The highest seq each follower acknowledged (same order as given, those
  // removed left out).
  std::vector<uint64_t> AckedSeqs() const;

  struct FollowerStatus {
    std::string node;
    const char* state;  // "streaming", "asking", "needs_snapshot", "snapshotting"
    uint64_t sent = 0;
    uint64_t acked = 0;
  };
  // Where each follower stands, for `silo cluster status` and metrics.
  std::vector<FollowerStatus> Followers() const;

 private:
  struct Shared;  // what answers (on the links' threads) update; outlives this
  // Where a follower at `at` (seq, hash) resumes: the index in retained_
  // of the first segment to send it (retained_.size(): none, it holds the
  // newest), or retained_.size() + 1 when it cannot (a snapshot).
  // REQUIRES: send_mu_ held.
  size_t ResumeIndex(const std::pair<uint64_t, std::string>& at) const;
  // Drops the oldest retained segment. REQUIRES: send_mu_ held, one retained.
  void DropOldestRetained();
  // Adds `bytes` to retained_bytes_ and to the budget's `held`.
  // REQUIRES: send_mu_ held.
  void AddRetained(size_t bytes);
  // Drops every retained segment (and their bytes from the budget).
  // REQUIRES: send_mu_ held.
  void ForgetRetained();
  // Sends one segment to follower `i`; its answer updates the state.
  // REQUIRES: send_mu_ held (a follower's segments go in order).
  void SendSegment(size_t i, uint64_t seq, const std::string& encoded);
  // Sends blob `id` to followers `targets` (indices), each piece to all of
  // them, and waits for their answers; returns those that did not take it
  // whole. A blob that is no longer there (removed meanwhile) is nobody's
  // failure; one that cannot be read sets `*unreadable`.
  std::vector<size_t> SendBlob(const std::vector<size_t>& targets, const std::string& id,
                               Status* unreadable);
  // The same for any file at `path` named `id`, as messages of `kind`,
  // from byte `from` on (a follower cuts its copy to the file's size with
  // the last piece); `short_copies`, when given, gets the targets that
  // answered that their copy is short of `from` (kNeedSnapshot).
  std::vector<size_t> SendFile(const std::vector<size_t>& targets, MessageKind kind,
                               const std::string& path, const std::string& id, uint64_t from,
                               Status* unreadable, std::vector<size_t>* short_copies);
  // What the database file of the copy on `link` holds (kPageSums), for a
  // snapshot sent as the pages that differ; none when it does not say (a
  // node built before page sums).
  std::optional<PageSums> AskPageSums(const std::shared_ptr<cluster::PeerClient>& link);
  // Gives follower `i` (over `link`) every blob under files_dir that its
  // copy lacks (kBlobList, then SendBlob).
  Status SyncBlobs(size_t i, const std::shared_ptr<cluster::PeerClient>& link);
  // Removes from the follower on `link` the blobs it holds that files_dir
  // does not (kBlobHeld, page by page; kBlobRemove). Returns how many.
  Result<size_t> RemoveExtraBlobs(const std::shared_ptr<cluster::PeerClient>& link, uint64_t term);
  // Asks followers `targets` to make blob `id` of their upload part
  // (kBlobFromPart) and waits for their answers; returns those whose part
  // is not it (to be sent the blob), and adds to `failed` those that did
  // not answer in the ack timeout, or refused.
  std::vector<size_t> BlobFromParts(const std::vector<size_t>& targets, const std::string& id,
                                    std::vector<size_t>* failed);
  // Follower `i` lacks a blob: it needs a snapshot before it streams again.
  void MissedBlob(size_t i, const std::string& id, const std::string& why);
  // Records `nodes` (sorted) as the sync set, then keeps it.
  // REQUIRES: sync_mu_ held.
  Status RecordSyncSet(std::vector<std::string> nodes);

  const std::string tenant_;
  const ShipperOptions options_;
  std::mutex send_mu_;  // held across sends; never taken by answers
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> snapshot_bytes_sent_{0};
  // The newest segments, oldest first, contiguous seqs (under send_mu_).
  std::deque<std::pair<uint64_t, std::string>> retained_;
  size_t retained_bytes_ = 0;
  // Of retained_bytes_, those of the promoted copy's segments that
  // ContinueFrom retained (the oldest ones), under send_mu_.
  size_t seeded_bytes_ = 0;
  // ContinueFrom's head: where this chain went on from (under send_mu_).
  ChainHead base_;
  // What a follower must hold to resume while no segment is retained:
  // ContinueFrom's head before the first Send, or the newest segment's
  // position once TrimRetained dropped them all (under send_mu_).
  ChainHead empty_head_;
  // Held while the sync set is decided and recorded (AwaitAck,
  // MaintainSyncSet); taken after send_mu_, before shared_->mu.
  std::mutex sync_mu_;
  std::vector<std::string> sync_set_;  // sorted; written under sync_mu_ and shared_->mu
  // The highest seq a sync-set decision covered: the set then recorded (or
  // kept) has a member holding it, so it holds every seq below too; a wait
  // for one of those needs no decision of its own. Under sync_mu_.
  uint64_t decided_ = 0;
  bool retired_ = false;  // Retire: no member joins again. Under sync_mu_.
  std::shared_ptr<Shared> shared_;
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_SHIPPER_H_
