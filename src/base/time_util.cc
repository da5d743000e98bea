#include "base/time_util.h"

#include <chrono>
#include <cstdio>

namespace silo {
namespace {

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool Is(std::string_view s, size_t pos, char c) { return pos < s.size() && s[pos] == c; }

}  // namespace

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatRfc3339Micros(int64_t us) {
  using namespace std::chrono;
  sys_time<microseconds> tp{microseconds{us}};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss hms{tp - day};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(hms.hours().count()),
                int(hms.minutes().count()), int(hms.seconds().count()),
                static_cast<long long>(hms.subseconds().count()));
  return buf;
}

Result<int64_t> ParseRfc3339(std::string_view s) {
  auto bad = [] { return InvalidArgument("not an RFC 3339 date-time"); };
  int y, mo, d, h, mi, sec;
  if (!Digits(s, 0, 4, &y) || !Is(s, 4, '-') || !Digits(s, 5, 2, &mo) || !Is(s, 7, '-') ||
      !Digits(s, 8, 2, &d) || !(Is(s, 10, 'T') || Is(s, 10, 't')) || !Digits(s, 11, 2, &h) ||
      !Is(s, 13, ':') || !Digits(s, 14, 2, &mi) || !Is(s, 16, ':') || !Digits(s, 17, 2, &sec)) {
    return bad();
  }
  size_t pos = 19;
  int64_t micros = 0;
  if (Is(s, pos, '.')) {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 6) micros = micros * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start) return bad();
    for (size_t n = pos - start; n < 6; ++n) micros *= 10;
  }
  int offset_min = 0;
  if (Is(s, pos, 'Z') || Is(s, pos, 'z')) {
    ++pos;
  } else if (Is(s, pos, '+') || Is(s, pos, '-')) {
    int oh, om;
    if (!Digits(s, pos + 1, 2, &oh) || !Is(s, pos + 3, ':') || !Digits(s, pos + 4, 2, &om) ||
        oh > 23 || om > 59) {
      return bad();
    }
    offset_min = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != s.size()) return bad();
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (y < 1970 || !ymd.ok() || h > 23 || mi > 59 || sec > 59) return bad();
  int64_t secs = sys_days{ymd}.time_since_epoch().count() * 86400LL + h * 3600 + mi * 60 + sec -
                 offset_min * 60LL;
  if (secs < 0) return bad();
  return secs * 1000000 + micros;
}

}  // namespace silo
