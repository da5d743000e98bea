#include "api/handlers.h"
#include "http/metrics.h"

namespace silo::api {

// Reveals nothing but liveness to anonymous callers: no version, no counts.
http::Response Healthz(Services& /*s*/, RequestContext& /*ctx*/) {
  return http::Json(200, R"({"status":"ok"})");
}

http::Response Readyz(Services& s, RequestContext& ctx) {
  if (s.ready == nullptr || !s.ready->load()) {
    return http::Problem(503, "not ready", ctx.request.request_id);
  }
  return http::Json(200, R"({"status":"ready"})");
}

http::Response Metrics(Services& s, RequestContext& /*ctx*/) {
  http::Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = s.metrics->Render();
  return r;
}

}  // namespace silo::api
