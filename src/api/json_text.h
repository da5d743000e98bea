// The JSON text of every API answer. Boost.JSON 1.81 writes doubles in its
// own exponent form (1.5 as "1.5E0"); clients and people expect the shortest
// decimal that reads back as the same double ("1.5", "0.1", "3"), which is
// what std::to_chars gives. Everything else is written as Boost.JSON does.
#ifndef SILO_API_JSON_TEXT_H_
#define SILO_API_JSON_TEXT_H_

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <string>

namespace silo::api {

// Non-finite doubles (never produced by parsing JSON) are written as null.
std::string JsonText(const boost::json::value& v);
std::string JsonText(const boost::json::object& o);

}  // namespace silo::api

#endif  // SILO_API_JSON_TEXT_H_
