#include "storage/snapshot.h"

#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "base/file_util.h"
#include "storage/cipher_vfs.h"

namespace silo::storage {
namespace {

constexpr char kSqliteMagic[] = "SQLite format 3";  // 15 characters and NUL

// The page holding byte 2^30 (SQLite's PENDING_BYTE) is the lock-byte page:
// SQLite never writes or reads it, so in a database of 1 GiB or more it is a
// hole on disk that no key opens. An image has zeros there, and a database
// written from an image leaves it a hole again.
constexpr int64_t kLockBytePage = (int64_t{1} << 30) / static_cast<int64_t>(kPageSize) + 1;

uint32_t Get32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// The page count page 1's header states, or 0 when the header's count is not
// valid (SQLite then goes by the file size; see "in-header database size").
uint32_t HeaderPages(const unsigned char* page1) {
  return Get32(page1 + 24) == Get32(page1 + 92) ? Get32(page1 + 28) : 0;
}

Status CheckPageOne(const unsigned char* b) {
  if (std::memcmp(b, kSqliteMagic, sizeof kSqliteMagic) != 0 || b[16] != 0x10 || b[17] != 0x00 ||
      b[20] != kReserveBytes) {
    return DataLoss("not a database image of Silo's page layout");
  }
  return Status::Ok();
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status ReadFull(int fd, unsigned char* p, size_t n, off_t at) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, at + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return DataLoss("database copy shorter than its pages");
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status WriteFull(int fd, const unsigned char* p, size_t n, off_t at) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd, p + done, n - done, at + static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Unavailable("cannot write the database").WithCause(std::strerror(errno));
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

// A new database at `path` under `key` for an image copy, left in SQLite's
// default rollback-journal mode (not WAL, as Database::Open makes every
// database): the backup API then writes each page once, straight into the
// file, where a WAL database writes it to the log and again at the
// checkpoint. Never synced: the copy is read back and deleted, and a crash
// leaves only ciphertext under a key that died with the process. The journal,
// if SQLite writes one, goes through the cipher VFS like any journal.
Result<sqlite3*> OpenCopyTarget(const std::string& path, const crypto::SecretKey& key) {
  EnsureCipherVfs();
  auto registration = RegisterKey(key);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      CipherUri(path, *registration).c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc == SQLITE_OK) {
    int reserve = static_cast<int>(kReserveBytes);  // before page 1 exists
    sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
    rc =
        sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA cache_size=2000; PRAGMA temp_store=MEMORY",
                     nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) {
    int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    sqlite3_close_v2(db);
    return SqliteStatus(extended, "open the image copy");
  }
  return db;
}

}  // namespace

// ---- ImageCopy --------------------------------------------------------------

ImageCopy::ImageCopy(std::string path, crypto::SecretKey key, int64_t pages)
    : path_(std::move(path)), key_(std::move(key)), pages_(pages) {}

ImageCopy::ImageCopy(ImageCopy&& other) noexcept
    : path_(std::move(other.path_)), key_(std::move(other.key_)), pages_(other.pages_) {
  other.path_.clear();
}

ImageCopy::~ImageCopy() {
  if (!path_.empty()) RemoveDatabaseFiles(path_);
}

Result<ImageCopy> TakeImageCopy(Database& db, const std::function<Status(Database&)>& inside,
                                const std::string& path) {
  if (db.InTransaction()) return FailedPrecondition("snapshot inside a transaction");
  if (PathExists(path)) return AlreadyExists("image copy exists").WithCause(path);
  crypto::SecretKey key = crypto::SecretKey::Random();
  ImageCopy copy(path, key.Clone(), 0);  // removes the file on every failure below
  {
    SILO_ASSIGN_OR_RETURN(sqlite3 * target, OpenCopyTarget(path, key));
    // BEGIN plus a first read opens the read transaction that `inside` and
    // the copy share (the backup API reuses an open read transaction of its
    // source).
    Status s = db.Exec("BEGIN; SELECT count(*) FROM sqlite_schema");
    if (s.ok()) s = inside(db);
    if (s.ok()) {
      sqlite3_backup* backup = sqlite3_backup_init(target, "main", db.handle(), "main");
      if (backup == nullptr) {
        s = SqliteStatus(sqlite3_extended_errcode(target), sqlite3_errmsg(target));
      } else {
        int rc = sqlite3_backup_step(backup, -1);  // one step: one read transaction
        int finish = sqlite3_backup_finish(backup);
        s = rc != SQLITE_DONE ? SqliteStatus(rc, "snapshot") : SqliteStatus(finish, "snapshot");
      }
    }
    (void)db.Exec("COMMIT");
    if (sqlite3_close(target) != SQLITE_OK) sqlite3_close_v2(target);
    SILO_RETURN_IF_ERROR(s);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || st.st_size < static_cast<off_t>(kPageSize) ||
      st.st_size % kPageSize != 0) {
    return Internal("the database copy has an unexpected size");
  }
  copy.pages_ = st.st_size / static_cast<off_t>(kPageSize);
  return copy;
}

Status ImageCopy::Stream(size_t piece_bytes,
                         const std::function<Status(std::string_view)>& sink) const {
  Fd f{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return Unavailable("cannot read the database copy").WithCause(path_);
  PageCodec codec(key_);
  const size_t per_piece = std::max<size_t>(1, piece_bytes / kPageSize);
  std::vector<unsigned char> sealed(kPageSize);
  std::string plain(per_piece * kPageSize, '\0');
  struct Wipe {
    std::string& s;
    ~Wipe() { sodium_memzero(s.data(), s.size()); }
  } wipe{plain};
  int64_t pages = pages_;
  for (int64_t pgno = 1; pgno <= pages;) {
    size_t n = 0;
    for (; n < per_piece && pgno <= pages; ++n, ++pgno) {
      SILO_RETURN_IF_ERROR(
          ReadFull(f.fd, sealed.data(), kPageSize, static_cast<off_t>((pgno - 1) * kPageSize)));
      auto* out = reinterpret_cast<uint8_t*>(plain.data() + n * kPageSize);
      if (pgno == kLockBytePage) {
        std::memset(out, 0, kPageSize);
        continue;
      }
      SILO_RETURN_IF_ERROR(codec.Open(static_cast<uint32_t>(pgno), sealed.data(), out));
      if (pgno == 1) {
        // The header's count, when valid, is the database's size (the file
        // may be longer).
        if (uint32_t stated = HeaderPages(out); stated != 0 && stated <= pages_) pages = stated;
      }
    }
    SILO_RETURN_IF_ERROR(sink(std::string_view(plain.data(), n * kPageSize)));
  }
  return Status::Ok();
}

// ---- LiveCopy ---------------------------------------------------------------

LiveCopy::LiveCopy(std::string path, sqlite3* target, sqlite3_backup* backup)
    : path_(std::move(path)), target_(target), backup_(backup) {}

Result<std::unique_ptr<LiveCopy>> LiveCopy::Start(Database& source, const std::string& path,
                                                  const crypto::SecretKey& key) {
  if (source.InTransaction()) return FailedPrecondition("live copy inside a transaction");
  if (PathExists(path)) return AlreadyExists("the copy exists").WithCause(path);
  SILO_ASSIGN_OR_RETURN(sqlite3 * target, OpenCopyTarget(path, key));
  sqlite3_backup* backup = sqlite3_backup_init(target, "main", source.handle(), "main");
  if (backup == nullptr) {
    Status s = SqliteStatus(sqlite3_extended_errcode(target), sqlite3_errmsg(target));
    if (sqlite3_close(target) != SQLITE_OK) sqlite3_close_v2(target);
    RemoveDatabaseFiles(path);
    return s;
  }
  return std::unique_ptr<LiveCopy>(new LiveCopy(path, target, backup));
}

LiveCopy::~LiveCopy() {
  if (backup_ != nullptr) sqlite3_backup_finish(backup_);
  if (sqlite3_close(target_) != SQLITE_OK) sqlite3_close_v2(target_);
  if (!finished_) RemoveDatabaseFiles(path_);
}

Result<int64_t> LiveCopy::Step(int64_t pages, int64_t leave) {
  if (backup_ == nullptr) return FailedPrecondition("the copy is finished");
  if (leave < 1) leave = 1;
  // The counts are known after a first step; one page tells them.
  int64_t n = sqlite3_backup_pagecount(backup_) == 0
                  ? 1
                  : std::min<int64_t>(pages, sqlite3_backup_remaining(backup_) - leave);
  if (n <= 0) return sqlite3_backup_remaining(backup_);
  int rc = sqlite3_backup_step(backup_, static_cast<int>(n));
  if (rc == SQLITE_DONE) return FailedPrecondition("the copy ended early");  // a one-page source
  if (rc != SQLITE_OK) return SqliteStatus(rc, "live copy");
  return sqlite3_backup_remaining(backup_);
}

Status LiveCopy::Finish() {
  if (backup_ == nullptr) return FailedPrecondition("the copy is finished");
  int rc = sqlite3_backup_step(backup_, -1);
  int finish = sqlite3_backup_finish(backup_);
  backup_ = nullptr;
  if (rc != SQLITE_DONE) return SqliteStatus(rc, "live copy");
  SILO_RETURN_IF_ERROR(SqliteStatus(finish, "live copy"));
  if (sqlite3_close(target_) != SQLITE_OK) return Internal("cannot close the copy");
  target_ = nullptr;
  SILO_RETURN_IF_ERROR(SyncFile(path_));
  SILO_RETURN_IF_ERROR(SyncDir(std::filesystem::path(path_).parent_path().string()));
  finished_ = true;
  return Status::Ok();
}

// ---- ImageWriter ------------------------------------------------------------

struct ImageWriter::Impl {
  std::string path;
  Fd f;
  PageCodec codec;
  std::string partial;  // plaintext of a page not yet complete; wiped
  std::vector<unsigned char> sealed = std::vector<unsigned char>(kPageSize);
  uint32_t next_pgno = 1;
  uint32_t stated_pages = 0;  // from page 1's header (0: not valid there)
  bool finished = false;

  Impl(std::string p, int fd, const crypto::SecretKey& key)
      : path(std::move(p)), f{fd}, codec(key) {}

  Status Page(const unsigned char* plain) {
    if (next_pgno == 1) {
      SILO_RETURN_IF_ERROR(CheckPageOne(plain));
      stated_pages = HeaderPages(plain);
    }
    if (stated_pages != 0 && next_pgno > stated_pages) {
      return DataLoss("the image holds more pages than its header counts");
    }
    if (next_pgno == kLockBytePage) {
      ++next_pgno;  // left a hole (Finish sets the file's length)
      return Status::Ok();
    }
    if (Status s = codec.Seal(next_pgno, plain, sealed.data()); !s.ok()) {
      return DataLoss("not a database image of Silo's page layout").WithCause(s.message());
    }
    SILO_RETURN_IF_ERROR(
        WriteFull(f.fd, sealed.data(), kPageSize, static_cast<off_t>(next_pgno - 1) * kPageSize));
    ++next_pgno;
    return Status::Ok();
  }
};

ImageWriter::ImageWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ImageWriter::~ImageWriter() {
  if (!impl_->partial.empty()) sodium_memzero(impl_->partial.data(), impl_->partial.size());
  if (!impl_->finished) {
    ::close(impl_->f.fd);
    impl_->f.fd = -1;
    RemoveDatabaseFiles(impl_->path);
  }
}

Result<std::unique_ptr<ImageWriter>> ImageWriter::Create(const std::string& path,
                                                         const crypto::SecretKey& key) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return AlreadyExists("target exists").WithCause(path);
    return Unavailable("cannot create the database").WithCause(path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<ImageWriter>(new ImageWriter(std::make_unique<Impl>(path, fd, key)));
}

Status ImageWriter::Append(std::string_view bytes) {
  Impl& w = *impl_;
  if (w.finished) return FailedPrecondition("image already finished");
  if (!w.partial.empty()) {
    size_t take = std::min(bytes.size(), kPageSize - w.partial.size());
    w.partial.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    if (w.partial.size() < kPageSize) return Status::Ok();
    Status s = w.Page(reinterpret_cast<const unsigned char*>(w.partial.data()));
    sodium_memzero(w.partial.data(), w.partial.size());
    w.partial.clear();
    SILO_RETURN_IF_ERROR(s);
  }
  while (bytes.size() >= kPageSize) {
    SILO_RETURN_IF_ERROR(w.Page(reinterpret_cast<const unsigned char*>(bytes.data())));
    bytes.remove_prefix(kPageSize);
  }
  w.partial.assign(bytes);
  return Status::Ok();
}

Status ImageWriter::Finish() {
  Impl& w = *impl_;
  const uint32_t pages = w.next_pgno - 1;
  if (!w.partial.empty() || pages == 0 || (w.stated_pages != 0 && pages != w.stated_pages)) {
    return DataLoss("the image is not whole: " + std::to_string(pages) + " pages of " +
                    std::to_string(w.stated_pages));
  }
  if (::ftruncate(w.f.fd, static_cast<off_t>(pages) * static_cast<off_t>(kPageSize)) != 0 ||
      ::fsync(w.f.fd) != 0) {
    return Unavailable("cannot sync the database").WithCause(w.path);
  }
  ::close(w.f.fd);
  w.f.fd = -1;
  SILO_RETURN_IF_ERROR(SyncDir(std::filesystem::path(w.path).parent_path().string()));
  w.finished = true;
  return Status::Ok();
}

Status WriteImage(std::string_view image, const std::string& path, const crypto::SecretKey& key) {
  SILO_ASSIGN_OR_RETURN(auto writer, ImageWriter::Create(path, key));
  SILO_RETURN_IF_ERROR(writer->Append(image));
  return writer->Finish();
}

}  // namespace silo::storage
