#include "files/catalog.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "storage/test_util.h"

namespace silo::files {
namespace {

constexpr int64_t kT0 = 1'780'000'000'000'000;

TEST(CatalogTest, TypesMatchExactlyOrByTopLevelWildcard) {
  EXPECT_TRUE(TypeAllowed({}, "text/html"));
  EXPECT_TRUE(TypeAllowed({"image/*"}, "image/png"));
  EXPECT_TRUE(TypeAllowed({"application/pdf", "image/png"}, "image/png"));
  EXPECT_FALSE(TypeAllowed({"image/*"}, "imagex/png"));
  EXPECT_FALSE(TypeAllowed({"image/*"}, "image"));
  EXPECT_FALSE(TypeAllowed({"image/png"}, "image/pngx"));
  EXPECT_FALSE(TypeAllowed({"application/pdf"}, "image/png"));
}

TEST(CatalogTest, FileNamesLoseTheirPathsAndControlCharacters) {
  EXPECT_EQ(CleanFileName("report.pdf"), "report.pdf");
  EXPECT_EQ(CleanFileName("../../etc/passwd"), "passwd");
  EXPECT_EQ(CleanFileName("C:\\Users\\x\\a.txt"), "a.txt");
  EXPECT_EQ(CleanFileName("a\r\nSet-Cookie: x\".txt"), "aSet-Cookie: x.txt");
  EXPECT_EQ(CleanFileName(""), "file");
  EXPECT_EQ(CleanFileName(".."), "file");
  EXPECT_EQ(CleanFileName("dir/"), "file");
  EXPECT_EQ(CleanFileName("smörgåsbord.png"), "smörgåsbord.png");
  std::string long_name(254, 'a');
  long_name += "\xc3\xa9\xc3\xa9";  // a two-byte character across the 255-byte cut
  std::string cut = CleanFileName(long_name);
  EXPECT_EQ(cut.size(), 254u);
}

class ReconcileTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    db_ = MustOpen(Path("t.db"), crypto::SecretKey::FromBytes(crypto::RandomBytes(32)).value());
    ASSERT_NE(db_, nullptr);
    // Versions 1-6 belong to records and auth; the catalog needs none of them.
    std::vector<storage::Migration> all;
    for (int v = 1; v <= 6; ++v) all.push_back({v, "other module", "SELECT 1"});
    for (const auto& m : CatalogMigrations()) all.push_back(m);
    ASSERT_OK(storage::Migrate(*db_, all));
  }

  std::string Pending(std::string owner = "user:u1", std::string type = "image/png",
                      uint64_t size = 100, std::string field = "scan") {
    FileRow r;
    r.id = crypto::HexEncode(crypto::RandomBytes(16));
    r.owner = std::move(owner);
    r.name = "a.png";
    r.declared_type = "image/png";
    r.type = std::move(type);
    r.size = size;
    r.sha256 = std::string(64, '0');
    r.collection = "docs";
    r.field = std::move(field);
    r.created_at_us = kT0;
    r.expires_at_us = kT0 + 1000;
    EXPECT_OK(InsertFile(*db_, r));
    return r.id;
  }

  std::vector<FieldError> Run(const std::string& record, std::vector<std::string> before,
                              std::vector<std::string> after, int64_t now = kT0,
                              FieldLimits limits = {}) {
    std::vector<FieldError> errors;
    EXPECT_OK(
        Reconcile(*db_, {"docs", "scan", record}, "user:u1", limits, before, after, now, &errors));
    return errors;
  }

  FileRow Row(const std::string& id) { return LoadFile(*db_, id).value(); }

  // The first error of a refused attachment ("attached" when there was none).
  std::string Refusal(const std::string& record, const std::string& id, int64_t now = kT0,
                      FieldLimits limits = {}) {
    auto errors = Run(record, {}, {id}, now, limits);
    return errors.empty() ? "attached" : errors[0].message;
  }

  std::unique_ptr<storage::Database> db_;
};

TEST_F(ReconcileTest, APendingUploadAttachesToOneRecordForGood) {
  std::string f = Pending();
  EXPECT_TRUE(Run("r1", {}, {f}).empty());
  EXPECT_EQ(Row(f).state, FileState::kAttached);
  EXPECT_EQ(Row(f).record_id, "r1");
  // Another record cannot take it, even from its uploader.
  EXPECT_EQ(Refusal("r2", f), "no such file " + f);
  // Dropped: a tombstone; brought back by its own record (a revert).
  EXPECT_TRUE(Run("r1", {f}, {}, kT0 + 5).empty());
  EXPECT_EQ(Row(f).state, FileState::kDeleted);
  EXPECT_EQ(Row(f).deleted_at_us, kT0 + 5);
  EXPECT_TRUE(Run("r1", {}, {f}, kT0 + 6).empty());
  EXPECT_EQ(Row(f).state, FileState::kAttached);
  EXPECT_EQ(Row(f).deleted_at_us, 0);
  EXPECT_EQ(Refusal("r2", f), "no such file " + f);  // and still no one else's
}

TEST_F(ReconcileTest, OnlyTheUploadersOwnUnexpiredUploadForThisFieldWithinLimits) {
  std::string theirs = Pending("user:u2");
  std::string other_field = Pending("user:u1", "image/png", 100, "avatar");
  std::string expired = Pending();
  std::string pdf = Pending("user:u1", "application/pdf");
  std::string big = Pending("user:u1", "image/png", 5000);
  const std::string unknown(32, 'a');
  EXPECT_EQ(Refusal("r1", theirs), "no such file " + theirs);
  EXPECT_EQ(Refusal("r1", other_field), "no such file " + other_field);
  EXPECT_EQ(Refusal("r1", unknown), "no such file " + unknown);
  EXPECT_NE(Refusal("r1", expired, kT0 + 1000).find("expired"), std::string::npos);
  FieldLimits images{uint64_t{1} << 20, {"image/*"}, 1};
  EXPECT_NE(Refusal("r1", pdf, kT0, images).find("application/pdf"), std::string::npos);
  FieldLimits small{4999, {}, 1};
  EXPECT_NE(Refusal("r1", big, kT0, small).find("max_bytes"), std::string::npos);
  for (const auto& id : {theirs, other_field, expired, pdf, big}) {
    EXPECT_EQ(Row(id).state, FileState::kPending) << id;
  }
}

TEST_F(ReconcileTest, UsageCountsLiveAndRetainedBytesApart) {
  std::string a = Pending("user:u1", "image/png", 100);
  std::string b = Pending("user:u1", "image/png", 30);
  Pending("user:u1", "image/png", 7);
  EXPECT_TRUE(Run("r1", {}, {a, b}).empty());
  EXPECT_TRUE(Run("r1", {a, b}, {a}).empty());
  auto u = LoadUsage(*db_);
  ASSERT_OK(u);
  EXPECT_EQ(u->live_bytes, 107u);
  EXPECT_EQ(u->retained_bytes, 30u);
  EXPECT_EQ(u->files, 3);
}

}  // namespace
}  // namespace silo::files
