#include "cli/version.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <sqlite3.h>
#include <zstd.h>

#include <boost/json.hpp>
#include <boost/version.hpp>
#include <utility>
#include <vector>

namespace silo::cli {

std::string VersionText(bool as_json) {
  const std::string boost = std::to_string(BOOST_VERSION / 100000) + "." +
                            std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                            std::to_string(BOOST_VERSION % 100);
  // Run-time answers where the library gives one: a distribution update of
  // a shared library changes these without a rebuild.
  const std::vector<std::pair<const char*, std::string>> parts = {
      {"silo", SILO_VERSION},
      {"openssl", OpenSSL_version(OPENSSL_VERSION)},
      {"sqlite", sqlite3_libversion()},
      {"libsodium", sodium_version_string()},
      {"boost", boost},
      {"zstd", ZSTD_versionString()},
      {"libcurl", curl_version_info(CURLVERSION_NOW)->version},
  };
  if (as_json) {
    boost::json::object o;
    for (const auto& [name, version] : parts) o[name] = version;
    return boost::json::serialize(o) + "\n";
  }
  std::string out;
  for (const auto& [name, version] : parts) out += std::string(name) + " " + version + "\n";
  return out;
}

}  // namespace silo::cli
