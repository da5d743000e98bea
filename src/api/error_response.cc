#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"
#include "base/log.h"

namespace silo::api {
namespace {

// 0: not an expected outcome; answered 500 without details.
int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument: return 422;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kVersionMismatch: return 412;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 408;
    default: return 0;
  }
}

}  // namespace

http::Response ErrorResponse(const Status& status, const http::Request& req) {
  if (int code = HttpStatusFor(status.code()); code != 0) {
    // The caller reads the public message; a private cause, if any, goes to
    // the log under the same request id (status.h).
    if (!status.cause().empty()) {
      log::Warn("request refused", {{"request_id", req.request_id}, {"cause", status.ToString()}});
    }
    http::Response r = http::Problem(code, status.message(), req.request_id);
    if (!status.fields().empty()) {
      boost::json::object body = boost::json::parse(r.body).as_object();
      boost::json::array errors;
      for (const FieldError& f : status.fields()) {
        errors.push_back(boost::json::object{{"field", f.field}, {"message", f.message}});
      }
      body["errors"] = std::move(errors);
      r.body = JsonText(body);
    }
    // Unavailable is a moment (a re-key's pause, a restore's swap, a tenant
    // moving between nodes): the client is told when to try again.
    if (code == 503) r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  // Internals go to the log with the request id, never to the caller.
  log::Error("request failed", {{"request_id", req.request_id}, {"cause", status.ToString()}});
  return http::Problem(500, "internal error", req.request_id);
}

}  // namespace silo::api
