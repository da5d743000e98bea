// Process-wide structured logging: one JSON object per line on stderr.
//
// Contract: callers pass only fields that are safe to log. Never pass request
// bodies, header values of Authorization/Cookie, keys or tokens. Values are
// JSON-escaped, so a field cannot forge a second log line.
// Thread-safe.
#ifndef SILO_BASE_LOG_H_
#define SILO_BASE_LOG_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace silo::log {

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), str(v) {}
  Field(std::string_view k, const char* v) : key(k), str(v) {}
  Field(std::string_view k, const std::string& v) : key(k), str(v) {}
  Field(std::string_view k, long long v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, int v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, unsigned v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, unsigned long v)
      : key(k), num(static_cast<long long>(v)), is_num(true) {}
  Field(std::string_view k, long v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, double v) : key(k), dbl(v), is_dbl(true) {}
  std::string_view key;
  std::string_view str;
  long long num = 0;
  double dbl = 0;
  bool is_num = false;
  bool is_dbl = false;
};

// Writes {"ts":...,"level":...,"msg":...,<fields>} as one line.
void Write(std::string_view level, std::string_view msg, std::initializer_list<Field> fields = {});

inline void Info(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write("info", msg, f);
}
inline void Warn(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write("warn", msg, f);
}
inline void Error(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write("error", msg, f);
}

// Escapes a string as the inside of a JSON string literal.
std::string JsonEscape(std::string_view s);

}  // namespace silo::log

#endif  // SILO_BASE_LOG_H_
