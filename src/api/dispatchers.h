// The two http::Dispatcher implementations: the public listener (platform and
// tenant routes; tenant bound before any handler runs) and the operator
// listener (bearer token). Both enforce each route's declared Access.
// Thread-safe: immutable after construction.
#ifndef SILO_API_DISPATCHERS_H_
#define SILO_API_DISPATCHERS_H_

#include <memory>
#include <string>
#include <vector>

#include "api/context.h"
#include "api/route.h"
#include "api/services.h"
#include "guard/honeypot.h"
#include "guard/once_per.h"
#include "http/server.h"

namespace silo::api {

// Where a public request goes, decided from Host and path alone.
struct TenantTarget {
  enum class Kind { kNone, kTenant, kMismatch };
  Kind kind = Kind::kNone;
  std::string slug;
  std::string path;  // path relative to the tenant root (starts with '/')
};

// Host: <slug>.<base_domain> (port ignored, case-insensitive) or path
// /t/<slug>/...; both present and different -> kMismatch (never silently
// choose one).
TenantTarget ResolveTenant(const std::string& base_domain, std::string_view host,
                           std::string_view path);

class PublicDispatcher : public http::Dispatcher {
 public:
  // REQUIRES: services.security is set (its honeypot paths are read here).
  PublicDispatcher(Services& services, std::string base_domain, size_t max_body_bytes);
  ~PublicDispatcher() override;
  size_t BodyLimit(std::string_view method, std::string_view target) const override;
  http::Response Handle(const http::Request& request) override;
  bool Slow(std::string_view method, std::string_view target) const override;
  // "METHOD pattern" of every route (platform and tenant) without a declared
  // Access; `silo serve` refuses to start unless it is empty.
  std::vector<std::string> UnguardedRoutes() const;

 private:
  Services& services_;
  const std::string base_domain_;
  const size_t max_body_bytes_;
  const Router platform_;
  const Router tenant_;
  const guard::HoneypotPaths honeypots_;
  const std::unique_ptr<guard::OncePer> token_uses_;  // when each token's use was last audited
};

class OperatorDispatcher : public http::Dispatcher {
 public:
  OperatorDispatcher(Services& services, std::string operator_token);
  size_t BodyLimit(std::string_view method, std::string_view target) const override;
  http::Response Handle(const http::Request& request) override;
  std::vector<std::string> UnguardedRoutes() const { return api::UnguardedRoutes(router_); }

 private:
  Services& services_;
  const std::string token_;  // secret; compared in constant time, never logged
  const Router router_;
};

}  // namespace silo::api

#endif  // SILO_API_DISPATCHERS_H_
