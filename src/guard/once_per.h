// OncePer: remembers when each key last passed and lets it pass again only
// after a window. Used to write an audit or security entry once per window
// for things that repeat (a token's use, a refused client, a throttled
// account), so that a flood cannot fill a log. Bounded: past `max_keys` the
// memory starts over (some keys pass early, none is silenced for longer
// than the window). Thread-safe.
#ifndef SILO_GUARD_ONCE_PER_H_
#define SILO_GUARD_ONCE_PER_H_

#include <cstdint>
#include <string>
#include <unordered_map>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace silo::guard {

class OncePer {
 public:
  explicit OncePer(int64_t window_us, size_t max_keys = 100'000)
      : window_us_(window_us), max_keys_(max_keys) {}

  // True the first time `key` is seen, and then once at least a window
  // after the last time it was true.
  bool Due(const std::string& key, int64_t now_us) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (last_.size() > max_keys_) last_.clear();
    auto [it, fresh] = last_.try_emplace(key, now_us);
    if (fresh) return true;
    if (now_us - it->second < window_us_) return false;
    it->second = now_us;
    return true;
  }

 private:
  const int64_t window_us_;
  const size_t max_keys_;
  Mutex mu_;
  std::unordered_map<std::string, int64_t> last_ GUARDED_BY(mu_);
};

}  // namespace silo::guard

#endif  // SILO_GUARD_ONCE_PER_H_
