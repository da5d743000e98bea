// The median of a benchmark's runs (the mean of the middle two for an even
// count; 0 for none): every figure under bench/ is one.
#ifndef SILO_BENCH_MEDIAN_H_
#define SILO_BENCH_MEDIAN_H_

#include <algorithm>
#include <vector>

namespace silo::bench {

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace silo::bench

#endif  // SILO_BENCH_MEDIAN_H_
