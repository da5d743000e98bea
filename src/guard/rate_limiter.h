// Token-bucket rate limits with growing back-off, in bounded memory.
//
// A key (say "login:ip:203.0.113.9") owns a bucket of `burst` tokens refilled
// at `per_second`. A request takes one token; with none left it is refused
// and the key is blocked for a delay that doubles with each refusal in a row
// (from the time one token takes to refill, up to `max_delay_us`), so a
// guessing client slows down ever more while nobody is locked out for good:
// once the delay has passed and a token has refilled, the next attempt
// passes, and a client quiet for as long again as its last delay, with a full
// bucket, is forgiven its refusals.
//
// At most `max_keys` keys are kept; the least recently used is dropped first
// (a dropped key starts again with a full bucket: memory stays bounded at the
// price of forgetting the quietest clients). The clock is injected: callers
// pass `now_us`. Thread-safe.
#ifndef SILO_GUARD_RATE_LIMITER_H_
#define SILO_GUARD_RATE_LIMITER_H_

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

#include "base/mutex.h"

namespace silo::guard {

struct RateLimit {
  double burst = 10;
  double per_second = 10.0 / 60;
  int64_t max_delay_us = 15LL * 60 * 1'000'000;
};

struct Verdict {
  bool allowed = true;
  int64_t retry_after_us = 0;  // when refused: how long until a retry can pass
};

class RateLimiter {
 public:
  explicit RateLimiter(size_t max_keys = 100'000) : max_keys_(max_keys) {}

  Verdict Take(const std::string& key, const RateLimit& limit, int64_t now_us);
  size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_us = 0;
    int64_t blocked_until_us = 0;
    int64_t last_delay_us = 0;
    int strikes = 0;
    std::list<std::string>::iterator lru;
  };
  const size_t max_keys_;
  mutable Mutex mu_;
  std::list<std::string> lru_ GUARDED_BY(mu_);  // front = newest
  std::unordered_map<std::string, Bucket> buckets_ GUARDED_BY(mu_);
};

// Seconds for a Retry-After header (at least 1).
int64_t RetryAfterSeconds(int64_t retry_after_us);

}  // namespace silo::guard

#endif  // SILO_GUARD_RATE_LIMITER_H_
