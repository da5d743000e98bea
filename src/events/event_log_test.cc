#include "events/event_log.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"
#include "storage/migrator.h"
#include "storage/test_util.h"

namespace silo::events {
namespace {

class EventLogTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
    db_ = MustOpen(Path("t.db"), *key_);
    const storage::Migration schema[] = {{1, "events", kEventLogSchema}};
    ASSERT_OK(storage::Migrate(*db_, schema));
  }

  Event Make(int i) {
    Event e;
    e.at_us = 1'700'000'000'000'000 + i;
    e.actor = {"user", "u1"};
    e.request_id = "req-" + std::to_string(i);
    e.client = "127.0.0.1";
    e.subject_kind = "record";
    e.subject_id = "r" + std::to_string(i % 7);
    e.type = i % 3 == 0 ? "record.created" : "record.updated";
    e.changes = {
        {"title", "\"old " + std::to_string(i) + "\"", "\"new " + std::to_string(i) + "\""}};
    return e;
  }

  void AppendMany(int n) {
    auto txn = storage::Transaction::Begin(*db_);
    ASSERT_OK(txn);
    for (int i = 1; i <= n; ++i) {
      Event e = Make(i);
      auto seq = Append(*db_, e);
      ASSERT_OK(seq) << seq.status().ToString();
      ASSERT_EQ(*seq, i);
    }
    ASSERT_OK(txn->Commit());
  }

  VerifyResult MustVerify() {
    auto r = Verify(*db_);
    EXPECT_OK(r) << r.status().ToString();
    return r.ok() ? *r : VerifyResult{};
  }

  std::unique_ptr<crypto::SecretKey> key_;
  std::unique_ptr<storage::Database> db_;
};

TEST_F(EventLogTest, AppendsInOrderAndVerifies) {
  AppendMany(50);
  VerifyResult r = MustVerify();
  EXPECT_EQ(r.checked, 50);
  EXPECT_FALSE(r.first_broken.has_value());
  auto events = ReadAfter(*db_, 45, 100);
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), 5u);
  EXPECT_EQ(events->front().seq, 46);
  EXPECT_NE(events->front().body->find("\"new 46\""), std::string::npos);
}

TEST_F(EventLogTest, AppendOutsideATransactionIsRefused) {
  Event outside = Make(1);
  EXPECT_EQ(Append(*db_, outside).status().code(), StatusCode::kFailedPrecondition);
  auto txn = storage::Transaction::Begin(*db_);
  Event bad = Make(1);
  bad.changes[0].new_json = "{not json";
  EXPECT_EQ(Append(*db_, bad).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EventLogTest, TimesAreStrictlyIncreasingPerLog) {
  auto txn = storage::Transaction::Begin(*db_);
  Event first = Make(10);
  ASSERT_OK(Append(*db_, first));
  EXPECT_EQ(first.at_us, Make(10).at_us);  // later than the empty log: kept
  Event same = Make(10), earlier = Make(3), later = Make(50);
  ASSERT_OK(Append(*db_, same));
  ASSERT_OK(Append(*db_, earlier));
  ASSERT_OK(Append(*db_, later));
  EXPECT_EQ(same.at_us, first.at_us + 1);
  EXPECT_EQ(earlier.at_us, first.at_us + 2);
  EXPECT_EQ(later.at_us, Make(50).at_us);
  // The audit log keeps its own clock.
  Event audit = Make(1);
  ASSERT_OK(Append(*db_, audit, Log::kAudit));
  EXPECT_EQ(audit.at_us, Make(1).at_us);
  ASSERT_OK(txn->Commit());
  auto stored = ReadAfter(*db_, 0, 10);
  ASSERT_EQ(stored->size(), 4u);
  EXPECT_EQ((*stored)[2].at_us, earlier.at_us);  // the stamped time is what is stored
  EXPECT_TRUE(Verify(*db_)->first_broken == std::nullopt);
}

TEST_F(EventLogTest, SecretsAreRecordedAsChangedNeverValued) {
  auto txn = storage::Transaction::Begin(*db_);
  Event e = Make(1);
  e.changes = {{"password", "\"hunter2-old\"", "\"hunter2-new\"", true}};
  ASSERT_OK(Append(*db_, e));
  ASSERT_OK(txn->Commit());
  auto events = ReadAfter(*db_, 0, 10);
  EXPECT_EQ(events->front().body->find("hunter2"), std::string::npos);
  EXPECT_NE(events->front().body->find("\"changed\":true"), std::string::npos);
}

// A test-only connection holds the key and edits the log behind its back:
// verify names the first broken entry.
TEST_F(EventLogTest, VerifyNamesTheFirstTamperedEntry) {
  AppendMany(30);
  struct Case {
    const char* name;
    const char* sql;
    int64_t expect;
  } cases[] = {
      {"body altered", "UPDATE events SET body = replace(body, 'new 12', 'NEW 12') WHERE seq = 12",
       12},
      {"column altered", "UPDATE events SET type = 'record.deleted' WHERE seq = 17", 17},
      {"row deleted", "DELETE FROM events WHERE seq = 9", 10},
      {"hash rewritten", "UPDATE events SET hash = body_hash WHERE seq = 21", 21},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK(db_->Exec("SAVEPOINT tamper"));
    ASSERT_OK(db_->Exec(c.sql));
    VerifyResult r = MustVerify();
    ASSERT_TRUE(r.first_broken.has_value());
    EXPECT_EQ(*r.first_broken, c.expect) << r.reason;
    ASSERT_OK(db_->Exec("ROLLBACK TO tamper; RELEASE tamper"));
  }
  EXPECT_FALSE(MustVerify().first_broken.has_value());
}

TEST_F(EventLogTest, PurgedBodiesKeepTheChainVerifiable) {
  AppendMany(20);
  auto purged = PurgeBodies(*db_, 10);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 10);
  VerifyResult r = MustVerify();
  EXPECT_EQ(r.checked, 20);
  EXPECT_FALSE(r.first_broken.has_value()) << r.reason;
  auto events = ReadAfter(*db_, 0, 100);
  EXPECT_FALSE((*events)[9].body.has_value());
  EXPECT_TRUE((*events)[10].body.has_value());
  // Purging does not make tampering invisible: a purged entry's hash still chains.
  ASSERT_OK(db_->Exec("UPDATE events SET body_hash = hash WHERE seq = 5"));
  EXPECT_EQ(MustVerify().first_broken.value_or(0), 5);
}

}  // namespace
}  // namespace silo::events
