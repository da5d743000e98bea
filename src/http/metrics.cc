#include "http/metrics.h"

#include <cstdio>
#include <tuple>

namespace silo::http {

void Metrics::RecordRequest(const std::string& listener, const std::string& route, int status,
                            double seconds) {
  MutexLock lock(mutex_);
  ++requests_[{listener, route, status}];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++bucket_counts_[i];
  }
  ++latency_count_;
  latency_sum_ += seconds;
}

void Metrics::RecordRejection(const std::string& reason) {
  MutexLock lock(mutex_);
  ++rejections_[reason];
}

void Metrics::AddGaugeSource(GaugeSource source) {
  MutexLock lock(mutex_);
  gauges_.push_back(std::move(source));
}

std::string Metrics::Render() const {
  MutexLock lock(mutex_);
  std::string out;
  char buf[256];
  out += "# HELP silo_http_requests_total HTTP requests answered.\n";
  out += "# TYPE silo_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [listener, route, status] = key;
    out += "silo_http_requests_total{listener=\"" + listener + "\",route=\"" + route +
           "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# HELP silo_http_request_duration_seconds Time from request read to response written.\n";
  out += "# TYPE silo_http_request_duration_seconds histogram\n";
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    std::snprintf(buf, sizeof buf, "silo_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                  kBuckets[i], static_cast<unsigned long long>(bucket_counts_[i]));
    out += buf;
  }
  std::snprintf(buf, sizeof buf,
                "silo_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                "silo_http_request_duration_seconds_sum %.6f\n"
                "silo_http_request_duration_seconds_count %llu\n",
                static_cast<unsigned long long>(latency_count_), latency_sum_,
                static_cast<unsigned long long>(latency_count_));
  out += buf;
  out += "# HELP silo_http_rejections_total Connections or requests refused by a limit.\n";
  out += "# TYPE silo_http_rejections_total counter\n";
  for (const auto& [reason, n] : rejections_) {
    out += "silo_http_rejections_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  }
  for (const auto& source : gauges_) {
    for (const auto& [name, value] : source()) {
      std::snprintf(buf, sizeof buf, "# TYPE %s gauge\n%s %.15g\n", name.c_str(), name.c_str(),
                    value);
      out += buf;
    }
  }
  return out;
}

}  // namespace silo::http
