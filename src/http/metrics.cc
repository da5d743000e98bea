#include "http/metrics.h"

#include <cstdio>
#include <tuple>

namespace silo::http {
namespace {

void RenderHistogram(const std::string& name, const std::string& help, const Histogram& h,
                     std::string& out) {
  const Histogram::Counts c = h.Read();
  char buf[256];
  out += "# HELP " + name + " " + help + "\n";
  out += "# TYPE " + name + " histogram\n";
  for (size_t i = 0; i < c.bounds.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), c.bounds[i],
                  static_cast<unsigned long long>(c.cumulative[i]));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
                name.c_str(), static_cast<unsigned long long>(c.count), name.c_str(), c.sum,
                name.c_str(), static_cast<unsigned long long>(c.count));
  out += buf;
}

}  // namespace

void Metrics::RecordRequest(const std::string& listener, const std::string& route, int status,
                            double seconds) {
  MutexLock lock(mutex_);
  ++requests_[{listener, route, status}];
  latency_->Record(seconds);
}

void Metrics::RecordRejection(const std::string& reason) {
  MutexLock lock(mutex_);
  ++rejections_[reason];
}

void Metrics::AddGaugeSource(GaugeSource source) {
  MutexLock lock(mutex_);
  gauges_.push_back(std::move(source));
}

void Metrics::AddHistogram(std::string name, std::string help, std::shared_ptr<const Histogram> h) {
  MutexLock lock(mutex_);
  histograms_.push_back({std::move(name), std::move(help), std::move(h)});
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
  RenderHistogram("silo_http_request_duration_seconds",
                  "Time from request read to response written.", *latency_, out);
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
  for (const Named& h : histograms_) RenderHistogram(h.name, h.help, *h.histogram, out);
  return out;
}

}  // namespace silo::http
