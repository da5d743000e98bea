#include "app/checkpoint_scheduler.h"

#include <algorithm>

#include "base/log.h"
#include "base/time_util.h"

namespace silo::app {

CheckpointScheduler::CheckpointScheduler(checkpoint::Book& book, tenant::TenantRegistry& tenants,
                                         platform::SecurityLog& security_log, int64_t interval_us,
                                         std::function<bool(const tenant::TenantInfo&)> mine)
    : book_(book),
      tenants_(tenants),
      security_log_(security_log),
      interval_us_(interval_us),
      mine_(std::move(mine)),
      thread_([this] { Loop(); }) {}

void CheckpointScheduler::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

bool CheckpointScheduler::Sleep(int64_t us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  MutexLock lock(mu_);
  while (!stop_ && std::chrono::steady_clock::now() < until) cv_.WaitUntil(mu_, until);
  return !stop_;
}

void CheckpointScheduler::Loop() {
  Pass(/*at_start=*/true);
  while (Sleep(interval_us_)) Pass(/*at_start=*/false);
}

void CheckpointScheduler::Pass(bool at_start) {
  int64_t checked = 0, rolled_back = 0;
  for (const auto& t : tenants_.List()) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    if (!mine_(t)) continue;
    ++checked;
    if (at_start) {
      auto v = book_.Check(t.id);
      if (!v.ok()) {
        log::Warn("checkpoint comparison failed",
                  {{"tenant", t.slug}, {"cause", v.status().message()}});
      } else if (!v->ok) {
        ++rolled_back;
        log::Error("a tenant's log lost entries it once had",
                   {{"tenant", t.slug}, {"problem", v->problem}});
        security_log_.AppendOrLog(
            {"audit.rollback_detected", "system", "", t.slug + ": " + v->problem});
      }
      continue;
    }
    if (auto taken = book_.Take(t.id, t.slug, "schedule"); !taken.ok()) {
      log::Warn("checkpoint not taken", {{"tenant", t.slug}, {"cause", taken.status().message()}});
    }
  }
  if (at_start) {
    log::Info("checkpoints compared", {{"tenants", static_cast<long long>(checked)},
                                       {"rolled_back", static_cast<long long>(rolled_back)}});
  }
}

}  // namespace silo::app
