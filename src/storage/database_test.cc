#include "storage/database.h"

#include <gtest/gtest.h>

#include "crypto/crypto.h"
#include "storage/migrator.h"
#include "storage/test_util.h"

namespace silo::storage {
namespace {

namespace fs = std::filesystem;

class DatabaseTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
    db_ = MustOpen(Path("a.db"), *key_);
    ASSERT_TRUE(db_->Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, n INTEGER)").ok());
  }
  int64_t Rows() {
    auto stmt = db_->Prepare("SELECT count(*) FROM kv");
    EXPECT_TRUE(stmt.ok() && stmt->Step().ok());
    return stmt->ColumnInt(0);
  }
  std::unique_ptr<crypto::SecretKey> key_;
  std::unique_ptr<Database> db_;
};

TEST_F(DatabaseTest, TypedBindingRoundTrips) {
  auto insert = db_->Prepare("INSERT INTO kv VALUES (?, ?, ?)");
  ASSERT_TRUE(insert.ok());
  std::string blob("\0\x01\xff binary", 10);
  insert->Bind(1, "key'; DROP TABLE kv;--").BindBlob(2, blob).Bind(3, int64_t{-42});
  ASSERT_TRUE(insert->Run().ok());
  insert->Reset();
  insert->Bind(1, "null").BindNull(2).BindNull(3);
  ASSERT_TRUE(insert->Run().ok());

  auto select = db_->Prepare("SELECT k, v, n FROM kv ORDER BY k");
  ASSERT_TRUE(select.ok());
  ASSERT_TRUE(*select->Step());
  EXPECT_EQ(select->ColumnText(0), "key'; DROP TABLE kv;--");
  EXPECT_EQ(select->ColumnBlob(1), blob);
  EXPECT_EQ(select->ColumnInt(2), -42);
  ASSERT_TRUE(*select->Step());
  EXPECT_TRUE(select->ColumnIsNull(1));
  EXPECT_FALSE(*select->Step());
}

TEST_F(DatabaseTest, ErrorsMapToStatusCodes) {
  ASSERT_TRUE(db_->Exec("INSERT INTO kv (k) VALUES ('a')").ok());
  Status dup = db_->Exec("INSERT INTO kv (k) VALUES ('a')");
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
  EXPECT_FALSE(db_->Prepare("SELEC nonsense").ok());
  auto bad_bind = db_->Prepare("SELECT ?");
  bad_bind->Bind(5, int64_t{1});
  EXPECT_FALSE(bad_bind->Step().ok());
}

TEST_F(DatabaseTest, TransactionRollsBackUnlessCommitted) {
  {
    auto txn = Transaction::Begin(*db_);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(db_->Exec("INSERT INTO kv (k) VALUES ('lost')").ok());
  }  // no Commit()
  EXPECT_EQ(Rows(), 0);
  {
    auto txn = Transaction::Begin(*db_);
    ASSERT_TRUE(db_->Exec("INSERT INTO kv (k) VALUES ('kept')").ok());
    ASSERT_TRUE(txn->Commit().ok());
    EXPECT_FALSE(txn->Commit().ok());
  }
  EXPECT_EQ(Rows(), 1);
}

TEST_F(DatabaseTest, ASecondWriterWaitsThenFailsCleanly) {
  auto other = MustOpen(Path("a.db"), *key_, {.busy_timeout_ms = 50});
  auto txn = Transaction::Begin(*db_);
  ASSERT_TRUE(txn.ok());
  auto second = Transaction::Begin(*other);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

constexpr Migration kV1[] = {
    {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
};
constexpr Migration kV2[] = {
    {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
    {2, "notes_tag", "ALTER TABLE notes ADD COLUMN tag TEXT"},
};

TEST_F(DatabaseTest, MigratorAppliesInOrderOnceAndRecordsVersion) {
  ASSERT_TRUE(Migrate(*db_, kV1).ok());
  EXPECT_EQ(*SchemaVersion(*db_), 1);
  ASSERT_TRUE(Migrate(*db_, kV1).ok());  // idempotent
  ASSERT_TRUE(Migrate(*db_, kV2).ok());
  EXPECT_EQ(*SchemaVersion(*db_), 2);
  EXPECT_TRUE(db_->Exec("INSERT INTO notes (body, tag) VALUES ('b', 't')").ok());
}

TEST_F(DatabaseTest, MigratorRefusesADatabaseFromANewerVersion) {
  ASSERT_TRUE(Migrate(*db_, kV2).ok());
  Status s = Migrate(*db_, kV1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("newer silo"), std::string::npos) << s.message();
  EXPECT_EQ(*SchemaVersion(*db_), 2);
}

TEST_F(DatabaseTest, MigratorRefusesAnEditedHistory) {
  ASSERT_TRUE(Migrate(*db_, kV1).ok());
  constexpr Migration kEdited[] = {
      {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"},
  };
  EXPECT_EQ(Migrate(*db_, kEdited).code(), StatusCode::kDataLoss);
  constexpr Migration kGap[] = {{2, "x", "SELECT 1"}};
  EXPECT_EQ(Migrate(*db_, kGap).code(), StatusCode::kInvalidArgument);
}

TEST_F(DatabaseTest, AFailedMigrationLeavesNoTrace) {
  constexpr Migration kBroken[] = {
      {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY); CREATE TABLE notes (x)"},
  };
  EXPECT_FALSE(Migrate(*db_, kBroken).ok());
  EXPECT_EQ(*SchemaVersion(*db_), 0);
  EXPECT_TRUE(db_->Exec("CREATE TABLE notes (y)").ok()) << "the first CREATE was rolled back";
}

// tests/data/format1.db was written by format version 1 (see
// tests/data/README.md); every later build must read it.
TEST(FormatFixture, Version1DatabaseStaysReadable) {
  std::string dir = SILO_SOURCE_DIR "/tests/data/";
  auto key_hex = testing::Slurp(dir + "format1.key");
  ASSERT_EQ(key_hex.size(), 65u) << "64 hex digits and a newline";
  std::string key_bytes;
  for (size_t i = 0; i < 64; i += 2) {
    key_bytes.push_back(static_cast<char>(std::stoi(key_hex.substr(i, 2), nullptr, 16)));
  }
  auto key = crypto::SecretKey::FromBytes(key_bytes);
  ASSERT_TRUE(key.ok());
  // Work on a copy: opening may rewrite the file.
  char tmpl[] = "/tmp/silo-fixture-XXXXXX";
  std::string tmp = mkdtemp(tmpl);
  fs::copy_file(dir + "format1.db", tmp + "/format1.db");
  {
    auto db = Database::Open(tmp + "/format1.db", *key, {.create = false});
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    EXPECT_EQ(*(*db)->IntegrityCheck(), "ok");
    auto stmt = (*db)->Prepare("SELECT count(*), sum(length(body)), max(body) FROM notes");
    ASSERT_TRUE(stmt.ok());
    ASSERT_TRUE(*stmt->Step());
    EXPECT_EQ(stmt->ColumnInt(0), 200);
    EXPECT_EQ(stmt->ColumnInt(1), 200 * 64);
    EXPECT_EQ(stmt->ColumnText(2).substr(0, 10), "format one");
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace silo::storage
