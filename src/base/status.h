// Status and Result<T>: expected failures as values (style rule 3).
//
// Domain code returns these; only the api boundary turns them into HTTP answers.
// A Status has two audiences:
//   - message(): what the caller who caused it may read. HTTP answers and CLI
//     output show this and nothing else, so it never holds SQLite's error
//     text, a file path, an errno string or a key fingerprint.
//   - cause(): the private detail behind the failure (those very strings),
//     attached with WithCause(). Only log lines carry it: the boundary logs it
//     under the request id (ToString() is the log form), never serialises it.
// Both types are [[nodiscard]]: a dropped failure is a compile error, and a
// deliberate discard is spelled (void).
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
  kDeadlineExceeded,  // the peer did not keep up (a stalled upload)
};

// One invalid input field and why, for answers that name each field.
struct FieldError {
  std::string field;
  std::string message;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The private cause; empty when the message says all there is.
  const std::string& cause() const { return cause_; }
  // For log lines only: "<code>: <message>", then " (cause: <cause>)" if any.
  std::string ToString() const;

  // Attaches the private cause (see the file comment).
  Status WithCause(std::string cause) && {
    cause_ = std::move(cause);
    return std::move(*this);
  }
  // The same failure (code, cause, fields) under a new public message.
  Status Rephrase(std::string message) const;

  // Per-field details (validation errors), same safety rule as the message.
  const std::vector<FieldError>& fields() const { return fields_; }
  Status WithFields(std::vector<FieldError> fields) && {
    fields_ = std::move(fields);
    return std::move(*this);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string cause_;
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
inline Status DeadlineExceeded(std::string m) {
  return Status(StatusCode::kDeadlineExceeded, std::move(m));
}

// Result<T>: either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
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
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  // Ok status when ok(), else the error.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

// Early return of a failed Status (or of a Result's error) from a function
// that returns Status or Result<U>:
//   SILO_RETURN_IF_ERROR(tx->Commit());
#define SILO_RETURN_IF_ERROR(expr)                                                            \
  do {                                                                                        \
    if (::silo::Status silo_status_ = ::silo::internal::AsStatus(expr); !silo_status_.ok()) { \
      return silo_status_;                                                                    \
    }                                                                                         \
  } while (false)

// Declares (or assigns) `lhs` from a Result's value, or returns its error:
//   SILO_ASSIGN_OR_RETURN(auto user, LoadUser(db, id));
// It expands to several statements: never the unbraced body of an if or a
// loop.
#define SILO_ASSIGN_OR_RETURN(lhs, expr) \
  SILO_ASSIGN_OR_RETURN_IMPL_(SILO_STATUS_CONCAT_(silo_result_, __LINE__), lhs, expr)
#define SILO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
#define SILO_STATUS_CONCAT_(a, b) SILO_STATUS_CONCAT_INNER_(a, b)
#define SILO_STATUS_CONCAT_INNER_(a, b) a##b

namespace internal {
inline Status AsStatus(Status s) { return s; }
template <typename T>
Status AsStatus(const Result<T>& r) {
  return r.status();
}
}  // namespace internal

}  // namespace silo

#endif  // SILO_BASE_STATUS_H_
