// Metrics: request counters by route and status, a latency histogram,
// rejections by reason, and gauges and histograms supplied by the
// application, rendered in the Prometheus text format (version 0.0.4).
// Thread-safe: every method takes mutex_.
#ifndef SILO_HTTP_METRICS_H_
#define SILO_HTTP_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/histogram.h"
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
  // Rendered as histogram `name` (its _bucket, _sum and _count series).
  void AddHistogram(std::string name, std::string help, std::shared_ptr<const Histogram> h);
  std::string Render() const;

  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

 private:
  mutable Mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_ GUARDED_BY(mutex_);
  const std::shared_ptr<Histogram> latency_ =
      std::make_shared<Histogram>(std::vector<double>(kBuckets.begin(), kBuckets.end()));
  std::map<std::string, uint64_t> rejections_ GUARDED_BY(mutex_);
  std::vector<GaugeSource> gauges_ GUARDED_BY(mutex_);
  struct Named {
    std::string name, help;
    std::shared_ptr<const Histogram> histogram;
  };
  std::vector<Named> histograms_ GUARDED_BY(mutex_);
};

}  // namespace silo::http

#endif  // SILO_HTTP_METRICS_H_
