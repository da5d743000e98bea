#include "base/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace silo::log {
namespace {

std::mutex& OutputMutex() {
  static std::mutex m;  // guards interleaving of whole lines on stderr
  return m;
}

std::string NowRfc3339() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto us = duration_cast<microseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us % 1000000));
  return buf;
}

}  // namespace

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void Write(std::string_view level, std::string_view msg, std::initializer_list<Field> fields) {
  std::string line = "{\"ts\":\"" + NowRfc3339() + "\",\"level\":\"" + std::string(level) +
                     "\",\"msg\":\"" + JsonEscape(msg) + "\"";
  for (const Field& f : fields) {
    line += ",\"" + JsonEscape(f.key) + "\":";
    if (f.is_num) {
      line += std::to_string(f.num);
    } else if (f.is_dbl) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3f", f.dbl);
      line += buf;
    } else {
      line += "\"" + JsonEscape(f.str) + "\"";
    }
  }
  line += "}\n";
  std::lock_guard<std::mutex> lock(OutputMutex());
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace silo::log
