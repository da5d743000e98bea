// The SQL text of a record listing, built from a parsed ListQuery: the one
// place where request input shapes SQL. Pure (no database), so it is tested
// as a table (list_sql_test.cc) and fuzzed (tests/fuzz/list_query_fuzz.cc),
// as page_cipher is apart from the VFS.
//
// Contract: every value that came with the request is a bound parameter.
// The text holds only fixed SQL, the field expressions of schema fields
// (projection::FieldExpr over names the schema validated) and the page size;
// ?1 is the collection name, ?2... are `args` in order.
#ifndef SILO_RECORDS_LIST_SQL_H_
#define SILO_RECORDS_LIST_SQL_H_

#include <boost/json/value.hpp>
#include <string>
#include <vector>

#include "records/query.h"
#include "storage/database.h"

namespace silo::records {

struct ListSql {
  std::string sql;                       // selects kListColumns, limit + 1 rows
  std::vector<boost::json::value> args;  // for ?2, ?3, ...
};

// The columns every listing selects, in order.
inline constexpr char kListColumns[] =
    "id, version, data, created_at_us, created_by, updated_at_us, updated_by";

// REQUIRES: `q` came from ParseListQuery (fields of the collection's schema,
// 1 <= limit <= kMaxPageSize).
ListSql BuildListSql(const ListQuery& q);

// Binds a JSON scalar the way json_extract() yields it (a uint64 beyond
// int64 as a double, a bool as 0 or 1, anything else not scalar as NULL).
void BindJson(storage::Statement& s, int index, const boost::json::value& v);

}  // namespace silo::records

#endif  // SILO_RECORDS_LIST_SQL_H_
