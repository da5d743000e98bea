// libFuzzer target: the record filter and sort parser. Arbitrary bytes are a
// query string, decoded as the API decodes it (ParseQueryString), then parsed
// against a collection with a field of every type; and, whole, as a cursor.
//
// Findings besides crashes: a query that parses into a page size outside
// 1..kMaxPageSize, a filter on a field the schema lacks, a cursor that
// decodes but does not survive encode/decode unchanged.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "records/query.h"
#include "records/schema.h"
#include "tickets_schema.h"

namespace json = boost::json;
using silo::fuzz::Tickets;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cursor = silo::records::DecodeCursor(text);
  if (cursor.ok()) {
    auto again = silo::records::DecodeCursor(silo::records::EncodeCursor(*cursor));
    if (!again.ok() || again->id != cursor->id || again->sort_value != cursor->sort_value) {
      __builtin_trap();
    }
  }

  auto params = silo::records::ParseQueryString(text);
  if (!params.ok()) return 0;
  auto q = silo::records::ParseListQuery(Tickets(), *params);
  if (!q.ok()) return 0;
  if (q->limit < 1 || q->limit > silo::records::kMaxPageSize) __builtin_trap();
  for (const auto& f : q->filters) {
    if (Tickets().Find(f.field.name) == nullptr || f.values.empty()) __builtin_trap();
  }
  if (q->sort && Tickets().Find(q->sort->name) == nullptr) __builtin_trap();
  return 0;
}
