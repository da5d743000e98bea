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

}  // namespace

std::string JsonText(const json::value& v) {
  std::string out;
  Write(v, out);
  return out;
}

std::string JsonText(const json::object& o) {
  std::string out;
  WriteObject(o, out);
  return out;
}

}  // namespace silo::api
