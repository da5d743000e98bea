// Which backups to delete: a pure function of the list of backups and the
// time (issue: backups). Per tenant:
//   - every backup younger than `daily_days` is kept;
//   - younger than `weekly_days`, the newest good backup of each week (weeks
//     start on `week_start`, UTC) is kept;
//   - the newest good backup is always kept, however old;
//   - everything else is deleted.
// "Good" means it verified (manifest and seal); a bad backup never stands in
// for a week and is deleted once out of the daily window.
#ifndef SILO_BACKUP_RETENTION_H_
#define SILO_BACKUP_RETENTION_H_

#include <cstdint>
#include <string>
#include <vector>

namespace silo::backup {

struct BackupRef {
  std::string id;
  std::string tenant_id;
  int64_t taken_at_us = 0;
  bool good = true;
};

struct RetentionPolicy {
  int daily_days = 30;
  int weekly_days = 90;
  int week_start = 1;  // 0 = Sunday … 6 = Saturday
};

// The ids to delete, in the order of `backups`.
std::vector<std::string> BackupsToPrune(const std::vector<BackupRef>& backups,
                                        const RetentionPolicy& policy, int64_t now_us);

}  // namespace silo::backup

#endif  // SILO_BACKUP_RETENTION_H_
