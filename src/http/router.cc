#include "http/router.h"

namespace silo::http {

std::string Access::ToString() const {
  switch (kind) {
    case Kind::kUnset: return "UNSET";
    case Kind::kPublic: return "public";
    case Kind::kOperator: return "operator";
    case Kind::kSession: return "session";
    case Kind::kPermission: return permission;
  }
  return "UNSET";
}

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

bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params) {
  auto ps = SplitPath(pattern);
  auto xs = SplitPath(path);
  if (ps.empty() || ps.size() != xs.size()) return false;
  for (size_t i = 0; i < ps.size(); ++i) {
    std::string_view p = ps[i];
    if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
      if (xs[i].empty()) return false;
      (*params)[std::string(p.substr(1, p.size() - 2))] = std::string(xs[i]);
    } else if (p != xs[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace silo::http
