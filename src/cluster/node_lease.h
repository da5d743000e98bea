// A node's lease in etcd, renewed by its own thread, and the deadline by
// which the node must stop acting on it (self-fencing).
//
// Leases are not locks (Jepsen's etcd 3.4 analysis): a paused or cut-off
// node cannot know that etcd has already let its lease go. What it can know
// is a time before which etcd cannot have: a lease renewed by a keep-alive
// sent at S with an answered TTL of T lives in etcd until at least S + T
// (etcd counts from when it received the request, which is after S). So
// deadline() = S + T of the last answered keep-alive, on this node's
// monotonic clock, and a primary refuses writes from that instant on, before
// anyone else can take over. Terms (etcd revisions) fence what slips through.
#ifndef SILO_CLUSTER_NODE_LEASE_H_
#define SILO_CLUSTER_NODE_LEASE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

#include "base/mutex.h"
#include "base/status.h"
#include "cluster/etcd.h"

namespace silo::cluster {

class NodeLease {
 public:
  using Clock = std::chrono::steady_clock;

  // Grants a lease of `ttl_s` seconds and renews it every third of that
  // (after a keep-alive etcd did not answer, within 250 ms) on
  // its own thread until destruction (which revokes it) or StopRenewing().
  static Result<std::unique_ptr<NodeLease>> Grant(Etcd& etcd, int ttl_s);
  ~NodeLease();
  NodeLease(const NodeLease&) = delete;
  NodeLease& operator=(const NodeLease&) = delete;

  int64_t id() const { return id_; }
  // Until when this node may act as the lease's holder (see above).
  Clock::time_point deadline() const EXCLUDES(mu_);
  bool Held() const { return Clock::now() < deadline(); }
  // etcd answered that the lease is gone (it ran out while this node was
  // paused or cut off): it will never be held again; a new one is needed.
  bool Lost() const EXCLUDES(mu_);

  // Stops renewing without revoking: the lease runs out in etcd (what a
  // crashed or paused node's lease does).
  void StopRenewing() EXCLUDES(mu_);

 private:
  NodeLease(Etcd& etcd, int64_t id, int ttl_s, Clock::time_point deadline);
  void Renew() EXCLUDES(mu_);

  Etcd& etcd_;
  const int64_t id_;
  const int ttl_s_;
  mutable Mutex mu_;
  CondVar wake_;
  Clock::time_point deadline_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool renewing_ GUARDED_BY(mu_) = true;
  bool lost_ GUARDED_BY(mu_) = false;
  std::thread renewer_;
};

}  // namespace silo::cluster

#endif  // SILO_CLUSTER_NODE_LEASE_H_
