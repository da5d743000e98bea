// Attacks on the encrypted files, and what the cipher VFS must refuse.
#include "storage/cipher_vfs.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>

#include "base/status_matchers.h"
#include "storage/database.h"
#include "storage/page_cipher.h"
#include "storage/test_util.h"

namespace silo::storage {
namespace {

namespace fs = std::filesystem;

using testing::FilesContaining;
using testing::Slurp;
using testing::Spit;

constexpr char kMarker[] = "MARKER-7f3a-plaintext-must-not-reach-disk";

class CipherVfsTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
  }

  // A table of 300 rows with the marker in the text and in an index, so
  // it spans many pages (leaf, interior and index pages).
  void Fill(Database& db) {
    ASSERT_OK(
        db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"
                "CREATE INDEX t_body ON t(body);"));
    auto txn = Transaction::Begin(db);
    ASSERT_OK(txn);
    auto insert = db.Prepare("INSERT INTO t (body) VALUES (?)");
    ASSERT_OK(insert);
    for (int i = 0; i < 300; ++i) {
      insert->Bind(1, std::string(kMarker) + " row " + std::to_string(i) + std::string(200, 'x'));
      ASSERT_OK(insert->Run());
      insert->Reset();
    }
    ASSERT_OK(txn->Commit());
  }

  int64_t Count(Database& db) {
    auto stmt = db.Prepare("SELECT count(*) FROM t");
    EXPECT_OK(stmt);
    auto row = stmt->Step();
    EXPECT_OK(row) << row.status().ToString();
    return row.ok() && *row ? stmt->ColumnInt(0) : -1;
  }

  // Reads every table and index page; the Status of the first failure.
  Status ReadAll(Database& db) {
    for (const char* sql : {"SELECT sum(length(body)) FROM t NOT INDEXED",
                            "SELECT count(*) FROM t INDEXED BY t_body WHERE body > ''"}) {
      auto stmt = db.Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      if (auto row = stmt->Step(); !row.ok()) return row.status();
    }
    return Status::Ok();
  }

  std::unique_ptr<crypto::SecretKey> key_;
};

TEST_F(CipherVfsTest, RoundTripsAcrossReopen) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  auto db = MustOpen(path, *key_);
  EXPECT_EQ(Count(*db), 300);
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
}

TEST_F(CipherVfsTest, MarkersNeverReachAnyFile) {
  std::string path = Path("a.db");
  auto db = MustOpen(path, *key_);
  ASSERT_OK(db->Exec("PRAGMA wal_autocheckpoint=0"));
  Fill(*db);
  ASSERT_TRUE(fs::exists(path + "-wal"));
  ASSERT_GT(fs::file_size(path + "-wal"), 100000u);  // the rows are in the WAL now
  EXPECT_EQ(FilesContaining(dir_, kMarker), "") << "after commit";
  EXPECT_EQ(FilesContaining(dir_, "row 17"), "");
  ASSERT_OK(db->Checkpoint());
  EXPECT_EQ(FilesContaining(dir_, kMarker), "") << "after checkpoint";
  ASSERT_OK(db->Exec("DELETE FROM t WHERE id % 2 = 0; VACUUM;"));
  db.reset();
  EXPECT_EQ(FilesContaining(dir_, kMarker), "") << "after vacuum and close";
  // The control: the same rows through SQLite's plain VFS are visible.
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open(Path("plain.db").c_str(), &plain), SQLITE_OK);
  std::string sql = std::string("CREATE TABLE t(b); INSERT INTO t VALUES ('") + kMarker + "');";
  ASSERT_EQ(sqlite3_exec(plain, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(plain);
  EXPECT_NE(FilesContaining(dir_, kMarker), "");
}

TEST_F(CipherVfsTest, PageOneHidesTheSqliteHeader) {
  std::string path = Path("a.db");
  MustOpen(path, *key_).reset();
  std::string bytes = Slurp(path);
  ASSERT_GE(bytes.size(), kPageSize);
  EXPECT_EQ(bytes.substr(0, 6), "SILODB");
  EXPECT_EQ(bytes.find("SQLite format 3"), std::string::npos);
  EXPECT_EQ(bytes.size() % kPageSize, 0u);
}

TEST_F(CipherVfsTest, WrongKeyIsACleanErrorAtOpen) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  auto other = crypto::SecretKey::Random();
  auto db = Database::Open(path, other);
  ASSERT_STATUS(StatusCode::kDataLoss, db);
  EXPECT_EQ(db.status().message(), "wrong key or not a silo database");
  // Nothing was written by the failed open.
  EXPECT_EQ(Count(*MustOpen(path, *key_)), 300);
}

TEST_F(CipherVfsTest, PlainSqliteFileIsRefused) {
  std::string path = Path("plain.db");
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &plain), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(plain, "CREATE TABLE t(b)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(plain);
  auto db = Database::Open(path, *key_);
  ASSERT_STATUS(StatusCode::kDataLoss, db);
  EXPECT_EQ(db.status().message(), "wrong key or not a silo database");
}

TEST_F(CipherVfsTest, SqliteCommandLineCannotOpenIt) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  std::string cmd = "sqlite3 '" + path + "' 'SELECT count(*) FROM t' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[512];
  std::string out;
  while (fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  int status = pclose(pipe);
  ASSERT_NE(status, -1);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(WEXITSTATUS(status), 127) << "sqlite3 is not installed: " << out;
  EXPECT_NE(out.find("not a database"), std::string::npos) << out;
}

TEST_F(CipherVfsTest, NoRegisteredKeyMeansNoOpen) {
  EnsureCipherVfs();
  sqlite3* db = nullptr;
  std::string uri = "file:" + Path("a.db") + "?vfs=silo";
  int rc = sqlite3_open_v2(uri.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
  EXPECT_EQ(rc & 0xff, SQLITE_CANTOPEN);
  sqlite3_close(db);
  EXPECT_FALSE(fs::exists(Path("a.db")) && fs::file_size(Path("a.db")) > 0);
}

// Flips one byte inside page `page` (1-based) of a closed database.
void FlipByte(const std::string& path, int page, int offset_in_page) {
  std::string bytes = Slurp(path);
  size_t at = (page - 1) * kPageSize + offset_in_page;
  ASSERT_LT(at, bytes.size());
  bytes[at] ^= 0x01;
  Spit(path, bytes);
}

TEST_F(CipherVfsTest, FlippedBytesAreDetectedAndNamedByQuickCheck) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  size_t pages = fs::file_size(path) / kPageSize;
  ASSERT_GT(pages, 10u);
  std::string pristine = Slurp(path);
  // Content, nonce, tag and the version byte of a middle page: each detected.
  for (int offset : {100, 3000, 4050, 4080, 4088, 4095}) {
    SCOPED_TRACE(offset);
    Spit(path, pristine);
    FlipByte(path, 5, offset);
    auto db = MustOpen(path, *key_);
    ASSERT_NE(db, nullptr);
    auto check = db->QuickCheck();
    ASSERT_OK(check) << check.status().ToString();
    EXPECT_NE(check->find("Page 5"), std::string::npos) << *check;
    EXPECT_NE(check->find("7178"), std::string::npos) << *check;  // SQLITE_IOERR_AUTH
    Status read = ReadAll(*db);
    EXPECT_EQ(read.code(), StatusCode::kDataLoss) << read.ToString();
  }
  // Page 1's encrypted part: the database cannot be opened at all.
  Spit(path, pristine);
  FlipByte(path, 1, 200);
  EXPECT_STATUS(StatusCode::kDataLoss, Database::Open(path, *key_));
  Spit(path, pristine);
  EXPECT_EQ(Count(*MustOpen(path, *key_)), 300);
}

TEST_F(CipherVfsTest, SwappedPagesAreDetected) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  std::string bytes = Slurp(path);
  std::string p4 = bytes.substr(3 * kPageSize, kPageSize);
  std::string p6 = bytes.substr(5 * kPageSize, kPageSize);
  bytes.replace(3 * kPageSize, kPageSize, p6);
  bytes.replace(5 * kPageSize, kPageSize, p4);
  Spit(path, bytes);
  auto db = MustOpen(path, *key_);
  auto check = db->QuickCheck();
  ASSERT_OK(check) << check.status().ToString();
  EXPECT_NE(check->find("Page 4"), std::string::npos) << *check;
  EXPECT_NE(check->find("Page 6"), std::string::npos) << *check;
}

TEST_F(CipherVfsTest, PageFromAnotherTenantIsDetectedAndTheOtherKeepsWorking) {
  auto key_b = crypto::SecretKey::Random();
  std::string a = Path("a.db"), b = Path("b.db");
  {
    auto db_a = MustOpen(a, *key_);
    Fill(*db_a);
    auto db_b = MustOpen(b, key_b);
    Fill(*db_b);
  }
  std::string bytes_a = Slurp(a);
  std::string bytes_b = Slurp(b);
  bytes_a.replace(4 * kPageSize, kPageSize, bytes_b.substr(4 * kPageSize, kPageSize));
  Spit(a, bytes_a);
  auto db_a = MustOpen(a, *key_);
  auto check = db_a->QuickCheck();
  ASSERT_OK(check);
  EXPECT_NE(check->find("Page 5"), std::string::npos) << *check;
  auto db_b = MustOpen(b, key_b);
  EXPECT_EQ(*db_b->QuickCheck(), "ok");
  EXPECT_EQ(Count(*db_b), 300);
}

TEST_F(CipherVfsTest, PragmasThatWouldWeakenTheFormatAreRefused) {
  auto db = MustOpen(Path("a.db"), *key_);
  for (const char* pragma :
       {"PRAGMA page_size=8192", "PRAGMA journal_mode=DELETE", "PRAGMA journal_mode=OFF",
        "PRAGMA temp_store=FILE", "PRAGMA temp_store=0", "PRAGMA mmap_size=1048576"}) {
    Status s = db->Exec(pragma);
    EXPECT_STATUS(StatusCode::kInternal, s) << pragma;
    // The VFS's reason is the private cause; the public message names none.
    EXPECT_NE(s.cause().find("silo:"), std::string::npos) << pragma << ": " << s.ToString();
    EXPECT_EQ(s.message().find("silo:"), std::string::npos) << pragma << ": " << s.message();
  }
  EXPECT_OK(db->Exec("PRAGMA journal_mode=WAL; PRAGMA temp_store=MEMORY; PRAGMA mmap_size=0"));
  Fill(*db);
  EXPECT_EQ(Count(*db), 300);
}

// A raw connection through the VFS that did not set temp_store=MEMORY: the
// VFS itself refuses the plaintext temp file SQLite asks for.
TEST_F(CipherVfsTest, TemporaryFilesAreRefusedByTheVfs) {
  EnsureCipherVfs();
  auto key = RegisterKey(*key_);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(CipherUri(Path("a.db"), *key).c_str(), &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr),
            SQLITE_OK);
  int reserve = kReserveBytes;
  sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  // A temp table bigger than the page cache must spill to a temp file.
  int rc = sqlite3_exec(db,
                        "CREATE TEMP TABLE leak(x); PRAGMA temp.cache_size=5;"
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)"
                        " INSERT INTO leak SELECT printf('secret %d %.500c', i, 'x') FROM n",
                        nullptr, nullptr, nullptr);
  EXPECT_EQ(rc, SQLITE_CANTOPEN) << sqlite3_errmsg(db);
  sqlite3_close(db);
}

TEST_F(CipherVfsTest, VacuumIntoWritesAnEncryptedCopyUnderTheNewKey) {
  auto key_b = crypto::SecretKey::Random();
  auto db = MustOpen(Path("a.db"), *key_);
  Fill(*db);
  ASSERT_OK(db->VacuumInto(Path("copy.db"), key_b));
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
  EXPECT_EQ(Slurp(Path("copy.db")).substr(0, 6), "SILODB");
  EXPECT_STATUS(StatusCode::kDataLoss, Database::Open(Path("copy.db"), *key_));
  auto copy = MustOpen(Path("copy.db"), key_b);  // switches the copy to WAL (journals page 1)
  EXPECT_EQ(Count(*copy), 300);
  EXPECT_EQ(*copy->IntegrityCheck(), "ok");
  copy.reset();
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
  EXPECT_STATUS(StatusCode::kAlreadyExists, db->VacuumInto(Path("copy.db"), key_b))
      << "never overwrites";
}

TEST_F(CipherVfsTest, BackupApiKeepsTheTargetEncrypted) {
  auto key_b = crypto::SecretKey::Random();
  auto db = MustOpen(Path("a.db"), *key_);
  Fill(*db);
  auto target = MustOpen(Path("b.db"), key_b);
  ASSERT_OK(db->BackupTo(*target));
  EXPECT_EQ(Count(*target), 300);
  target.reset();
  db.reset();
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
  EXPECT_EQ(Count(*MustOpen(Path("b.db"), key_b)), 300);
  EXPECT_STATUS(StatusCode::kDataLoss, Database::Open(Path("b.db"), *key_));
}

TEST_F(CipherVfsTest, RekeyReplacesTheFileAndRetiresTheOldKey) {
  std::string path = Path("a.db");
  {
    auto db = MustOpen(path, *key_);
    Fill(*db);
  }
  auto new_key = crypto::SecretKey::Random();
  ASSERT_OK(Rekey(path, *key_, new_key));
  EXPECT_FALSE(fs::exists(path + ".rekey"));
  auto old = Database::Open(path, *key_);
  ASSERT_STATUS(StatusCode::kDataLoss, old);
  EXPECT_EQ(old.status().message(), "wrong key or not a silo database");
  EXPECT_EQ(Count(*MustOpen(path, new_key)), 300);
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
  // Rekey with a wrong old key changes nothing.
  auto stranger = crypto::SecretKey::Random();
  EXPECT_STATUS(StatusCode::kDataLoss, Rekey(path, stranger, *key_));
  EXPECT_EQ(Count(*MustOpen(path, new_key)), 300);
}

TEST_F(CipherVfsTest, TwoConnectionsReadWhileOneWritesAndCheckpoints) {
  std::string path = Path("a.db");
  auto writer = MustOpen(path, *key_);
  Fill(*writer);
  auto reader = MustOpen(path, *key_);
  for (int round = 0; round < 20; ++round) {
    ASSERT_OK(writer->Exec("INSERT INTO t (body) VALUES ('more')"));
    EXPECT_EQ(Count(*reader), 301 + round);
    if (round % 5 == 4) {
      ASSERT_OK(writer->Checkpoint());
    }
  }
  EXPECT_EQ(*reader->QuickCheck(), "ok");
}

TEST_F(CipherVfsTest, TornOrTamperedWalTailLosesOnlyTheTail) {
  std::string path = Path("a.db");
  std::string copy = Path("copy.db");
  {
    auto db = MustOpen(path, *key_);
    ASSERT_OK(db->Exec("PRAGMA wal_autocheckpoint=0"));
    ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
    for (int i = 0; i < 5; ++i) ASSERT_OK(db->Exec("INSERT INTO t (body) VALUES ('x')"));
    // Snapshot the files as a crash would leave them (the WAL holds all).
    fs::copy_file(path, copy);
    fs::copy_file(path + "-wal", copy + "-wal");
  }
  // Corrupt the last frame's page: that commit is lost, the others stay.
  std::string wal = Slurp(copy + "-wal");
  wal[wal.size() - 100] ^= 0x40;
  Spit(copy + "-wal", wal);
  auto db = MustOpen(copy, *key_);
  EXPECT_EQ(Count(*db), 4);
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
}

// SQLite's frame checksums are computed over plaintext; on disk every frame
// header carries a random mask nonce instead of the salts, and a masked
// checksum. The same page written twice gives different header bytes.
TEST_F(CipherVfsTest, WalFrameHeadersCarryNoSaltsAndMaskedChecksums) {
  std::string path = Path("a.db");
  auto db = MustOpen(path, *key_);
  ASSERT_OK(db->Exec("PRAGMA wal_autocheckpoint=0"));
  ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
  for (int i = 0; i < 2; ++i) ASSERT_OK(db->Exec("UPDATE t SET body = 'same' WHERE id = 1"));
  ASSERT_OK(db->Exec("INSERT INTO t VALUES (1, 'same')"));
  ASSERT_OK(db->Exec("UPDATE t SET body = 'same' WHERE id = 1"));
  std::string wal = Slurp(path + "-wal");
  const size_t frame_size = kPageSize + 24;
  ASSERT_GE(wal.size(), 32 + 3 * frame_size);
  std::string salts = wal.substr(16, 8);
  std::vector<std::string> leaf_headers;
  for (size_t off = 32; off + frame_size <= wal.size(); off += frame_size) {
    EXPECT_NE(wal.substr(off + 8, 8), salts) << "frame at " << off;
    if (wal.substr(off, 4) == std::string("\0\0\0\x02", 4))
      leaf_headers.push_back(wal.substr(off + 8, 16));
  }
  ASSERT_GE(leaf_headers.size(), 2u);
  EXPECT_NE(leaf_headers[0], leaf_headers[1]);
  db.reset();
  EXPECT_EQ(Slurp(path).find("same"), std::string::npos);
}

}  // namespace
}  // namespace silo::storage
