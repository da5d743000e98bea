#include "replication/live_head.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "replication/disk_internal.h"

namespace silo::replication {
namespace {

using internal::GetUint;
using internal::PutUint;

constexpr char kLiveHeadName[] = "chain.live";
constexpr std::string_view kMagic = "SLLH";
constexpr uint64_t kVersion = 1;
constexpr uint8_t kDirty = 0;
constexpr uint8_t kClean = 1;
constexpr size_t kBootIdSize = 36;  // the kernel's text form of a UUID

// This boot's id, read once; empty when the kernel does not say (then no
// record is ever trusted).
const std::string& BootId() {
  static const std::string id = [] {
    auto text = ReadFile("/proc/sys/kernel/random/boot_id");
    if (!text.ok() || text->size() < kBootIdSize) return std::string();
    return text->substr(0, kBootIdSize);
  }();
  return id;
}

void PutIdentity(std::string& out, const FileIdentity& id) {
  PutUint(out, id.exists ? 1 : 0, 1);
  PutUint(out, id.device, 8);
  PutUint(out, id.inode, 8);
  PutUint(out, id.size, 8);
  PutUint(out, static_cast<uint64_t>(id.modified_ns), 8);
}
constexpr size_t kIdentitySize = 1 + 4 * 8;
FileIdentity GetIdentity(const char* p) {
  return {GetUint(p, 1) == 1, GetUint(p + 1, 8), GetUint(p + 9, 8), GetUint(p + 17, 8),
          static_cast<int64_t>(GetUint(p + 25, 8))};
}

// magic, version, state, boot id, seq, term, commit frame, lineage, hash,
// the database's and the WAL's identity; then the checksum.
constexpr size_t kBody =
    4 + 4 + 1 + kBootIdSize + 8 + 8 + 4 + kLineageSize + kHashSize + 2 * kIdentitySize;
static_assert(kBody + kHashSize <= LiveHead::kRecordSize);

std::string Encode(uint8_t state, const ReplicaPosition& at, const std::string& database) {
  std::string out(kMagic);
  PutUint(out, kVersion, 4);
  PutUint(out, state, 1);
  out.append(BootId());
  out.resize(4 + 4 + 1 + kBootIdSize, '\0');
  PutUint(out, at.seq, 8);
  PutUint(out, at.term, 8);
  PutUint(out, at.wal_commit_frame, 4);
  std::string lineage = at.lineage, hash = at.hash;
  lineage.resize(kLineageSize, '\0');
  hash.resize(kHashSize, '\0');
  out.append(lineage);
  out.append(hash);
  PutIdentity(out, state == kClean ? IdentityOf(database) : FileIdentity{});
  PutIdentity(out, state == kClean ? IdentityOf(database + "-wal") : FileIdentity{});
  out.append(crypto::Blake2b256({out}));
  out.resize(LiveHead::kRecordSize, '\0');
  return out;
}

}  // namespace

std::string LiveHead::FileOf(const std::string& database) {
  const size_t slash = database.rfind('/');
  return (slash == std::string::npos ? std::string() : database.substr(0, slash + 1)) +
         kLiveHeadName;
}

Result<std::unique_ptr<LiveHead>> LiveHead::Open(const std::string& database) {
  const std::string path = FileOf(database);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return internal::DiskError("open " + path);
  std::unique_ptr<LiveHead> live(new LiveHead(database, fd));
  live->dirty_record_ = Encode(kDirty, ReplicaPosition{}, database);
  live->MarkDirty();
  if (live->fd_ < 0) return Internal("cannot mark the chain position dirty").WithCause(path);
  return live;
}

LiveHead::~LiveHead() {
  if (fd_ >= 0) ::close(fd_);
}

void LiveHead::Disable() {
  // Gone rather than possibly clean: a stale clean record would name files
  // that have changed since.
  if (::unlink(FileOf(database_).c_str()) != 0 && errno != ENOENT) {
    log::Error("replication.live_head_stuck", {{"file", FileOf(database_)}});
  }
  ::close(fd_);
  fd_ = -1;
}

void LiveHead::MarkDirty() {
  if (fd_ < 0 || dirty_) return;
  if (!internal::PwriteAll(fd_, dirty_record_, 0).ok()) {
    log::Warn("replication.live_head_dropped", {{"file", FileOf(database_)}});
    Disable();
    return;
  }
  dirty_ = true;
}

void LiveHead::MarkClean(const ReplicaPosition& at) {
  if (fd_ < 0) return;
  // Left dirty when this write fails: the files are then only as known as
  // after a crash.
  if (!internal::PwriteAll(fd_, Encode(kClean, at, database_), 0).ok()) return;
  dirty_ = false;
}

std::optional<ReplicaPosition> LiveHead::Read(const std::string& database) {
  auto record = internal::ReadStart(FileOf(database), kRecordSize);
  if (!record.ok() || record->size() < kBody + kHashSize) return std::nullopt;
  std::string_view body = std::string_view(*record).substr(0, kBody);
  if (!body.starts_with(kMagic) || GetUint(body.data() + 4, 4) != kVersion ||
      !crypto::ConstantTimeEquals(crypto::Blake2b256({body}),
                                  std::string_view(*record).substr(kBody, kHashSize))) {
    return std::nullopt;
  }
  const char* p = body.data() + 8;
  if (GetUint(p, 1) != kClean) return std::nullopt;
  p += 1;
  if (BootId().empty() || std::string_view(p, kBootIdSize) != BootId()) return std::nullopt;
  p += kBootIdSize;
  ReplicaPosition at;
  at.seq = GetUint(p, 8);
  at.term = GetUint(p + 8, 8);
  at.wal_commit_frame = static_cast<uint32_t>(GetUint(p + 16, 4));
  p += 20;
  at.lineage.assign(p, kLineageSize);
  at.hash.assign(p + kLineageSize, kHashSize);
  p += kLineageSize + kHashSize;
  if (at.seq == 0) return std::nullopt;  // no cut of a known chain yet
  if (GetIdentity(p) != IdentityOf(database) ||
      GetIdentity(p + kIdentitySize) != IdentityOf(database + "-wal")) {
    return std::nullopt;
  }
  return at;
}

}  // namespace silo::replication
