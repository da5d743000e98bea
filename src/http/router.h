// Router<R>: an immutable-after-build route table, generic over the route type
// the application declares. The transport knows methods and paths only: who
// may call a route, its limits and its handler are the application's fields
// of R (api/route.h), which the router stores and hands back untouched.
//
// R needs `method` and `pattern` (std::string). Patterns are literal segments
// and "{name}" captures, split on '/': "/api/" and "/api" are different
// routes. No regular expressions.
// Thread-safety: build on one thread, then Find() from any number.
#ifndef SILO_HTTP_ROUTER_H_
#define SILO_HTTP_ROUTER_H_

#include <concepts>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace silo::http {

using PathParams = std::map<std::string, std::string>;

std::vector<std::string_view> SplitPath(std::string_view path);
// True when `path` matches `pattern`; fills captures into `params`.
bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params);
// The same on segments already split; fills `params` (when not null) only on
// a match.
bool MatchSegments(const std::vector<std::string>& pattern,
                   const std::vector<std::string_view>& path, PathParams* params);

template <typename R>
concept RouteEntry = requires(const R& r) {
  { r.method } -> std::convertible_to<std::string>;
  { r.pattern } -> std::convertible_to<std::string>;
};

template <RouteEntry R>
class Router {
 public:
  void Add(R route) {
    std::vector<std::string> segments;
    for (auto seg : SplitPath(route.pattern)) segments.emplace_back(seg);
    segments_.push_back(std::move(segments));
    routes_.push_back(std::move(route));
  }

  struct Match {
    const R* route = nullptr;  // null: no route for method+path
    PathParams params;
    bool path_known = false;  // some route has this path (405 vs 404)
    std::string allow;        // methods allowed on this path, for 405
  };

  // Splits the path once; patterns were split when added. The first route
  // added for a method and path wins.
  Match Find(std::string_view method, std::string_view path) const {
    Match m;
    const auto xs = SplitPath(path);
    for (size_t i = 0; i < routes_.size(); ++i) {
      const auto& r = routes_[i];
      if (!MatchSegments(segments_[i], xs, nullptr)) continue;
      m.path_known = true;
      m.allow += (m.allow.empty() ? "" : ", ") + r.method;
      if (r.method == method && m.route == nullptr) {
        m.route = &r;
        MatchSegments(segments_[i], xs, &m.params);
      }
    }
    return m;
  }

  const std::vector<R>& routes() const { return routes_; }

 private:
  std::vector<R> routes_;
  std::vector<std::vector<std::string>> segments_;  // of each route's pattern
};

}  // namespace silo::http

#endif  // SILO_HTTP_ROUTER_H_
