// The web console's built files (console/dist, committed), embedded at build
// time by scripts/embed_console.py into build/gen/console_assets.cc; served
// by the console routes (console_api.cc, docs/architecture.md "Console").
#ifndef SILO_API_CONSOLE_ASSETS_H_
#define SILO_API_CONSOLE_ASSETS_H_

#include <span>
#include <string_view>

namespace silo::api {

struct ConsoleAsset {
  std::string_view path;          // under dist: "index.html", "assets/index-<hash>.js"
  std::string_view content_type;  // with charset for text
  std::string_view bytes;
  std::string_view gzip;  // empty when compressing did not help
  std::string_view etag;  // quoted, from the bytes' SHA-256
  bool immutable;         // content-hashed name: cached for a year
};

// Sorted by path.
std::span<const ConsoleAsset> ConsoleAssets();

}  // namespace silo::api

#endif  // SILO_API_CONSOLE_ASSETS_H_
