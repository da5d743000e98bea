// A record listing's parameters, parsed from the query string and checked
// against the collection's schema. Field names here always come from the
// schema's own definitions, never from the request text, so a storage
// backend may name them in its query language.
//
//   filter=<field>:<op>:<value>   repeatable, all must hold; op is one of
//                                 eq ne lt lte gt gte in prefix; `in` takes
//                                 comma-separated values (at most 100)
//   sort=<field> | sort=-<field>  one declared field (default: id ascending)
//   limit=<1..200>                default 50
//   cursor=<opaque>               from the previous page's next_cursor
//   at=<RFC 3339>                 the listing as it was at that time
//
// A record without the field never matches a comparison. Ties are broken by
// id in the sort direction, so pages never overlap or skip.
#ifndef SILO_RECORDS_QUERY_H_
#define SILO_RECORDS_QUERY_H_

#include <boost/json/value.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "records/schema.h"

namespace silo::records {

enum class FilterOp { kEq, kNe, kLt, kLte, kGt, kGte, kIn, kPrefix };

struct Filter {
  FieldDef field;  // a copy of the schema's definition
  FilterOp op = FilterOp::kEq;
  std::vector<boost::json::value> values;  // one, or several for kIn
};

// Where the previous page ended.
struct Cursor {
  boost::json::value sort_value;  // null when the record lacks the field
  std::string id;
};

struct ListQuery {
  std::vector<Filter> filters;
  std::optional<FieldDef> sort;  // nullopt: by id
  bool descending = false;
  int limit = 50;
  std::optional<Cursor> after;
  std::optional<int64_t> at_us;
};

inline constexpr int kMaxPageSize = 200;

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// A query string (after '?', not decoded) as its parameters, in order, with
// percent-escapes decoded ('+' is not a space). InvalidArgument when it is
// not a valid query. Any view is safe: Boost.URL 1.81's parse_query measures
// its input with strlen (found by list_query_fuzz), so it is only ever given
// a NUL-terminated copy, and never the empty string.
Result<QueryParams> ParseQueryString(std::string_view query);

// `params` are the decoded query parameters in order. InvalidArgument for an
// unknown parameter or field, a malformed filter or value, a bad cursor.
Result<ListQuery> ParseListQuery(const CollectionSchema& schema,
                                 const std::vector<std::pair<std::string, std::string>>& params);

std::string EncodeCursor(const Cursor& cursor);
Result<Cursor> DecodeCursor(std::string_view text);

}  // namespace silo::records

#endif  // SILO_RECORDS_QUERY_H_
