// Test-only gtest assertions for Status and Result<T>. Each prints the
// status (code, message and cause) when it fails, so a failing test says
// what went wrong instead of "x.ok() is false".
//
//   ASSERT_OK(store->Commit());           // Status or Result<T>
//   EXPECT_STATUS(StatusCode::kNotFound, id.GetUser(ctx, "nobody"));
//
// Only *_test.cc files include this header (it needs gtest).
#ifndef SILO_BASE_STATUS_MATCHERS_H_
#define SILO_BASE_STATUS_MATCHERS_H_

#include <gtest/gtest.h>

#include "base/status.h"

namespace silo::testing {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

template <typename S>
::testing::AssertionResult IsOk(const char* text, const S& value) {
  Status s = StatusOf(value);
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text << " is not ok: " << s.ToString();
}

template <typename S>
::testing::AssertionResult HasCode(const char* code_text, const char* text, StatusCode code,
                                   const S& value) {
  Status s = StatusOf(value);
  if (s.code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << text << " is " << s.ToString() << ", expected " << StatusCodeName(code);
}

}  // namespace silo::testing

#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::silo::testing::IsOk, expr)
#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::silo::testing::IsOk, expr)
#define ASSERT_STATUS(code, expr) ASSERT_PRED_FORMAT2(::silo::testing::HasCode, code, expr)
#define EXPECT_STATUS(code, expr) EXPECT_PRED_FORMAT2(::silo::testing::HasCode, code, expr)

#endif  // SILO_BASE_STATUS_MATCHERS_H_
