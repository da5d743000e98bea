// The web console's files (issue 20): the embedded console/dist under
// /console/ on the tenant's API, with the console's own CSP (the API's is
// default-src 'none'), revalidated HTML and year-long caching of the
// content-hashed assets, gzip when the browser takes it.
#include <algorithm>

#include "api/console_assets.h"
#include "api/handlers.h"

namespace silo::api {
namespace {

// Scripts and styles from this origin only, no inline code of either kind,
// DOM sinks behind Trusted Types (Svelte's one policy), images from here or
// blob: (the TOTP QR code), requests to this origin only.
constexpr char kConsoleCsp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; "
    "require-trusted-types-for 'script'; trusted-types svelte-trusted-html";

const ConsoleAsset* Find(std::string_view path) {
  auto assets = ConsoleAssets();
  auto it = std::lower_bound(assets.begin(), assets.end(), path,
                             [](const ConsoleAsset& a, std::string_view p) { return a.path < p; });
  return it != assets.end() && it->path == path ? &*it : nullptr;
}

// Whether Accept-Encoding admits gzip (a q of 0 refuses it).
bool TakesGzip(const http::Request& req) {
  auto header = req.Header("accept-encoding");
  if (!header) return false;
  std::string_view rest = *header;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    const size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip") continue;
    if (semi == std::string_view::npos) return true;
    std::string_view q = item.substr(semi + 1);
    while (!q.empty() && q.front() == ' ') q.remove_prefix(1);
    return !(q.starts_with("q=0") && q.find_first_not_of("0.", 2) == std::string_view::npos);
  }
  return false;
}

http::Response Serve(const http::Request& req, const ConsoleAsset& a) {
  http::Response r;
  r.headers.emplace_back("ETag", std::string(a.etag));
  r.headers.emplace_back("Cache-Control",
                         a.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  r.headers.emplace_back("Content-Security-Policy", kConsoleCsp);
  r.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  if (auto match = req.Header("if-none-match"); match && match->find(a.etag) != std::string::npos) {
    r.status = 304;
    r.content_type.clear();
    return r;
  }
  r.content_type = std::string(a.content_type);
  if (!a.gzip.empty() && TakesGzip(req)) {
    r.body = std::string(a.gzip);
    r.headers.emplace_back("Content-Encoding", "gzip");
  } else {
    r.body = std::string(a.bytes);
  }
  return r;
}

http::Response Redirect(std::string_view to) {
  http::Response r;
  r.status = 308;
  r.content_type.clear();
  r.headers.emplace_back("Location", std::string(to));
  return r;
}

}  // namespace

http::Response ConsoleIndex(Services& /*s*/, RequestContext& ctx) {
  const ConsoleAsset* index = Find("index.html");
  if (index == nullptr)
    return http::Problem(404, "no console in this build", ctx.request.request_id);
  return Serve(ctx.request, *index);
}

http::Response ConsoleFile(Services& /*s*/, RequestContext& ctx) {
  const ConsoleAsset* a = Find("assets/" + ctx.params.at("file"));
  if (a == nullptr) return http::Problem(404, "no such file", ctx.request.request_id);
  return Serve(ctx.request, *a);
}

// The console's address without its slash: relative asset URLs need it.
http::Response ConsoleSlash(Services& /*s*/, RequestContext& /*ctx*/) {
  return Redirect("console/");
}

// The page the password-reset mail links to (…/reset#token=…): the browser
// keeps the fragment across the redirect, and the console reads it there.
http::Response ResetPage(Services& /*s*/, RequestContext& /*ctx*/) { return Redirect("console/"); }

}  // namespace silo::api
