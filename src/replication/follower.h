// A follower node's keyless copies of the tenants it follows, one directory
// each under `root` (`<data>/replicas/<tenant-id>/`: tenant.db,
// tenant.db-wal, replica.pos), and the answers it gives a primary over the
// node link (protocol.h):
//  - a snapshot chunk is written to `snapshot.partial` at its offset; the
//    last one makes it durable, puts it in place of the copy (its WAL
//    removed) and sets the copy's position to the snapshot's chain head;
//  - a segment goes to the tenant's Applier (applier.h);
//  - the tenant's files (protocol.h, TenantFiles) replace `tenant.meta` and
//    `tenant.key` beside the copy (each written whole, then renamed);
//  - a file blob (protocol.h, BlobChunk) is written piece by piece to
//    files/b/<aa>/<id>.sf.partial beside the copy and, with its last piece,
//    made durable and renamed to <id>.sf (what the primary's disk holds, so
//    a promoted copy's files are where the tenant's own are); a removal
//    unlinks it; a blob list is answered with the ids this copy lacks (or
//    holds at another size);
//  - a resumable upload's part (kUploadPart) is written in place at
//    files/u/<id>.part, durable with its last piece; it goes when removed
//    (kUploadRemove) or when the blob of the same id is in place, and it
//    becomes that blob (kBlobFromPart) when its SHA-256 is the blob's;
//  - each is answered with kAck and the position the copy now holds, or
//    kNeedSnapshot when the copy cannot continue this chain (empty, another
//    lineage, a gap, diverged), or kRefused (damaged, a stale term, a tenant
//    id that is not one).
// Nothing here holds a key or opens SQLite.
//
// Thread-safe for different tenants; one tenant's messages must come one at
// a time (the node link's per-tenant order does that).
#ifndef SILO_REPLICATION_FOLLOWER_H_
#define SILO_REPLICATION_FOLLOWER_H_

#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "cluster/peer_link.h"
#include "replication/applier.h"
#include "replication/protocol.h"

namespace silo::replication {

class Replicas {
 public:
  // `recent` bounds the segments the copies keep for a promotion (Close).
  explicit Replicas(std::string root,
                    std::shared_ptr<RecentBudget> recent = std::make_shared<RecentBudget>());

  // The node link handler.
  cluster::Message Handle(const cluster::Message& message);
  // The same for a run of one tenant's messages (cluster::RunHandler): a
  // run of segments that only append WAL frames is made durable with one
  // fsync (and one position write), and each is answered once it is.
  std::vector<cluster::Message> HandleRun(const std::vector<cluster::Message>& run);

  // Where a tenant's copy stands (seq 0 when it has none).
  Result<ReplicaPosition> Position(const std::string& tenant_id);
  // Copies this object has opened (or received a message for) since it was
  // made.
  size_t open_count() const;
  // The bytes of segments its copies keep for a promotion, open ones' and
  // those kept for copies closed while idle (RecentBudget bounds both).
  size_t recent_bytes() const;
  // Closes the tenant's copy (its files stay, its journal recorded, so
  // they are its position's state), so that they may be moved away: a
  // follower taking the tenant over. The next message reopens it. Returns
  // the newest segments it applied (Applier::TakeRecent: oldest first, the
  // last at its position; those kept from before it was closed while idle
  // too, as RecentBudget bounds them; or those its files keep
  // (Applier::History) when they go further back: the node restarted
  // since; empty when none or when its journal could not be recorded).
  std::vector<std::string> Close(const std::string& tenant_id);
  // Empties the tenant's copy: its position, journal, history, database and WAL go
  // (its wrapped key, metadata and blobs stay), so it takes a snapshot
  // before it follows again. For a copy that a promotion check refused,
  // or may have changed (SQLite, opening it, may checkpoint it): its
  // position no longer names its files.
  Status Reset(const std::string& tenant_id);
  // Closes the copies no message reached for `idle` or longer (their files
  // stay; the next message or Position reopens one, rolling its journal
  // forward as at a restart): an open copy holds up to four descriptors,
  // and a node follows every tenant it does not lead. Skips a copy busy
  // now or taking a snapshot. Its recent segments are kept (RecentBudget::
  // closed_total). Returns how many it closed.
  size_t CloseIdle(std::chrono::milliseconds idle);
  // Makes the files of a tenant this node led until now its copy at
  // `position`: what a planned handover leaves behind, whose target goes on
  // with the chain from that very position, so that this node follows it
  // with no snapshot, or what a process that died leaves (LiveHead).
  // Whatever copy was here is replaced; `database`, its WAL if any and
  // the blobs under `files_dir` are hard-linked in and made durable (the
  // caller holds them closed and unchanged, and moves the originals away),
  // `tenant_files` (protocol.h, TenantFiles) written and `position`
  // recorded last. REQUIRES: the files stand at `position`, its commit
  // frame included. FailedPrecondition for a link across file systems;
  // nothing is left then.
  Status AdoptLed(const std::string& tenant_id, const std::string& database,
                  const std::string& files_dir, std::string_view tenant_files,
                  const ReplicaPosition& position);
  // Gives the tenant's copy, when it has no position and no database, the
  // database `database` and the blobs under `files_dir` (hard links): the
  // files of a tenant this node led until another node took it over, at no
  // position anyone can name (a process killed in the middle of a write,
  // files changed while the node was down). Not a copy of any chain (its
  // Applier applies no segment to it, it is never a candidate): only what
  // the next snapshot, sent as the pages that differ (PageSumsOf), starts
  // from, so that of a tenant that changed little since, little travels,
  // and the blobs it holds are not sent again. Nothing is written through
  // the links: a snapshot writes a new file and renames it over them.
  // Not synced (a crash that loses them costs only bytes sent).
  Status SeedFrom(const std::string& tenant_id, const std::string& database,
                  const std::string& files_dir);
  // Removes the tenant's copy, its wrapped key with it (the tenant was
  // deleted on its primary). A message that arrives later starts a new,
  // empty copy, which the next Drop removes again. OK when there is none.
  Status Drop(const std::string& tenant_id);
  // The tenant's metadata and wrapped key as last received (NotFound before).
  Result<TenantFiles> Files(const std::string& tenant_id);
  // The directory of a tenant's copy. REQUIRES: a valid tenant id.
  std::string Dir(const std::string& tenant_id) const { return root_ + "/" + tenant_id; }

  // Tenant ids are what Silo makes them (1 to 64 of [a-z0-9-]): anything
  // else would name a path outside `root`.
  static bool ValidTenantId(const std::string& id);

 private:
  struct Copy {
    std::mutex mu;                     // held while a message changes the copy, and by Position
    std::unique_ptr<Applier> applier;  // null while a snapshot replaces the files
    uint64_t snapshot_next = 0;        // the offset the next snapshot chunk must have
    std::chrono::steady_clock::time_point used;  // the last message's (CloseIdle)
  };
  // Handles `m` for its copy (locked); see Applier::Apply for `may_defer`.
  cluster::Message HandleLocked(const cluster::Message& m, Copy& copy, bool may_defer);
  // The answer to `m` after `s`; `copy` (locked) is null for a bad id.
  cluster::Message Answer(const cluster::Message& m, const Copy* copy, Status s);
  Status WriteTenantFiles(const std::string& tenant, std::string_view payload);
  // Where blob `blob_id` of a tenant's copy goes, and its directory.
  std::string BlobPath(const std::string& tenant_id, const std::string& blob_id) const;
  std::string BlobDir(const std::string& tenant_id, const std::string& blob_id) const;
  Status WriteBlobChunk(const std::string& tenant, std::string_view payload);
  Status RemoveBlob(const std::string& tenant, const Copy& copy, std::string_view payload);
  // A resumable upload in progress: its part (files/u/<id>.part), written
  // piece by piece in place (a piece past what is here is refused: the
  // sender sends it whole), made durable at its last piece; and removed.
  std::string UploadPath(const std::string& tenant_id, const std::string& upload_id) const;
  Status WriteUploadPart(const std::string& tenant, std::string_view payload);
  Status RemoveUploadPart(const std::string& tenant, const Copy& copy, std::string_view payload);
  // A completed upload's blob made of its part (kBlobFromPart), when the
  // part is that blob (size and SHA-256); FailedPrecondition when not.
  Status BlobFromUploadPart(const std::string& tenant, std::string_view payload);
  Result<std::vector<std::string>> WantedBlobs(const std::string& tenant, std::string_view payload);
  // The ids of the blobs the copy holds, whole or in part, after the
  // cursor `payload` (protocol.h, kBlobHeld).
  Result<std::vector<std::string>> HeldBlobs(const std::string& tenant, std::string_view payload);
  Status ApplySnapshotChunk(const std::string& tenant, Copy& copy, std::string_view payload);
  // A snapshot piece of `term` at `offset` may be taken: not from a deposed
  // primary (PermissionDenied), and the first or the next one
  // (FailedPrecondition: the snapshot starts again).
  static Status CheckSnapshotPiece(const Copy& copy, uint64_t term, uint64_t offset);
  // What the copy's database file holds (kPageSums; none when there is no
  // file).
  Result<PageSums> PageSumsOf(const std::string& tenant);
  // A span of snapshot pages (protocol.h, SnapshotPages): the first starts
  // the new file as a copy of the copy's own database; the last cuts it to
  // size and installs it only when its SHA-256 is the one sent (DataLoss
  // otherwise, and the new file is dropped).
  Status ApplySnapshotPages(const std::string& tenant, Copy& copy, std::string_view payload);
  // Makes snapshot.partial, whole and standing at `at`, the copy.
  Status InstallSnapshot(const std::string& tenant, Copy& copy, const ReplicaPosition& at);
  Copy& Get(const std::string& tenant);  // made on first use; never removed
  // Opens the copy's Applier if it is not, with the segments kept since it
  // was closed while idle (Seed). REQUIRES: copy.mu held.
  Status EnsureOpen(const std::string& tenant, Copy& copy);
  // The recent segments of copies closed while idle, least recently closed
  // first, within recent_->closed_total: Park keeps a tenant's (replacing
  // what it had), Unpark takes them (empty when none). parked_mu_ is taken
  // last: under a copy's mu, never the other way round.
  void Park(const std::string& tenant, std::vector<std::string> segments);
  std::vector<std::string> Unpark(const std::string& tenant);

  const std::string root_;
  const std::shared_ptr<RecentBudget> recent_;
  mutable std::mutex mu_;  // guards the map, not the copies (one tenant at a time)
  std::map<std::string, std::unique_ptr<Copy>> copies_;
  struct Parked {
    std::string tenant;
    std::vector<std::string> segments;
    size_t bytes = 0;
  };
  mutable std::mutex parked_mu_;  // guards the three below
  std::list<Parked> parked_;      // least recently closed first
  std::map<std::string, std::list<Parked>::iterator> parked_by_tenant_;
  size_t parked_bytes_ = 0;
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_FOLLOWER_H_
