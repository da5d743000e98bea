// This node's part in a cluster (issue 21; docs/architecture.md
// "Replication"): set up by `silo serve` when SILO_ETCD_ENDPOINTS is set.
//
//  - It holds a node lease in etcd (cluster/node_lease.h) and announces
//    itself under /silo/nodes/<node> on it: its node link address and public
//    URL. A node id another live node holds is refused.
//  - It follows every tenant it is not primary for: its node link listener
//    (cluster/peer_link.h, mutual TLS) feeds the keyless copies under
//    <data>/replicas/<tenant-id>/ (replication/follower.h).
//  - A tenant this node opens becomes its primary here: /silo/t/<id>/primary
//    is created on the node lease, and its revision is the fencing term the
//    segments carry. A tenant whose primary is another live node is refused
//    (Attach). Its database is opened through the replication shim
//    (storage/repl_vfs.h) with a SegmentRecorder whose segments a Shipper
//    sends to every other announced node; each new follower first gets the
//    tenant's files (metadata, wrapped key) and a snapshot.
//  - A commit's sync fails once the node's lease deadline has passed
//    (self-fencing): no write is acknowledged by a node that etcd may
//    already have replaced.
//  - Sync set (sync mode): /silo/t/<id>/sync = {"term","nodes"} (no lease)
//    names the followers of which the most advanced holds every commit
//    answered (replication::ShipperOptions::record_sync_set); an election
//    waits for every member and takes the most advanced.
//  - Failover: when a tenant it copies has no primary key (the primary's
//    lease ran out or was revoked), every follower posts its copy's
//    position, lineage, last term and hash under /silo/t/<id>/pos/<node>;
//    after a short wait the most advanced member of the sync set once all
//    are heard (then the lowest node id), of the tenant's current chain
//    (/silo/t/<id>/chain, RecordChain: its lineage, and of its term or
//    exactly where a promotion took it on), imports the wrapped key, checks
//    its copy (replication/promotion.h: SQLite must recover exactly the
//    recorded commit frame), creates the primary key on its own lease,
//    moves the copy into <data>/tenants/<id>, adopts it into its registry
//    and opens it, its chain going on from the copy's position: the other
//    followers at that position stream on, the rest take a snapshot. A
//    copy that fails the check is not promoted ("needs a resync").
//  - An active tenant of this node's own (in its registry) that no node
//    leads and for which no follower that could take it posts a position,
//    for 2 s (its followers are keyless, refused, down or none, or every
//    node restarted), is claimed: opened (Claim), which makes this node its
//    primary (Attach, with its term check), so that the other nodes send
//    its requests here rather than answer 503 until one reaches this node,
//    and its followers stream it. Followers that are electing it are left
//    to finish (one may hold commits this copy lacks).
//  - Slugs are reserved cluster-wide (tenant::SlugReservations): a tenant
//    created on one node takes its slug on every node. Start reserves the
//    slugs of the tenants already here.
//  - A node whose lease etcd let go (paused or cut off longer than the TTL)
//    gets a new one and announces itself again (Rejoin). Its tenants,
//    fenced by the old lease, are closed and reopened under the new one:
//    each either stays here under a new term or, when another node took it
//    over meanwhile, is given up (Demote): its directory moves to
//    <data>/deposed/<id>.<term> (kept for the operator, never served) and
//    the node follows the new primary like any other. A node that restarts
//    after such a takeover does the same.
//  - Stop closes the tenants open here while the links and the lease hold
//    (their close shipped), and records beside each closed tenant's
//    database where its chain stands (chain.head, RecordChainHeads), and
//    the segments its shipper kept (chain.recent). After a restart, while
//    the file is still what was recorded, the tenant's chain goes on from
//    there (Attach), resuming from those segments a follower that was
//    behind (away meanwhile), or, led elsewhere meanwhile, the
//    files are kept as this node's copy at that position (Demote,
//    KeepAsCopy): no snapshot either way when the others stand there too.
//    A process that died stopped nothing: its recorders' chain.live
//    (replication::LiveHead, kept from the first open, KeepLiveHead) stands
//    in for chain.head when it names the files as they still are.
//  - A tenant's file blobs replicate as the sealed files they are
//    (ShipBlob before the commit that records one; each snapshot first
//    gives a copy the blobs it lacks) into <data>/replicas/<id>/files/,
//    which a promotion moves into place with the database.
//  - A request for a tenant another node leads is answered 307 to that
//    node's public URL (api::Services::primary_elsewhere): each loop turn
//    refreshes slug -> primary URL from etcd, so a request costs no etcd
//    call.
//  - Switchover (`silo tenant promote <slug> --node <id>`, PromoteTenant):
//    the command puts /silo/t/<id>/handover = {"to","from","term"} on a
//    lease of its own. The primary (on a thread of its own, StartHandOver,
//    so its loop goes on) closes the tenant and holds it closed
//    (requests get 503, retry), waits until the target's copy holds every
//    segment it published, adds that "seq" to the key and deletes its
//    primary key; the target takes the tenant over at once if its copy is
//    at exactly that seq (no election); the old primary keeps the files it
//    served, at that seq, as its copy (KeepAsCopy, before the key changes)
//    and follows from there with no snapshot, or, when they cannot be kept,
//    gives the tenant up as a deposed one would. Other followers wait while a
//    handover names another node; if the target fails, the key goes with
//    the command's lease and the usual election runs.
//  - A keyless node (SILO_KEYLESS=1, no master key) announces itself as
//    such: its copies are made like any other, but its acknowledgement
//    answers no sync commit (replication::FollowerLink::promotable), it
//    posts no position in an election and logs why it cannot take a tenant
//    over, and `silo tenant promote` refuses it.
//  - Every second it writes what it leads and where each follower stands to
//    /silo/status/<node> (on the lease), which `silo cluster status` reads.
//
//  - A tenant closed here (idle, evicted) keeps its chain: its recorder and
//    shipper wait (Closed), and the next open under the same lease and
//    term, over the same files, continues the chain, so its followers
//    stream on without a snapshot.
//
// Thread-safe.
#ifndef SILO_APP_CLUSTER_MEMBER_H_
#define SILO_APP_CLUSTER_MEMBER_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "base/file_util.h"
#include "base/histogram.h"
#include "base/mutex.h"
#include "base/status.h"
#include "cluster/etcd.h"
#include "cluster/node_lease.h"
#include "cluster/peer_link.h"
#include "cluster/prefix_cache.h"
#include "config/config.h"
#include "crypto/keyring.h"
#include "replication/follower.h"
#include "replication/recorder.h"
#include "replication/shipper.h"
#include "storage/tenant_databases.h"
#include "tenant/registry.h"

namespace silo::app {

struct ClusterOptions {
  config::Cluster cluster;
  std::string data_dir;
  // Not owned; outlive the member. Both null on a keyless node
  // (cluster.keyless), which only keeps copies: no tenant of its own, no
  // key, never a primary.
  crypto::Keyring* keyring = nullptr;
  tenant::TenantRegistry* registry = nullptr;
};

class ClusterMember : public std::enable_shared_from_this<ClusterMember> {
 public:
  // Checks the settings; nothing runs until Start().
  static Result<std::shared_ptr<ClusterMember>> Create(ClusterOptions options);
  ~ClusterMember();
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  // Grants the lease, listens for peers, announces the node with
  // `public_url`, starts the background loop. Unavailable when etcd cannot
  // be reached; AlreadyExists when a live node has this node id.
  Status Start(const std::string& public_url);
  // Stops the loop and the listener and revokes the lease (this node's
  // primary keys go with it). Idempotent.
  void Stop();

  // TenantDatabasesOptions::attach and ::detach (see the top of the file).
  Status Attach(const std::string& tenant_id, const std::string& path);
  void Detach(const std::string& tenant_id, const std::string& path);
  // tenant::SlugReservations: /silo/slugs/<slug> = {"id"} in etcd, kept
  // until the tenant is deleted (no lease: a slug outlives its node). The
  // release also writes /silo/gone/<id> (kept for good): every other node
  // then drops its copy and key (DropDeletedCopies).
  Status ReserveSlug(const std::string& slug, const std::string& tenant_id);
  void ReleaseSlug(const std::string& slug, const std::string& tenant_id);
  // files::FileStores::BlobReplication: a new blob of a tenant led here
  // goes to its followers before the commit that records it, and a removed
  // one is removed there (replication::Shipper::ShipBlob, RemoveBlob). OK
  // and nothing sent when replication is off or the tenant is not led here.
  Status ShipBlob(const std::string& tenant_id, const std::string& blob_id, bool from_part)
      EXCLUDES(mu_);
  void RemoveBlob(const std::string& tenant_id, const std::string& blob_id) EXCLUDES(mu_);
  // The same for a resumable upload's part (Shipper::ShipUploadPart,
  // RemoveUploadPart); best effort, so nothing is returned.
  void ShipUploadPart(const std::string& tenant_id, const std::string& upload_id, uint64_t from)
      EXCLUDES(mu_);
  void RemoveUploadPart(const std::string& tenant_id, const std::string& upload_id) EXCLUDES(mu_);
  // A re-key's or in-place restore's swap (backup::Service::SetBeforeSwap), the tenant
  // closed here: its chain is ended (Shipper::Retire: the sync set recorded
  // empty; and the chain key recorded as ended, which async mode needs: so
  // no follower's copy of the old files may be elected) and its next open
  // starts a new one, which every follower takes a snapshot of.
  // FailedPrecondition when this node does not hold the tenant's chain;
  // Unavailable when etcd did not take the empty set or the ended chain.
  Status EndChain(const std::string& tenant_id) EXCLUDES(mu_);
  // Waits, at most `timeout`, until every follower of a tenant open and led
  // here streams its chain holding everything published (a new chain:
  // each took a snapshot of the tenant as it is now) and, in sync mode,
  // the promotable ones are in its sync set. Returns how many followers
  // there are and how many of them stream; {0, 0} when replication is off
  // or the tenant is not open and led here.
  std::pair<int64_t, int64_t> AwaitCopies(const std::string& tenant_id,
                                          std::chrono::milliseconds timeout) EXCLUDES(mu_);
  // Where snapshots get a tenant's writer. Set once, after the databases
  // are made (they hold this member's hooks).
  void SetDatabases(std::weak_ptr<storage::TenantDatabases> databases);

  // The public URL of the node that leads the tenant with this slug, when
  // that is another live node (as of the last loop turn); "" when the slug
  // is the cluster's but no node leads it now; else nullopt.
  std::optional<std::string> PrimaryElsewhere(const std::string& slug) const EXCLUDES(mu_);
  // Whether this node leads the tenant now: it has it open as its primary
  // (a tenant is taken on when it is opened, so asking never opens one).
  bool LeadsOpen(const std::string& tenant_id) const EXCLUDES(mu_);

  // The node link's bound address (after Start).
  std::string address() const;

  // For /metrics (silo_repl_*).
  struct Stats {
    bool lease_held = false;
    size_t tenants_led = 0;
    size_t copies = 0;              // tenants this node follows (copies opened since start)
    uint64_t recent_bytes = 0;      // segments its copies keep for a promotion (RecentBudget)
    uint64_t retained_bytes = 0;    // segments its led tenants keep for followers (RetainBudget)
    uint64_t lag_segments = 0;      // the most any follower of a tenant led here is behind
    uint64_t followers_behind = 0;  // followers waiting for or receiving a snapshot
    uint64_t term_max = 0;          // the highest term among the tenants led here
    uint64_t segments = 0;          // segments published since start
    uint64_t bytes = 0;             // their bytes
    uint64_t snapshots = 0;         // snapshots sent (to one or more followers)
    // Their database bytes sent, to all their followers: of a copy sent
    // only the pages that differ from its own, those pages.
    uint64_t snapshot_bytes = 0;
    uint64_t promotions = 0;  // tenants taken over
    uint64_t loop_turns = 0;  // the cluster loop's turns since start (it is alive)
  };
  Stats stats() const;
  // Seconds from a segment's send to a follower's acknowledgement, over
  // every follower of every tenant led here (silo_repl_ack_seconds).
  std::shared_ptr<const Histogram> ack_seconds() const { return ack_seconds_; }

 private:
  // ack_seconds' bounds: 0.25 ms to 2.5 s.
  static std::vector<double> AckBounds();
  explicit ClusterMember(ClusterOptions options);

  // A tenant this node leads.
  struct Primary {
    std::string path;
    // The lease it was opened under: its commits are fenced by it, so a
    // tenant opened before a Rejoin stays fenced until reopened.
    std::shared_ptr<cluster::NodeLease> lease;
    uint64_t term = 0;
    std::string lineage;
    std::shared_ptr<replication::Shipper> shipper;  // null when SILO_REPLICATION=off
    std::shared_ptr<replication::SegmentRecorder> recorder;
    // Set while a promotion changes the files before any request is served
    // (its check, its audit entry): their segments are sent, and no commit
    // waits for them (none is answered to anyone).
    std::shared_ptr<std::atomic<bool>> unanswered = std::make_shared<std::atomic<bool>>(false);
  };
  // A tenant this node still leads (its primary key stays on the lease)
  // but has closed (idle, evicted): its recorder and shipper, kept so that
  // the next open continues the chain and the followers stream on, no
  // snapshot, when the lease, the term and the files are the same. Its
  // shipper keeps its segments for a follower that was away (within
  // kClosedRetainedBytes), which it resumes while the tenant is closed.
  struct Closed {
    std::shared_ptr<Primary> primary;
    FileIdentity database, wal;
    uint64_t closed_at = 0;  // closes_ when it closed: the oldest goes first
  };
  static constexpr size_t kMaxClosed = 4096;  // past it, the oldest reopen with a snapshot
  // The segments closed tenants' shippers keep for followers a little
  // behind, together (past it, those closed longest ago keep only their
  // newest one's position, no bytes: TrimClosed). As much as copies closed
  // while idle keep on a follower (replication::RecentBudget::closed_total).
  static constexpr size_t kClosedRetainedBytes = size_t{64} << 20;
  // The segments all led tenants' shippers keep (replication::RetainBudget):
  // as much as a follower's copies keep, open and closed together
  // (replication::RecentBudget). Past it, one that sends another keeps only
  // its newest.
  static constexpr size_t kLedRetainedBytes = size_t{192} << 20;
  struct Peer {
    std::string address;
    int64_t lease = 0;       // the incarnation announced (a rejoined node is linked anew)
    bool promotable = true;  // false: a keyless node (config::Cluster::keyless)
    std::shared_ptr<cluster::PeerClient> link;
  };

  void Loop();
  // What /silo/nodes/<node> holds: {"cluster", "url", "keyless"}.
  std::string Announcement() const;
  std::shared_ptr<cluster::NodeLease> Lease() const EXCLUDES(mu_);
  // After etcd let the node's lease go: a new lease, announced again. False
  // while etcd does not answer (the loop tries again).
  bool Rejoin();
  // Closes the tenants opened under a lease that is not the current one
  // (their next use reopens them under it).
  void ReopenFenced();
  // A switchover's value in etcd (see the top of the file).
  struct Handover {
    std::string to, from;
    int64_t term = 0;      // the primary's term it was asked of
    int64_t seq = 0;       // set by the primary once it let the tenant go
    int64_t lease = 0;     // the command's
    int64_t revision = 0;  // of the key
  };
  // A node whose copy of a tenant is older than a later primary's must not
  // lead it on that copy (it would lose what that primary acknowledged):
  // Unavailable when /silo/t/<id>/term (the latest term any node led it
  // under) is above the term in `dir`/primary.term (the one this node last
  // led it under, or took it over at); else that latest term (0: none).
  Result<int64_t> CheckNotBehind(const std::string& tenant_id, const std::string& dir);
  // The tenant's Primary when it is open here; else null.
  std::shared_ptr<Primary> OpenPrimary(const std::string& tenant_id) EXCLUDES(mu_);
  // The recorder and shipper of a chain this node starts as the tenant's
  // primary (not attached yet), for the database at `path`, under `term`
  // and `lease` (RecordChain next). With `from` null, a new lineage from
  // a random head, whose followers each need a snapshot; else the chain of
  // a promoted copy, going on from its position (followers that hold
  // exactly it stream on, and those behind it that `recent`, the segments
  // the copy applied last, continue: Shipper::ContinueFrom). Neither when
  // SILO_REPLICATION=off.
  std::shared_ptr<Primary> StartChain(const std::string& tenant_id, const std::string& path,
                                      uint64_t term, std::shared_ptr<cluster::NodeLease> lease,
                                      const replication::ReplicaPosition* from,
                                      std::vector<std::string> recent = {}) EXCLUDES(mu_);
  // Before a chain's first answered commit under `term`: records it as the
  // tenant's current chain (/silo/t/<id>/chain = {"term","lineage"}, on no
  // lease: an election reads it once this node is gone, and elects only a
  // copy of that lineage); then sync mode records the tenant's sync set
  // empty under `term` (an empty set elects nobody until a follower holds
  // the new chain), async mode deletes it. After anything that may still
  // refuse the tenant (a promotion's check): an empty set left by a refused
  // copy would elect nobody. Unavailable when etcd does not take it.
  // `from`: where a promoted copy takes the lineage on (recorded as
  // "from","from_hash"; null for a new lineage, whose copies all start
  // from a snapshot of this term).
  Status RecordChain(const std::string& tenant_id, uint64_t term, const std::string& lineage,
                     const replication::ChainHead* from = nullptr);
  // The peers `primary`'s shipper does not know (linked since its links
  // were taken): to be given to it once mu_ is let go.
  std::vector<replication::FollowerLink> LatePeers(const Primary& primary) REQUIRES(mu_);
  // Records `term` as the tenant's latest: in `dir` (synced), then in etcd.
  Status RecordTerm(const std::string& tenant_id, const std::string& dir, int64_t term);
  // The primary's half: hands `tenant_id` (`slug`) to h.to, or logs why
  // not. Up to 15 s: on a thread of its own (StartHandOver).
  void HandOver(const std::string& tenant_id, const Handover& h, const std::string& slug);
  // Runs HandOver on its own thread, so that the loop (other tenants'
  // elections, snapshots, claims) goes on meanwhile; the loop leaves the
  // tenant alone until it is done (handing_over_). One at a time per
  // tenant: another request for it waits for the next turn. Loop thread.
  void StartHandOver(const std::string& tenant_id, const Handover& h);
  // Joins the switchover threads that are done (all of them: `all`).
  void JoinHandOvers(bool all);
  bool HandingOver(const std::string& tenant_id) const EXCLUDES(mu_);
  // HandOver's: makes the tenant's files, held closed at segment
  // `published` of its chain, this node's copy (Replicas::AdoptLed), so
  // that it follows the target with no snapshot. False (logged) when they
  // cannot be: a snapshot then.
  bool KeepAsCopy(const std::string& tenant_id, const Primary& primary, uint64_t published);
  // The same for files at `at` (a recorded chain head).
  bool KeepAsCopy(const std::string& tenant_id, const replication::ReplicaPosition& at);
  // Stop's first step: closes the tenants open here (their close's
  // segments shipped while the links and the lease hold), then records
  // beside each closed one's database where its chain stands (chain.head,
  // with what tenant.db is now) and, first, the segments its shipper kept
  // (chain.recent, at most kRecentKeptBytes for all tenants together).
  void RecordChainHeads() EXCLUDES(mu_);
  // Start's: gives up the tenants served here that another node leads now
  // (this node restarted after a takeover), as the loop would (Demote),
  // before this node announces itself. Before the loop starts (it reads
  // tenant_keys_); left to the loop when etcd does not answer.
  void DemoteLedElsewhere();
  // Keeps the closed tenants' retained segments within kClosedRetainedBytes,
  // the most recently closed first.
  void TrimClosed() REQUIRES(mu_);
  static constexpr size_t kRecentKeptBytes = size_t{256} << 20;
  static std::string ChainHeadFile(const std::string& database);
  static std::string ChainRecentFile(const std::string& database);
  // The segments chain.recent beside `database` holds, oldest first (none
  // when it is missing or unreadable), and the file removed: read once, by
  // the open that follows a restart (Attach), which checks that they end
  // where the chain goes on (Shipper::ContinueFrom).
  static Result<std::vector<std::string>> TakeRecordedRecent(const std::string& database);
  // Has the primary's recorder keep its chain.live beside the files
  // (replication::LiveHead), before they are attached; logged when it
  // cannot.
  void KeepLiveHead(const std::string& tenant_id, const Primary& primary);
  // The position recorded beside `database`: by a stop (RecordChainHeads),
  // if the file is still what it was then and has no WAL beside it;
  // otherwise by a process that died (chain.live, replication::LiveHead),
  // if it was clean and the files are still what they were then.
  static std::optional<replication::ReplicaPosition> RecordedChainHead(const std::string& database);
  // Gives up a tenant this node serves that `node` leads now (see above).
  void Demote(const std::string& tenant_id, const std::string& node, int64_t term);
  // Links to announced nodes this node has no working link to.
  void RefreshPeers();
  // Where Snapshot copies a tenant's database file to send it: under
  // replicas/, named so no tenant id can be it; Start removes what a crash
  // left there (sealed bytes only).
  std::string SnapshotScratch(const std::string& tenant_id) const;
  // Ships the tenant's files and a snapshot to its followers that need one.
  void Snapshot(const std::string& tenant_id, const std::shared_ptr<Primary>& primary);
  // The same for a tenant led here but closed: opened for it.
  void SnapshotClosed(const std::string& tenant_id);
  // Writes /silo/status/<node> when it changed (or every 30 s).
  void PublishStatus();
  // Reads /silo/slugs/ into slugs_ (each second, when etcd changed).
  void RefreshSlugs();
  // Removes this node's copy and wrapped key of every tenant deleted on
  // its primary (/silo/gone/<id>, written by ReleaseSlug; each second, so a
  // node that was down when the tenant went drops it when it is back).
  void DropDeletedCopies();
  // Forgets a tenant deleted on its primary: this node's copy and the
  // wrapped key it came with, any key of it in the keyring, and any
  // election for it (with the position posted for one). Loop thread.
  void ForgetDeleted(const std::string& tenant_id);
  // DropDeletedCopies' place in /silo/gone/ (loop thread only): keys from
  // this revision on are read each second; all of them once a minute (a
  // copy a late message made again goes again).
  int64_t gone_next_revision_ = 0;
  std::chrono::steady_clock::time_point gone_full_at_{};
  // The failover election (see the top of the file), each loop turn.
  void CheckPrimaries();
  // Takes over `tenant_id` from this node's copy. False when it could not.
  // On the loop thread only (it reads tenant_keys_, as CheckPrimaries left it).
  bool Promote(const std::string& tenant_id);
  // This node's copy of `tenant_id` is no candidate, for `why` (logged):
  // it posts its position as refused, which an election waiting for every
  // sync set member counts as heard, and is not tried again until the
  // tenant is led again. Loop thread.
  void RefuseCandidacy(const std::string& tenant_id, const std::string& why);
  // Claims every active tenant of this node's registry not in `busy` (led,
  // handed over, or with a position posted by a follower that could take
  // it) and has not been for 2 s (see the top of the file). Loop thread.
  void ClaimUnled(const std::set<std::string>& busy);
  // Opens the tenant, which makes this node its primary (Attach). False
  // when it did not (logged).
  bool Claim(const std::string& tenant_id);
  std::vector<cluster::Message> Handle(const std::vector<cluster::Message>& run);

  const ClusterOptions options_;
  std::unique_ptr<cluster::Etcd> etcd_;
  // Every tenant's keys, as of CheckPrimaries' last read (the loop's only).
  cluster::PrefixCache tenant_keys_;
  std::unique_ptr<replication::Replicas> replicas_;
  std::unique_ptr<cluster::PeerListener> listener_;
  std::string address_;
  std::string public_url_;

  const std::shared_ptr<Histogram> ack_seconds_ = std::make_shared<Histogram>(AckBounds());
  // What the shippers of the tenants led here keep, together (open and
  // closed: those closed at most kClosedRetainedBytes of it).
  const std::shared_ptr<replication::RetainBudget> retained_ =
      std::make_shared<replication::RetainBudget>(kLedRetainedBytes);
  mutable Mutex mu_;
  CondVar wake_;
  bool started_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::weak_ptr<storage::TenantDatabases> databases_ GUARDED_BY(mu_);
  std::shared_ptr<cluster::NodeLease> lease_ GUARDED_BY(mu_);  // replaced by Rejoin
  std::map<std::string, Peer> peers_ GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Primary>> primaries_ GUARDED_BY(mu_);
  std::map<std::string, Closed> closed_ GUARDED_BY(mu_);
  std::set<std::string> handing_over_ GUARDED_BY(mu_);  // tenants HandOver runs for
  uint64_t closes_ GUARDED_BY(mu_) = 0;
  // The loop thread's own: when this node posted its position for a
  // tenant without a primary, and copies refused promotion.
  std::map<std::string, std::chrono::steady_clock::time_point> elections_;
  std::set<std::string> refused_;
  std::set<int64_t> handovers_tried_;  // handover keys' revisions, once each
  struct HandOverThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::map<std::string, HandOverThread> handover_threads_;  // loop thread; Stop after it
  // Tenants whose sync set this node is not in, or whose current chain its
  // copy is not of (said once each).
  std::set<std::string> unelectable_;
  // Tenants of this node's own that no node leads: when each may be
  // claimed (ClaimUnled; a refused claim is tried again 30 s later).
  std::map<std::string, std::chrono::steady_clock::time_point> claim_at_;
  std::map<std::string, std::string> slugs_;  // tenant id -> slug, cluster-wide
  int64_t slugs_revision_ = 0;                // etcd's revision slugs_ was read at
  // What PublishStatus last wrote, under which lease, and when it writes it
  // again even unchanged.
  std::string status_written_;
  int64_t status_lease_ = 0;
  std::chrono::steady_clock::time_point status_rewrite_at_{};
  // slug -> public URL of its primary, for tenants another node leads.
  std::map<std::string, std::string> elsewhere_ GUARDED_BY(mu_);
  std::atomic<uint64_t> next_message_{cluster::RandomFirstSeq()};  // link message ids
  std::atomic<uint64_t> segments_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> snapshots_{0};
  std::atomic<uint64_t> snapshot_bytes_{0};
  std::atomic<uint64_t> promotions_{0};
  std::atomic<uint64_t> loop_turns_{0};
  std::thread loop_;
};

// `silo cluster status`: the nodes announced in etcd, each tenant's primary
// and term, and where its followers stand as the primary last reported
// (acknowledged seq, lag in segments). Text, or one JSON object
// {"nodes":[...],"tenants":[...]} with `as_json`. Unavailable when no
// endpoint answers.
Result<std::string> ClusterStatus(const std::vector<std::string>& etcd_endpoints, bool as_json);

// `silo tenant promote <slug> --node <node>`: hands the tenant from its
// primary to `node`, a live node whose copy streams, with no acknowledged
// write lost (see the top of the file), and waits up to 30 s for it. What
// happened, as a line; NotFound (no such tenant or node), FailedPrecondition
// (no primary now, the node does not follow it, a handover under way),
// DeadlineExceeded (not done in time: the tenant is then elected as after
// a failure), Unavailable (etcd).
Result<std::string> PromoteTenant(const std::vector<std::string>& etcd_endpoints,
                                  const std::string& slug, const std::string& node);

// `silo tenant promote <slug> --node <node> --accept-loss`: for a tenant
// no node leads whose election waits for sync set members that are gone
// for good (in sync mode only a member may hold every acknowledged write,
// so the election waits to hear from each). Replaces the set with `node`
// alone, marked forced, so that `node` takes the tenant over with what its
// copy holds, and waits up to 30 s for it. Writes that only the lost
// members had acknowledged are lost; the promotion's audit entry says it
// was forced and names the set it replaced. `node` must be live, hold the
// master key and have posted the position of a copy of the tenant's
// current chain (a candidate its own election would take).
// FailedPrecondition (a node leads the tenant: hand it over without
// --accept-loss; no sync set: async mode elects by itself; `node` posted
// no position, refused, or holds a copy of an ended chain or one past
// where the current primary took the chain on), NotFound,
// DeadlineExceeded (its log says why), Unavailable (etcd).
Result<std::string> ForceElection(const std::vector<std::string>& etcd_endpoints,
                                  const std::string& slug, const std::string& node);

}  // namespace silo::app

#endif  // SILO_APP_CLUSTER_MEMBER_H_
