// Checkpoints inside `silo serve` (issue 22, rollback detection): at start,
// every tenant this node leads is compared with its newest signed checkpoint
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
  // `leads(slug)`: whether this node serves the tenant (always, on a single
  // node). Starts its thread.
  CheckpointScheduler(checkpoint::Book& book, tenant::TenantRegistry& tenants,
                      platform::SecurityLog& security_log, int64_t interval_us,
                      std::function<bool(const std::string& slug)> leads);
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
  const std::function<bool(const std::string&)> leads_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace silo::app

#endif  // SILO_APP_CHECKPOINT_SCHEDULER_H_
