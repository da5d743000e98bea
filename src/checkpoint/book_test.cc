#include "checkpoint/book.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file_util.h"
#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "storage/migrator.h"
#include "storage/test_util.h"

namespace silo::checkpoint {
namespace {

class BookTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    key_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    migrations_ = {{1, "events", events::kEventLogSchema}};
    databases_ = std::make_shared<storage::TenantDatabases>(
        [this](const std::string&) { return crypto::SecretKey::FromBytes(key_); },
        [this](const std::string& id) { return Path(id + ".db"); }, migrations_,
        storage::TenantDatabasesOptions{});
    seed_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    book_ = std::make_unique<Book>(Path("checkpoints"), *crypto::SecretKey::FromBytes(seed_),
                                   databases_);
  }

  // `n` audit entries and as many events, appended to tenant `id`.
  void Append(const std::string& id, int n) {
    auto db = databases_->Acquire(id);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Write([&](storage::Database& d) -> Status {
      SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(d));
      for (int i = 0; i < n; ++i) {
        events::Origin o{{"user", "u"}, "r", "127.0.0.1", NowMicros()};
        SILO_RETURN_IF_ERROR(events::AppendAudit(d, o, "x.done", "x", "1"));
        events::Event e;
        e.at_us = NowMicros();
        e.actor = {"user", "u"};
        e.type = "record.created";
        e.subject_kind = "record";
        e.subject_id = "r" + std::to_string(i);
        SILO_RETURN_IF_ERROR(events::Append(d, e).status());
      }
      return tx.Commit();
    }));
  }

  std::string key_, seed_;
  std::vector<storage::Migration> migrations_;
  std::shared_ptr<storage::TenantDatabases> databases_;
  std::unique_ptr<Book> book_;
};

TEST_F(BookTest, ACheckpointVerifiesOnlyUnchangedAndUnderItsKey) {
  Checkpoint c{"t1", "acme", {3, "aa"}, {5, "bb"}, 1'780'000'000'000'000, "backup"};
  const std::string text = book_->Sign(c);
  auto back = Decode(text, book_->public_key());
  ASSERT_OK(back);
  EXPECT_EQ(back->tenant_id, "t1");
  EXPECT_EQ(back->audit, (events::ChainPoint{5, "bb"}));
  EXPECT_EQ(back->at_us, c.at_us);
  // Any changed field, and another key's signature, are refused.
  for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"seq\":5", "\"seq\":4"},
           {"\"hash\":\"aa\"", "\"hash\":\"ab\""},
           {"\"tenant\":\"t1\"", "\"tenant\":\"t2\""},
           {"\"reason\":\"backup\"", "\"reason\":\"x\""}}) {
    std::string forged = text;
    ASSERT_NE(forged.find(from), std::string::npos) << from;
    forged.replace(forged.find(from), from.size(), to);
    EXPECT_STATUS(StatusCode::kDataLoss, Decode(forged, book_->public_key())) << from;
  }
  const crypto::SecretKey other = crypto::SecretKey::Random();
  EXPECT_STATUS(StatusCode::kDataLoss, Decode(Encode(c, other), book_->public_key()));
  EXPECT_STATUS(StatusCode::kDataLoss, Decode("{}", book_->public_key()));
  EXPECT_STATUS(StatusCode::kDataLoss, Decode("not json", book_->public_key()));
}

// A tenant database swapped for an older authentic copy is named, and no new
// checkpoint blesses it; a restore's checkpoint replaces the kept one.
TEST_F(BookTest, AnOlderCopyOfATenantIsNamedAndNotCheckpointed) {
  Append("t1", 3);
  // Copied and swapped back while no connection has the file open.
  ASSERT_OK(databases_->Exclusive("t1", "held", std::chrono::seconds(10), [&] {
    std::filesystem::copy_file(Path("t1.db"), Path("old.db"));
    return Status::Ok();
  }));
  Append("t1", 4);
  ASSERT_OK(book_->Take("t1", "acme", "schedule"));
  auto v = book_->Check("t1");
  ASSERT_OK(v);
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->newest->audit.seq, 7);

  ASSERT_OK(databases_->Exclusive("t1", "held", std::chrono::seconds(10), [&] {
    std::filesystem::remove(Path("t1.db-wal"));
    std::filesystem::rename(Path("old.db"), Path("t1.db"));
    return Status::Ok();
  }));
  v = book_->Check("t1");
  ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("audit log ends at entry 3"), std::string::npos) << v->problem;
  EXPECT_NE(v->problem.find("saw entry 7"), std::string::npos) << v->problem;
  // New entries on the old copy do not hide it: entry 7 is another one.
  Append("t1", 4);
  v = book_->Check("t1");
  ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("entry 7 is not the one"), std::string::npos) << v->problem;
  EXPECT_STATUS(StatusCode::kFailedPrecondition, book_->Take("t1", "acme", "schedule"));
  EXPECT_FALSE(book_->Check("t1")->ok);
  // A restore (the operator's, audited) starts a new line.
  ASSERT_OK(book_->Take("t1", "acme", "restore"));
  EXPECT_TRUE(book_->Check("t1")->ok);
}

TEST_F(BookTest, AForgedKeptCheckpointIsRefusedByCheck) {
  Append("t1", 2);
  ASSERT_OK(book_->Take("t1", "acme", "schedule"));
  const std::string path = Path("checkpoints") + "/t1.json";
  auto text = ReadFile(path);
  ASSERT_OK(text);
  // A checkpoint of a smaller log, signed by someone else's key.
  Checkpoint small{"t1", "acme", {1, "x"}, {1, "y"}, NowMicros(), "schedule"};
  ASSERT_OK(WriteFileAtomic(path, Encode(small, crypto::SecretKey::Random())));
  auto v = book_->Check("t1");
  ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("signed by another key"), std::string::npos) << v->problem;
  // One edited by hand.
  std::string edited = *text;
  edited.replace(edited.find("\"slug\":\"acme\""), 13, "\"slug\":\"acmf\"");
  ASSERT_OK(WriteFileAtomic(path, edited));
  EXPECT_NE(book_->Check("t1")->problem.find("does not match"), std::string::npos);
  // No checkpoint yet: nothing to compare, nothing wrong.
  Append("t2", 1);
  auto none = book_->Check("t2");
  ASSERT_OK(none);
  EXPECT_TRUE(none->ok);
  EXPECT_FALSE(none->newest.has_value());
}

TEST_F(BookTest, KeepKeepsTheCheckpointThatSawMost) {
  Checkpoint later{"t1", "acme", {9, "e9"}, {9, "a9"}, 2, "schedule"};
  Checkpoint earlier{"t1", "acme", {5, "e5"}, {5, "a5"}, 3, "backup"};
  ASSERT_OK(book_->Keep(later, book_->Sign(later)));
  ASSERT_OK(book_->Keep(earlier, book_->Sign(earlier)));  // a backup that began before
  auto kept = ReadFile(Path("checkpoints") + "/t1.json");
  ASSERT_OK(kept);
  EXPECT_EQ(Decode(*kept, book_->public_key())->audit.seq, 9);
  Checkpoint restored = earlier;
  restored.reason = "restore";
  ASSERT_OK(book_->Keep(restored, book_->Sign(restored)));
  kept = ReadFile(Path("checkpoints") + "/t1.json");
  EXPECT_EQ(Decode(*kept, book_->public_key())->reason, "restore");
}

}  // namespace
}  // namespace silo::checkpoint
