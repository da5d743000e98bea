// Wall-clock time as the records and logs keep it: UTC microseconds since the
// Unix epoch, shown as RFC 3339 with a `Z` suffix.
#ifndef SILO_BASE_TIME_UTIL_H_
#define SILO_BASE_TIME_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo {

int64_t NowMicros();

// "2026-11-24T10:00:00.123456Z"; the fraction is always six digits, so the
// text sorts like the time.
std::string FormatRfc3339Micros(int64_t us);

// Accepts RFC 3339 date-times: "YYYY-MM-DDTHH:MM:SS", an optional fraction
// (digits past the sixth are truncated), then "Z" or "+hh:mm"/"-hh:mm"; `t`
// and `z` in either case. Years 1970..9999. InvalidArgument otherwise.
Result<int64_t> ParseRfc3339(std::string_view text);

}  // namespace silo

#endif  // SILO_BASE_TIME_UTIL_H_
