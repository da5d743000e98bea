#include "api/byte_range.h"

#include <charconv>

namespace silo::api {
namespace {

// Digits only, no sign or space; nullopt otherwise (or on overflow).
std::optional<uint64_t> Number(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

ByteRange ParseByteRange(std::optional<std::string_view> header, uint64_t size) {
  ByteRange whole;
  if (!header || header->substr(0, 6) != "bytes=") return whole;
  std::string_view spec = header->substr(6);
  if (spec.find(',') != std::string_view::npos) return whole;  // several: the whole body
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  ByteRange out;
  out.kind = ByteRange::Kind::kPart;
  if (a.empty()) {  // the last n bytes
    auto n = Number(b);
    if (!n) return whole;
    if (*n == 0 || size == 0) return {ByteRange::Kind::kUnsatisfiable, 0, 0};
    out.length = *n < size ? *n : size;
    out.first = size - out.length;
    return out;
  }
  auto first = Number(a);
  if (!first) return whole;
  std::optional<uint64_t> last = b.empty() ? std::optional<uint64_t>(UINT64_MAX) : Number(b);
  if (!last || *last < *first) return whole;
  if (*first >= size) return {ByteRange::Kind::kUnsatisfiable, 0, 0};
  if (*last >= size) *last = size - 1;
  out.first = *first;
  out.length = *last - *first + 1;
  return out;
}

}  // namespace silo::api
