// The backup schedule inside `silo serve` (issue: backups): every day at
// SILO_BACKUP_TIME (UTC) every tenant is backed up, failures are retried
// SILO_BACKUP_RETRIES times after SILO_BACKUP_RETRY_SECONDS (doubling), then
// the retention policy prunes; on SILO_BACKUP_WEEKLY_DAY a restore drill of
// every tenant follows. Every failure is logged and written to the platform
// security log; the counts are in /metrics (from backup::Service::stats()).
#ifndef SILO_APP_BACKUP_SCHEDULER_H_
#define SILO_APP_BACKUP_SCHEDULER_H_

#include <cstdint>
#include <thread>

#include "backup/service.h"
#include "base/mutex.h"
#include "config/config.h"
#include "platform/security_log.h"
#include "tenant/registry.h"

namespace silo::app {

// The first time strictly after `now_us` that is `at_seconds` past a UTC midnight.
int64_t NextDailyRun(int64_t now_us, int at_seconds);

class BackupScheduler {
 public:
  BackupScheduler(backup::Service& service, tenant::TenantRegistry& tenants,
                  platform::SecurityLog& security_log, const config::Backups& options);
  ~BackupScheduler() { Stop(); }
  void Stop();

 private:
  void Loop();
  // Waits until `until_us` or Stop(); false when stopped.
  bool SleepUntil(int64_t until_us);
  void DailyRun();
  void Failed(const std::string& what, const std::string& slug, const std::string& why);

  backup::Service& service_;
  tenant::TenantRegistry& tenants_;
  platform::SecurityLog& security_log_;
  const config::Backups options_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace silo::app

#endif  // SILO_APP_BACKUP_SCHEDULER_H_
