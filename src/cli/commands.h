// What every `silo` subcommand that talks to the operator API shares.
#ifndef SILO_CLI_COMMANDS_H_
#define SILO_CLI_COMMANDS_H_

#include <boost/json/value.hpp>
#include <functional>
#include <string>
#include <vector>

namespace silo::cli {

// Exit codes: 0 ok, 1 refused, 2 usage.
inline constexpr int kOk = 0;
inline constexpr int kRefused = 1;
inline constexpr int kUsage = 2;

// The "detail" of an RFC 9457 problem body, or "unexpected answer".
std::string ProblemDetail(const std::string& body);

// Each entry of a problem's errors[] as "field: message", in order.
std::vector<std::string> ProblemErrors(const std::string& body);

// Calls the operator API; prints JSON (--json) or `human(answer)`; says why
// on stderr when refused. `raw`, when given, receives the answer's body.
int Call(bool as_json, const std::string& method, const std::string& path, const std::string& body,
         const std::function<void(const boost::json::value&)>& human, std::string* raw = nullptr,
         long timeout_seconds = 60);

// Slugs go into URL paths: anything outside [a-z0-9-] could change the path
// or query the request means, so it is a usage error before any request.
bool SlugIsPathSafe(const std::string& s);
// SlugIsPathSafe, or a usage error (code = kUsage) saying which slug is not.
bool CheckSlug(const std::string& slug, int& code);

// The string field `key` of an object, or "".
std::string Str(const boost::json::value& v, const char* key);

// A cluster node's answer to a re-key or a restore in place: when it names
// followers, prints "N of M followers hold a copy <what>" (and that the
// others take theirs later when not all do).
void PrintFollowerCopies(const boost::json::value& v, const char* what);

}  // namespace silo::cli

#endif  // SILO_CLI_COMMANDS_H_
