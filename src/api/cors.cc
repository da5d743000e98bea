#include "api/cors.h"

#include <array>
#include <boost/algorithm/string/predicate.hpp>

namespace silo::api {
namespace {

// The request headers a cross-origin client may send: those Silo reads
// (CORS-safelisted ones need no listing).
constexpr std::array<std::string_view, 11> kAllowedHeaders = {
    "authorization", "content-type",    "if-match",           "if-none-match",
    "range",         "last-event-id",   "tus-resumable",      "upload-length",
    "upload-offset", "upload-metadata", "upload-defer-length"};

// What a client may read from an answer besides the safelisted headers.
constexpr std::string_view kExposed =
    "ETag, Location, Retry-After, Content-Range, Content-Disposition, Upload-Offset, "
    "Upload-Length, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Silo-File-Id";

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool Allowed(std::string_view header) {
  for (auto h : kAllowedHeaders) {
    if (boost::algorithm::iequals(h, header)) return true;
  }
  return false;
}

std::string AllowedHeaderList() {
  std::string out;
  for (auto h : kAllowedHeaders) out += (out.empty() ? "" : ", ") + std::string(h);
  return out;
}

}  // namespace

bool IsPreflight(const http::Request& request) {
  return request.method == "OPTIONS" && request.Header("access-control-request-method");
}

http::Response Preflight(const http::Request& request, const Router& tenant_routes,
                         std::string_view tenant_path, const std::string& origin, bool listed) {
  auto refuse = [&](std::string_view why) {
    http::Response r = http::Problem(403, why, request.request_id);
    r.headers.emplace_back("Vary", "Origin");
    return r;
  };
  if (!listed) return refuse("this origin may not call the API (the tenant's cors_origins)");
  const std::string method(*request.Header("access-control-request-method"));
  auto m = tenant_routes.Find(method, tenant_path);
  if (m.route == nullptr) return refuse("no such method on this path");
  std::string_view asked = request.Header("access-control-request-headers").value_or("");
  while (!asked.empty()) {
    size_t comma = asked.find(',');
    std::string_view h = Trim(asked.substr(0, comma));
    if (!h.empty() && !Allowed(h)) {
      return refuse("request header " + std::string(h) + " is not allowed");
    }
    asked = comma == std::string_view::npos ? "" : asked.substr(comma + 1);
  }
  http::Response r;
  r.status = 204;
  r.headers = {{"Access-Control-Allow-Origin", origin},
               {"Access-Control-Allow-Methods", m.allow},
               {"Access-Control-Allow-Headers", AllowedHeaderList()},
               {"Access-Control-Max-Age", "600"},
               {"Vary", "Origin"}};
  return r;
}

void AddCorsHeaders(http::Response* response, const std::string& origin, bool listed) {
  response->headers.emplace_back("Vary", "Origin");
  if (!listed) return;
  response->headers.emplace_back("Access-Control-Allow-Origin", origin);
  response->headers.emplace_back("Access-Control-Expose-Headers", std::string(kExposed));
}

}  // namespace silo::api
