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
//  - Failover: when a tenant it copies has no primary key (the primary's
//    lease ran out or was revoked), every follower posts its copy's
//    position under /silo/t/<id>/pos/<node>; after a short wait the most
//    advanced one (then the lowest node id) imports the wrapped key, checks
//    its copy (replication/promotion.h: SQLite must recover exactly the
//    recorded commit frame), creates the primary key on its own lease,
//    moves the copy into <data>/tenants/<id>, adopts it into its registry
//    and opens it: its followers (the others) take a snapshot. A copy that
//    fails the check is not promoted ("needs a resync").
//  - Slugs are reserved cluster-wide (tenant::SlugReservations): a tenant
//    created on one node takes its slug on every node. Start reserves the
//    slugs of the tenants already here.
//  - Every second it writes what it leads and where each follower stands to
//    /silo/status/<node> (on the lease), which `silo cluster status` reads.
//
// Not built yet (issue 21 stays open): `silo tenant promote`, redirects to
// the primary, re-granting a lost lease, a deposed primary rejoining as a
// follower, a sync set in etcd (with one follower down, the other may be
// behind an acknowledged write and still be promoted).
//
// Thread-safe.
#ifndef SILO_APP_CLUSTER_MEMBER_H_
#define SILO_APP_CLUSTER_MEMBER_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "base/status.h"
#include "cluster/etcd.h"
#include "cluster/node_lease.h"
#include "cluster/peer_link.h"
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
  crypto::Keyring* keyring = nullptr;          // not owned; outlives the member
  tenant::TenantRegistry* registry = nullptr;  // not owned; outlives the member
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
  // until the tenant is deleted (no lease: a slug outlives its node).
  Status ReserveSlug(const std::string& slug, const std::string& tenant_id);
  void ReleaseSlug(const std::string& slug, const std::string& tenant_id);
  // Where snapshots get a tenant's writer. Set once, after the databases
  // are made (they hold this member's hooks).
  void SetDatabases(std::weak_ptr<storage::TenantDatabases> databases);

  // The node link's bound address (after Start).
  std::string address() const;

  // For /metrics (silo_repl_*).
  struct Stats {
    bool lease_held = false;
    size_t tenants_led = 0;
    size_t copies = 0;              // tenants this node follows (copies opened since start)
    uint64_t lag_segments = 0;      // the most any follower of a tenant led here is behind
    uint64_t followers_behind = 0;  // followers waiting for or receiving a snapshot
    uint64_t term_max = 0;          // the highest term among the tenants led here
    uint64_t segments = 0;          // segments published since start
    uint64_t bytes = 0;             // their bytes
    uint64_t snapshots = 0;         // snapshots sent (to one or more followers)
    uint64_t promotions = 0;        // tenants taken over
  };
  Stats stats() const;

 private:
  explicit ClusterMember(ClusterOptions options);

  // A tenant this node leads.
  struct Primary {
    std::string path;
    uint64_t term = 0;
    std::string lineage;
    std::shared_ptr<replication::Shipper> shipper;  // null when SILO_REPLICATION=off
    std::shared_ptr<replication::SegmentRecorder> recorder;
  };
  struct Peer {
    std::string address;
    std::shared_ptr<cluster::PeerClient> link;
  };

  void Loop();
  // Links to announced nodes this node has no working link to.
  void RefreshPeers();
  // Ships the tenant's files and a snapshot to its followers that need one.
  void Snapshot(const std::string& tenant_id, const std::shared_ptr<Primary>& primary);
  void PublishStatus();
  // The failover election (see the top of the file), each loop turn.
  void CheckPrimaries();
  // Takes over `tenant_id` from this node's copy. False when it could not.
  bool Promote(const std::string& tenant_id);
  cluster::Message Handle(const cluster::Message& message);

  const ClusterOptions options_;
  std::unique_ptr<cluster::Etcd> etcd_;
  std::unique_ptr<cluster::NodeLease> lease_;
  std::unique_ptr<replication::Replicas> replicas_;
  std::unique_ptr<cluster::PeerListener> listener_;
  std::string address_;
  std::string public_url_;

  mutable Mutex mu_;
  CondVar wake_;
  bool started_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::weak_ptr<storage::TenantDatabases> databases_ GUARDED_BY(mu_);
  std::map<std::string, Peer> peers_ GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Primary>> primaries_ GUARDED_BY(mu_);
  // The loop thread's own: when this node posted its position for a
  // tenant without a primary, and copies refused promotion.
  std::map<std::string, std::chrono::steady_clock::time_point> elections_;
  std::set<std::string> refused_;
  std::atomic<uint64_t> next_message_{cluster::RandomFirstSeq()};  // link message ids
  std::atomic<uint64_t> segments_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> snapshots_{0};
  std::atomic<uint64_t> promotions_{0};
  std::thread loop_;
};

// `silo cluster status`: the nodes announced in etcd, each tenant's primary
// and term, and where its followers stand as the primary last reported
// (acknowledged seq, lag in segments). Text, or one JSON object
// {"nodes":[...],"tenants":[...]} with `as_json`. Unavailable when no
// endpoint answers.
Result<std::string> ClusterStatus(const std::vector<std::string>& etcd_endpoints, bool as_json);

}  // namespace silo::app

#endif  // SILO_APP_CLUSTER_MEMBER_H_
