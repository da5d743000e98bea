#include "http/metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace silo::http {
namespace {

TEST(MetricsTest, RendersCountersHistogramAndGauges) {
  Metrics m;
  m.RecordRequest("public", "/healthz", 200, 0.0002);
  m.RecordRequest("public", "/healthz", 200, 0.3);
  m.RecordRejection("header_too_large");
  m.AddGaugeSource([] { return std::vector<std::pair<std::string, double>>{{"silo_tenants", 3}}; });
  std::string text = m.Render();
  EXPECT_NE(
      text.find(
          "silo_http_requests_total{listener=\"public\",route=\"/healthz\",status=\"200\"} 2"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("silo_http_request_duration_seconds_bucket{le=\"0.0005\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("silo_http_request_duration_seconds_bucket{le=\"+Inf\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("silo_http_rejections_total{reason=\"header_too_large\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("silo_tenants 3"), std::string::npos);
}

TEST(MetricsTest, RendersAnAddedHistogramCumulatively) {
  Metrics m;
  auto h = std::make_shared<Histogram>(std::vector<double>{0.001, 0.01});
  for (double v : {0.0005, 0.001, 0.005, 0.5}) h->Record(v);
  m.AddHistogram("silo_test_seconds", "A test.", h);
  std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE silo_test_seconds histogram\n"
                      "silo_test_seconds_bucket{le=\"0.001\"} 2\n"
                      "silo_test_seconds_bucket{le=\"0.01\"} 3\n"
                      "silo_test_seconds_bucket{le=\"+Inf\"} 4\n"
                      "silo_test_seconds_sum 0.506500\n"
                      "silo_test_seconds_count 4\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace silo::http
