#include "guard/honeypot.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace silo::guard {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// One round of %XX decoding; invalid escapes stay as they are.
std::string DecodeOnce(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

}  // namespace

std::string NormalisePath(std::string_view path) {
  // Decoding stops when nothing changes, after a few rounds at most.
  std::string p(path);
  for (int round = 0; round < 4; ++round) {
    std::string next = DecodeOnce(p);
    if (next == p) break;
    p = std::move(next);
  }
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) {
    return c == '\\' ? '/' : static_cast<char>(std::tolower(c));
  });
  std::vector<std::string> segments;
  size_t from = 0;
  while (from <= p.size()) {
    size_t slash = p.find('/', from);
    std::string seg = p.substr(from, slash == std::string::npos ? std::string::npos : slash - from);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(std::move(seg));
    }
    if (slash == std::string::npos) break;
    from = slash + 1;
  }
  std::string out;
  for (const auto& s : segments) out += "/" + s;
  return out.empty() ? "/" : out;
}

HoneypotPaths::HoneypotPaths(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    if (!p.empty()) entries_.push_back({NormalisePath(p), p.back() == '/'});
  }
}

bool HoneypotPaths::Matches(std::string_view path) const {
  if (entries_.empty()) return false;
  const std::string normal = NormalisePath(path);
  for (const auto& e : entries_) {
    if (normal == e.path) return true;
    if (e.folder && normal.size() > e.path.size() &&
        normal.compare(0, e.path.size(), e.path) == 0 && normal[e.path.size()] == '/') {
      return true;
    }
  }
  return false;
}

bool BrowserMadeForAnotherSite(std::optional<std::string_view> fetch_site,
                               std::optional<std::string_view> fetch_mode,
                               std::optional<std::string_view> fetch_dest) {
  if (fetch_site && *fetch_site == "cross-site") return true;
  if (fetch_mode && *fetch_mode == "no-cors") return true;
  if (fetch_dest) {
    for (std::string_view d : {"image", "script", "style", "font", "audio", "video", "track",
                               "object", "embed", "iframe", "frame", "worker", "manifest"}) {
      if (*fetch_dest == d) return true;
    }
  }
  return false;
}

}  // namespace silo::guard
