#include "cluster/node_lease.h"

#include <algorithm>

#include "base/log.h"

namespace silo::cluster {

Result<std::unique_ptr<NodeLease>> NodeLease::Grant(Etcd& etcd, int ttl_s) {
  Clock::time_point sent = Clock::now();
  SILO_ASSIGN_OR_RETURN(int64_t id, etcd.GrantLease(ttl_s));
  return std::unique_ptr<NodeLease>(
      new NodeLease(etcd, id, ttl_s, sent + std::chrono::seconds(ttl_s)));
}

NodeLease::NodeLease(Etcd& etcd, int64_t id, int ttl_s, Clock::time_point deadline)
    : etcd_(etcd), id_(id), ttl_s_(ttl_s), deadline_(deadline) {
  renewer_ = std::thread([this] { Renew(); });
}

NodeLease::~NodeLease() {
  bool revoke = false;
  {
    MutexLock lock(mu_);
    stop_ = true;
    revoke = renewing_;
    wake_.SignalAll();
  }
  renewer_.join();
  if (revoke) (void)etcd_.Revoke(id_);  // others may take over at once
}

NodeLease::Clock::time_point NodeLease::deadline() const {
  MutexLock lock(mu_);
  return deadline_;
}

bool NodeLease::Lost() const {
  MutexLock lock(mu_);
  return lost_;
}

void NodeLease::StopRenewing() {
  MutexLock lock(mu_);
  renewing_ = false;
  wake_.SignalAll();
}

void NodeLease::Renew() {
  const auto period = std::chrono::milliseconds(ttl_s_ * 1000 / 3);
  // After a keep-alive etcd did not answer (its members electing a new
  // leader, one of them gone), the next goes soon, not a third of the TTL
  // later: the deadline is the last answered one's, and it is running out.
  const auto retry = std::min(period, std::chrono::milliseconds(250));
  bool answered = true;
  while (true) {
    {
      MutexLock lock(mu_);
      Clock::time_point next = Clock::now() + (answered ? period : retry);
      while (!stop_ && renewing_ && Clock::now() < next) wake_.WaitUntil(mu_, next);
      if (stop_ || !renewing_) return;
    }
    Clock::time_point sent = Clock::now();
    Result<int64_t> ttl = etcd_.KeepAlive(id_);
    answered = ttl.ok();
    MutexLock lock(mu_);
    if (ttl.ok()) {
      deadline_ = std::max(deadline_, sent + std::chrono::seconds(*ttl));
    } else if (ttl.status().code() == StatusCode::kNotFound) {
      log::Warn("cluster.lease_lost", {{"lease", static_cast<long long>(id_)}});
      renewing_ = false;  // gone in etcd: nothing left to renew
      lost_ = true;
      return;
    }
    // Unavailable: etcd did not answer; the deadline stays, and passes.
  }
}

}  // namespace silo::cluster
