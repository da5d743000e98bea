// Honeypot paths: what scanners ask for and no user of Silo ever does
// (/.env, /wp-login.php, ...). A hit is logged and, when the request is the
// client's own, bans the client for a while.
//
// Pure; the dispatcher applies them.
#ifndef SILO_GUARD_HONEYPOT_H_
#define SILO_GUARD_HONEYPOT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace silo::guard {

// The path as a server that maps paths to files would see it: percent-
// decoded (repeatedly, so %252e is '.'), lowercased, backslashes as slashes,
// duplicate slashes folded, "." and ".." segments resolved (never above the
// root), and without a trailing slash (but "/" itself). "//.ENV/", "/%2e%65nv"
// and "/x/../.env" are all "/.env".
std::string NormalisePath(std::string_view path);

// The configured honeypot paths, normalised once (they are checked on every
// public request). An entry with a trailing '/' ("/phpmyadmin/") also covers
// everything under it. Immutable, so safe to share between threads.
class HoneypotPaths {
 public:
  explicit HoneypotPaths(const std::vector<std::string>& paths);
  // Whether `path`, normalised, is one of the entries or under a folder entry.
  bool Matches(std::string_view path) const;

 private:
  struct Entry {
    std::string path;  // normalised
    bool folder;       // configured with a trailing '/'
  };
  std::vector<Entry> entries_;
};

// Whether a browser sent this request on another site's behalf (an <img> or
// <script> on a page elsewhere, a cross-site fetch), from its Fetch Metadata
// headers: Sec-Fetch-Site cross-site, Sec-Fetch-Mode no-cors, or a
// Sec-Fetch-Dest of a subresource. Such a request is not its sender's own
// choice, so a honeypot hit from it is logged but never bans: else any page
// could get its visitors (a whole office behind one address) banned.
bool BrowserMadeForAnotherSite(std::optional<std::string_view> fetch_site,
                               std::optional<std::string_view> fetch_mode,
                               std::optional<std::string_view> fetch_dest);

}  // namespace silo::guard

#endif  // SILO_GUARD_HONEYPOT_H_
