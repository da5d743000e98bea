#include "backup/retention.h"

#include <map>
#include <set>

namespace silo::backup {
namespace {

constexpr int64_t kDayUs = 86'400LL * 1'000'000;

// The index of the week holding `t` (weeks start on `week_start`, UTC).
int64_t WeekOf(int64_t t_us, int week_start) {
  int64_t day = t_us >= 0 ? t_us / kDayUs : (t_us - kDayUs + 1) / kDayUs;
  // 1970-01-01 was a Thursday (4).
  int64_t shifted = day + 4 - week_start;
  return shifted >= 0 ? shifted / 7 : (shifted - 6) / 7;
}

}  // namespace

std::vector<std::string> BackupsToPrune(const std::vector<BackupRef>& backups,
                                        const RetentionPolicy& policy, int64_t now_us) {
  const int64_t daily_cut = now_us - int64_t{policy.daily_days} * kDayUs;
  const int64_t weekly_cut = now_us - int64_t{policy.weekly_days} * kDayUs;
  std::set<const BackupRef*> keep;
  std::map<std::string, const BackupRef*> newest_good;                 // per tenant
  std::map<std::pair<std::string, int64_t>, const BackupRef*> weekly;  // per tenant and week
  for (const auto& b : backups) {
    if (b.taken_at_us >= daily_cut) keep.insert(&b);
    if (!b.good) continue;
    auto& newest = newest_good[b.tenant_id];
    if (newest == nullptr || b.taken_at_us > newest->taken_at_us) newest = &b;
    if (b.taken_at_us >= weekly_cut) {
      auto& w = weekly[{b.tenant_id, WeekOf(b.taken_at_us, policy.week_start)}];
      if (w == nullptr || b.taken_at_us > w->taken_at_us) w = &b;
    }
  }
  for (const auto& [tenant, b] : newest_good) keep.insert(b);
  for (const auto& [week, b] : weekly) keep.insert(b);
  std::vector<std::string> out;
  for (const auto& b : backups) {
    if (!keep.count(&b)) out.push_back(b.id);
  }
  return out;
}

}  // namespace silo::backup
