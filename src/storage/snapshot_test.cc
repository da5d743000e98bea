#include "storage/snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "storage/page_cipher.h"
#include "storage/test_util.h"

namespace silo::storage {
namespace {

namespace fs = std::filesystem;

crypto::SecretKey Key() { return crypto::SecretKey::FromBytes(crypto::RandomBytes(32)).value(); }

// The whole image of a copy, for checks (the backup streams it instead).
std::string Image(const ImageCopy& copy, size_t piece = 12288) {
  std::string out;
  EXPECT_OK(copy.Stream(piece, [&](std::string_view p) {
    EXPECT_LE(p.size(), piece);
    out += p;
    return Status::Ok();
  }));
  return out;
}

int64_t Scalar(Database& db, const std::string& sql) {
  auto stmt = db.Prepare(sql);
  EXPECT_OK(stmt);
  auto row = stmt->Step();
  EXPECT_TRUE(row.ok() && *row);
  return stmt->ColumnInt(0);
}

class SnapshotTest : public testing::TempDirTest {};

TEST_F(SnapshotTest, ImageRoundTripsUnderANewKeyAndNoPlaintextReachesDisk) {
  auto key = Key();
  auto db = MustOpen(Path("live.db"), key);
  ASSERT_OK(
      db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000) "
               "INSERT INTO t (body) SELECT 'marker-plaintext-' || i FROM n;"));
  auto reader = MustOpen(Path("live.db"), key);
  int64_t seen = 0;
  auto snap = TakeImageCopy(
      *reader,
      [&](Database& d) {
        seen = Scalar(d, "SELECT count(*) FROM t");
        return Status::Ok();
      },
      Path("copy.db"));
  ASSERT_OK(snap) << snap.status().ToString();
  EXPECT_EQ(seen, 3000);
  EXPECT_FALSE(reader->InTransaction());
  // The copy on disk is encrypted; its stream is the plaintext pages.
  EXPECT_EQ(testing::FilesContaining(dir_, "marker-plaintext"), "");
  std::string image = Image(*snap);
  EXPECT_EQ(static_cast<int64_t>(image.size()), snap->bytes());
  EXPECT_EQ(image.size() % kPageSize, 0u);
  EXPECT_NE(image.find("marker-plaintext-2999"), std::string::npos);

  auto other = Key();
  ASSERT_OK(WriteImage(image, Path("restored.db"), other));
  EXPECT_EQ(testing::FilesContaining(dir_, "marker-plaintext"), "");
  EXPECT_FALSE(fs::exists(Path("restored.db-wal")));
  { ImageCopy released = std::move(*snap); }
  EXPECT_FALSE(fs::exists(Path("copy.db"))) << "the copy outlived its ImageCopy";

  auto restored = MustOpen(Path("restored.db"), other);
  EXPECT_EQ(Scalar(*restored, "SELECT count(*) FROM t"), 3000);
  EXPECT_EQ(*restored->IntegrityCheck(), "ok");
  // Only the new key opens it.
  restored.reset();
  EXPECT_EQ(Database::Open(Path("restored.db"), key, {.create = false}).status().code(),
            StatusCode::kDataLoss);
  // The restored database takes writes as a WAL database again.
  restored = MustOpen(Path("restored.db"), other);
  EXPECT_OK(restored->Exec("INSERT INTO t (body) VALUES ('after')"));
}

TEST_F(SnapshotTest, SnapshotIsOneInstantWhileWritesGoOn) {
  auto key = Key();
  auto writer = MustOpen(Path("live.db"), key);
  ASSERT_OK(
      writer->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"
                   "CREATE TABLE total (n INTEGER); INSERT INTO total VALUES (0);"));
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  // Each transaction adds a row and counts it: in any consistent state the
  // counter equals the number of rows.
  std::thread load([&] {
    while (!stop) {
      Status s = writer->Exec(
          "BEGIN IMMEDIATE; INSERT INTO t (body) VALUES (hex(randomblob(200)));"
          "UPDATE total SET n = n + 1; COMMIT;");
      if (s.ok()) ++writes;
    }
  });
  while (writes < 200) std::this_thread::yield();
  auto reader = MustOpen(Path("live.db"), key);
  for (int round = 0; round < 5; ++round) {
    int64_t counted = 0;
    auto snap = TakeImageCopy(
        *reader,
        [&](Database& d) {
          counted = Scalar(d, "SELECT n FROM total");
          return Status::Ok();
        },
        Path("scratch" + std::to_string(round) + ".db"));
    ASSERT_OK(snap) << snap.status().ToString();
    std::string image = Image(*snap, 1 << 20);
    std::string path = Path("copy" + std::to_string(round) + ".db");
    ASSERT_OK(WriteImage(image, path, key));
    auto copy = MustOpen(path, key);
    EXPECT_EQ(Scalar(*copy, "SELECT count(*) FROM t"), Scalar(*copy, "SELECT n FROM total"));
    EXPECT_EQ(Scalar(*copy, "SELECT n FROM total"), counted);
  }
  int before = writes;
  while (writes < before + 50) std::this_thread::yield();  // writers were never stopped
  stop = true;
  load.join();
}

TEST_F(SnapshotTest, WriteImageRefusesWhatIsNotAnImageAndLeavesNothing) {
  auto key = Key();
  std::string junk(8192, 'x');
  EXPECT_EQ(WriteImage(junk, Path("a.db"), key).code(), StatusCode::kDataLoss);
  std::string short_image = "SQLite format 3";
  EXPECT_EQ(WriteImage(short_image, Path("a.db"), key).code(), StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(Path("a.db")));
  { auto db = MustOpen(Path("b.db"), key); }
  std::string image(4096, '\0');
  EXPECT_EQ(WriteImage(image, Path("b.db"), key).code(), StatusCode::kAlreadyExists);

  // A real image cut short, or with a page too many, is refused whole.
  auto live = MustOpen(Path("live.db"), key);
  ASSERT_OK(live->Exec("CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(20000));"));
  auto snap = TakeImageCopy(
      *live, [](Database&) { return Status::Ok(); }, Path("copy.db"));
  ASSERT_OK(snap);
  std::string whole = Image(*snap);
  ASSERT_GT(whole.size(), 2 * kPageSize);
  EXPECT_EQ(WriteImage(whole.substr(0, whole.size() - kPageSize), Path("c.db"), key).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(WriteImage(whole + whole.substr(kPageSize, kPageSize), Path("c.db"), key).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(WriteImage(whole.substr(0, whole.size() - 100), Path("c.db"), key).code(),
            StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(Path("c.db")));
  ASSERT_OK(WriteImage(whole, Path("c.db"), key));
  EXPECT_EQ(*MustOpen(Path("c.db"), key)->IntegrityCheck(), "ok");
}

TEST_F(SnapshotTest, ALiveCopyFollowsTheWritesMadeBetweenItsSteps) {
  auto key = Key();
  auto next = Key();
  auto writer = MustOpen(Path("live.db"), key);
  ASSERT_OK(writer->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"));
  auto insert = [&](int n) {
    ASSERT_OK(writer->Exec("BEGIN IMMEDIATE"));
    for (int i = 0; i < n; ++i) {
      ASSERT_OK(writer->Exec("INSERT INTO t (body) VALUES (hex(randomblob(300)))"));
    }
    ASSERT_OK(writer->Exec("COMMIT"));
  };
  insert(3000);  // about 2 MB: hundreds of pages
  auto copy = LiveCopy::Start(*writer, Path("copy.db"), next);
  ASSERT_OK(copy);
  EXPECT_STATUS(StatusCode::kAlreadyExists, LiveCopy::Start(*writer, Path("copy.db"), next));
  // Steps of 16 pages; between them the writer rewrites pages already copied
  // (updates, deletes from the start of the table) and adds new ones.
  int64_t left = 0;
  int round = 0;
  do {
    auto r = (*copy)->Step(16, 8);
    ASSERT_OK(r);
    left = *r;
    ASSERT_OK(writer->Exec("UPDATE t SET body = 'changed " + std::to_string(round) +
                           "' WHERE id % 97 = " + std::to_string(round % 97)));
    ASSERT_OK(writer->Exec("DELETE FROM t WHERE id = " + std::to_string(round + 1)));
    if (round % 10 == 0) insert(20);
    ++round;
  } while (left > 8);
  EXPECT_GT(round, 20);  // it took many steps, with writes between them
  insert(5);
  ASSERT_OK((*copy)->Finish());
  copy->reset();
  auto dump = [](Database& db) {
    std::string out;
    auto st = db.Prepare("SELECT id, body FROM t ORDER BY id");
    EXPECT_OK(st);
    while (st->Step().value()) out += std::to_string(st->ColumnInt(0)) + st->ColumnText(1) + ";";
    return out;
  };
  auto copied = MustOpen(Path("copy.db"), next);
  EXPECT_EQ(dump(*copied), dump(*writer));
  EXPECT_EQ(copied->IntegrityCheck().value(), "ok");
  copied.reset();
  // Under the new key only.
  EXPECT_STATUS(StatusCode::kDataLoss, Database::Open(Path("copy.db"), key, {.create = false}));
  // An unfinished copy leaves nothing behind.
  {
    auto dropped = LiveCopy::Start(*writer, Path("dropped.db"), next);
    ASSERT_OK(dropped);
    ASSERT_OK((*dropped)->Step(16, 8));
  }
  EXPECT_FALSE(fs::exists(Path("dropped.db")));
}

}  // namespace
}  // namespace silo::storage
