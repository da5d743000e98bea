#include "app/backup_scheduler.h"

#include <time.h>

#include <set>

#include "base/log.h"
#include "base/time_util.h"

namespace silo::app {

int64_t NextDailyRun(int64_t now_us, int at_seconds) {
  constexpr int64_t kDay = 86'400'000'000;
  int64_t midnight = now_us - (now_us % kDay);
  int64_t next = midnight + int64_t{at_seconds} * 1'000'000;
  while (next <= now_us) next += kDay;
  return next;
}

BackupScheduler::BackupScheduler(backup::Service& service, tenant::TenantRegistry& tenants,
                                 platform::SecurityLog& security_log,
                                 const config::Backups& options)
    : service_(service),
      tenants_(tenants),
      security_log_(security_log),
      options_(options),
      thread_([this] { Loop(); }) {}

void BackupScheduler::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

bool BackupScheduler::SleepUntil(int64_t until_us) {
  MutexLock lock(mu_);
  while (!stop_) {
    int64_t left = until_us - NowMicros();
    if (left <= 0) return true;
    // At most a minute at a time: the wall clock may jump meanwhile.
    cv_.WaitUntil(mu_, std::chrono::steady_clock::now() +
                           std::chrono::microseconds(std::min<int64_t>(left, 60'000'000)));
  }
  return false;
}

void BackupScheduler::Failed(const std::string& what, const std::string& slug,
                             const std::string& why) {
  log::Error("scheduled " + what + " failed", {{"tenant", slug}, {"cause", why}});
  security_log_.AppendOrLog({"backup." + what + "_failed", "system", "", slug + ": " + why});
}

void BackupScheduler::Loop() {
  while (SleepUntil(NextDailyRun(NowMicros(), options_.daily_at_seconds))) DailyRun();
}

void BackupScheduler::DailyRun() {
  std::set<std::string> pending;
  for (const auto& t : tenants_.List()) pending.insert(t.slug);
  int64_t delay_us = int64_t{options_.retry_seconds} * 1'000'000;
  for (int attempt = 0; !pending.empty(); ++attempt) {
    if (attempt > 0) {
      if (attempt > options_.retries) break;
      if (!SleepUntil(NowMicros() + delay_us)) return;
      delay_us *= 2;
    }
    for (auto it = pending.begin(); it != pending.end();) {
      auto t = tenants_.Find(*it);
      if (!t) {  // deleted meanwhile
        it = pending.erase(it);
        continue;
      }
      auto m = service_.Run(*t);
      if (m.ok()) {
        log::Info("scheduled backup", {{"tenant", t->slug},
                                       {"backup_id", m->id},
                                       {"stored_bytes", static_cast<long long>(m->stored_bytes)}});
        it = pending.erase(it);
      } else {
        Failed(
            "backup", t->slug,
            m.status().message() + (attempt < options_.retries ? " (will retry)" : " (giving up)"));
        ++it;
      }
    }
  }
  auto pruned = service_.Prune(NowMicros());
  if (!pruned.ok()) {
    Failed("prune", "-", pruned.status().message());
  } else if (!pruned->empty()) {
    log::Info("backups pruned", {{"count", static_cast<long long>(pruned->size())}});
  }
  time_t secs = static_cast<time_t>(NowMicros() / 1'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  if (tm.tm_wday != options_.weekly_day) return;
  for (const auto& t : tenants_.List()) {
    auto d = service_.Drill(t);
    if (!d.ok()) {
      Failed("drill", t.slug, d.status().message());
    } else if (!d->ok) {
      Failed("drill", t.slug, d->problem);
    } else {
      log::Info("restore drill passed",
                {{"tenant", t.slug},
                 {"backup_id", d->backup_id},
                 {"restore_ms", static_cast<long long>(d->restore_seconds * 1000)}});
    }
  }
}

}  // namespace silo::app
