// The collection two fuzz targets check input against: one field of every
// type, so that every value parser is reachable.
#ifndef SILO_TESTS_FUZZ_TICKETS_SCHEMA_H_
#define SILO_TESTS_FUZZ_TICKETS_SCHEMA_H_

#include <boost/json.hpp>

#include "records/schema.h"

namespace silo::fuzz {

inline const records::CollectionSchema& Tickets() {
  static const records::CollectionSchema* schema = [] {
    auto parsed = records::ParseCollection(boost::json::parse(
        R"({"name":"tickets","fields":[)"
        R"({"name":"title","type":"string","required":true,"max":200},)"
        R"({"name":"body","type":"text"},{"name":"n","type":"integer"},)"
        R"({"name":"x","type":"number"},{"name":"done","type":"boolean"},)"
        R"({"name":"due","type":"datetime"},{"name":"mail","type":"email"},)"
        R"({"name":"state","type":"enum","values":["open","closed"]},)"
        R"({"name":"extra","type":"json","max":4096}]})"));
    if (!parsed.ok()) __builtin_trap();
    return new records::CollectionSchema(std::move(*parsed));
  }();
  return *schema;
}

}  // namespace silo::fuzz

#endif  // SILO_TESTS_FUZZ_TICKETS_SCHEMA_H_
