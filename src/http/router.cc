#include "http/router.h"

namespace silo::http {

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  path.remove_prefix(1);
  for (;;) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool MatchSegments(const std::vector<std::string>& ps, const std::vector<std::string_view>& xs,
                   PathParams* params) {
  if (ps.empty() || ps.size() != xs.size()) return false;
  auto capture = [](const std::string& p) {
    return p.size() >= 2 && p.front() == '{' && p.back() == '}';
  };
  for (size_t i = 0; i < ps.size(); ++i) {
    if (capture(ps[i]) ? xs[i].empty() : ps[i] != xs[i]) return false;
  }
  if (params != nullptr) {
    for (size_t i = 0; i < ps.size(); ++i) {
      if (capture(ps[i])) (*params)[ps[i].substr(1, ps[i].size() - 2)] = std::string(xs[i]);
    }
  }
  return true;
}

bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params) {
  std::vector<std::string> ps;
  for (auto seg : SplitPath(pattern)) ps.emplace_back(seg);
  return MatchSegments(ps, SplitPath(path), params);
}

}  // namespace silo::http
