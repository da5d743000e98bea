#include "base/status.h"

namespace silo {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kUnauthenticated: return "unauthenticated";
    case StatusCode::kFailedPrecondition: return "failed_precondition";
    case StatusCode::kResourceExhausted: return "resource_exhausted";
    case StatusCode::kVersionMismatch: return "version_mismatch";
    case StatusCode::kDataLoss: return "data_loss";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case StatusCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out = std::string(StatusCodeName(code_)) + ": " + message_;
  if (!cause_.empty()) out += " (cause: " + cause_ + ")";
  return out;
}

Status Status::Rephrase(std::string message) const {
  Status out(code_, std::move(message));
  out.cause_ = cause_;
  out.fields_ = fields_;
  return out;
}

}  // namespace silo
