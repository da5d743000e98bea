// What the JSON grammar allows but a request body must not hold (ASVS 5.1.1):
// a key twice in one object (parsers disagree on which one wins, so two
// components could read two different requests from one body), and C0
// control characters other than tab, line feed and carriage return in a
// string or key (escaped as \u0001 they are valid JSON, and invisible).
#ifndef SILO_API_JSON_STRICT_H_
#define SILO_API_JSON_STRICT_H_

#include <string>
#include <string_view>

namespace silo::api {

// "" when `text` (already known to be valid JSON) has neither; otherwise
// why, naming the key ("duplicate key \"title\"") and the byte offset.
std::string StrictJsonProblem(std::string_view text);

}  // namespace silo::api

#endif  // SILO_API_JSON_STRICT_H_
