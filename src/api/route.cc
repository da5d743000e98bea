#include "api/route.h"

#include <algorithm>

#include "api/services.h"
#include "guard/once_per.h"
#include "guard/rate_limiter.h"
#include "platform/security_log.h"

namespace silo::api {
namespace {

guard::RateLimit LimitOf(const RateRule& rule, const SecurityOptions& options) {
  constexpr int64_t kMaxDelayUs = 15LL * 60 * 1'000'000;
  switch (rule.budget) {
    case RateRule::Budget::kLogin: {
      const double per_minute = options.login_per_minute;
      return {per_minute, per_minute / 60.0, kMaxDelayUs};
    }
    case RateRule::Budget::kPublicForm: {
      const double per_minute = options.public_form_per_minute;
      return {per_minute, per_minute / 60.0, kMaxDelayUs};
    }
    case RateRule::Budget::kResetMail: return {5, 5 / 3600.0, 3600LL * 1'000'000};
    case RateRule::Budget::kFileLink: return {600, 600 / 60.0, 60LL * 1'000'000};
    case RateRule::Budget::kRealtime: {
      const double per_minute = options.realtime_connect_per_minute;
      return {per_minute, per_minute / 60.0, 60LL * 1'000'000};
    }
    case RateRule::Budget::kApi: {
      const double per_minute = options.api_per_minute;
      return {std::max(10.0, per_minute / 6), per_minute / 60.0, 60LL * 1'000'000};
    }
    case RateRule::Budget::kExport: {
      const double per_hour = options.exports_per_hour;
      return {per_hour, per_hour / 3600.0, 3600LL * 1'000'000};
    }
  }
  return {0, 0, kMaxDelayUs};  // unreachable: every budget is named above
}

bool HasCapture(const Route& r, std::string_view name) {
  for (auto q : r.query_captures) {
    if (q == name) return true;
  }
  return r.pattern.find("{" + std::string(name) + "}") != std::string::npos;
}

// Every "{x}" in a permission names a capture of the pattern.
bool PermissionCapturesExist(const Route& r) {
  const std::string& p = r.access.permission;
  for (size_t open = p.find('{'); open != std::string::npos; open = p.find('{', open + 1)) {
    size_t close = p.find('}', open);
    if (close == std::string::npos || !HasCapture(r, p.substr(open + 1, close - open - 1)))
      return false;
  }
  return true;
}

}  // namespace

std::string Access::ToString() const {
  switch (kind) {
    case Kind::kUnset: return "UNSET";
    case Kind::kPublic: return "public";
    case Kind::kOperator: return "operator";
    case Kind::kSession: return "session";
    case Kind::kPermission: return permission;
    case Kind::kAuthenticated: return "authenticated";
  }
  return "UNSET";
}

Route On(std::string method, std::string pattern, Handler handler) {
  Route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.handler = handler;
  return r;
}

RateVerdict TakeRate(Services& s, const RateRule& rule, std::string_view key, int64_t now_us,
                     std::string_view client) {
  const std::string bucket = std::string(rule.name) + ":" + std::string(key);
  guard::Verdict v = s.limiter->Take(bucket, LimitOf(rule, *s.security), now_us);
  if (!v.allowed && s.security_log != nullptr &&
      (s.event_window == nullptr || s.event_window->Due("rate " + bucket, now_us))) {
    // "ip:<client>", "acct:<tenant>:<who>" or "device:<tenant>:<nonce>".
    std::string_view kind = key.substr(0, key.find(':'));
    std::string detail = "rule " + std::string(rule.name) + ", per " + std::string(kind);
    if (kind != "ip") {
      std::string_view rest = key.substr(kind.size() + 1);
      detail += ", tenant " + std::string(rest.substr(0, rest.find(':')));
    }
    s.security_log->AppendOrLog({"rate.throttled", "anonymous", std::string(client), detail});
  }
  return {v.allowed, v.retry_after_us};
}

http::Response TooManyAttempts(const http::Request& req, const RateVerdict& v) {
  auto r = http::Problem(429, "too many attempts; retry later", req.request_id);
  r.headers.emplace_back("Retry-After", std::to_string(guard::RetryAfterSeconds(v.retry_after_us)));
  r.delay_ms = static_cast<int>(std::min<int64_t>(v.retry_after_us / 1000, 2000));
  return r;
}

std::vector<std::string> UnguardedRoutes(const Router& router) {
  std::vector<std::string> out;
  for (const Route& r : router.routes()) {
    bool declared = r.handler != nullptr && r.access.kind != Access::Kind::kUnset &&
                    (r.access.kind != Access::Kind::kPermission ||
                     (!r.access.permission.empty() && PermissionCapturesExist(r)));
    for (const CaptureCheck& c : r.captures) {
      declared = declared && c.valid != nullptr && HasCapture(r, c.capture);
    }
    if (!declared) out.push_back(r.method + " " + r.pattern);
  }
  return out;
}

std::optional<std::string> FailedCapture(const Route& route, const http::PathParams& params) {
  for (const CaptureCheck& c : route.captures) {
    auto it = params.find(std::string(c.capture));
    if (it != params.end() && !c.valid(it->second)) return it->first;
  }
  return std::nullopt;
}

}  // namespace silo::api
