// libFuzzer target: the record filter and sort parser and the listing's SQL
// builder. Arbitrary bytes are a query string, decoded as the API decodes it
// (ParseQueryString), parsed against a collection with a field of every type,
// and turned into SQL (BuildListSql); and, whole, as a cursor.
//
// Findings besides crashes: a query that parses into a page size outside
// 1..kMaxPageSize, a filter on a field the schema lacks, a cursor that
// decodes but does not survive encode/decode unchanged, and SQL that breaks
// list_sql.h's contract: request text in the statement (a quote left once
// the schema's field expressions are taken out) or a placeholder that is not
// one of ?1 .. ?(args + 1).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "records/list_sql.h"
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

  silo::records::ListSql built = silo::records::BuildListSql(*q);
  std::string rest = built.sql;
  for (const auto& f : Tickets().fields) {
    const std::string expr = "json_extract(data, '$." + f.name + "')";
    for (size_t at; (at = rest.find(expr)) != std::string::npos;) rest.erase(at, expr.size());
  }
  if (rest.find('\'') != std::string::npos || rest.find(';') != std::string::npos) {
    __builtin_trap();
  }
  const size_t placeholders = built.args.size() + 1;
  std::vector<bool> seen(placeholders + 1, false);
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != '?') continue;
    size_t n = 0, j = i + 1;
    for (; j < rest.size() && rest[j] >= '0' && rest[j] <= '9'; ++j) n = n * 10 + (rest[j] - '0');
    if (j == i + 1 || n < 1 || n > placeholders) __builtin_trap();
    seen[n] = true;
  }
  for (size_t n = 1; n <= placeholders; ++n) {
    if (!seen[n]) __builtin_trap();
  }
  return 0;
}
