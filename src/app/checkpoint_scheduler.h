// Checkpoints inside `silo serve` (issue 22, rollback detection): at start,
// every tenant of this node (on a cluster: that it leads and has open) is
// compared with its newest signed checkpoint
// (checkpoint/book.h), and one whose log lost entries it once had is named in
// the log and the platform security log (audit.rollback_detected, an alert);
// then every SILO_CHECKPOINT_MINUTES each tenant's chain heads are signed into
// a new checkpoint (never for a tenant that fails the comparison: that would
// bless the rollback).
#ifndef SILO_APP_CHECKPOINT_SCHEDULER_H_
#define SILO_APP_CHECKPOINT_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "checkpoint/book.h"
#include "platform/security_log.h"
#include "tenant/registry.h"

namespace silo::app {

class CheckpointScheduler {
 public:
  // `mine(tenant)`: whether this node may open the tenant to check it
  // (always, on a single node; on a cluster node only a tenant it already
  // leads and has open: opening one there would take it on). Starts its
  // thread.
  CheckpointScheduler(checkpoint::Book& book, tenant::TenantRegistry& tenants,
                      platform::SecurityLog& security_log, int64_t interval_us,
                      std::function<bool(const tenant::TenantInfo&)> mine);
  ~CheckpointScheduler() { Stop(); }
  void Stop();

 private:
  void Loop();
  // Waits `us` or until Stop(); false when stopped.
  bool Sleep(int64_t us);
  // One pass over every tenant: compare (at start) or take.
  void Pass(bool at_start);

  checkpoint::Book& book_;
  tenant::TenantRegistry& tenants_;
  platform::SecurityLog& security_log_;
  const int64_t interval_us_;
  const std::function<bool(const tenant::TenantInfo&)> mine_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace silo::app

#endif  // SILO_APP_CHECKPOINT_SCHEDULER_H_
