#include "api/json_strict.h"

#include <boost/json/basic_parser_impl.hpp>
#include <cstdio>
#include <set>
#include <vector>

namespace silo::api {
namespace {

namespace json = boost::json;
using boost::system::error_code;

bool Allowed(unsigned char c) { return c >= 0x20 || c == '\t' || c == '\n' || c == '\r'; }

// Records the first problem and stops the parse there.
struct Handler {
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  std::vector<std::set<std::string>> keys;  // of each open object
  std::string key;                          // being read
  std::string last_key;                     // the string's member, for messages
  std::string problem;

  bool Fail(std::string why, error_code& ec) {
    problem = std::move(why);
    ec = json::error::syntax;  // stops the parser; the caller reads `problem`
    return false;
  }
  bool Check(std::string_view s, std::string_view what, error_code& ec) {
    for (unsigned char c : s) {
      if (!Allowed(c)) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "U+%04X", c);
        return Fail("control character " + std::string(hex) + " in " + std::string(what), ec);
      }
    }
    return true;
  }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) { return true; }
  bool on_array_end(std::size_t, error_code&) { return true; }
  bool on_object_begin(error_code&) {
    keys.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, error_code&) {
    keys.pop_back();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, error_code& ec) {
    return Check(s, "the value of \"" + last_key + "\"", ec);
  }
  bool on_string(json::string_view s, std::size_t, error_code& ec) {
    return Check(s, "the value of \"" + last_key + "\"", ec);
  }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code& ec) {
    key.append(s.data(), s.size());
    last_key = std::move(key);
    key.clear();
    if (!Check(last_key, "a key", ec)) return false;
    if (!keys.back().insert(last_key).second) {
      return Fail("duplicate key \"" + last_key + "\"", ec);
    }
    return true;
  }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(int64_t, json::string_view, error_code&) { return true; }
  bool on_uint64(uint64_t, json::string_view, error_code&) { return true; }
  bool on_double(double, json::string_view, error_code&) { return true; }
  bool on_bool(bool, error_code&) { return true; }
  bool on_null(error_code&) { return true; }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }
};

}  // namespace

std::string StrictJsonProblem(std::string_view text) {
  json::basic_parser<Handler> parser(json::parse_options{});
  error_code ec;
  size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (!parser.handler().problem.empty()) {
    return parser.handler().problem + " at byte " + std::to_string(used);
  }
  return "";
}

}  // namespace silo::api
