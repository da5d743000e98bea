#include "records/rules.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>
#include <random>

#include "base/status_matchers.h"
#include "base/time_util.h"
#include "records/tenant_store.h"
#include "records/tenant_store_test_util.h"

namespace silo::records {
namespace {
namespace json = boost::json;
using testing::kT0;

// Every page of a listing, as ids.
std::vector<std::string> ListAll(TenantStore& store, const std::string& collection, ListQuery q) {
  std::vector<std::string> out;
  while (true) {
    auto page = store.ListRecords(collection, q);
    EXPECT_OK(page);
    if (!page.ok()) return out;
    for (const auto& r : page->records) out.push_back(r.id);
    if (!page->next_cursor) return out;
    q.after = *DecodeCursor(*page->next_cursor);
  }
}

class RulesTest : public testing::TenantStoreTest {};

// Matches() is the C++ twin of the listing's SQL: on random records and
// filters (small value sets, so ties, absences and mixed int/real numbers
// are common) both pick the same records.
TEST_F(RulesTest, MatchesAgreesWithTheListingSqlOnRandomRecordsAndFilters) {
  // A fixed seed: the verdict never depends on the draw (print it to rerun).
  const unsigned seed = 20261130;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::printf("MatchesAgreesWithTheListingSql seed %u\n", seed);
  std::mt19937 rng(seed);
  auto pick = [&](const std::vector<std::string>& from) { return from[rng() % from.size()]; };
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Schema(R"({"name":"things","fields":[
      {"name":"s","type":"string"},{"name":"n","type":"integer"},
      {"name":"x","type":"number"},{"name":"b","type":"boolean"},
      {"name":"d","type":"datetime"},{"name":"e","type":"enum","values":["a","b","c"]}]})")));
  const std::vector<std::string> strings = {"", "a", "ab", "b", "\xc3\xa9", "Z", "a,b"};
  const std::vector<std::string> ints = {"-2", "-1", "0", "1", "2"};
  const std::vector<std::string> numbers = {"-1.5", "0", "0.5", "2", "2.0", "3"};
  const std::vector<std::string> times = {"2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z",
                                          "2027-03-04T05:06:07Z"};
  std::vector<Record> all;
  for (int i = 0; i < 120; ++i) {
    json::object data;
    if (rng() % 4) data["s"] = pick(strings);
    if (rng() % 4) data["n"] = std::stoll(pick(ints));
    if (rng() % 4) data["x"] = json::parse(pick(numbers));
    if (rng() % 4) data["b"] = rng() % 2 == 0;
    if (rng() % 4) data["d"] = pick(times);
    if (rng() % 4) data["e"] = pick({"a", "b", "c"});
    data["id"] = "r" + std::to_string(i);
    auto r = a_->CreateRecord(Ctx(kT0 + i, "u" + std::to_string(rng() % 3)), "things", data);
    ASSERT_OK(r);
    all.push_back(*r);
  }
  const CollectionSchema schema = a_->GetCollection("things")->schema;
  const std::vector<std::string> ops = {"eq", "ne", "lt", "lte", "gt", "gte", "in", "prefix"};
  int nonempty = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<Filter> filters;
    std::string texts;
    for (int k = 0; k < 1 + int(rng() % 2); ++k) {
      std::string field = pick({"s", "n", "x", "b", "d", "e", "id", "created_by"});
      std::string op = pick(ops);
      std::string value = field == "s" || field == "e" ? pick(strings)
                          : field == "n"               ? pick(ints)
                          : field == "x"               ? pick(numbers)
                          : field == "b"               ? pick({"true", "false"})
                          : field == "d"               ? pick(times)
                          : field == "id"              ? pick({"r1", "r10", "r5", "s"})
                                                       : pick({"user:u1", "user:", "user:u2"});
      if (op == "in") value += "," + value.substr(0, value.size() / 2);
      auto f = ParseFilter(schema, field + ":" + op + ":" + value, nullptr);
      if (!f.ok()) continue;  // e.g. prefix on a number
      texts += field + ":" + op + ":" + value + " ";
      filters.push_back(std::move(*f));
    }
    ListQuery q;
    q.filters = filters;
    q.limit = 7;
    std::vector<std::string> want;
    for (const Record& r : all) {
      if (Matches(filters, r)) want.push_back(r.id);
    }
    std::sort(want.begin(), want.end());
    nonempty += !want.empty();
    ASSERT_EQ(ListAll(*a_, "things", q), want) << texts;
  }
  EXPECT_GT(nonempty, 100);  // the comparison was not between empty sets
}

TEST_F(RulesTest, ParseRuleNamesEachProblem) {
  const CollectionSchema schema = Schema(R"({"name":"t","fields":[
      {"name":"owner","type":"string"},{"name":"n","type":"integer"},
      {"name":"due","type":"datetime"},
      {"name":"c","type":"relation","collection":"t","on_delete":"set_null"}]})");
  const Variables vars{"u1", kT0};
  for (const auto& [where, fields, why] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"nope:eq:@me", "", "unknown field"},
           {"owner:like:@me", "", "operator"},
           {"owner:eq:@you", "", "unknown variable"},
           {"n:eq:@me", "", "@me applies to text"},
           {"owner:eq:@now", "", "@now applies to date-time"},
           {"c.owner:eq:@me", "", "cannot follow a relation"},
           {"n:eq:x", "", "not a valid integer"},
           {"owner", "", "<field>:<op>:<value>"},
           {"", "ghost", "not a field"}}) {
    std::vector<std::string> w =
        where.empty() ? std::vector<std::string>{} : std::vector<std::string>{where};
    std::vector<std::string> f =
        fields.empty() ? std::vector<std::string>{} : std::vector<std::string>{fields};
    auto rule = ParseRule(schema, w, f, vars);
    ASSERT_EQ(rule.status().code(), StatusCode::kInvalidArgument) << where << fields;
    EXPECT_NE(rule.status().message().find(why), std::string::npos) << rule.status().message();
  }
  auto ok = ParseRule(schema, {"owner:eq:@me", "created_by:eq:@me", "due:gte:@now"}, {"n"}, vars);
  ASSERT_OK(ok);
  EXPECT_EQ(ok->where[0].values[0], json::value("u1"));
  EXPECT_EQ(ok->where[1].values[0], json::value("user:u1"));
  EXPECT_EQ(ok->where[2].values[0], json::value(FormatRfc3339Micros(kT0)));
  // Without a user (an operator's token), @me matches nothing.
  auto nobody = ParseRule(schema, {"owner:eq:@me"}, {}, {"", kT0});
  ASSERT_OK(nobody);
  Record r;
  r.data["owner"] = "";
  EXPECT_FALSE(Matches(nobody->where, r));
}

// tickets(title, assignee, state, secret, due) and invoices.ticket.
class RulesStoreTest : public testing::TenantStoreTest {
 protected:
  struct Grant {
    std::string action;
    std::vector<std::string> where;
    std::vector<std::string> fields;
  };

  void SetUp() override {
    TenantStoreTest::SetUp();
    ASSERT_OK(a_->CreateCollection(Ctx(kT0), Schema(R"({"name":"tickets","fields":[
        {"name":"title","type":"string"},{"name":"assignee","type":"string"},
        {"name":"state","type":"enum","values":["open","closed"]},
        {"name":"secret","type":"text"},{"name":"due","type":"datetime"}]})")));
    ASSERT_OK(a_->CreateCollection(Ctx(kT0), Schema(R"({"name":"invoices","fields":[
        {"name":"ticket","type":"relation","collection":"tickets","on_delete":"set_null"}]})")));
    for (int i = 0; i < 12; ++i) {
      json::object d{{"id", "t" + std::to_string(i)},
                     {"title", "title " + std::to_string(i)},
                     {"assignee", i % 3 == 0 ? "u1" : "u2"},
                     {"state", "open"},
                     {"secret", "secret " + std::to_string(i)}};
      ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 10 + i), "tickets", d));
    }
  }

  // The caller u1 (or `me`) holding `grants` on tickets and plain ones on
  // invoices.
  void Hold(std::vector<Grant> grants, std::string me = "u1") {
    a_->SetRules([grants, me](const CollectionSchema& schema,
                              std::string_view action) -> Result<RecordRules> {
      if (schema.name != "tickets") return AllowAll();
      RecordRules out;
      for (const Grant& g : grants) {
        if (g.action != action) continue;
        SILO_ASSIGN_OR_RETURN(Rule r, ParseRule(schema, g.where, g.fields, {me, kT0 + 1000}));
        out.rules.push_back(std::move(r));
      }
      return out;
    });
  }

  Result<Record> Patch(const std::string& id, const char* body, int64_t at = kT0 + 100) {
    return a_->UpdateRecord(Ctx(at, "u1"), "tickets", id, json::parse(body).as_object(),
                            std::nullopt);
  }
};

TEST_F(RulesStoreTest, ReadRulesDecideWhatListsAndGetsSeePagedAndSorted) {
  Hold({{"read", {"assignee:eq:@me"}, {}}});
  ListQuery q;
  q.limit = 2;
  q.sort = *Schema(R"({"name":"x","fields":[{"name":"title","type":"string"}]})").Find("title");
  q.descending = true;
  EXPECT_EQ(ListAll(*a_, "tickets", q), (std::vector<std::string>{"t9", "t6", "t3", "t0"}));
  EXPECT_OK(a_->GetRecord("tickets", "t3", std::nullopt));
  EXPECT_EQ(a_->GetRecord("tickets", "t1", std::nullopt).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(a_->GetRecord("tickets", "t1", std::nullopt).status().message(),
            a_->GetRecord("tickets", "nope", std::nullopt).status().message());
  auto some = a_->GetRecords("tickets", {"t1", "t3", "t4"}, std::nullopt);
  ASSERT_OK(some);
  ASSERT_EQ(some->size(), 1u);
  EXPECT_EQ((*some)[0].id, "t3");
  // As of a time, the version of then decides: t1 was u1's before.
  a_->SetRules(nullptr);
  ASSERT_OK(Patch("t1", R"({"assignee":"u1"})", kT0 + 200));
  ASSERT_OK(Patch("t1", R"({"assignee":"u2"})", kT0 + 300));
  Hold({{"read", {"assignee:eq:@me"}, {}}});
  EXPECT_OK(a_->GetRecord("tickets", "t1", kT0 + 250));
  EXPECT_EQ(a_->GetRecord("tickets", "t1", std::nullopt).status().code(), StatusCode::kNotFound);
  // Nobody: no grant for the action, no record.
  Hold({});
  EXPECT_EQ(ListAll(*a_, "tickets", {}), std::vector<std::string>{});
}

TEST_F(RulesStoreTest, FieldRulesOmitFieldsAndRefuseFiltersAndSortsOnThem) {
  Hold({{"read", {"assignee:eq:@me"}, {}}, {"read", {}, {"title", "state"}}});
  auto own = a_->GetRecord("tickets", "t0", std::nullopt);
  auto other = a_->GetRecord("tickets", "t1", std::nullopt);
  ASSERT_OK(own);
  ASSERT_OK(other);
  EXPECT_TRUE(own->data.contains("secret"));
  EXPECT_EQ(other->data, (json::object{{"title", "title 1"}, {"state", "open"}}));
  auto schema = a_->GetCollection("tickets")->schema;
  for (const char* bad : {"secret:eq:secret 1", "secret:prefix:s", "assignee:eq:u2"}) {
    auto q = ParseListQuery(schema, {{"filter", bad}});
    ASSERT_OK(q);
    EXPECT_EQ(a_->ListRecords("tickets", *q).status().code(), StatusCode::kPermissionDenied) << bad;
  }
  auto sort = ParseListQuery(schema, {{"sort", "secret"}});
  EXPECT_EQ(a_->ListRecords("tickets", *sort).status().code(), StatusCode::kPermissionDenied);
  auto fine = ParseListQuery(schema, {{"filter", "title:eq:title 1"}, {"sort", "-state"}});
  auto page = a_->ListRecords("tickets", *fine);
  ASSERT_OK(page);
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_FALSE(page->records[0].data.contains("secret"));
  // History shows the changes of the fields the history rules give.
  Hold({{"history", {"assignee:eq:@me"}, {"state"}}, {"update", {}, {}}});
  ASSERT_OK(Patch("t0", R"({"state":"closed","secret":"new"})"));
  auto h = a_->History("tickets", "t0");
  ASSERT_OK(h);
  EXPECT_EQ(h->back().changes, (json::object{{"state", json::array{"open", "closed"}}}));
  EXPECT_EQ(a_->History("tickets", "t1").status().code(), StatusCode::kNotFound);
}

TEST_F(RulesStoreTest, WritesOutsideTheRulesAreRefusedAndWriteNothing) {
  Hold({{"update", {"assignee:eq:@me"}, {"state", "assignee"}},
        {"delete", {"assignee:eq:@me"}, {}},
        {"create", {"assignee:eq:@me"}, {"title", "assignee"}},
        {"read", {}, {}}});
  const size_t events = a_->Events(0, 1000)->size();
  EXPECT_EQ(Patch("t1", R"({"state":"closed"})").status().code(), StatusCode::kNotFound);
  auto secret = Patch("t0", R"({"secret":"x"})");
  ASSERT_EQ(secret.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(secret.status().fields()[0].field, "secret");
  // Handing the ticket to someone else takes it outside the update rule.
  EXPECT_EQ(Patch("t0", R"({"assignee":"u2"})").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(a_->DeleteRecord(Ctx(kT0 + 100), "tickets", "t1", std::nullopt).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(a_->RevertRecord(Ctx(kT0 + 100), "tickets", "t1", {.version = 1, .at_us = std::nullopt},
                             std::nullopt)
                .status()
                .code(),
            StatusCode::kNotFound);
  auto elsewhere = a_->CreateRecord(Ctx(kT0 + 100), "tickets",
                                    json::parse(R"({"title":"x","assignee":"u2"})").as_object());
  EXPECT_EQ(elsewhere.status().code(), StatusCode::kPermissionDenied);
  // A create the rules refuse learns nothing about taken ids: 403, not 409.
  auto taken =
      a_->CreateRecord(Ctx(kT0 + 100), "tickets",
                       json::parse(R"({"id":"t1","title":"x","assignee":"u2"})").as_object());
  EXPECT_EQ(taken.status().code(), StatusCode::kPermissionDenied);
  auto with_secret =
      a_->CreateRecord(Ctx(kT0 + 100), "tickets",
                       json::parse(R"({"title":"x","assignee":"u1","secret":"s"})").as_object());
  EXPECT_EQ(with_secret.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(a_->Events(0, 1000)->size(), events);
  // Within the rules, all of it works.
  EXPECT_OK(Patch("t0", R"({"state":"closed"})"));
  EXPECT_OK(a_->CreateRecord(Ctx(kT0 + 100), "tickets",
                             json::parse(R"({"title":"x","assignee":"u1"})").as_object()));
  EXPECT_OK(a_->DeleteRecord(Ctx(kT0 + 100), "tickets", "t3", std::nullopt));
}

TEST_F(RulesStoreTest, RelationsNameAndFilterOnlyReadableRecords) {
  Hold({{"read", {"assignee:eq:@me"}, {"title", "assignee"}}});
  // A ticket the caller may not read is "no record", like a missing one.
  auto hidden = a_->CreateRecord(Ctx(kT0 + 100), "invoices",
                                 json::parse(R"({"id":"i1","ticket":"t1"})").as_object());
  ASSERT_EQ(hidden.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(hidden.status().fields()[0].message, "no record t1 in tickets");
  ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 100), "invoices",
                             json::parse(R"({"id":"i0","ticket":"t0"})").as_object()));
  a_->SetRules(nullptr);
  ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 100), "invoices",
                             json::parse(R"({"id":"i1","ticket":"t1"})").as_object()));
  Hold({{"read", {"assignee:eq:@me"}, {"title", "assignee"}}});
  auto lookup = [this](const std::string& name) -> Result<CollectionSchema> {
    return a_->GetCollection(name)->schema;
  };
  auto schema = a_->GetCollection("invoices")->schema;
  // Through the relation, only the tickets the caller may read match.
  auto q = ParseListQuery(schema, {{"filter", "ticket.title:prefix:title"}}, lookup);
  ASSERT_OK(q);
  EXPECT_EQ(ListAll(*a_, "invoices", *q), std::vector<std::string>{"i0"});
  auto secret = ParseListQuery(schema, {{"filter", "ticket.secret:eq:secret 1"}}, lookup);
  EXPECT_EQ(a_->ListRecords("invoices", *secret).status().code(), StatusCode::kPermissionDenied);
  Hold({});
  EXPECT_EQ(a_->ListRecords("invoices", *q).status().code(), StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace silo::records
