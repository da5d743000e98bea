#include "records/list_sql.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <regex>
#include <set>

#include "base/status_matchers.h"
#include "records/query.h"
#include "records/schema.h"

namespace silo::records {
namespace {

namespace json = boost::json;

const CollectionSchema& Schema() {
  static const CollectionSchema schema = [] {
    auto parsed = ParseCollection(
        json::parse(R"({"name":"t","fields":[{"name":"title","type":"string"},)"
                    R"({"name":"n","type":"integer"},{"name":"done","type":"boolean"},)"
                    R"({"name":"owner","type":"relation","collection":"c"},)"
                    R"({"name":"tags","type":"relation","collection":"c","multiple":true}]})"));
    if (!parsed.ok()) std::abort();
    return *parsed;
  }();
  return schema;
}

// The related collection: c(country).
Result<CollectionSchema> Related(const std::string& name) {
  if (name != "c") return NotFound("no such collection");
  return ParseCollection(
      json::parse(R"({"name":"c","fields":[{"name":"country","type":"string"}]})"));
}

ListQuery Query(const QueryParams& params) {
  auto q = ParseListQuery(Schema(), params, Related);
  EXPECT_OK(q);
  return q.ok() ? *q : ListQuery{};
}

// The contract of list_sql.h, checked on any built statement: with the
// schema's field expressions taken out, no quote is left (so no request text
// is in it), and the placeholders are exactly ?1 .. ?(args + 1).
void ExpectOnlyFixedText(const ListSql& built) {
  std::string rest = built.sql;
  std::vector<std::string> exprs = {"json_extract(data, '$.country')"};
  for (const auto& f : Schema().fields) {
    exprs.push_back("json_extract(data, '$." + f.name + "')");
    exprs.push_back("json_each(data, '$." + f.name + "')");
  }
  for (const auto& expr : exprs) {
    for (size_t at; (at = rest.find(expr)) != std::string::npos;) rest.erase(at, expr.size());
  }
  EXPECT_EQ(rest.find('\''), std::string::npos) << built.sql;
  EXPECT_EQ(rest.find(';'), std::string::npos) << built.sql;
  std::set<int> used;
  static const std::regex kPlaceholder(R"(\?(\d+))");
  for (std::sregex_iterator it(rest.begin(), rest.end(), kPlaceholder), end; it != end; ++it) {
    used.insert(std::stoi((*it)[1]));
  }
  std::set<int> expected;
  for (size_t i = 1; i <= built.args.size() + 1; ++i) expected.insert(static_cast<int>(i));
  EXPECT_EQ(used, expected) << built.sql;
}

constexpr char kSelect[] =
    "SELECT id, version, data, created_at_us, created_by, updated_at_us, updated_by FROM ";
const std::string kTitle = "json_extract(data, '$.title')";
const std::string kN = "json_extract(data, '$.n')";

struct Case {
  const char* name;
  QueryParams params;
  std::string sql_after_select;  // after kSelect
  std::vector<json::value> args;
};

TEST(ListSql, EachQueryShapeBuildsItsStatementWithEveryValueBound) {
  const std::string hostile = "x'); DROP TABLE records; --";
  const Case cases[] = {
      {"defaults",
       {},
       "records WHERE collection = ?1 AND id >= ?2 ORDER BY id ASC LIMIT 51",
       {json::string()}},
      {"eq",
       {{"filter", "title:eq:" + hostile}, {"limit", "10"}},
       "records WHERE collection = ?1 AND " + kTitle +
           " = ?2 AND id >= ?3 ORDER BY id ASC LIMIT 11",
       {json::string(hostile), json::string()}},
      {"in",
       {{"filter", "n:in:1,2,3"}},
       "records WHERE collection = ?1 AND " + kN +
           " IN (?2, ?3, ?4) AND id >= ?5 ORDER BY id ASC LIMIT 51",
       {1, 2, 3, json::string()}},
      {"prefix",
       {{"filter", "title:prefix:ab"}},
       "records WHERE collection = ?1 AND substr(" + kTitle + ", 1, length(?2)) = ?2" +
           " AND id >= ?3 ORDER BY id ASC LIMIT 51",
       {json::string("ab"), json::string()}},
      {"two filters and a sort",
       {{"filter", "n:gte:5"}, {"filter", "title:ne:z"}, {"sort", "-n"}},
       "records WHERE collection = ?1 AND " + kN + " >= ?2 AND " + kTitle +
           " <> ?3 AND id >= ?4 ORDER BY " + kN + " DESC, id DESC LIMIT 51",
       {5, json::string("z"), json::string()}},
      {"at a time",
       {{"at", "2026-01-02T03:04:05Z"}},
       "record_versions WHERE collection = ?1 AND valid_from_us <= ?2 AND valid_to_us > ?2"
       " AND deleted = 0 ORDER BY id ASC LIMIT 51",
       {int64_t{1767323045000000}}},
      {"after a cursor, by id",
       {{"cursor", EncodeCursor({nullptr, "r9"})}},
       "records WHERE collection = ?1 AND id > ?2 AND id >= ?3 ORDER BY id ASC LIMIT 51",
       {json::string("r9"), json::string()}},
      {"after a cursor, by a field, descending",
       {{"sort", "-n"}, {"cursor", EncodeCursor({7, "r9"})}},
       "records WHERE collection = ?1 AND (" + kN + " < ?3 OR (" + kN + " = ?3 AND id < ?2) OR " +
           kN + " IS NULL) AND id >= ?4 ORDER BY " + kN + " DESC, id DESC LIMIT 51",
       {json::string("r9"), 7, json::string()}},
      {"through a relation",
       {{"filter", "owner.country:eq:" + hostile}},
       "records WHERE collection = ?1 AND json_extract(data, '$.owner') IN (SELECT r2.id FROM "
       "records AS r2 WHERE r2.collection = ?2 AND json_extract(data, '$.country') = ?3)"
       " AND id >= ?4 ORDER BY id ASC LIMIT 51",
       {json::string("c"), json::string(hostile), json::string()}},
      {"through a multiple relation, at a time",
       {{"filter", "tags.country:in:CZ,SK"}, {"at", "2026-01-02T03:04:05Z"}},
       "record_versions WHERE collection = ?1 AND valid_from_us <= ?2 AND valid_to_us > ?2"
       " AND deleted = 0 AND EXISTS (SELECT 1 FROM json_each(data, '$.tags') AS j WHERE j.value"
       " IN (SELECT r2.id FROM record_versions AS r2 WHERE r2.collection = ?3 AND"
       " r2.valid_from_us <= ?2 AND r2.valid_to_us > ?2 AND r2.deleted = 0 AND"
       " json_extract(data, '$.country') IN (?4, ?5))) ORDER BY id ASC LIMIT 51",
       {int64_t{1767323045000000}, json::string("c"), json::string("CZ"), json::string("SK")}},
      {"after a record without the sort field, ascending",
       {{"sort", "n"}, {"cursor", EncodeCursor({nullptr, "r9"})}},
       "records WHERE collection = ?1 AND ((" + kN + " IS NULL AND id > ?2) OR " + kN +
           " IS NOT NULL) AND id >= ?3 ORDER BY " + kN + " ASC, id ASC LIMIT 51",
       {json::string("r9"), json::string()}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ListSql built = BuildListSql(Query(c.params));
    EXPECT_EQ(built.sql, kSelect + c.sql_after_select);
    EXPECT_EQ(built.args, c.args);
    ExpectOnlyFixedText(built);
    EXPECT_EQ(built.sql.find("DROP"), std::string::npos);
  }
}

// A control for ExpectOnlyFixedText: it fires on a statement with a value in
// its text, so its silence above means something.
ListSql ValueInTheText() {
  return {std::string(kSelect) + "records WHERE collection = ?1 AND " + kTitle + " = 'x'", {}};
}
ListSql PlaceholderWithoutArg() {
  return {std::string(kSelect) + "records WHERE collection = ?1 AND id > ?3", {1}};
}

TEST(ListSql, RelationPathsAreCheckedAgainstBothSchemas) {
  for (const char* bad : {"title.country:eq:x", "owner.nope:eq:x", "owner.owner:eq:x", "tags:eq:x",
                          "owner.country.x:eq:y"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseListQuery(Schema(), {{"filter", bad}}, Related).status().code(),
              StatusCode::kInvalidArgument);
  }
  // Without the lookup (no related schemas), a path is refused, not guessed.
  EXPECT_EQ(ParseListQuery(Schema(), {{"filter", "owner.country:eq:x"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto e = ParseListQuery(Schema(), {{"expand", "owner,tags"}}, Related);
  ASSERT_OK(e);
  ASSERT_EQ(e->expand.size(), 2u);
  EXPECT_EQ(e->expand[1].first.name, "tags");
  for (const char* bad : {"title", "owner.country", "owner.x.y", "nope", "", "owner,"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseListQuery(Schema(), {{"expand", bad}}, Related).status().code(),
              StatusCode::kInvalidArgument);
  }
}

TEST(ListSql, TheFixedTextCheckCatchesAValueInTheText) {
  EXPECT_NONFATAL_FAILURE(ExpectOnlyFixedText(ValueInTheText()), "");
  EXPECT_NONFATAL_FAILURE(ExpectOnlyFixedText(PlaceholderWithoutArg()), "");
}

}  // namespace
}  // namespace silo::records
