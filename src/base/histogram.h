// Histogram: counts of observed values (seconds, say) in fixed buckets, with
// their sum, for a Prometheus histogram (http::Metrics renders it) and for
// quantiles read off it. Bucket i counts values <= bounds[i] and above
// bounds[i-1]; values above the last bound count only in `count`.
// Thread-safe: Record and Read take mu_.
#ifndef SILO_BASE_HISTOGRAM_H_
#define SILO_BASE_HISTOGRAM_H_

#include <cstdint>
#include <vector>

#include "base/mutex.h"

namespace silo {

class Histogram {
 public:
  // `bounds`: ascending upper bounds.
  explicit Histogram(std::vector<double> bounds);

  void Record(double value);

  struct Counts {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // values <= bounds[i]
    uint64_t count = 0;                // every value
    double sum = 0;
  };
  Counts Read() const;

 private:
  const std::vector<double> bounds_;
  mutable Mutex mu_;
  std::vector<uint64_t> buckets_ GUARDED_BY(mu_);  // not cumulative
  uint64_t count_ GUARDED_BY(mu_) = 0;
  double sum_ GUARDED_BY(mu_) = 0;
};

}  // namespace silo

#endif  // SILO_BASE_HISTOGRAM_H_
