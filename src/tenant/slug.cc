#include "tenant/slug.h"

#include <algorithm>
#include <array>
#include <string>

namespace silo::tenant {
namespace {

// Why: a tenant called "admin" or "login" on a shared base domain is a ready
// phishing page for the platform itself; these are refused outright.
constexpr std::array<std::string_view, 36> kReserved = {
    "www",     "api",      "app",      "admin",     "administrator", "root",
    "silo",    "system",   "operator", "mail",      "smtp",          "imap",
    "pop",     "ftp",      "static",   "assets",    "cdn",           "status",
    "docs",    "help",     "support",  "security",  "login",         "auth",
    "account", "accounts", "billing",  "dashboard", "console",       "localhost",
    "test",    "dev",      "staging",  "internal",  "metrics",       "health"};

}  // namespace

bool IsReservedSlug(std::string_view slug) {
  return std::find(kReserved.begin(), kReserved.end(), slug) != kReserved.end();
}

Status ValidateSlug(std::string_view slug) {
  if (slug.size() < 3 || slug.size() > 63) {
    return InvalidArgument("slug must be 3 to 63 characters long");
  }
  for (char c : slug) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      return InvalidArgument("slug may contain only lowercase letters, digits and hyphens");
    }
  }
  if (slug.front() == '-' || slug.back() == '-') {
    return InvalidArgument("slug must not start or end with a hyphen");
  }
  if (slug.substr(0, 4) == "xn--") {
    return InvalidArgument("slug must not be a punycode (xn--) label");
  }
  if (IsReservedSlug(slug)) {
    return InvalidArgument("slug '" + std::string(slug) + "' is reserved");
  }
  return Status::Ok();
}

}  // namespace silo::tenant
