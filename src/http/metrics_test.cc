#include "http/metrics.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace silo::http
