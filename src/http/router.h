// Router<Ctx>: an immutable-after-build route table, generic over the context
// type the application passes to handlers (the transport knows no tenants).
//
// Every route declares its Access at the registration site: Public, Operator
// or a named permission. Access has no default value that passes: a Route built
// without one has kind kUnset, and UnguardedRoutes() lists it so that a unit
// test and the server's start-up both refuse such a table (deny by default).
//
// Patterns are literal segments and "{name}" captures, split on '/': "/api/"
// and "/api" are different routes. No regular expressions.
// Thread-safety: build on one thread, then Match() from any number.
#ifndef SILO_HTTP_ROUTER_H_
#define SILO_HTTP_ROUTER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"

namespace silo::http {

struct Access {
  // kSession: any signed-in user of the tenant, by cookie session only (a
  // user's own account actions); kPermission: a named permission.
  enum class Kind { kUnset, kPublic, kOperator, kSession, kPermission };
  Kind kind = Kind::kUnset;
  std::string permission;  // for kPermission

  static Access Public() { return {Kind::kPublic, {}}; }
  static Access Operator() { return {Kind::kOperator, {}}; }
  static Access Session() { return {Kind::kSession, {}}; }
  static Access Permission(std::string p) { return {Kind::kPermission, std::move(p)}; }
  std::string ToString() const;
};

using PathParams = std::map<std::string, std::string>;

std::vector<std::string_view> SplitPath(std::string_view path);
// True when `path` matches `pattern`; fills captures into `params`.
bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params);
// The same on segments already split; fills `params` (when not null) only on
// a match.
bool MatchSegments(const std::vector<std::string>& pattern,
                   const std::vector<std::string_view>& path, PathParams* params);

template <typename Ctx>
struct Route {
  std::string method;
  std::string pattern;
  Access access;
  size_t body_limit = 0;   // bytes; 0 = no body accepted
  std::string rate_label;  // rate-limit bucket name ("" = none)
  std::function<Response(Ctx&)> handler;
  bool slow = false;  // hashes passwords: runs on the server's slow pool
};

template <typename Ctx>
class Router {
 public:
  void Add(Route<Ctx> route) {
    std::vector<std::string> segments;
    for (auto seg : SplitPath(route.pattern)) segments.emplace_back(seg);
    segments_.push_back(std::move(segments));
    routes_.push_back(std::move(route));
  }

  struct Match {
    const Route<Ctx>* route = nullptr;  // null: no route for method+path
    PathParams params;
    bool path_known = false;  // some route has this path (405 vs 404)
    std::string allow;        // methods allowed on this path, for 405
  };

  // Splits the path once; patterns were split when added.
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

  // "METHOD pattern" of every route whose Access is unset.
  std::vector<std::string> UnguardedRoutes() const {
    std::vector<std::string> out;
    for (const auto& r : routes_) {
      if (r.access.kind == Access::Kind::kUnset ||
          (r.access.kind == Access::Kind::kPermission && r.access.permission.empty())) {
        out.push_back(r.method + " " + r.pattern);
      }
    }
    return out;
  }

  const std::vector<Route<Ctx>>& routes() const { return routes_; }

 private:
  std::vector<Route<Ctx>> routes_;
  std::vector<std::vector<std::string>> segments_;  // of each route's pattern
};

}  // namespace silo::http

#endif  // SILO_HTTP_ROUTER_H_
