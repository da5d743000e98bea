// FileStore over a real encrypted tenant database and real blob files: what
// an upload keeps, what each refusal leaves behind (nothing), the quota
// under parallel uploads, and that no plaintext byte reaches the disk.
#include "files/file_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "base/data_layout.h"
#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "events/event_log.h"
#include "storage/test_util.h"

namespace silo::files {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kT0 = 1'780'000'000'000'000;

// Serves `bytes` to an upload in the pieces asked for; fails with `fail`
// after `fail_after` bytes when set.
class Body {
 public:
  explicit Body(std::string bytes, uint64_t fail_after = UINT64_MAX, Status fail = Status::Ok())
      : bytes_(std::move(bytes)), fail_after_(fail_after), fail_(std::move(fail)) {}
  ReadFn Fn() {
    return [this](std::span<char> out) -> Result<size_t> {
      if (at_ >= fail_after_) return fail_;
      size_t n = std::min<size_t>(out.size(), bytes_.size() - at_);
      n = std::min<uint64_t>(n, fail_after_ - at_);
      std::copy_n(bytes_.data() + at_, n, out.data());
      at_ += n;
      return n;
    };
  }

 private:
  std::string bytes_;
  uint64_t fail_after_;
  Status fail_;
  size_t at_ = 0;
};

std::string Png(size_t size, char fill) {
  std::string s("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  s.resize(size, fill);
  return s;
}

class FileStoreTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    // The event log (records' version 1); 2-6 are records' and auth's.
    migrations_.push_back({1, "events", events::kEventLogSchema});
    for (int v = 2; v <= 6; ++v) migrations_.push_back({v, "other module", "SELECT 1"});
    for (const auto& m : CatalogMigrations()) migrations_.push_back(m);
    db_key_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    files_key_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    dbs_ = std::make_shared<storage::TenantDatabases>(
        [this](const std::string&) { return crypto::SecretKey::FromBytes(db_key_); },
        [this](const std::string& id) { return Path(id + ".db"); }, migrations_,
        storage::TenantDatabasesOptions{});
    Make(FileOptions{});
  }

  void Make(FileOptions o) {
    stores_ = std::make_unique<FileStores>(
        dbs_, [this](const std::string&) { return crypto::SecretKey::FromBytes(files_key_); }, dir_,
        o);
    auto s = stores_->Open("t1");
    ASSERT_OK(s);
    store_ = std::move(*s);
  }

  events::Origin Ctx() { return {{"user", "u1"}, "req", "127.0.0.1", kT0}; }

  UploadSpec Spec(uint64_t size, std::vector<std::string> types = {}) {
    return {
        "docs",      "scan", {uint64_t{64} << 20, std::move(types), 1}, "../../etc/passwd\n.png",
        "image/png", size};
  }

  // Every regular file under the tenant's files directory.
  std::vector<std::string> FilesOnDisk() {
    std::vector<std::string> out;
    const std::string root = layout::TenantFilesDir(dir_, "t1");
    if (!fs::exists(root)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (e.is_regular_file()) out.push_back(e.path().string());
    }
    return out;
  }

  std::vector<storage::Migration> migrations_;
  std::string db_key_, files_key_;
  std::shared_ptr<storage::TenantDatabases> dbs_;
  std::unique_ptr<FileStores> stores_;
  std::unique_ptr<FileStore> store_;
};

TEST_F(FileStoreTest, AnUploadIsSealedRecordedAndReadsBackWhole) {
  const std::string canary = "CANARY-" + crypto::RandomToken(12);
  std::string bytes = Png(200'000, 'x');
  bytes.replace(100'000, canary.size(), canary);
  Body body(bytes);
  auto row = store_->Upload(Ctx(), Spec(bytes.size(), {"image/*"}), body.Fn());
  ASSERT_OK(row);
  EXPECT_EQ(row->type, "image/png");
  EXPECT_EQ(row->size, bytes.size());
  EXPECT_EQ(row->sha256, crypto::Sha256Hex(bytes));
  EXPECT_EQ(row->name, "passwd.png");  // the last segment, no control character
  EXPECT_EQ(row->state, FileState::kPending);
  EXPECT_EQ(row->owner, "user:u1");
  EXPECT_EQ(row->expires_at_us, kT0 + 24LL * 3600 * 1'000'000);
  // One blob at its place, named by the id; nothing left in uploads.
  auto on_disk = FilesOnDisk();
  ASSERT_EQ(on_disk.size(), 1u);
  EXPECT_EQ(on_disk[0], layout::TenantBlobFile(dir_, "t1", row->id));
  EXPECT_EQ(storage::testing::FilesContaining(dir_, canary), "");
  EXPECT_EQ(storage::testing::FilesContaining(dir_, "passwd"), "");  // the name is in the sealed db
  auto got = store_->Get(row->id);
  ASSERT_OK(got);
  EXPECT_EQ(got->sha256, row->sha256);
  auto reader = store_->OpenBlob(*got);
  ASSERT_OK(reader);
  auto all = (*reader)->Read(0, bytes.size());
  ASSERT_OK(all);
  EXPECT_EQ(*all, bytes);
  // The upload is an event, with the file's facts and no content.
  EXPECT_OK(dbs_->Acquire("t1").value()->Read([&](storage::Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto evs, events::ReadAfter(db, 0, 10));
    EXPECT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, "file.uploaded");
    EXPECT_EQ(evs[0].subject_id, row->id);
    return Status::Ok();
  }));
}

TEST_F(FileStoreTest, RefusalsNameTheirLimitAndLeaveNothingBehind) {
  FileOptions o;
  o.max_file_bytes = 100'000;
  Make(o);
  Body big(Png(100'001, 'a'));
  auto r = store_->Upload(Ctx(), Spec(100'001), big.Fn());
  EXPECT_STATUS(StatusCode::kResourceExhausted, r);
  EXPECT_NE(r.status().message().find("SILO_MAX_FILE_BYTES"), std::string::npos);
  UploadSpec small_field = Spec(5000);
  small_field.limits.max_bytes = 4999;
  Body five(Png(5000, 'a'));
  r = store_->Upload(Ctx(), small_field, five.Fn());
  EXPECT_STATUS(StatusCode::kResourceExhausted, r);
  EXPECT_NE(r.status().message().find("max_bytes"), std::string::npos);
  // Types come from the bytes: HTML sent as image/png, a PNG for a PDF field.
  Body html(std::string("<!DOCTYPE html><html><script>alert(1)</script></html>"));
  r = store_->Upload(Ctx(), Spec(53, {"image/png"}), html.Fn());
  EXPECT_STATUS(StatusCode::kInvalidArgument, r);
  EXPECT_NE(r.status().message().find("text/html"), std::string::npos) << r.status().message();
  Body png(Png(70'000, 'p'));
  r = store_->Upload(Ctx(), Spec(70'000, {"application/pdf"}), png.Fn());
  EXPECT_STATUS(StatusCode::kInvalidArgument, r);
  // SVG with script, the script past the first chunk.
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\">" + std::string(70'000, ' ') +
                    "<script>alert(1)</script></svg>";
  Body svg_body(svg);
  r = store_->Upload(Ctx(), Spec(svg.size()), svg_body.Fn());
  EXPECT_STATUS(StatusCode::kInvalidArgument, r);
  // A client that stalls or leaves mid-way.
  Body stalls(Png(90'000, 's'), 65'536, DeadlineExceeded("the request body stalled"));
  EXPECT_STATUS(StatusCode::kDeadlineExceeded, store_->Upload(Ctx(), Spec(90'000), stalls.Fn()));
  Body leaves(Png(90'000, 's'), 70'000, Unavailable("the request body ended early"));
  EXPECT_STATUS(StatusCode::kUnavailable, store_->Upload(Ctx(), Spec(90'000), leaves.Fn()));
  EXPECT_TRUE(FilesOnDisk().empty());
  auto usage = store_->LoadUsage();
  ASSERT_OK(usage);
  EXPECT_EQ(usage->files, 0);
  EXPECT_EQ(stores_->uploads_in_progress(), 0u);  // every reservation released
}

TEST_F(FileStoreTest, TheQuotaHoldsAgainstParallelUploads) {
  FileOptions o;
  o.tenant_quota_bytes = 1'000'000;
  o.uploads_per_tenant = 8;
  Make(o);
  // Eight uploads of 300,000 bytes start together; each waits inside its
  // body until all eight have asked for their reservation, so every check
  // sees the others' reservations. Three fit the quota.
  constexpr int kUploads = 8;
  std::atomic<int> started{0};
  std::atomic<int> ok{0}, over{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kUploads; ++i) {
    threads.emplace_back([&] {
      auto s = stores_->Open("t1");
      ASSERT_OK(s);
      std::string bytes = Png(300'000, 'q');
      size_t at = 0;
      bool first = true;
      auto read = [&](std::span<char> out) -> Result<size_t> {
        if (first) {  // reserved: wait for the others to reserve or be refused
          first = false;
          ++started;
          while (started.load() + over.load() < kUploads) std::this_thread::yield();
        }
        size_t n = std::min(out.size(), bytes.size() - at);
        std::copy_n(bytes.data() + at, n, out.data());
        at += n;
        return n;
      };
      auto r = (*s)->Upload(Ctx(), Spec(bytes.size()), read);
      if (r.ok()) {
        ++ok;
      } else {
        EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
        EXPECT_NE(r.status().message().find("SILO_TENANT_FILE_QUOTA_BYTES"), std::string::npos);
        ++over;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 3);
  EXPECT_EQ(over.load(), 5);
  auto usage = store_->LoadUsage();
  ASSERT_OK(usage);
  EXPECT_EQ(usage->live_bytes, 900'000u);
  EXPECT_EQ(FilesOnDisk().size(), 3u);
}

TEST_F(FileStoreTest, UploadSlotsAreLimitedPerTenant) {
  FileOptions o;
  o.uploads_per_tenant = 1;
  Make(o);
  auto other = stores_->Open("t1");
  ASSERT_OK(other);
  // The first upload, inside its body, tries a second: refused while it runs.
  std::string bytes = Png(1000, 'z');
  size_t at = 0;
  Status second;
  auto read = [&](std::span<char> out) -> Result<size_t> {
    if (at == 0) {
      Body b(Png(10, 'y'));
      second = (*other)->Upload(Ctx(), Spec(10), b.Fn()).status();
    }
    size_t n = std::min(out.size(), bytes.size() - at);
    std::copy_n(bytes.data() + at, n, out.data());
    at += n;
    return n;
  };
  EXPECT_OK(store_->Upload(Ctx(), Spec(bytes.size()), read));
  EXPECT_EQ(second.code(), StatusCode::kUnavailable) << second.ToString();
  Body again(Png(10, 'y'));
  EXPECT_OK((*other)->Upload(Ctx(), Spec(10), again.Fn()));  // free again afterwards
}

TEST_F(FileStoreTest, LinksOpenTheirFileUntilRevokedOrExpiredAndKeepOnlyAHash) {
  Body body(Png(1000, 'l'));
  auto row = store_->Upload(Ctx(), Spec(1000), body.Fn());
  ASSERT_OK(row);
  // Attach it (as a record write would).
  ASSERT_OK(dbs_->Acquire("t1").value()->Write([&](storage::Database& db) -> Status {
    std::vector<FieldError> errors;
    SILO_RETURN_IF_ERROR(
        Reconcile(db, {"docs", "scan", "r1"}, "user:u1", {}, {}, {row->id}, kT0, &errors));
    return errors.empty() ? Status::Ok() : Internal(errors[0].message);
  }));
  auto link = store_->CreateLink(Ctx(), *row, 1000);
  ASSERT_OK(link);
  EXPECT_EQ(link->token.size(), 43u);
  auto opened = store_->ResolveLink(link->token, kT0 + 999);
  ASSERT_OK(opened);
  EXPECT_EQ(opened->id, row->id);
  EXPECT_STATUS(StatusCode::kFailedPrecondition, store_->ResolveLink(link->token, kT0 + 1000));
  EXPECT_STATUS(StatusCode::kNotFound, store_->ResolveLink(link->token + "x", kT0));
  // The token is nowhere on disk, in the clear or as the database holds it.
  EXPECT_EQ(storage::testing::FilesContaining(dir_, link->token), "");
  EXPECT_STATUS(StatusCode::kNotFound, store_->RevokeLink(Ctx(), "0000", link->row.id));
  ASSERT_OK(store_->RevokeLink(Ctx(), row->id, link->row.id));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, store_->ResolveLink(link->token, kT0 + 1));
  EXPECT_STATUS(StatusCode::kNotFound, store_->RevokeLink(Ctx(), row->id, link->row.id));
}

TEST_F(FileStoreTest, AnUploadBeingWrittenIsNeitherReadNorCollectedUnderTheWriter) {
  auto up = store_->CreateUpload(Ctx(), Spec(3 * kChunkBytes));
  ASSERT_OK(up);
  auto other = stores_->Open("t1");
  ASSERT_OK(other);
  const std::string bytes = Png(3 * kChunkBytes, 'w');
  size_t at = 0;
  Status head, second_patch;
  int64_t collected = -1;
  auto read = [&](std::span<char> out) -> Result<size_t> {
    if (at == kChunkBytes) {  // one chunk written, the next on its way
      head = (*other)->GetUpload(Ctx(), up->id).status();
      Body b(bytes.substr(at, 10));
      second_patch =
          (*other)->AppendUpload(Ctx(), up->id, at, {}, 10, b.Fn(), std::nullopt).status();
      auto swept = (*other)->CollectExpired(kT0 + 48LL * 3600 * 1'000'000, 0);
      collected = swept.ok() ? swept->uploads : -2;
    }
    size_t n = std::min(out.size(), bytes.size() - at);
    std::copy_n(bytes.data() + at, n, out.data());
    at += n;
    return n;
  };
  auto done = store_->AppendUpload(Ctx(), up->id, 0, {}, bytes.size(), read, std::nullopt);
  EXPECT_EQ(head.code(), StatusCode::kVersionMismatch) << head.ToString();
  EXPECT_EQ(second_patch.code(), StatusCode::kVersionMismatch) << second_patch.ToString();
  EXPECT_EQ(collected, 0);  // expired by then, but still being written
  ASSERT_OK(done);
  ASSERT_TRUE(done->completed.has_value());
  auto reader = store_->OpenBlob(*done->completed);
  ASSERT_OK(reader);
  EXPECT_EQ((*reader)->Read(0, bytes.size()).value(), bytes);
}

// Sets a file's modification time `seconds` from now (negative: the past).
void Touch(const std::string& path, int64_t seconds) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = NowMicros() / 1'000'000 + seconds;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

void Write(const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << "sealed bytes would be here";
}

TEST_F(FileStoreTest, ExpiredUploadsAndStaleOrphansAreCollectedAndNothingElse) {
  Body attached_body(Png(100, 'a')), pending_body(Png(100, 'p'));
  auto attached = store_->Upload(Ctx(), Spec(100), attached_body.Fn());
  auto pending = store_->Upload(Ctx(), Spec(100), pending_body.Fn());
  ASSERT_OK(attached);
  ASSERT_OK(pending);
  ASSERT_OK(dbs_->Acquire("t1").value()->Write([&](storage::Database& db) -> Status {
    std::vector<FieldError> errors;
    return Reconcile(db, {"docs", "scan", "r1"}, "user:u1", {}, {}, {attached->id}, kT0, &errors);
  }));
  auto tus = store_->CreateUpload(Ctx(), Spec(1000));
  ASSERT_OK(tus);
  const std::string stale = std::string(32, 'c'), fresh = std::string(32, 'd');
  Write(layout::TenantBlobFile(dir_, "t1", stale));
  Write(layout::TenantUploadFile(dir_, "t1", fresh));
  const int64_t now = NowMicros() + 2 * 3600LL * 1'000'000;  // past every expiry at kT0
  Touch(layout::TenantBlobFile(dir_, "t1", stale), -86400);
  Touch(layout::TenantUploadFile(dir_, "t1", fresh), 2 * 3600 - 1800);  // 30 min before `now`
  Touch(layout::TenantBlobFile(dir_, "t1", attached->id), -86400);      // old, but recorded
  auto swept = store_->CollectExpired(now, 3600LL * 1'000'000);
  ASSERT_OK(swept);
  EXPECT_EQ(swept->pending_files, 1);
  EXPECT_EQ(swept->uploads, 1);
  EXPECT_EQ(swept->orphans, 1);
  EXPECT_FALSE(fs::exists(layout::TenantBlobFile(dir_, "t1", pending->id)));
  EXPECT_FALSE(fs::exists(layout::TenantUploadFile(dir_, "t1", tus->id)));
  EXPECT_FALSE(fs::exists(layout::TenantBlobFile(dir_, "t1", stale)));
  EXPECT_TRUE(fs::exists(layout::TenantUploadFile(dir_, "t1", fresh)));  // maybe still uploading
  EXPECT_TRUE(fs::exists(layout::TenantBlobFile(dir_, "t1", attached->id)));
  EXPECT_STATUS(StatusCode::kNotFound, store_->Get(pending->id));
  EXPECT_OK(store_->Get(attached->id));
  auto usage = store_->LoadUsage();
  ASSERT_OK(usage);
  EXPECT_EQ(usage->live_bytes, 100u);
  EXPECT_EQ(usage->uploads, 0);
  // Nothing left to do: a second pass finds nothing.
  auto again = store_->CollectExpired(now, 3600LL * 1'000'000);
  ASSERT_OK(again);
  EXPECT_EQ(again->pending_files + again->uploads + again->orphans, 0);
}

TEST_F(FileStoreTest, TombstonesArePurgedOnlyOnceTheirRetentionHasPassed) {
  const int64_t day = 86'400LL * 1'000'000;
  auto at = [](int64_t t) { return events::Origin{{"user", "u1"}, "req", "127.0.0.1", t}; };
  Body one_body(Png(100, '1')), two_body(Png(100, '2')), kept_body(Png(100, 'k'));
  auto one = store_->Upload(at(kT0), Spec(100), one_body.Fn());
  auto two = store_->Upload(at(kT0 + day), Spec(100), two_body.Fn());
  auto kept = store_->Upload(at(kT0 + 10 * day), Spec(100), kept_body.Fn());
  ASSERT_OK(one);
  ASSERT_OK(two);
  ASSERT_OK(kept);
  auto db = dbs_->Acquire("t1").value();
  std::vector<FieldError> errors;
  // r1 holds `one`, then `two` (one removed on day 1), then `kept` (two
  // removed on day 10).
  ASSERT_OK(db->Write([&](storage::Database& d) {
    return Reconcile(d, {"docs", "scan", "r1"}, "user:u1", {}, {}, {one->id}, kT0, &errors);
  }));
  ASSERT_OK(db->Write([&](storage::Database& d) {
    return Reconcile(d, {"docs", "scan", "r1"}, "user:u1", {}, {one->id}, {two->id}, kT0 + day,
                     &errors);
  }));
  ASSERT_OK(db->Write([&](storage::Database& d) {
    return Reconcile(d, {"docs", "scan", "r1"}, "user:u1", {}, {two->id}, {kept->id},
                     kT0 + 10 * day, &errors);
  }));
  ASSERT_TRUE(errors.empty());
  db.reset();
  // Retention of 30 days, on day 35: `one` (removed on day 1) goes, `two`
  // (day 10) stays, the attached file stays.
  const int64_t now = kT0 + 35 * day;
  auto purged = store_->PurgeTombstones(now, now - 30 * day);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 1);
  EXPECT_STATUS(StatusCode::kNotFound, store_->Get(one->id));
  EXPECT_FALSE(fs::exists(layout::TenantBlobFile(dir_, "t1", one->id)));
  EXPECT_TRUE(fs::exists(layout::TenantBlobFile(dir_, "t1", two->id)));
  EXPECT_TRUE(fs::exists(layout::TenantBlobFile(dir_, "t1", kept->id)));
  EXPECT_EQ(store_->Get(two->id)->state, FileState::kDeleted);
  EXPECT_EQ(store_->Get(kept->id)->state, FileState::kAttached);
  // The purge is in the event log.
  db = dbs_->Acquire("t1").value();
  ASSERT_OK(db->Read([&](storage::Database& d) -> Status {
    auto st = d.Prepare("SELECT count(*) FROM events WHERE type = 'file.purged'");
    if (!st.ok()) return st.status();
    EXPECT_TRUE(*st->Step());
    EXPECT_EQ(st->ColumnInt(0), 1);
    return Status::Ok();
  }));
  db.reset();
  // Years later the attached file is still there; the other tombstone goes.
  purged = store_->PurgeTombstones(now + 3650 * day, now + 3620 * day);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(store_->Get(kept->id)->state, FileState::kAttached);
  EXPECT_TRUE(fs::exists(layout::TenantBlobFile(dir_, "t1", kept->id)));
}

}  // namespace
}  // namespace silo::files
