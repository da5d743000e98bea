#include <gtest/gtest.h>

#include "base/status_matchers.h"
#include "guard/client_address.h"
#include "guard/once_per.h"
#include "guard/rate_limiter.h"

namespace silo::guard {
namespace {

constexpr int64_t kSec = 1'000'000;

TEST(RateLimiter, BurstThenRefusedWithRetryAfter) {
  RateLimiter rl;
  RateLimit lim{5, 1, 60 * kSec};
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rl.Take("k", lim, 0).allowed) << i;
  Verdict v = rl.Take("k", lim, 0);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.retry_after_us, 1 * kSec);
  EXPECT_EQ(RetryAfterSeconds(v.retry_after_us), 1);
  // Another key is unaffected.
  EXPECT_TRUE(rl.Take("other", lim, 0).allowed);
}

TEST(RateLimiter, DelaysGrowButNeverLockOutForGood) {
  RateLimiter rl;
  RateLimit lim{1, 1, 8 * kSec};
  int64_t now = 0;
  EXPECT_TRUE(rl.Take("k", lim, now).allowed);
  std::vector<int64_t> delays;
  // A client that retries the moment it is told to.
  for (int i = 0; i < 6; ++i) {
    Verdict v = rl.Take("k", lim, now);
    ASSERT_FALSE(v.allowed);
    delays.push_back(v.retry_after_us);
    now += v.retry_after_us;
    // At the end of the delay a token has refilled: the attempt passes,
    // and the bucket is empty again.
    EXPECT_TRUE(rl.Take("k", lim, now).allowed) << i;
  }
  EXPECT_EQ(delays,
            (std::vector<int64_t>{1 * kSec, 2 * kSec, 4 * kSec, 8 * kSec, 8 * kSec, 8 * kSec}));
  // Asking again while blocked answers the remaining time, not a new delay.
  Verdict blocked = rl.Take("k", lim, now);
  EXPECT_FALSE(blocked.allowed);
  Verdict again = rl.Take("k", lim, now + 1);
  EXPECT_EQ(again.retry_after_us, blocked.retry_after_us - 1);
  // A quiet client gets its full bucket and a clean record back.
  now += 3600 * kSec;
  EXPECT_TRUE(rl.Take("k", lim, now).allowed);
  EXPECT_EQ(rl.Take("k", lim, now).retry_after_us, 1 * kSec);
}

TEST(RateLimiter, MemoryIsBounded) {
  RateLimiter rl(100);
  RateLimit lim{1, 0.001, kSec};
  for (int i = 0; i < 10'000; ++i) rl.Take("ip" + std::to_string(i), lim, 0);
  EXPECT_EQ(rl.size(), 100u);
  // The most recent keys are still remembered.
  EXPECT_FALSE(rl.Take("ip9999", lim, 0).allowed);
}

TEST(TrustedProxies, ForwardedForOnlyFromTrustedPeers) {
  auto t = TrustedProxies::Parse("10.0.0.0/8, 192.0.2.7,::1");
  ASSERT_OK(t);
  // Untrusted peer: the header is ignored whatever it says.
  EXPECT_EQ(t->ClientOf("198.51.100.1", "203.0.113.5"), "198.51.100.1");
  // Trusted peer: the right-most untrusted entry.
  EXPECT_EQ(t->ClientOf("10.1.2.3", "203.0.113.5"), "203.0.113.5");
  EXPECT_EQ(t->ClientOf("10.1.2.3", "1.1.1.1, 203.0.113.5, 10.9.9.9"), "203.0.113.5");
  EXPECT_EQ(t->ClientOf("::1", "2001:db8::1"), "2001:db8::1");
  EXPECT_EQ(t->ClientOf("10.1.2.3", "not-an-ip"), "10.1.2.3");
  EXPECT_EQ(t->ClientOf("10.1.2.3", std::nullopt), "10.1.2.3");
  EXPECT_STATUS(StatusCode::kInvalidArgument, TrustedProxies::Parse("10.0.0.0/33"));
  EXPECT_STATUS(StatusCode::kInvalidArgument, TrustedProxies::Parse("example.com"));
  auto none = TrustedProxies::Parse("");
  ASSERT_OK(none);
  EXPECT_EQ(none->ClientOf("127.0.0.1", "203.0.113.5"), "127.0.0.1");
}

TEST(BanList, BansOneClientForAWhile) {
  BanList bans(3);
  bans.Ban("a", 10 * kSec, 0);
  EXPECT_TRUE(bans.Banned("a", 9 * kSec));
  EXPECT_FALSE(bans.Banned("a", 10 * kSec));
  EXPECT_FALSE(bans.Banned("b", 0));
  for (const char* c : {"b", "c", "d", "e"}) bans.Ban(c, 100 * kSec, 20 * kSec);
  EXPECT_LE(bans.size(), 3u);
  EXPECT_TRUE(bans.Banned("e", 20 * kSec));
}

// Once per window per key; other keys are independent; the bound starts
// over instead of growing.
TEST(OncePerTest, LetsAKeyPassOncePerWindow) {
  OncePer once(60'000'000, 2);
  EXPECT_TRUE(once.Due("a", 0));
  EXPECT_FALSE(once.Due("a", 59'999'999));
  EXPECT_TRUE(once.Due("b", 1));
  EXPECT_TRUE(once.Due("a", 60'000'000));
  EXPECT_FALSE(once.Due("a", 60'000'001));
  EXPECT_TRUE(once.Due("c", 2));  // three keys: over the bound of 2
  EXPECT_TRUE(once.Due("d", 3));  // starts over: "a", "b", "c" are forgotten
  EXPECT_TRUE(once.Due("a", 60'000'002));
}

}  // namespace
}  // namespace silo::guard
