#include "records/schema.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "base/status_matchers.h"
#include "base/time_util.h"
#include "records/query.h"

namespace silo::records {
namespace {
namespace json = boost::json;

CollectionSchema Tickets() {
  auto s = ParseCollection(json::parse(R"({"name":"tickets","fields":[
      {"name":"title","type":"string","required":true,"max":20},
      {"name":"body","type":"text"},
      {"name":"n","type":"integer","unique":true},
      {"name":"score","type":"number","indexed":true},
      {"name":"done","type":"boolean"},
      {"name":"due","type":"datetime"},
      {"name":"mail","type":"email"},
      {"name":"state","type":"enum","values":["open","closed"]},
      {"name":"meta","type":"json"},
      {"name":"owner","type":"relation","collection":"users_x","on_delete":"set_null"},
      {"name":"tags","type":"relation","collection":"tags","multiple":true}]})"));
  EXPECT_OK(s) << s.status().ToString();
  return s.ok() ? *s : CollectionSchema{};
}

std::string Nested(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "[";
  for (int i = 0; i < depth; ++i) s += "]";
  return s;
}

TEST(TimeUtil, ParsesAndFormatsRfc3339) {
  auto t = ParseRfc3339("2026-11-24T10:00:00.1234567+01:30");
  ASSERT_OK(t);
  EXPECT_EQ(FormatRfc3339Micros(*t), "2026-11-24T08:30:00.123456Z");
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:01Z"), 1'000'000);
  for (const char* bad : {"", "2026-11-24", "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z",
                          "2026-11-24T10:00:00", "2026-11-24T10:00:00Zjunk", "1969-12-31T23:59:59Z",
                          "2026-11-24T10:00:00.Z", "'; DROP TABLE records; --"}) {
    EXPECT_STATUS(StatusCode::kInvalidArgument, ParseRfc3339(bad)) << bad;
  }
}

TEST(Schema, ParsesAValidCollectionAndRoundTrips) {
  CollectionSchema s = Tickets();
  ASSERT_EQ(s.fields.size(), 11u);
  EXPECT_EQ(s.fields[9].collection, "users_x");
  EXPECT_EQ(s.fields[9].on_delete, OnDelete::kSetNull);
  EXPECT_TRUE(s.fields[10].multiple);
  EXPECT_EQ(s.fields[10].on_delete, OnDelete::kRestrict);
  auto again = ParseCollection(s.ToJson());
  ASSERT_OK(again);
  EXPECT_EQ(json::serialize(again->ToJson()), json::serialize(s.ToJson()));
}

TEST(Schema, RefusesBadDefinitionsNamingThem) {
  struct Case {
    const char* json;
    const char* field;
  } cases[] = {
      {R"({"name":"Bad","fields":[]})", "name"},
      {R"({"name":"t; DROP TABLE x","fields":[]})", "name"},
      {R"({"name":"t","fields":{}})", "fields"},
      {R"({"name":"t","fields":[{"name":"id","type":"string"}]})", "fields.id"},
      {R"({"name":"t","fields":[{"name":"a","type":"blob"}]})", "fields.a"},
      {R"({"name":"t","fields":[{"name":"a","type":"string"},{"name":"a","type":"text"}]})",
       "fields.a"},
      {R"({"name":"t","fields":[{"name":"a')--","type":"string"}]})", "fields[0]"},
      {R"({"name":"t","fields":[{"name":"e","type":"enum"}]})", "fields.e"},
      {R"({"name":"t","fields":[{"name":"j","type":"json","unique":true}]})", "fields.j"},
      {R"({"name":"t","fields":[{"name":"s","type":"string","max":0}]})", "fields.s"},
      {R"({"name":"t","fields":[{"name":"s","type":"string","required":"yes"}]})", "fields.s"},
      {R"({"name":"t","fields":[],"extra":1})", "extra"},
      {R"({"name":"t","fields":[{"name":"r","type":"relation"}]})", "fields.r"},
      {R"({"name":"t","fields":[{"name":"r","type":"relation","collection":"X y"}]})", "fields.r"},
      {R"({"name":"t","fields":[{"name":"r","type":"relation","collection":"c",)"
       R"("on_delete":"nothing"}]})",
       "fields.r"},
      {R"({"name":"t","fields":[{"name":"r","type":"relation","collection":"c",)"
       R"("required":true,"on_delete":"set_null"}]})",
       "fields.r"},
      {R"({"name":"t","fields":[{"name":"r","type":"relation","collection":"c",)"
       R"("multiple":true,"unique":true}]})",
       "fields.r"},
      {R"({"name":"t","fields":[{"name":"s","type":"string","collection":"c"}]})", "fields.s"},
  };
  for (const auto& c : cases) {
    auto r = ParseCollection(json::parse(c.json));
    ASSERT_STATUS(StatusCode::kInvalidArgument, r) << c.json;
    ASSERT_FALSE(r.status().fields().empty());
    EXPECT_EQ(r.status().fields()[0].field, c.field) << c.json;
  }
}

TEST(Schema, ValidatesRecordsNamingEachBadField) {
  CollectionSchema s = Tickets();
  struct Case {
    const char* json;
    std::vector<std::string> fields;
  } cases[] = {
      {R"({})", {"title"}},
      {R"({"title":5})", {"title"}},
      {R"({"title":"this title is far too long"})", {"title"}},
      {R"({"title":"t","n":1.5,"score":"x","done":1})", {"n", "score", "done"}},
      {R"({"title":"t","n":18446744073709551615})", {"n"}},
      {R"({"title":"t","due":"tomorrow","mail":"nobody","state":"pending"})",
       {"due", "mail", "state"}},
      {R"({"title":"t","unknown":1})", {"unknown"}},
      {R"({"title":"t","created_by":"me"})", {"created_by"}},
  };
  for (const auto& c : cases) {
    auto r = ValidateRecord(s, json::parse(c.json).as_object());
    ASSERT_STATUS(StatusCode::kInvalidArgument, r) << c.json;
    std::vector<std::string> got;
    Status status = r.status();
    for (const auto& f : status.fields()) got.push_back(f.field);
    std::sort(got.begin(), got.end());
    auto want = c.fields;
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << c.json;
  }
  json::object deep{{"title", "t"}, {"meta", json::parse(Nested(17))}};
  EXPECT_STATUS(StatusCode::kInvalidArgument, ValidateRecord(s, deep));
  deep["meta"] = json::parse(Nested(16));
  EXPECT_OK(ValidateRecord(s, deep));
  json::object big{{"title", "t"}, {"body", std::string(64 * 1024 + 1, 'x')}};
  EXPECT_STATUS(StatusCode::kInvalidArgument, ValidateRecord(s, big));
}

TEST(Schema, NormalisesDateTimes) {
  auto r = ValidateRecord(
      Tickets(), json::parse(R"({"title":"t","due":"2026-01-01T01:00:00+01:00"})").as_object());
  ASSERT_OK(r);
  EXPECT_EQ(r->at("due").as_string(), "2026-01-01T00:00:00.000000Z");
}

std::vector<std::pair<std::string, std::string>> P(
    std::initializer_list<std::pair<std::string, std::string>> l) {
  return l;
}

// Regression (list_query_fuzz): a view that is not NUL-terminated made
// Boost.URL 1.81's parse_query read past its end (it measures with strlen).
TEST(Query, QueryStringsDecodeAndAnEmptyViewIsReadNoFurther) {
  const std::string text = "limit=5&filter=title%3Aeq%3Aa%20b&x";
  auto all = ParseQueryString(text);
  ASSERT_OK(all);
  EXPECT_EQ(*all, P({{"limit", "5"}, {"filter", "title:eq:a b"}, {"x", ""}}));
  // An empty view into the middle of other text: nothing, not "filter=...".
  auto none = ParseQueryString(std::string_view(text).substr(8, 0));
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  // A view of a prefix stops at its end, not at the string's.
  auto prefix = ParseQueryString(std::string_view(text).substr(0, 7));
  ASSERT_OK(prefix);
  EXPECT_EQ(*prefix, P({{"limit", "5"}}));
  // A view whose end is not followed by a NUL: reads stay inside it (the
  // sanitizer build would report the overread).
  std::vector<char> raw = {'s', 'o', 'r', 't', '=', 'n'};
  auto unterminated = ParseQueryString(std::string_view(raw.data(), raw.size()));
  ASSERT_OK(unterminated);
  EXPECT_EQ(*unterminated, P({{"sort", "n"}}));
  EXPECT_STATUS(StatusCode::kInvalidArgument, ParseQueryString("a=%zz"));
  auto plus = ParseQueryString("at=2026-01-01T00:00:00+01:00&b=2026-01-01T00:00:00%2B01:00");
  ASSERT_OK(plus);
  EXPECT_EQ((*plus)[0].second, "2026-01-01T00:00:00+01:00");
  EXPECT_EQ((*plus)[1].second, "2026-01-01T00:00:00+01:00");
}

TEST(Query, ParsesFiltersSortAndLimit) {
  auto q = ParseListQuery(Tickets(), P({{"filter", "state:in:open,closed"},
                                        {"filter", "score:gte:2.5"},
                                        {"filter", "title:prefix:a:b"},
                                        {"sort", "-due"},
                                        {"limit", "10"},
                                        {"at", "2026-01-01T00:00:00Z"}}));
  ASSERT_OK(q) << q.status().ToString();
  ASSERT_EQ(q->filters.size(), 3u);
  EXPECT_EQ(q->filters[0].values.size(), 2u);
  EXPECT_EQ(q->filters[1].values[0].as_double(), 2.5);
  EXPECT_EQ(q->filters[2].values[0].as_string(), "a:b");
  EXPECT_TRUE(q->descending);
  EXPECT_EQ(q->sort->name, "due");
  EXPECT_EQ(q->limit, 10);
  EXPECT_TRUE(q->at_us.has_value());
}

TEST(Query, RefusesUnknownFieldsMalformedFiltersAndInjection) {
  const std::vector<std::pair<std::string, std::string>> bad[] = {
      P({{"filter", "nope:eq:1"}}),
      P({{"filter", "title:like:%"}}),
      P({{"filter", "title"}}),
      P({{"filter", "n:eq:1 OR 1=1"}}),
      P({{"filter", "n:eq:1; DROP TABLE records"}}),
      P({{"filter", "title') OR 1=1 --:eq:x"}}),
      P({{"filter", "meta:eq:{}"}}),
      P({{"filter", "n:prefix:1"}}),
      P({{"filter", "done:eq:yes"}}),
      P({{"sort", "title DESC; --"}}),
      P({{"sort", "data"}}),
      P({{"sort", "meta"}}),
      P({{"limit", "0"}}),
      P({{"limit", "1000"}}),
      P({{"limit", "5"}, {"limit", "6"}}),
      P({{"cursor", "not-a-cursor"}}),
      P({{"at", "yesterday"}}),
      P({{"select", "*"}}),
  };
  for (const auto& params : bad) {
    auto q = ParseListQuery(Tickets(), params);
    EXPECT_STATUS(StatusCode::kInvalidArgument, q) << params[0].first << "=" << params[0].second;
    if (!q.ok()) {
    }
  }
}

TEST(Query, CursorsRoundTripAndForgeriesAreRefused) {
  Cursor c{json::value("x\"y"), "rec_1"};
  auto back = DecodeCursor(EncodeCursor(c));
  ASSERT_OK(back);
  EXPECT_EQ(back->id, "rec_1");
  EXPECT_EQ(back->sort_value.as_string(), "x\"y");
  // A well-formed cursor around a bad id or a non-scalar value.
  std::string forged = EncodeCursor({json::value(1), "a"});
  EXPECT_OK(DecodeCursor(forged));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                DecodeCursor(EncodeCursor({json::value(1), "a' OR '1"})));
  EXPECT_STATUS(StatusCode::kInvalidArgument, DecodeCursor(EncodeCursor({json::array{1}, "a"})));
}

}  // namespace
}  // namespace silo::records
