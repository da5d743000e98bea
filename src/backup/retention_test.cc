#include "backup/retention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

namespace silo::backup {
namespace {

constexpr int64_t kDay = 86'400LL * 1'000'000;
// 2026-01-05 02:00 UTC, a Monday.
constexpr int64_t kStart = 1'767'578'400LL * 1'000'000;

// Runs the scheduler for `days` days: a backup at 02:00 each day, then a prune.
std::vector<BackupRef> Simulate(int days, const RetentionPolicy& p,
                                const std::function<bool(int)>& good = nullptr) {
  std::vector<BackupRef> kept;
  for (int d = 0; d < days; ++d) {
    int64_t now = kStart + d * kDay;
    kept.push_back({"b" + std::to_string(d), "t1", now, good ? good(d) : true});
    auto gone = BackupsToPrune(kept, p, now);
    std::erase_if(kept, [&](const BackupRef& b) {
      return std::find(gone.begin(), gone.end(), b.id) != gone.end();
    });
  }
  return kept;
}

std::set<int> Days(const std::vector<BackupRef>& kept) {
  std::set<int> out;
  for (const auto& b : kept) out.insert(std::stoi(b.id.substr(1)));
  return out;
}

TEST(Retention, AYearOfDailyRunsKeepsExactlyTheExpectedSet) {
  RetentionPolicy p;  // 30 daily, 90 weekly, weeks from Monday
  const int days = 365;
  auto kept = Days(Simulate(days, p));
  const int last = days - 1;  // the day of the last run
  std::set<int> expected;
  for (int d = last - 30; d <= last; ++d) expected.insert(d);  // the daily window (inclusive)
  // Weekly: the newest backup of each week (Monday..Sunday) in the last 90
  // days. Day 0 is a Monday, so week w holds days 7w..7w+6, newest = 7w+6,
  // or `last` for the current week.
  for (int d = last - 90; d <= last; ++d) {
    int newest_of_week = std::min(d / 7 * 7 + 6, last);
    if (newest_of_week >= last - 90) expected.insert(newest_of_week);
  }
  EXPECT_EQ(kept, expected);
  // 31 dailies (days 334..364), and the Sundays 279, 286, …, 328 before them.
  EXPECT_EQ(kept.size(), 31u + 8u);
}

TEST(Retention, TheNewestGoodBackupSurvivesALongPause) {
  RetentionPolicy p;
  std::vector<BackupRef> list = {{"a", "t1", kStart, true}, {"b", "t1", kStart + kDay, true}};
  auto gone = BackupsToPrune(list, p, kStart + 400 * kDay);
  EXPECT_EQ(gone, std::vector<std::string>{"a"});
}

TEST(Retention, BadBackupsNeverStandInForTheNewestOrAWeek) {
  RetentionPolicy p;
  // Days 0..59; the backups from day 40 on are bad (say the target broke).
  auto kept = Simulate(60, p, [](int d) { return d < 40; });
  auto days = Days(kept);
  EXPECT_TRUE(days.count(39)) << "the newest good backup";
  for (int d = 29; d < 60; ++d) EXPECT_TRUE(days.count(d)) << d;  // daily window, bad or not
  // Out of the daily window only good ones remain.
  for (const auto& b : kept) {
    if (b.taken_at_us < kStart + 29 * kDay) {
      EXPECT_TRUE(b.good) << b.id;
    }
  }
  // A bad backup out of the daily window is deleted.
  std::vector<BackupRef> list = {{"old-bad", "t1", kStart, false},
                                 {"new", "t1", kStart + 50 * kDay, true}};
  EXPECT_EQ(BackupsToPrune(list, p, kStart + 50 * kDay), std::vector<std::string>{"old-bad"});
}

TEST(Retention, TenantsArePrunedSeparately) {
  RetentionPolicy p;
  std::vector<BackupRef> list = {{"a1", "a", kStart, true},
                                 {"b1", "b", kStart + kDay, true},
                                 {"b2", "b", kStart + 2 * kDay, true}};
  // Long after: each tenant keeps its own newest.
  EXPECT_EQ(BackupsToPrune(list, p, kStart + 500 * kDay), std::vector<std::string>{"b1"});
}

}  // namespace
}  // namespace silo::backup
