#include "storage/database.h"

#include <gtest/gtest.h>

#include "base/file_util.h"
#include "base/status_matchers.h"
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
    ASSERT_OK(db_->Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, n INTEGER)"));
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
  ASSERT_OK(insert);
  std::string blob("\0\x01\xff binary", 10);
  insert->Bind(1, "key'; DROP TABLE kv;--").BindBlob(2, blob).Bind(3, int64_t{-42});
  ASSERT_OK(insert->Run());
  insert->Reset();
  insert->Bind(1, "null").BindNull(2).BindNull(3);
  ASSERT_OK(insert->Run());

  auto select = db_->Prepare("SELECT k, v, n FROM kv ORDER BY k");
  ASSERT_OK(select);
  ASSERT_TRUE(*select->Step());
  EXPECT_EQ(select->ColumnText(0), "key'; DROP TABLE kv;--");
  EXPECT_EQ(select->ColumnBlob(1), blob);
  EXPECT_EQ(select->ColumnInt(2), -42);
  ASSERT_TRUE(*select->Step());
  EXPECT_TRUE(select->ColumnIsNull(1));
  EXPECT_FALSE(*select->Step());
}

TEST_F(DatabaseTest, ErrorsMapToStatusCodes) {
  ASSERT_OK(db_->Exec("INSERT INTO kv (k) VALUES ('a')"));
  Status dup = db_->Exec("INSERT INTO kv (k) VALUES ('a')");
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
  EXPECT_STATUS(StatusCode::kInternal, db_->Prepare("SELEC nonsense"));
  auto bad_bind = db_->Prepare("SELECT ?");
  bad_bind->Bind(5, int64_t{1});
  EXPECT_STATUS(StatusCode::kInternal, bad_bind->Step());
}

// SQLite's text and file paths are private causes: an answer built from the
// message cannot carry them (status.h).
TEST_F(DatabaseTest, SqliteTextAndPathsStayInTheCause) {
  ASSERT_OK(db_->Exec("INSERT INTO kv (k) VALUES ('a')"));
  Status dup = db_->Exec("INSERT INTO kv (k) VALUES ('a')");
  ASSERT_STATUS(StatusCode::kAlreadyExists, dup);
  EXPECT_EQ(dup.message(), "already exists");
  EXPECT_NE(dup.cause().find("UNIQUE constraint failed: kv.k"), std::string::npos) << dup.cause();

  Status syntax = db_->Exec("SELEC nonsense");
  EXPECT_EQ(syntax.message(), "storage error");
  EXPECT_NE(syntax.cause().find("syntax error"), std::string::npos) << syntax.cause();

  // A file that is not a database: neither its path nor SQLite's words.
  ASSERT_OK(WriteFileAtomic(Path("junk.db"), std::string(8192, 'j')));
  auto junk = Database::Open(Path("junk.db"), *key_);
  ASSERT_STATUS(StatusCode::kDataLoss, junk);
  EXPECT_EQ(junk.status().message().find(Path("")), std::string::npos);
  EXPECT_EQ(junk.status().message().find("file is not a database"), std::string::npos);
  EXPECT_NE(junk.status().cause().find(Path("junk.db")), std::string::npos);
  EXPECT_NE(junk.status().ToString().find(junk.status().cause()), std::string::npos);
}

TEST_F(DatabaseTest, TransactionRollsBackUnlessCommitted) {
  {
    auto txn = Transaction::Begin(*db_);
    ASSERT_OK(txn);
    ASSERT_OK(db_->Exec("INSERT INTO kv (k) VALUES ('lost')"));
  }  // no Commit()
  EXPECT_EQ(Rows(), 0);
  {
    auto txn = Transaction::Begin(*db_);
    ASSERT_OK(db_->Exec("INSERT INTO kv (k) VALUES ('kept')"));
    ASSERT_OK(txn->Commit());
    EXPECT_STATUS(StatusCode::kFailedPrecondition, txn->Commit());
  }
  EXPECT_EQ(Rows(), 1);
}

TEST_F(DatabaseTest, ASecondWriterWaitsThenFailsCleanly) {
  auto other = MustOpen(Path("a.db"), *key_, {.busy_timeout_ms = 50});
  auto txn = Transaction::Begin(*db_);
  ASSERT_OK(txn);
  auto second = Transaction::Begin(*other);
  ASSERT_STATUS(StatusCode::kUnavailable, second);
}

constexpr Migration kV1[] = {
    {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
};
constexpr Migration kV2[] = {
    {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
    {2, "notes_tag", "ALTER TABLE notes ADD COLUMN tag TEXT"},
};

TEST_F(DatabaseTest, MigratorAppliesInOrderOnceAndRecordsVersion) {
  ASSERT_OK(Migrate(*db_, kV1));
  EXPECT_EQ(*SchemaVersion(*db_), 1);
  ASSERT_OK(Migrate(*db_, kV1));  // idempotent
  ASSERT_OK(Migrate(*db_, kV2));
  EXPECT_EQ(*SchemaVersion(*db_), 2);
  EXPECT_OK(db_->Exec("INSERT INTO notes (body, tag) VALUES ('b', 't')"));
}

TEST_F(DatabaseTest, MigratorRefusesADatabaseFromANewerVersion) {
  ASSERT_OK(Migrate(*db_, kV2));
  Status s = Migrate(*db_, kV1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("newer silo"), std::string::npos) << s.message();
  EXPECT_EQ(*SchemaVersion(*db_), 2);
}

TEST_F(DatabaseTest, MigratorRefusesAnEditedHistory) {
  ASSERT_OK(Migrate(*db_, kV1));
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
  EXPECT_STATUS(StatusCode::kInternal, Migrate(*db_, kBroken));
  EXPECT_EQ(*SchemaVersion(*db_), 0);
  EXPECT_OK(db_->Exec("CREATE TABLE notes (y)")) << "the first CREATE was rolled back";
}

TEST_F(DatabaseTest, MissingMigrationsApplyAsOneUnit) {
  constexpr Migration kSecondBroken[] = {
      {1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
      {2, "broken", "ALTER TABLE nowhere ADD COLUMN tag TEXT"},
  };
  EXPECT_STATUS(StatusCode::kInternal, Migrate(*db_, kSecondBroken));
  EXPECT_EQ(*SchemaVersion(*db_), 0);
  EXPECT_OK(db_->Exec("CREATE TABLE notes (y)")) << "migration 1 was rolled back with 2";
}

// tests/data/format1.db was written by format version 1 (see
// tests/data/README.md); every later build must read it.
TEST(FormatFixture, Version1DatabaseStaysReadable) {
  std::string dir = SILO_SOURCE_DIR "/tests/data/";
  auto key_hex = testing::Slurp(dir + "format1.key");
  ASSERT_EQ(key_hex.size(), 65u) << "64 hex digits and a newline";
  auto key_bytes = crypto::HexDecode(std::string_view(key_hex).substr(0, 64));
  ASSERT_OK(key_bytes);
  auto key = crypto::SecretKey::FromBytes(*key_bytes);
  ASSERT_OK(key);
  // Work on a copy: opening may rewrite the file.
  char tmpl[] = "/tmp/silo-fixture-XXXXXX";
  std::string tmp = mkdtemp(tmpl);
  fs::copy_file(dir + "format1.db", tmp + "/format1.db");
  {
    auto db = Database::Open(tmp + "/format1.db", *key, {.create = false});
    ASSERT_OK(db) << db.status().ToString();
    EXPECT_EQ(*(*db)->IntegrityCheck(), "ok");
    auto stmt = (*db)->Prepare("SELECT count(*), sum(length(body)), max(body) FROM notes");
    ASSERT_OK(stmt);
    ASSERT_TRUE(*stmt->Step());
    EXPECT_EQ(stmt->ColumnInt(0), 200);
    EXPECT_EQ(stmt->ColumnInt(1), 200 * 64);
    EXPECT_EQ(stmt->ColumnText(2).substr(0, 10), "format one");
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace silo::storage
