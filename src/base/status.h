// Status and Result<T>: expected failures as values (style rule 3).
//
// Domain code returns these; only the api boundary turns them into HTTP answers.
// A Status carries a code and a message that is safe to show to the caller who
// caused it; internal causes are logged where they happen, never put here.
#ifndef SILO_BASE_STATUS_H_
#define SILO_BASE_STATUS_H_

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace silo {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kFailedPrecondition,
  kResourceExhausted,
  kVersionMismatch,  // the caller's expected version is not the current one
  kDataLoss,         // authentication of stored data failed (tampering or wrong key)
  kUnavailable,
  kInternal,
};

// One invalid input field and why, for answers that name each field.
struct FieldError {
  std::string field;
  std::string message;
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Per-field details (validation errors), same safety rule as the message.
  const std::vector<FieldError>& fields() const { return fields_; }
  Status WithFields(std::vector<FieldError> fields) && {
    fields_ = std::move(fields);
    return std::move(*this);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::vector<FieldError> fields_;
};

const char* StatusCodeName(StatusCode code);

inline Status InvalidArgument(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status AlreadyExists(std::string m) {
  return Status(StatusCode::kAlreadyExists, std::move(m));
}
inline Status FailedPrecondition(std::string m) {
  return Status(StatusCode::kFailedPrecondition, std::move(m));
}
inline Status PermissionDenied(std::string m) {
  return Status(StatusCode::kPermissionDenied, std::move(m));
}
inline Status Unauthenticated(std::string m) {
  return Status(StatusCode::kUnauthenticated, std::move(m));
}
inline Status DataLoss(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
inline Status VersionMismatch(std::string m) {
  return Status(StatusCode::kVersionMismatch, std::move(m));
}
inline Status Unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }

// Result<T>: either a value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  // Ok status when ok(), else the error.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace silo

#endif  // SILO_BASE_STATUS_H_
