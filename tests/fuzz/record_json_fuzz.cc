// libFuzzer target: JSON body validation. Arbitrary bytes are parsed as the
// API parses bodies (Boost.JSON, nesting limited as records_api.cc does), then
// checked as a collection definition and as a record of a fixed collection
// with a field of every type.
//
// Findings besides crashes: a definition that passes but whose own JSON form
// does not pass again, or passes as something else; a record that passes but
// whose normalised form does not pass again unchanged (normalisation must be
// idempotent, or a stored record could be refused on its next update).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "records/schema.h"
#include "tickets_schema.h"

namespace json = boost::json;
using silo::fuzz::Tickets;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 20;  // records_api.cc kMaxBodyDepth
  json::value v =
      json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec, {}, opts);
  if (ec) return 0;

  auto collection = silo::records::ParseCollection(v);
  if (collection.ok()) {
    json::value again_json = collection->ToJson();
    auto again = silo::records::ParseCollection(again_json);
    if (!again.ok()) __builtin_trap();
    if (json::value(again->ToJson()) != again_json) __builtin_trap();
  }

  if (!v.is_object()) return 0;
  auto record = silo::records::ValidateRecord(Tickets(), v.as_object());
  if (record.ok()) {
    auto again = silo::records::ValidateRecord(Tickets(), *record);
    if (!again.ok() || *again != *record) __builtin_trap();
  }
  return 0;
}
