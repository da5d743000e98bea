#include "guard/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace silo::guard {

Verdict RateLimiter::Take(const std::string& key, const RateLimit& limit, int64_t now_us) {
  MutexLock lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_ && !lru_.empty()) {
      buckets_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    Bucket b;
    b.tokens = limit.burst;
    b.updated_us = now_us;
    b.lru = lru_.begin();
    it = buckets_.emplace(key, b).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Bucket& b = it->second;
  if (now_us > b.updated_us) {
    b.tokens = std::min(limit.burst, b.tokens + static_cast<double>(now_us - b.updated_us) / 1e6 *
                                                    limit.per_second);
    b.updated_us = now_us;
  }
  // Quiet for as long again as the last delay, with a full bucket: the
  // refusals are forgiven.
  if (b.strikes > 0 && b.tokens >= limit.burst && now_us >= b.blocked_until_us + b.last_delay_us) {
    b.strikes = 0;
  }
  if (now_us < b.blocked_until_us) return {false, b.blocked_until_us - now_us};
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return {true, 0};
  }
  // Refused: block for one refill interval, doubled per refusal in a row.
  const double refill_us = 1e6 / std::max(limit.per_second, 1e-9);
  double delay = refill_us * std::pow(2.0, std::min(b.strikes, 40));
  int64_t delay_us = static_cast<int64_t>(std::min(delay, static_cast<double>(limit.max_delay_us)));
  ++b.strikes;
  b.blocked_until_us = now_us + delay_us;
  b.last_delay_us = delay_us;
  return {false, delay_us};
}

size_t RateLimiter::size() const {
  MutexLock lock(mu_);
  return buckets_.size();
}

int64_t RetryAfterSeconds(int64_t retry_after_us) {
  return std::max<int64_t>(1, (retry_after_us + 999'999) / 1'000'000);
}

}  // namespace silo::guard
