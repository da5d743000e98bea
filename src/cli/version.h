// `silo --version`: this build's version and the versions of the libraries it
// runs with (the linked ones where the library can say so, else the headers'),
// so a bug report or an advisory check names exactly what is in use.
#ifndef SILO_CLI_VERSION_H_
#define SILO_CLI_VERSION_H_

#include <string>

namespace silo::cli {

// "silo 0.1.0" then one "<library> <version>" line each; or the same as one
// JSON object ({"silo":…,"openssl":…,…}).
std::string VersionText(bool as_json);

}  // namespace silo::cli

#endif  // SILO_CLI_VERSION_H_
