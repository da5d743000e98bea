#include "records/tenant_store.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>
#include <random>

#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "records/rules.h"
#include "records/tenant_store_test_util.h"
#include "storage/test_util.h"

namespace silo::records {
namespace {
namespace json = boost::json;
using testing::kT0;
using testing::TenantStoreTest;

TEST_F(TenantStoreTest, InfoReportsTheSchemaVersion) {
  auto info = a_->Info();
  ASSERT_OK(info);
  EXPECT_EQ(info->schema_version, static_cast<int>(TenantMigrations().size()));
  EXPECT_EQ(info->created_at.size(), 20u);
}

TEST_F(TenantStoreTest, RecordLifecycleWithHistoryAndTimeTravel) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  auto r = a_->CreateRecord(Ctx(kT0 + 10), "tickets",
                            json::parse(R"({"id":"t1","title":"first","score":1})").as_object());
  ASSERT_OK(r) << r.status().ToString();
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->created_by, "user:u1");
  auto u = a_->UpdateRecord(Ctx(kT0 + 20, "u2"), "tickets", "t1",
                            json::parse(R"({"title":"second","score":null})").as_object(), 1);
  ASSERT_OK(u) << u.status().ToString();
  EXPECT_EQ(u->version, 2);
  EXPECT_EQ(u->updated_by, "user:u2");
  EXPECT_EQ(u->created_by, "user:u1");
  EXPECT_FALSE(u->data.contains("score"));

  // A stale If-Match is refused and changes nothing.
  auto stale = a_->UpdateRecord(Ctx(kT0 + 30), "tickets", "t1",
                                json::parse(R"({"title":"third"})").as_object(), 1);
  EXPECT_EQ(stale.status().code(), StatusCode::kVersionMismatch);
  EXPECT_EQ(a_->GetRecord("tickets", "t1", std::nullopt)->data.at("title"), "second");

  EXPECT_EQ(a_->GetRecord("tickets", "t1", kT0 + 15)->data.at("title"), "first");
  EXPECT_EQ(a_->GetRecord("tickets", "t1", kT0 + 9).status().code(), StatusCode::kNotFound);

  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 40), "tickets", "t1", 2));
  EXPECT_EQ(a_->GetRecord("tickets", "t1", std::nullopt).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(a_->GetRecord("tickets", "t1", kT0 + 39)->version, 2);
  // The id stays taken.
  EXPECT_EQ(a_->CreateRecord(Ctx(kT0 + 50), "tickets",
                             json::parse(R"({"id":"t1","title":"again"})").as_object())
                .status()
                .code(),
            StatusCode::kAlreadyExists);

  auto back = a_->RevertRecord(Ctx(kT0 + 60), "tickets", "t1",
                               {.version = 1, .at_us = std::nullopt}, std::nullopt);
  ASSERT_OK(back) << back.status().ToString();
  EXPECT_EQ(back->version, 4);
  EXPECT_EQ(back->data.at("title"), "first");
  EXPECT_EQ(back->data.at("score").as_int64(), 1);

  auto history = a_->History("tickets", "t1");
  ASSERT_OK(history);
  ASSERT_EQ(history->size(), 4u);
  EXPECT_EQ((*history)[1].type, "record.updated");
  EXPECT_EQ((*history)[1].actor.id, "u2");
  EXPECT_EQ((*history)[1].request_id, "req-" + std::to_string(kT0 + 20));
  EXPECT_EQ(json::serialize((*history)[1].changes),
            R"({"title":["first","second"],"score":[1,null]})");
  EXPECT_EQ((*history)[2].type, "record.deleted");
  EXPECT_EQ((*history)[3].type, "record.reverted");
}

// An export is the whole collection whatever read rules are set (the export
// permission takes none), as of a time, and only the collection named.
TEST_F(TenantStoreTest, ExportCollectionGivesEveryLiveRecordAsOfATime) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(a_->CreateRecord(
        Ctx(kT0 + 10 + i), "tickets",
        json::parse(R"({"id":"t)" + std::to_string(i) + R"(","title":"x"})").as_object()));
  }
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 20), "tickets", "t1", 1));
  a_->SetRules([](const CollectionSchema&, std::string_view) -> Result<RecordRules> {
    return RecordRules{};  // no record at all, for every action
  });
  auto ids = [&](std::optional<int64_t> at) {
    std::vector<std::string> out;
    EXPECT_OK(a_->ExportCollection("tickets", at, [&](const Record& r) {
      out.push_back(r.id);
      return Status::Ok();
    }));
    return out;
  };
  EXPECT_EQ(ids(std::nullopt), (std::vector<std::string>{"t0", "t2"}));
  EXPECT_EQ(ids(kT0 + 19), (std::vector<std::string>{"t0", "t1", "t2"}));
  EXPECT_EQ(ids(kT0 + 11), (std::vector<std::string>{"t0", "t1"}));
  EXPECT_STATUS(
      StatusCode::kNotFound,
      a_->ExportCollection("nope", std::nullopt, [](const Record&) { return Status::Ok(); }));
  // A failing sink stops the export with its status.
  int seen = 0;
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                a_->ExportCollection("tickets", std::nullopt, [&](const Record&) {
                  ++seen;
                  return FailedPrecondition("too large");
                }));
  EXPECT_EQ(seen, 1);
}

TEST_F(TenantStoreTest, SystemFieldsFilterAndSortWithPagingAndTimeTravel) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  // Nine records by three users, a second apart; u1's are updated later by u3.
  std::vector<std::string> ids;
  for (int i = 0; i < 9; ++i) {
    auto r = a_->CreateRecord(Ctx(kT0 + (i + 1) * 1'000'000, "u" + std::to_string(i % 3 + 1)),
                              "tickets", {{"title", "t" + std::to_string(i)}});
    ASSERT_OK(r);
    ids.push_back(r->id);
  }
  const int64_t before_updates = kT0 + 20'000'000;
  for (int i = 6; i >= 0; i -= 3) {  // ids[6] first (times only grow in a log)
    ASSERT_OK(a_->UpdateRecord(Ctx(kT0 + 24'000'000 + (6 - i) * 1'000'000, "u3"), "tickets", ids[i],
                               {{"state", "open"}}, std::nullopt));
  }
  auto list = [&](std::vector<std::pair<std::string, std::string>> params,
                  std::optional<int64_t> at = std::nullopt) {
    std::vector<std::string> got;
    std::optional<std::string> cursor;
    do {
      auto p = params;
      p.push_back({"limit", "2"});
      if (cursor) p.push_back({"cursor", *cursor});
      auto q = ParseListQuery(Tickets(), p);
      EXPECT_OK(q) << q.status().ToString();
      if (!q.ok()) return got;
      q->at_us = at;
      auto page = a_->ListRecords("tickets", *q);
      EXPECT_OK(page) << page.status().ToString();
      if (!page.ok()) return got;
      for (const auto& r : page->records) got.push_back(r.id);
      cursor = page->next_cursor;
    } while (cursor);
    return got;
  };
  EXPECT_EQ(list({{"filter", "created_by:eq:user:u2"}}).size(), 3u);
  EXPECT_EQ(list({{"filter", "created_by:eq:user:u2"}, {"sort", "-created_at"}}),
            (std::vector<std::string>{ids[7], ids[4], ids[1]}));
  // The updated ones by when they were updated: ids[6], ids[3], ids[0].
  EXPECT_EQ(list({{"filter", "updated_by:eq:user:u3"},
                  {"filter", "created_by:eq:user:u1"},
                  {"sort", "updated_at"}}),
            (std::vector<std::string>{ids[6], ids[3], ids[0]}));
  EXPECT_EQ(list({{"filter", "created_at:gte:" + FormatRfc3339Micros(kT0 + 8'000'000)},
                  {"sort", "created_at"}}),
            (std::vector<std::string>{ids[7], ids[8]}));
  // As of before the updates, u3 had updated nothing.
  EXPECT_TRUE(list({{"filter", "updated_by:eq:user:u3"}, {"filter", "created_by:eq:user:u1"}},
                   before_updates)
                  .empty());
  // Bad input names the problem.
  auto bad = ParseListQuery(Tickets(), {{"filter", "created_at:gt:yesterday"}});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("created_at"), std::string::npos);
  bad = ParseListQuery(Tickets(), {{"sort", "nope"}});
  EXPECT_NE(bad.status().message().find("created_by"), std::string::npos) << bad.status().message();
}

TEST_F(TenantStoreTest, WritesAtTheSameInstantGetDistinctIncreasingTimes) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  auto x = a_->CreateRecord(Ctx(kT0), "tickets", json::parse(R"({"title":"x"})").as_object());
  auto y = a_->CreateRecord(Ctx(kT0 - 5), "tickets", json::parse(R"({"title":"y"})").as_object());
  ASSERT_OK(x);
  ASSERT_OK(y);
  EXPECT_EQ(x->created_at_us, kT0 + 1);
  EXPECT_EQ(y->created_at_us, kT0 + 2);
}

TEST_F(TenantStoreTest, UniqueValuesAndBadInputWriteNothing) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 1), "tickets",
                             json::parse(R"({"id":"a","title":"a","code":"X"})").as_object()));
  auto events_before = a_->Events(0, 1000)->size();
  struct Case {
    const char* body;
    StatusCode code;
  };
  const Case bad[] = {
      {R"({"id":"b","title":"b","code":"X"})", StatusCode::kAlreadyExists},  // duplicate unique
      {R"({"id":"c","title":7})", StatusCode::kInvalidArgument},             // wrong type
      {R"({"id":"d"})", StatusCode::kInvalidArgument},                       // required missing
      {R"({"id":"e/../f","title":"e"})", StatusCode::kInvalidArgument},      // bad id
      {R"({"id":"g","title":"g","nope":1})", StatusCode::kInvalidArgument},  // unknown field
      {R"({"id":"h","title":"h","state":"pending"})", StatusCode::kInvalidArgument},  // enum
  };
  for (const auto& [body, code] : bad) {
    auto r = a_->CreateRecord(Ctx(kT0 + 2), "tickets", json::parse(body).as_object());
    EXPECT_STATUS(code, r) << body;
    EXPECT_FALSE(r.status().fields().empty()) << body;
  }
  EXPECT_EQ(a_->Events(0, 1000)->size(), events_before);
  EXPECT_EQ(a_->ListRecords("tickets", {})->records.size(), 1u);
  EXPECT_EQ(a_->CreateRecord(Ctx(kT0 + 3), "nope", {}).status().code(), StatusCode::kNotFound);
}

TEST_F(TenantStoreTest, SchemaChangesThatRecordsViolateAreRefusedWithTheirIds) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  for (const char* body :
       {R"({"id":"r1","title":"a","state":"open"})", R"({"id":"r2","title":"b"})",
        R"({"id":"r3","title":"c","state":"closed"})"}) {
    ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 1), "tickets", json::parse(body).as_object()));
  }
  // state becomes required and loses "closed": r2 lacks it, r3 holds "closed".
  auto narrower = Schema(R"({"name":"tickets","fields":[
      {"name":"title","type":"string","required":true},
      {"name":"score","type":"number","indexed":true},
      {"name":"state","type":"enum","values":["open"],"required":true},
      {"name":"code","type":"string","unique":true}]})");
  auto refused = a_->UpdateCollection(Ctx(kT0 + 2), narrower);
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  ASSERT_EQ(refused.status().fields().size(), 2u);
  EXPECT_EQ(refused.status().fields()[0].field, "r2");
  EXPECT_EQ(refused.status().fields()[1].field, "r3");
  EXPECT_EQ(a_->GetCollection("tickets")->version, 1);

  // Making title unique while two records share it is refused as well.
  ASSERT_OK(a_->UpdateRecord(Ctx(kT0 + 3), "tickets", "r2",
                             json::parse(R"({"title":"a"})").as_object(), std::nullopt));
  auto unique_title = Schema(R"({"name":"tickets","fields":[
      {"name":"title","type":"string","required":true,"unique":true},
      {"name":"score","type":"number","indexed":true},
      {"name":"state","type":"enum","values":["open","closed"]},
      {"name":"code","type":"string","unique":true}]})");
  refused = a_->UpdateCollection(Ctx(kT0 + 4), unique_title);
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().fields()[0].field, "r2");

  // An accepted change is an event and bumps the version.
  auto wider = Schema(R"({"name":"tickets","fields":[
      {"name":"title","type":"string","required":true},
      {"name":"score","type":"number"},
      {"name":"state","type":"enum","values":["open","closed","parked"]},
      {"name":"code","type":"string","unique":true},
      {"name":"note","type":"text"}]})");
  auto ok = a_->UpdateCollection(Ctx(kT0 + 5), wider);
  ASSERT_OK(ok) << ok.status().ToString();
  EXPECT_EQ(ok->version, 2);
  EXPECT_EQ(a_->DeleteCollection(Ctx(kT0 + 6), "tickets").code(), StatusCode::kFailedPrecondition);
  auto audit = a_->QueryAudit({});
  ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 2u);  // created, updated
  EXPECT_EQ((*audit)[1].type, "collection.updated");
}

TEST_F(TenantStoreTest, TwoTenantsWithTheSameNamesNeverSeeEachOther) {
  for (auto* s : {a_.get(), b_.get()}) {
    ASSERT_OK(s->CreateCollection(Ctx(kT0), Tickets()));
  }
  ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 1), "tickets",
                             json::parse(R"({"id":"same","title":"secret of a"})").as_object()));
  ASSERT_OK(b_->CreateRecord(Ctx(kT0 + 1), "tickets",
                             json::parse(R"({"id":"same","title":"secret of b"})").as_object()));
  EXPECT_EQ(a_->GetRecord("tickets", "same", std::nullopt)->data.at("title"), "secret of a");
  EXPECT_EQ(b_->GetRecord("tickets", "same", std::nullopt)->data.at("title"), "secret of b");
  ASSERT_OK(b_->DeleteRecord(Ctx(kT0 + 2), "tickets", "same", std::nullopt));
  EXPECT_OK(a_->GetRecord("tickets", "same", std::nullopt));
  EXPECT_EQ(a_->History("tickets", "same")->size(), 1u);
  auto events = a_->Events(0, 100);
  ASSERT_OK(events);
  for (const auto& e : *events) {
    EXPECT_EQ(e.body->find("secret of b"), std::string::npos);
  }
  // Neither file holds either tenant's plaintext.
  EXPECT_EQ(storage::testing::FilesContaining(dir_, "secret of"), "");
}

// customers <- invoices.customer (restrict) <- lines.invoice (cascade);
// invoices.tags -> tags (multiple, set_null); invoices.contact -> customers
// (set_null).
class RelationTest : public TenantStoreTest {
 protected:
  void SetUp() override {
    TenantStoreTest::SetUp();
    for (const char* text : {
             R"({"name":"customers","fields":[{"name":"name","type":"string"},
                 {"name":"country","type":"string"}]})",
             R"({"name":"tags","fields":[{"name":"label","type":"string"}]})",
             R"({"name":"invoices","fields":[{"name":"n","type":"integer"},
                 {"name":"customer","type":"relation","collection":"customers","required":true},
                 {"name":"contact","type":"relation","collection":"customers",
                  "on_delete":"set_null"},
                 {"name":"tags","type":"relation","collection":"tags","multiple":true,
                  "on_delete":"set_null"}]})",
             R"({"name":"lines","fields":[{"name":"text","type":"string"},
                 {"name":"invoice","type":"relation","collection":"invoices",
                  "on_delete":"cascade"}]})"}) {
      ASSERT_OK(a_->CreateCollection(Ctx(kT0), Schema(text)));
    }
    Put("customers", R"({"id":"c1","name":"Ana","country":"CZ"})");
    Put("customers", R"({"id":"c2","name":"Bo","country":"SE"})");
    Put("tags", R"({"id":"t1","label":"urgent"})");
    Put("tags", R"({"id":"t2","label":"vip"})");
  }

  void Put(const std::string& collection, const char* body, int64_t at = kT0 + 10) {
    auto r = a_->CreateRecord(Ctx(at), collection, json::parse(body).as_object());
    ASSERT_OK(r) << body << ": " << r.status().ToString();
  }

  size_t EventCount() { return a_->Events(0, 1000)->size(); }
};

TEST_F(RelationTest, AWriteNamingAMissingRecordIsRefusedNamingFieldAndId) {
  const size_t before = EventCount();
  ASSERT_OK(b_->CreateCollection(Ctx(kT0), Schema(R"({"name":"customers","fields":[]})")));
  ASSERT_OK(b_->CreateRecord(Ctx(kT0), "customers", json::parse(R"({"id":"of_b"})").as_object()));
  for (const char* body :
       {R"({"customer":"nope"})", R"({"customer":"of_b"})",
        R"({"customer":"c1","tags":["t1","gone"]})", R"({"customer":"c1","contact":"t1"})"}) {
    auto r = a_->CreateRecord(Ctx(kT0 + 20), "invoices", json::parse(body).as_object());
    ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body;
    ASSERT_EQ(r.status().fields().size(), 1u) << body;
    EXPECT_NE(r.status().fields()[0].message.find("no record "), std::string::npos) << body;
  }
  // Shapes: an id, an array of distinct ids.
  for (const char* body : {R"({"customer":7})", R"({"customer":"c1","tags":"t1"})",
                           R"({"customer":"c1","tags":["t1","t1"]})", R"({"customer":"a/b"})"}) {
    EXPECT_EQ(
        a_->CreateRecord(Ctx(kT0 + 20), "invoices", json::parse(body).as_object()).status().code(),
        StatusCode::kInvalidArgument)
        << body;
  }
  EXPECT_EQ(EventCount(), before);
  Put("invoices", R"({"id":"i1","customer":"c1","tags":["t1","t2"]})");
  auto moved = a_->UpdateRecord(Ctx(kT0 + 30), "invoices", "i1",
                                json::parse(R"({"customer":"zz"})").as_object(), std::nullopt);
  EXPECT_EQ(moved.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->GetRecord("invoices", "i1", std::nullopt)->data.at("customer"), "c1");
}

TEST_F(RelationTest, DeletesFollowRestrictCascadeAndSetNullAsOfEveryTime) {
  Put("invoices", R"({"id":"i1","customer":"c1","contact":"c2","tags":["t1","t2"]})");
  Put("invoices", R"({"id":"i2","customer":"c1","tags":["t2"]})");
  Put("lines", R"({"id":"l1","invoice":"i1"})");
  Put("lines", R"({"id":"l2","invoice":"i1"})");
  Put("lines", R"({"id":"l3","invoice":"i2"})");
  const int64_t before_deletes = kT0 + 50;

  // restrict: c1 is named by two invoices; nothing changes.
  size_t events = EventCount();
  Status refused = a_->DeleteRecord(Ctx(kT0 + 100), "customers", "c1", std::nullopt);
  ASSERT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  ASSERT_EQ(refused.fields().size(), 2u);
  EXPECT_EQ(refused.fields()[0].field, "invoices/i1 (customer)");
  EXPECT_EQ(refused.fields()[1].field, "invoices/i2 (customer)");
  EXPECT_EQ(EventCount(), events);

  // set_null: c2 leaves i1.contact; t2 leaves both tag arrays (i2's empties).
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 110), "customers", "c2", std::nullopt));
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 120), "tags", "t2", std::nullopt));
  auto i1 = a_->GetRecord("invoices", "i1", std::nullopt);
  ASSERT_OK(i1);
  EXPECT_FALSE(i1->data.contains("contact"));
  EXPECT_EQ(i1->data.at("tags"), json::array({"t1"}));
  EXPECT_FALSE(a_->GetRecord("invoices", "i2", std::nullopt)->data.contains("tags"));
  EXPECT_EQ(EventCount(), events + 5);  // c2, i1; t2, i1, i2

  // cascade: deleting i1 deletes l1 and l2, one event each, before i1's own.
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 130, "u7"), "invoices", "i1", std::nullopt));
  auto log = a_->Events(0, 1000);
  ASSERT_OK(log);
  ASSERT_EQ(log->size(), events + 8);
  std::vector<std::string> last;
  for (size_t i = log->size() - 3; i < log->size(); ++i) {
    last.push_back((*log)[i].type + " " + (*log)[i].subject_id + " " + (*log)[i].actor);
  }
  EXPECT_EQ(last, (std::vector<std::string>{"record.deleted lines/l1 user:u7",
                                            "record.deleted lines/l2 user:u7",
                                            "record.deleted invoices/i1 user:u7"}));
  EXPECT_EQ(a_->GetRecord("lines", "l1", std::nullopt).status().code(), StatusCode::kNotFound);
  EXPECT_OK(a_->GetRecord("lines", "l3", std::nullopt));
  EXPECT_EQ(a_->History("lines", "l1")->back().type, "record.deleted");

  // As of before the deletes, everything is as it was.
  auto old = a_->GetRecord("invoices", "i1", before_deletes);
  ASSERT_OK(old);
  EXPECT_EQ(old->data.at("contact"), "c2");
  EXPECT_EQ(old->data.at("tags"), json::array({"t1", "t2"}));
  ListQuery at;
  at.at_us = before_deletes;
  EXPECT_EQ(a_->ListRecords("lines", at)->records.size(), 3u);
  // c1 can go once nothing names it; the cascade left no dangling id.
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 140), "invoices", "i2", std::nullopt));
  ASSERT_OK(a_->DeleteRecord(Ctx(kT0 + 150), "customers", "c1", std::nullopt));
  EXPECT_EQ(a_->ListRecords("lines", {})->records.size(), 0u);
  // Reverting a cascaded line is refused while its invoice is gone.
  auto revived = a_->RevertRecord(Ctx(kT0 + 160), "lines", "l1",
                                  {.version = 1, .at_us = std::nullopt}, std::nullopt);
  EXPECT_EQ(revived.status().code(), StatusCode::kInvalidArgument);
  // The projections replay from the log to the same state.
  auto rebuilt = a_->Rebuild();
  ASSERT_OK(rebuilt);
  EXPECT_TRUE(rebuilt->equal());
}

TEST_F(RelationTest, SchemasNameExistingCollectionsAndCascadesFormNoCycle) {
  auto missing = a_->CreateCollection(Ctx(kT0 + 1), Schema(R"({"name":"x","fields":[
        {"name":"r","type":"relation","collection":"nope"}]})"));
  ASSERT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().fields()[0].field, "fields.r");
  // customers -> lines would close customers <- invoices? No: invoices
  // restricts. lines cascades from invoices; invoices cascading from lines
  // closes the loop.
  auto cyclic = a_->UpdateCollection(Ctx(kT0 + 2), Schema(R"({"name":"invoices","fields":[
        {"name":"n","type":"integer"},
        {"name":"customer","type":"relation","collection":"customers","required":true},
        {"name":"contact","type":"relation","collection":"customers","on_delete":"set_null"},
        {"name":"tags","type":"relation","collection":"tags","multiple":true,
         "on_delete":"set_null"},
        {"name":"first_line","type":"relation","collection":"lines","on_delete":"cascade"}]})"));
  ASSERT_EQ(cyclic.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cyclic.status().fields()[0].message.find("cycle"), std::string::npos);
  auto self = a_->CreateCollection(Ctx(kT0 + 3), Schema(R"({"name":"folders","fields":[
        {"name":"parent","type":"relation","collection":"folders","on_delete":"cascade"}]})"));
  EXPECT_EQ(self.status().code(), StatusCode::kInvalidArgument);
  ASSERT_OK(a_->CreateCollection(Ctx(kT0 + 3), Schema(R"({"name":"folders","fields":[
        {"name":"parent","type":"relation","collection":"folders","on_delete":"set_null"}]})")));
  // A collection another relation names cannot go.
  EXPECT_EQ(a_->DeleteCollection(Ctx(kT0 + 4), "tags").code(), StatusCode::kFailedPrecondition);
  // Pointing a relation at another collection: records whose ids are not
  // there are named.
  Put("invoices", R"({"id":"i1","customer":"c1"})");
  auto retarget = a_->UpdateCollection(Ctx(kT0 + 5), Schema(R"({"name":"invoices","fields":[
        {"name":"n","type":"integer"},
        {"name":"customer","type":"relation","collection":"tags","required":true},
        {"name":"contact","type":"relation","collection":"customers","on_delete":"set_null"},
        {"name":"tags","type":"relation","collection":"tags","multiple":true,
         "on_delete":"set_null"}]})"));
  ASSERT_EQ(retarget.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(retarget.status().fields()[0].field, "i1");
}

TEST_F(RelationTest, FiltersFollowOneRelationNowAndAsOfATime) {
  Put("invoices", R"({"id":"i1","customer":"c1","tags":["t1"]})");
  Put("invoices", R"({"id":"i2","customer":"c2","tags":["t1","t2"]})");
  Put("invoices", R"({"id":"i3","customer":"c1"})");
  const int64_t then = kT0 + 50;
  ASSERT_OK(a_->UpdateRecord(Ctx(kT0 + 60), "customers", "c1",
                             json::parse(R"({"country":"SK"})").as_object(), std::nullopt));
  auto lookup = [this](const std::string& name) -> Result<CollectionSchema> {
    auto c = a_->GetCollection(name);
    if (!c.ok()) return c.status();
    return c->schema;
  };
  auto ids = [&](QueryParams params) {
    auto schema = a_->GetCollection("invoices")->schema;
    auto q = ParseListQuery(schema, params, lookup);
    EXPECT_OK(q);
    std::vector<std::string> out;
    auto page = a_->ListRecords("invoices", *q);
    EXPECT_OK(page);
    for (const auto& r : page->records) out.push_back(r.id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids({{"filter", "customer.country:eq:SK"}}), (V{"i1", "i3"}));
  EXPECT_EQ(ids({{"filter", "customer.country:eq:CZ"}}), V{});
  EXPECT_EQ(ids({{"filter", "customer.country:eq:CZ"}, {"at", FormatRfc3339Micros(then)}}),
            (V{"i1", "i3"}));
  EXPECT_EQ(ids({{"filter", "tags.label:eq:vip"}}), V{"i2"});
  EXPECT_EQ(ids({{"filter", "tags.id:in:t1,t2"}, {"sort", "-n"}, {"limit", "1"}}), V{"i2"});
  EXPECT_EQ(ids({{"filter", "customer.id:eq:c2"}}), V{"i2"});
  auto got = a_->GetRecords("customers", {"c2", "nope", "c1"}, std::nullopt);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].id, "c2");
  EXPECT_EQ((*got)[1].data.at("country"), "SK");
  EXPECT_EQ(a_->GetRecords("customers", {"c1"}, then)->at(0).data.at("country"), "CZ");
}

TEST_F(TenantStoreTest, AFailedProjectionWriteLeavesNoEvent) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  auto raw = RawConnection("a");
  ASSERT_OK(
      raw->Exec("CREATE TRIGGER refuse BEFORE INSERT ON records"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"));
  auto before = a_->Events(0, 1000)->size();
  EXPECT_STATUS(
      StatusCode::kFailedPrecondition,
      a_->CreateRecord(Ctx(kT0 + 1), "tickets", json::parse(R"({"title":"x"})").as_object()));
  EXPECT_EQ(a_->Events(0, 1000)->size(), before);
  ASSERT_OK(raw->Exec("DROP TRIGGER refuse"));
  EXPECT_OK(a_->CreateRecord(Ctx(kT0 + 2), "tickets", json::parse(R"({"title":"x"})").as_object()));
}

TEST_F(TenantStoreTest, TamperedEventBodyIsNamedByVerifyAndStopsRebuild) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(a_->CreateRecord(Ctx(kT0 + 1 + i), "tickets",
                               json::object{{"title", "t" + std::to_string(i)}}));
  }
  auto clean = a_->VerifyChains();
  ASSERT_OK(clean);
  EXPECT_TRUE(clean->ok());
  EXPECT_EQ(clean->events_checked, 6);
  EXPECT_EQ(clean->audit_checked, 1);

  auto raw = RawConnection("a");
  ASSERT_OK(raw->Exec("UPDATE events SET body = replace(body, '\"t2\"', '\"tX\"') WHERE seq = 4"));
  auto report = a_->VerifyChains();
  ASSERT_OK(report);
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->events_first_broken, 4);
  EXPECT_EQ(report->reason, "body altered");
  auto rebuild = a_->Rebuild();
  EXPECT_EQ(rebuild.status().code(), StatusCode::kDataLoss);

  ASSERT_OK(raw->Exec("UPDATE audit SET actor = 'user:mallory' WHERE seq = 1"));
  // Repair the event body; the audit entry stays forged.
  ASSERT_OK(raw->Exec("UPDATE events SET body = replace(body, '\"tX\"', '\"t2\"') WHERE seq = 4"));
  report = a_->VerifyChains();
  EXPECT_FALSE(report->events_first_broken.has_value());
  EXPECT_EQ(report->audit_first_broken, 1);
}

AuditQuery Range(int64_t from, int64_t to) {
  AuditQuery q;
  q.from_us = from;
  q.to_us = to;
  return q;
}

AuditQuery ByActor(std::string actor) {
  AuditQuery q;
  q.actor = std::move(actor);
  return q;
}

AuditQuery OfType(std::string type) {
  AuditQuery q;
  q.type = std::move(type);
  return q;
}

TEST_F(TenantStoreTest, AuditPurgeKeepsTheChainAndFiltersWork) {
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK(a_->Audit(Ctx(kT0 + i * 1000, i % 2 ? "odd" : "even"),
                        {"tenant.exported", "tenant", "a", {{"at", "now"}}}));
  }
  EXPECT_EQ(a_->QueryAudit(ByActor("user:odd"))->size(), 3u);
  EXPECT_EQ(a_->QueryAudit(Range(kT0 + 2000, kT0 + 3000))->size(), 2u);
  EXPECT_EQ(a_->QueryAudit(OfType("nothing"))->size(), 0u);
  auto purged = a_->PurgeAudit(kT0 + 2500);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 3);
  auto all = a_->QueryAudit({});
  EXPECT_FALSE((*all)[2].body.has_value());
  EXPECT_TRUE((*all)[3].body.has_value());
  EXPECT_TRUE(a_->VerifyChains()->ok());
}

TEST_F(TenantStoreTest, RebuildReproducesTheProjectionsExactly) {
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  for (int i = 0; i < 30; ++i) {
    std::string id = "r" + std::to_string(i % 10);
    if (i < 10) {
      ASSERT_OK(a_->CreateRecord(Ctx(kT0 + i), "tickets",
                                 json::object{{"id", id}, {"title", "t"}, {"code", id}}));
    } else if (i % 3 == 0) {
      (void)a_->DeleteRecord(Ctx(kT0 + i), "tickets", id, std::nullopt);
    } else {
      (void)a_->UpdateRecord(Ctx(kT0 + i), "tickets", id, json::object{{"score", i}}, std::nullopt);
    }
  }
  auto report = a_->Rebuild();
  ASSERT_OK(report) << report.status().ToString();
  EXPECT_TRUE(report->equal());
  EXPECT_EQ(report->events, 28);  // 1 + 10 creates + 6 deletes + 11 updates of live records

  // A projection row changed behind the log's back: rebuild sees the
  // difference, reports it and leaves the tampered state for inspection.
  auto raw = RawConnection("a");
  ASSERT_OK(raw->Exec("UPDATE records SET data = '{\"title\":\"forged\"}' WHERE id = 'r3'"));
  report = a_->Rebuild();
  ASSERT_OK(report);
  EXPECT_FALSE(report->equal());
}

// ---------------------------------------------------------------------------
// A seeded random sequence of writes over simulated time, checked against a
// naive model: every version of every record kept in a list and replayed.

struct ModelVersion {
  int64_t at = 0;
  bool deleted = false;
  json::object data;
  std::string type;
  std::string user;
};

class Model {
 public:
  std::map<std::string, std::vector<ModelVersion>> records;

  const ModelVersion* At(const std::string& id, int64_t t) const {
    auto it = records.find(id);
    if (it == records.end()) return nullptr;
    const ModelVersion* found = nullptr;
    for (const auto& v : it->second) {
      if (v.at <= t) found = &v;
    }
    return found != nullptr && !found->deleted ? found : nullptr;
  }
  const ModelVersion* Now(const std::string& id) const { return At(id, INT64_MAX); }

  // Live records at t whose state is "open", by score ascending (absent
  // first), then id.
  std::vector<std::string> OpenByScore(int64_t t) const {
    std::vector<std::pair<json::value, std::string>> rows;
    for (const auto& [id, versions] : records) {
      const ModelVersion* v = At(id, t);
      if (v == nullptr) continue;
      const json::value* state = v->data.if_contains("state");
      if (state == nullptr || *state != "open") continue;
      const json::value* score = v->data.if_contains("score");
      rows.push_back({score ? *score : json::value(nullptr), id});
    }
    std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
      if (x.first.is_null() != y.first.is_null()) return x.first.is_null();
      if (!x.first.is_null()) {
        double a = x.first.template to_number<double>(), b = y.first.template to_number<double>();
        if (a != b) return a < b;
      }
      return x.second < y.second;
    });
    std::vector<std::string> ids;
    for (auto& r : rows) ids.push_back(r.second);
    return ids;
  }

  bool CodeTaken(const json::object& data, const std::string& self) const {
    const json::value* code = data.if_contains("code");
    if (code == nullptr) return false;
    for (const auto& [id, versions] : records) {
      if (id == self) continue;
      const ModelVersion* v = Now(id);
      if (v != nullptr && v->data.if_contains("code") && v->data.at("code") == *code) return true;
    }
    return false;
  }
};

json::object RandomData(std::mt19937_64& rng) {
  json::object d;
  d["title"] = "title " + std::to_string(rng() % 1000);
  if (rng() % 3) d["score"] = static_cast<double>(rng() % 20) / 4;
  if (rng() % 4) d["state"] = rng() % 2 ? "open" : "closed";
  if (rng() % 2) d["code"] = "c" + std::to_string(rng() % 12);
  return d;
}

json::object ChangesBetween(const json::object& before, const json::object& after) {
  json::object out;
  for (const char* f : {"title", "score", "state", "code"}) {
    const json::value* a = before.if_contains(f);
    const json::value* b = after.if_contains(f);
    if ((a == nullptr && b == nullptr) || (a && b && *a == *b)) continue;
    out[f] = json::array{a ? *a : json::value(nullptr), b ? *b : json::value(nullptr)};
  }
  return out;
}

TEST_F(TenantStoreTest, RandomWritesMatchANaiveReplayModel) {
  const uint64_t seed = 20261124;
  std::mt19937_64 rng(seed);
  ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
  Model model;
  int64_t now = kT0;
  std::vector<std::string> ids;
  std::map<std::string, int> outcomes;  // proof that each path ran
  for (int step = 0; step < 600; ++step) {
    now += 1 + static_cast<int64_t>(rng() % 5000);
    std::string user = "u" + std::to_string(rng() % 3);
    int op = static_cast<int>(rng() % 10);
    SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
    if (ids.empty() || op < 3) {
      std::string id = "r" + std::to_string(ids.size());
      json::object data = RandomData(rng);
      json::object input = data;
      input["id"] = id;
      auto r = a_->CreateRecord(Ctx(now, user), "tickets", input);
      if (model.CodeTaken(data, id)) {
        ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists);
        ++outcomes["create refused: unique"];
        continue;
      }
      ASSERT_OK(r) << r.status().ToString();
      ++outcomes["created"];
      ids.push_back(id);
      model.records[id].push_back({now, false, data, "record.created", user});
      continue;
    }
    const std::string& id = ids[rng() % ids.size()];
    auto& versions = model.records[id];
    const ModelVersion& last = versions.back();
    int64_t version = static_cast<int64_t>(versions.size());
    if (op < 6) {  // update
      json::object patch = RandomData(rng);
      if (rng() % 3 == 0) patch["score"] = nullptr;
      if (rng() % 3 == 0) patch.erase("title");
      std::optional<int64_t> if_match;
      if (rng() % 4 == 0) if_match = rng() % 2 ? version : version + 1;
      auto r = a_->UpdateRecord(Ctx(now, user), "tickets", id, patch, if_match);
      if (last.deleted) {
        ASSERT_EQ(r.status().code(), StatusCode::kNotFound);
        ++outcomes["update refused: deleted"];
        continue;
      }
      if (if_match && *if_match != version) {
        ASSERT_EQ(r.status().code(), StatusCode::kVersionMismatch);
        ++outcomes["update refused: version"];
        continue;
      }
      json::object next = last.data;
      for (const auto& kv : patch) {
        if (kv.value().is_null()) {
          next.erase(kv.key());
        } else {
          next[kv.key()] = kv.value();
        }
      }
      if (model.CodeTaken(next, id)) {
        ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists);
        ++outcomes["update refused: unique"];
        continue;
      }
      ASSERT_OK(r) << r.status().ToString();
      ++outcomes["updated"];
      if (next == last.data) continue;  // no change, no version
      versions.push_back({now, false, next, "record.updated", user});
    } else if (op < 8) {  // delete
      auto s = a_->DeleteRecord(Ctx(now, user), "tickets", id, std::nullopt);
      if (last.deleted) {
        ASSERT_EQ(s.code(), StatusCode::kNotFound);
        ++outcomes["delete refused: deleted"];
        continue;
      }
      ASSERT_OK(s) << s.ToString();
      ++outcomes["deleted"];
      versions.push_back({now, true, {}, "record.deleted", user});
    } else {  // revert to a random version or a random past time
      RevertTarget target;
      const ModelVersion* old = nullptr;
      if (rng() % 2) {
        target.version = 1 + static_cast<int64_t>(rng() % versions.size());
        old = &versions[*target.version - 1];
        if (old->deleted) old = nullptr;
      } else {
        target.at_us =
            versions.front().at + static_cast<int64_t>(rng() % (now - versions.front().at));
        old = model.At(id, *target.at_us);
      }
      auto r = a_->RevertRecord(Ctx(now, user), "tickets", id, target, std::nullopt);
      if (old == nullptr) {
        ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
        ++outcomes["revert refused: no state"];
        continue;
      }
      if (model.CodeTaken(old->data, id)) {
        ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists);
        ++outcomes["revert refused: unique"];
        continue;
      }
      ASSERT_OK(r) << r.status().ToString();
      ++outcomes[last.deleted ? "restored" : "reverted"];
      if (!last.deleted && old->data == last.data) continue;
      json::object data = old->data;
      versions.push_back({now, false, data, "record.reverted", user});
    }
  }

  for (const char* path :
       {"created", "create refused: unique", "updated", "update refused: deleted",
        "update refused: version", "update refused: unique", "deleted", "delete refused: deleted",
        "reverted", "restored", "revert refused: no state"}) {
    EXPECT_GE(outcomes[path], 3) << path;
  }

  // Every record at many times, including each version's first microsecond
  // and the one before it.
  std::vector<int64_t> times = {kT0, now};
  for (const auto& [id, versions] : model.records) {
    for (const auto& v : versions) {
      if (rng() % 4 == 0) {
        times.push_back(v.at);
        times.push_back(v.at - 1);
      }
    }
  }
  for (int64_t t : times) {
    for (const auto& id : ids) {
      auto got = a_->GetRecord("tickets", id, t);
      const ModelVersion* want = model.At(id, t);
      if (want == nullptr) {
        ASSERT_EQ(got.status().code(), StatusCode::kNotFound) << id << " at " << t;
      } else {
        ASSERT_OK(got) << id << " at " << t;
        ASSERT_EQ(got->data, want->data) << id << " at " << t;
      }
    }
  }
  // Listings with a filter, a sort and small pages.
  for (size_t i = 0; i < times.size(); i += 7) {
    std::optional<int64_t> t = times[i] == now ? std::nullopt : std::optional(times[i]);
    std::vector<std::string> got;
    std::optional<std::string> cursor;
    do {
      std::vector<std::pair<std::string, std::string>> params = {
          {"filter", "state:eq:open"}, {"sort", "score"}, {"limit", "7"}};
      if (cursor) params.push_back({"cursor", *cursor});
      auto q = ParseListQuery(Tickets(), params);
      ASSERT_OK(q);
      q->at_us = t;
      auto page = a_->ListRecords("tickets", *q);
      ASSERT_OK(page) << page.status().ToString();
      for (const auto& r : page->records) got.push_back(r.id);
      cursor = page->next_cursor;
    } while (cursor);
    ASSERT_EQ(got, model.OpenByScore(t ? *t : INT64_MAX)) << "listing at " << times[i];
  }
  // Histories.
  for (const auto& id : ids) {
    auto history = a_->History("tickets", id);
    ASSERT_OK(history);
    const auto& versions = model.records[id];
    ASSERT_EQ(history->size(), versions.size()) << id;
    json::object before;
    for (size_t v = 0; v < versions.size(); ++v) {
      const HistoryEntry& h = (*history)[v];
      EXPECT_EQ(h.version, static_cast<int64_t>(v + 1));
      EXPECT_EQ(h.type, versions[v].type);
      EXPECT_EQ(h.at_us, versions[v].at);
      EXPECT_EQ(h.actor.id, versions[v].user);
      EXPECT_EQ(h.changes, json::value(ChangesBetween(before, versions[v].data)))
          << id << " v" << v + 1;
      before = versions[v].data;
    }
  }
  auto rebuild = a_->Rebuild();
  ASSERT_OK(rebuild);
  EXPECT_TRUE(rebuild->equal());
  EXPECT_TRUE(a_->VerifyChains()->ok());
}

}  // namespace
}  // namespace silo::records
