#include "records/list_sql.h"

#include "records/projection.h"

namespace silo::records {
namespace json = boost::json;

ListSql BuildListSql(const ListQuery& q) {
  ListSql out;
  const bool at = q.at_us.has_value();
  std::string& sql = out.sql;
  sql = std::string("SELECT ") + kListColumns + " FROM " + (at ? "record_versions" : "records") +
        " WHERE collection = ?1";
  auto param = [&](const json::value& v) {
    out.args.push_back(v);
    return "?" + std::to_string(out.args.size() + 1);
  };
  if (at) {
    std::string t = param(json::value(*q.at_us));
    sql += " AND valid_from_us <= " + t + " AND valid_to_us > " + t + " AND deleted = 0";
  }
  for (const Filter& f : q.filters) {
    std::string expr = projection::FieldExpr(f.field);
    switch (f.op) {
      case FilterOp::kEq: sql += " AND " + expr + " = " + param(f.values[0]); break;
      case FilterOp::kNe: sql += " AND " + expr + " <> " + param(f.values[0]); break;
      case FilterOp::kLt: sql += " AND " + expr + " < " + param(f.values[0]); break;
      case FilterOp::kLte: sql += " AND " + expr + " <= " + param(f.values[0]); break;
      case FilterOp::kGt: sql += " AND " + expr + " > " + param(f.values[0]); break;
      case FilterOp::kGte: sql += " AND " + expr + " >= " + param(f.values[0]); break;
      case FilterOp::kIn: {
        sql += " AND " + expr + " IN (";
        for (size_t i = 0; i < f.values.size(); ++i) sql += (i ? ", " : "") + param(f.values[i]);
        sql += ")";
        break;
      }
      case FilterOp::kPrefix: {
        std::string p = param(f.values[0]);
        sql += " AND substr(" + expr + ", 1, length(" + p + ")) = " + p;
        break;
      }
    }
  }
  const char* dir = q.descending ? " DESC" : " ASC";
  std::string sort_expr = q.sort ? projection::FieldExpr(*q.sort) : "";
  if (q.after) {
    // Keyset paging: rows strictly beyond the cursor's (sort value, id), with
    // NULL sort values last ascending and first descending, as SQLite orders.
    std::string id = param(json::value(json::string(q.after->id)));
    const char* beyond = q.descending ? " < " : " > ";
    if (!q.sort) {
      sql += " AND id" + std::string(beyond) + id;
    } else if (q.after->sort_value.is_null()) {
      sql += q.descending ? " AND (" + sort_expr + " IS NULL AND id < " + id + ")"
                          : " AND ((" + sort_expr + " IS NULL AND id > " + id + ") OR " +
                                sort_expr + " IS NOT NULL)";
    } else {
      std::string v = param(q.after->sort_value);
      sql += " AND (" + sort_expr + beyond + v + " OR (" + sort_expr + " = " + v + " AND id" +
             beyond + id + ")" + (q.descending ? " OR " + sort_expr + " IS NULL" : "") + ")";
    }
  }
  sql += " ORDER BY " + (q.sort ? sort_expr + dir + ", " : std::string()) + "id" + dir;
  sql += " LIMIT " + std::to_string(q.limit + 1);
  return out;
}

void BindJson(storage::Statement& s, int index, const json::value& v) {
  if (v.is_string()) {
    s.Bind(index, std::string_view(v.as_string()));
  } else if (v.is_int64()) {
    s.Bind(index, v.as_int64());
  } else if (v.is_uint64()) {
    s.BindDouble(index, static_cast<double>(v.as_uint64()));
  } else if (v.is_double()) {
    s.BindDouble(index, v.as_double());
  } else if (v.is_bool()) {
    s.Bind(index, int64_t{v.as_bool()});
  } else {
    s.BindNull(index);
  }
}

}  // namespace silo::records
