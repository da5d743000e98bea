// Metrics: request counters by route and status, a latency histogram,
// rejections by reason, and gauges supplied by the application, rendered in
// the Prometheus text format (version 0.0.4).
// Thread-safe: every method takes mutex_.
#ifndef SILO_HTTP_METRICS_H_
#define SILO_HTTP_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace silo::http {

class Metrics {
 public:
  using GaugeSource = std::function<std::vector<std::pair<std::string, double>>()>;

  void RecordRequest(const std::string& listener, const std::string& route, int status,
                     double seconds);
  // reason: header_too_large, body_too_large, malformed, timeout,
  // overloaded, connection_limit, tls_handshake.
  void RecordRejection(const std::string& reason);
  void AddGaugeSource(GaugeSource source);
  std::string Render() const;

  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

 private:
  mutable Mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_ GUARDED_BY(mutex_);
  std::array<uint64_t, kBuckets.size()> bucket_counts_ GUARDED_BY(mutex_){};
  uint64_t latency_count_ GUARDED_BY(mutex_) = 0;
  double latency_sum_ GUARDED_BY(mutex_) = 0;
  std::map<std::string, uint64_t> rejections_ GUARDED_BY(mutex_);
  std::vector<GaugeSource> gauges_ GUARDED_BY(mutex_);
};

}  // namespace silo::http

#endif  // SILO_HTTP_METRICS_H_
