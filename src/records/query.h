// A record listing's parameters, parsed from the query string and checked
// against the collection's schema. Field names here always come from the
// schema's own definitions, never from the request text, so a storage
// backend may name them in its query language.
//
//   filter=<field>:<op>:<value>   repeatable, all must hold; op is one of
//                                 eq ne lt lte gt gte in prefix; `in` takes
//                                 comma-separated values (at most 100)
//   filter=<relation>.<field>:<op>:<value>
//                                 through one relation: some related record
//                                 (as of `at`) has a field that matches
//   sort=<field> | sort=-<field>  one declared field (default: id ascending)
//   expand=<relation>[.<relation>],...
//                                 related records to embed (depth at most 2;
//                                 the handler embeds them, the store ignores it)
//   limit=<1..200>                default 50
//   cursor=<opaque>               from the previous page's next_cursor
//   at=<RFC 3339>                 the listing as it was at that time
//
// A record without the field never matches a comparison. Ties are broken by
// id in the sort direction, so pages never overlap or skip.
#ifndef SILO_RECORDS_QUERY_H_
#define SILO_RECORDS_QUERY_H_

#include <boost/json/value.hpp>
#include <functional>
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
  // Set for a filter through a relation: the relation field of the listed
  // collection; `field` is then a field of relation->collection.
  std::optional<FieldDef> relation;
  // With `relation`: the caller's read conditions on the target (any
  // alternative, all filters of it); nullopt: every target record.
  std::optional<std::vector<std::vector<Filter>>> target_scope;
};

// One ?expand path: a relation field of the listed collection, and maybe a
// relation field of its target collection.
struct ExpandPath {
  FieldDef first;
  std::optional<FieldDef> second;
};
inline constexpr size_t kMaxExpandPaths = 8;

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
  std::vector<ExpandPath> expand;
  // The caller's read conditions (the store sets them from its rules): a
  // record is listed when any alternative holds; nullopt: every record.
  std::optional<std::vector<std::vector<Filter>>> scope;
};

inline constexpr int kMaxPageSize = 200;

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// A query string (after '?', not decoded) as its parameters, in order, with
// percent-escapes decoded ('+' is not a space). InvalidArgument when it is
// not a valid query. Any view is safe: Boost.URL 1.81's parse_query measures
// its input with strlen (found by list_query_fuzz), so it is only ever given
// a NUL-terminated copy, and never the empty string.
Result<QueryParams> ParseQueryString(std::string_view query);

// The schema of a related collection (filters through relations and expand
// paths need their targets'). NotFound when there is none.
using SchemaLookup = std::function<Result<CollectionSchema>(const std::string& collection)>;

// `params` are the decoded query parameters in order. InvalidArgument for an
// unknown parameter or field, a malformed filter or value, a bad cursor, an
// expand path that is not a relation or deeper than 2. Without `related`, a
// filter through a relation or an expand is refused.
Result<ListQuery> ParseListQuery(const CollectionSchema& schema,
                                 const std::vector<std::pair<std::string, std::string>>& params,
                                 const SchemaLookup& related = nullptr);

// One filter, "<field>:<op>:<value>" or "<relation>.<field>:<op>:<value>"
// (the latter only with `related`). InvalidArgument naming the problem.
Result<Filter> ParseFilter(const CollectionSchema& schema, std::string_view text,
                           const SchemaLookup& related);

// An expand parameter's value: comma-separated paths. InvalidArgument naming
// the bad path.
Result<std::vector<ExpandPath>> ParseExpand(const CollectionSchema& schema, std::string_view text,
                                            const SchemaLookup& related);

std::string EncodeCursor(const Cursor& cursor);
Result<Cursor> DecodeCursor(std::string_view text);

}  // namespace silo::records

#endif  // SILO_RECORDS_QUERY_H_
