#include "base/histogram.h"

#include <algorithm>
#include <utility>

namespace silo {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size(), 0) {}

void Histogram::Record(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  MutexLock lock(mu_);
  if (i < buckets_.size()) ++buckets_[i];
  ++count_;
  sum_ += value;
}

Histogram::Counts Histogram::Read() const {
  Counts out;
  out.bounds = bounds_;
  MutexLock lock(mu_);
  uint64_t running = 0;
  for (uint64_t n : buckets_) out.cumulative.push_back(running += n);
  out.count = count_;
  out.sum = sum_;
  return out;
}

}  // namespace silo
