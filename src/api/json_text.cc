#include "api/json_text.h"

#include <boost/json.hpp>
#include <charconv>
#include <cmath>

namespace silo::api {
namespace {

namespace json = boost::json;

void Write(const json::value& v, std::string& out);

void WriteObject(const json::object& o, std::string& out) {
  out += '{';
  bool first = true;
  for (const auto& kv : o) {
    if (!first) out += ',';
    first = false;
    out += json::serialize(kv.key());
    out += ':';
    Write(kv.value(), out);
  }
  out += '}';
}

void WriteArray(const json::array& a, std::string& out) {
  out += '[';
  bool first = true;
  for (const auto& e : a) {
    if (!first) out += ',';
    first = false;
    Write(e, out);
  }
  out += ']';
}

void Write(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::double_: {
      double d = v.get_double();
      if (!std::isfinite(d)) {
        out += "null";
        break;
      }
      char buf[32];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
      out.append(buf, end);
      break;
    }
    case json::kind::object: WriteObject(v.get_object(), out); break;
    case json::kind::array: WriteArray(v.get_array(), out); break;
    default: out += json::serialize(v); break;
  }
}

bool HasDouble(const json::value& v);

bool HasDouble(const json::object& o) {
  for (const auto& kv : o) {
    if (HasDouble(kv.value())) return true;
  }
  return false;
}

bool HasDouble(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_: return true;
    case json::kind::object: return HasDouble(v.get_object());
    case json::kind::array:
      for (const auto& e : v.get_array()) {
        if (HasDouble(e)) return true;
      }
      return false;
    default: return false;
  }
}

}  // namespace

// Most answers hold no double: they take Boost.JSON's serializer (one pass,
// no per-member strings); only those that do are written member by member.
std::string JsonText(const json::value& v) {
  if (!HasDouble(v)) return json::serialize(v);
  std::string out;
  Write(v, out);
  return out;
}

std::string JsonText(const json::object& o) {
  if (!HasDouble(o)) return json::serialize(o);
  std::string out;
  WriteObject(o, out);
  return out;
}

}  // namespace silo::api
