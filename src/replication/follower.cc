#include "replication/follower.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "replication/disk_internal.h"
#include "replication/protocol.h"
#include "replication/segment.h"

namespace silo::replication {
namespace {

using internal::DiskError;

constexpr char kPartialName[] = "snapshot.partial";
constexpr char kMetaName[] = "tenant.meta";
constexpr char kKeyName[] = "tenant.key";

// Writes `bytes` at `offset` of `path` (created 0600), optionally first
// cutting the file to nothing.
Status WriteAt(const std::string& path, uint64_t offset, std::string_view bytes, bool fresh) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0600);
  if (fd < 0) return DiskError("open");
  Status s = internal::PwriteAll(fd, bytes, static_cast<int64_t>(offset));
  ::close(fd);
  return s;
}

// Makes `to` (created 0600, cut first) a copy of `from`, or empty when there
// is no `from`. In the kernel (copy_file_range): no byte comes up here.
Status CopyWhole(const std::string& from, const std::string& to) {
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return DiskError("open " + to);
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  Status s;
  if (in < 0 && errno != ENOENT) s = DiskError("open " + from);
  while (s.ok() && in >= 0) {
    const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, size_t{1} << 30, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = DiskError("copy " + from);
    if (n <= 0) break;
  }
  if (in >= 0) ::close(in);
  ::close(out);
  return s;
}

Status LinkTo(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return Status::Ok();
  return FailedPrecondition("cannot link the tenant's files into its copy")
      .WithCause(to + ": " + std::strerror(errno));
}

// Hard-links every blob under `files_dir` to the same place under the copy
// `dir`'s files/, adding the directories it made to `dirs`. Blobs only: a
// resumable upload's part may still be written by a request that opened it;
// the primary sends it whole when it is not here (WriteUploadPart).
Status LinkBlobs(const std::string& files_dir, const std::string& dir,
                 std::set<std::string>& dirs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(files_dir, ec)) return Status::Ok();
  for (auto it = fs::recursive_directory_iterator(files_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".sf") continue;
    const std::string to = dir + "/files/" + fs::relative(it->path(), files_dir, ec).string();
    if (ec) break;
    const std::string parent = fs::path(to).parent_path().string();
    SILO_RETURN_IF_ERROR(MakeDirs(parent, 0700));
    SILO_RETURN_IF_ERROR(LinkTo(it->path().string(), to));
    dirs.insert(parent);
  }
  if (ec) return Internal("cannot list the tenant's files").WithCause(ec.message());
  return Status::Ok();
}

}  // namespace

Replicas::Replicas(std::string root, std::shared_ptr<RecentBudget> recent)
    : root_(std::move(root)), recent_(std::move(recent)) {}

bool Replicas::ValidTenantId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

Replicas::Copy& Replicas::Get(const std::string& tenant) {
  std::lock_guard lock(mu_);
  std::unique_ptr<Copy>& copy = copies_[tenant];
  if (!copy) copy = std::make_unique<Copy>();
  return *copy;
}

Status Replicas::EnsureOpen(const std::string& tenant, Copy& copy) {
  if (copy.applier) return Status::Ok();
  SILO_ASSIGN_OR_RETURN(copy.applier, Applier::Open(Dir(tenant), recent_));
  copy.applier->Seed(Unpark(tenant));
  return Status::Ok();
}

void Replicas::Park(const std::string& tenant, std::vector<std::string> segments) {
  size_t bytes = 0;
  for (const std::string& s : segments) bytes += s.size();
  std::list<Parked> gone;  // replaced or dropped: freed outside the lock
  std::lock_guard lock(parked_mu_);
  auto take = [&](std::list<Parked>::iterator it) {
    parked_bytes_ -= it->bytes;
    parked_by_tenant_.erase(it->tenant);
    gone.splice(gone.end(), parked_, it);
  };
  if (auto old = parked_by_tenant_.find(tenant); old != parked_by_tenant_.end()) take(old->second);
  if (segments.empty() || !recent_ || bytes > recent_->closed_total) return;
  parked_.push_back({tenant, std::move(segments), bytes});
  parked_by_tenant_[tenant] = std::prev(parked_.end());
  parked_bytes_ += bytes;
  while (parked_bytes_ > recent_->closed_total) take(parked_.begin());
}

std::vector<std::string> Replicas::Unpark(const std::string& tenant) {
  std::lock_guard lock(parked_mu_);
  auto found = parked_by_tenant_.find(tenant);
  if (found == parked_by_tenant_.end()) return {};
  auto it = found->second;
  parked_by_tenant_.erase(found);
  parked_bytes_ -= it->bytes;
  std::vector<std::string> segments = std::move(it->segments);
  parked_.erase(it);
  return segments;
}

size_t Replicas::open_count() const {
  std::lock_guard lock(mu_);
  return copies_.size();
}

size_t Replicas::recent_bytes() const {
  std::lock_guard lock(parked_mu_);
  return parked_bytes_ + (recent_ ? recent_->held.load() : 0);
}

std::vector<std::string> Replicas::Close(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return {};
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  std::vector<std::string> recent;
  if (copy.applier) {
    if (Status s = copy.applier->Settle(); !s.ok()) {
      // Rolled forward when the copy is next opened instead.
      log::Warn("replication.settle_failed", {{"cause", s.ToString()}});
      copy.applier.reset();
      copy.snapshot_next = 0;
      return {};
    }
    recent = copy.applier->TakeRecent();
  } else {
    recent = Unpark(tenant_id);  // closed while idle: unchanged since
  }
  copy.applier.reset();
  copy.snapshot_next = 0;
  // Memory holds fewer than the disk when the node restarted since (or the
  // budget was short): the disk's go further back, to the same position.
  if (recent_) {
    if (std::vector<std::string> kept = Applier::History(Dir(tenant_id), recent_->per_copy);
        kept.size() > recent.size()) {
      recent = std::move(kept);
    }
  }
  return recent;
}

Status Replicas::Reset(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  copy.applier.reset();
  copy.snapshot_next = 0;
  (void)Unpark(tenant_id);
  const std::string dir = Dir(tenant_id);
  if (!PathExists(dir)) return Status::Ok();
  auto remove = [&](const char* name) -> Status {
    const std::string path = dir + "/" + name;
    if (::unlink(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
    return Internal("cannot empty the copy").WithCause(path + ": " + std::strerror(errno));
  };
  // The position first: without it the copy holds nothing, whatever else
  // a crash in between leaves (Close recorded its journal).
  SILO_RETURN_IF_ERROR(remove(kReplicaPositionName));
  SILO_RETURN_IF_ERROR(SyncDir(dir));
  for (const char* name : {kReplicaJournalName, kReplicaHistoryName, kReplicaDatabaseName,
                           kReplicaWalName, "tenant.db-shm"}) {
    SILO_RETURN_IF_ERROR(remove(name));
  }
  return SyncDir(dir);
}

size_t Replicas::CloseIdle(std::chrono::milliseconds idle) {
  std::vector<std::pair<std::string, Copy*>> copies;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, copy] : copies_) copies.emplace_back(id, copy.get());  // never removed
  }
  const auto now = std::chrono::steady_clock::now();
  size_t closed = 0;
  for (const auto& [tenant, copy] : copies) {
    std::unique_lock lock(copy->mu, std::try_to_lock);
    if (!lock.owns_lock() || !copy->applier || copy->snapshot_next != 0 ||
        now - copy->used < idle) {
      continue;
    }
    // Nothing is deferred between runs (HandleRun flushed); what the
    // journal holds is recorded, so a closed copy keeps none. Should that
    // fail, the journal stays and is rolled forward at the next open.
    if (Status s = copy->applier->Settle(); !s.ok()) {
      log::Warn("replication.settle_failed", {{"cause", s.ToString()}});
    } else {
      Park(tenant, copy->applier->TakeRecent());
    }
    copy->applier.reset();
    ++closed;
  }
  return closed;
}

Status Replicas::Drop(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  copy.applier.reset();
  copy.snapshot_next = 0;
  (void)Unpark(tenant_id);
  return RemoveTree(Dir(tenant_id));
}

Status Replicas::AdoptLed(const std::string& tenant_id, const std::string& database,
                          const std::string& files_dir, std::string_view tenant_files,
                          const ReplicaPosition& position) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  namespace fs = std::filesystem;
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  copy.applier.reset();
  copy.snapshot_next = 0;
  (void)Unpark(tenant_id);
  std::error_code ec;
  const std::string wal = database + "-wal";
  const bool has_wal = fs::exists(wal, ec);
  const std::string dir = Dir(tenant_id);
  auto adopt = [&]() -> Status {
    SILO_RETURN_IF_ERROR(RemoveTree(dir));
    SILO_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    SILO_RETURN_IF_ERROR(LinkTo(database, dir + "/" + kReplicaDatabaseName));
    if (has_wal) SILO_RETURN_IF_ERROR(LinkTo(wal, dir + "/" + kReplicaWalName));
    // Durable before the position names them: a process that died left
    // what it wrote last in the kernel's cache only.
    SILO_RETURN_IF_ERROR(SyncFile(database));
    if (has_wal) SILO_RETURN_IF_ERROR(SyncFile(wal));
    std::set<std::string> dirs{dir};
    SILO_RETURN_IF_ERROR(LinkBlobs(files_dir, dir, dirs));
    SILO_RETURN_IF_ERROR(WriteTenantFiles(tenant_id, tenant_files));
    for (const std::string& d : dirs) SILO_RETURN_IF_ERROR(SyncDir(d));
    // Last: without it the directory is no copy (an empty one, after a crash).
    return Applier::Install(dir, position);
  };
  Status s = adopt();
  if (!s.ok()) (void)RemoveTree(dir);
  return s;
}

Status Replicas::SeedFrom(const std::string& tenant_id, const std::string& database,
                          const std::string& files_dir) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  SILO_RETURN_IF_ERROR(EnsureOpen(tenant_id, copy));
  const std::string dir = Dir(tenant_id);
  if (!copy.applier->position().lineage.empty() || PathExists(dir + "/" + kReplicaDatabaseName)) {
    return Status::Ok();  // a copy of a chain, or one seeded or snapshotted already
  }
  SILO_RETURN_IF_ERROR(LinkTo(database, dir + "/" + kReplicaDatabaseName));
  std::set<std::string> dirs;
  return LinkBlobs(files_dir, dir, dirs);
}

Result<ReplicaPosition> Replicas::Position(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  Copy& copy = Get(tenant_id);
  std::lock_guard lock(copy.mu);
  SILO_RETURN_IF_ERROR(EnsureOpen(tenant_id, copy));
  return copy.applier->position();
}

cluster::Message Replicas::Handle(const cluster::Message& m) { return HandleRun({m}).front(); }

std::vector<cluster::Message> Replicas::HandleRun(const std::vector<cluster::Message>& run) {
  std::vector<cluster::Message> answers;
  answers.reserve(run.size());
  if (run.empty()) return answers;
  const std::string& tenant = run.front().tenant;
  if (!ValidTenantId(tenant)) {
    for (const cluster::Message& m : run) {
      answers.push_back(Answer(m, nullptr, InvalidArgument("not a tenant id")));
    }
    return answers;
  }
  Copy& copy = Get(tenant);
  // Held across the run: nothing reads a position that is not durable yet.
  std::lock_guard lock(copy.mu);
  copy.used = std::chrono::steady_clock::now();
  std::vector<size_t> deferred;  // answers to make once the copy is durable
  auto flush = [&] {
    if (deferred.empty()) return;
    // The last segment applied may have made the others durable (one of
    // another kind does): Flush then does nothing.
    Status s = copy.applier ? copy.applier->Flush()
                            : Internal("the replica was reopened before a segment was durable");
    if (s.code() == StatusCode::kInternal) copy.applier.reset();  // reopened next time
    for (size_t i : deferred) answers[i] = Answer(run[i], &copy, s);
    deferred.clear();
  };
  for (size_t i = 0; i < run.size(); ++i) {
    // Segments may leave their fsync to the run's end; a message of another
    // kind sees (and reports) a durable copy.
    const bool segment = run[i].kind == kSegment;
    if (!segment) flush();
    answers.push_back(HandleLocked(run[i], copy, segment));
    if (answers.back().kind == kAck && copy.applier && copy.applier->deferred()) {
      deferred.push_back(i);  // its answer names a position that is not durable yet
    }
  }
  flush();
  return answers;
}

cluster::Message Replicas::HandleLocked(const cluster::Message& m, Copy& copy, bool may_defer) {
  Status s = EnsureOpen(m.tenant, copy);
  if (!s.ok()) return Answer(m, &copy, s);
  switch (m.kind) {
    case kSegment:
      s = copy.applier->Apply(m.payload, may_defer);
      if (s.code() == StatusCode::kInternal) copy.applier.reset();  // reopened next time
      return Answer(m, &copy, std::move(s));
    case kSnapshotChunk: return Answer(m, &copy, ApplySnapshotChunk(m.tenant, copy, m.payload));
    case kSnapshotPages: return Answer(m, &copy, ApplySnapshotPages(m.tenant, copy, m.payload));
    case kPageSums: {
      auto sums = PageSumsOf(m.tenant);
      if (!sums.ok()) return Answer(m, &copy, sums.status());
      return cluster::Message{m.tenant, kPageSumList, m.seq, EncodePageSums(*sums)};
    }
    case kTenantFiles: return Answer(m, &copy, WriteTenantFiles(m.tenant, m.payload));
    case kProbe: return Answer(m, &copy, Status::Ok());  // the ack says where it stands
    case kBlobChunk: return Answer(m, &copy, WriteBlobChunk(m.tenant, m.payload));
    case kBlobRemove: return Answer(m, &copy, RemoveBlob(m.tenant, copy, m.payload));
    case kUploadPart: return Answer(m, &copy, WriteUploadPart(m.tenant, m.payload));
    case kUploadRemove: return Answer(m, &copy, RemoveUploadPart(m.tenant, copy, m.payload));
    case kBlobFromPart: return Answer(m, &copy, BlobFromUploadPart(m.tenant, m.payload));
    case kBlobList: {
      auto wanted = WantedBlobs(m.tenant, m.payload);
      if (!wanted.ok()) return Answer(m, &copy, wanted.status());
      return cluster::Message{m.tenant, kBlobWant, m.seq, EncodeBlobIds(*wanted)};
    }
    case kBlobHeld: {
      auto held = HeldBlobs(m.tenant, m.payload);
      if (!held.ok()) return Answer(m, &copy, held.status());
      return cluster::Message{m.tenant, kBlobHeldIds, m.seq, EncodeBlobIds(*held)};
    }
    default: return Answer(m, &copy, InvalidArgument("unknown message kind"));
  }
}

Status Replicas::WriteTenantFiles(const std::string& tenant, std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(TenantFiles f, DecodeTenantFiles(payload));
  const std::string dir = Dir(tenant);
  SILO_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kKeyName, f.wrapped_key));
  return WriteFileAtomic(dir + "/" + kMetaName, f.meta);
}

std::string Replicas::BlobPath(const std::string& tenant_id, const std::string& blob_id) const {
  return layout::BlobFileIn(Dir(tenant_id) + "/files", blob_id);
}

std::string Replicas::BlobDir(const std::string& tenant_id, const std::string& blob_id) const {
  return layout::BlobDirIn(Dir(tenant_id) + "/files", blob_id);
}

Status Replicas::WriteBlobChunk(const std::string& tenant, std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(BlobChunk c, DecodeBlobChunk(payload));
  const std::string path = BlobPath(tenant, c.id);
  // A blob's bytes change only when a re-key seals it again, which changes
  // its header (the key epoch): a blob already here whole under the same
  // header was sent twice (a ship and a snapshot's list that crossed) and
  // is taken as it is. One under another header is written anew beside it
  // and renamed over it.
  std::error_code ec;
  const auto held = std::filesystem::file_size(path, ec);
  const bool whole = !ec && held == c.total;
  const std::string partial = path + ".partial";
  if (c.offset == 0) {
    if (whole) {
      auto start = internal::ReadStart(path, std::min(c.bytes.size(), kBlobHeaderBytes));
      if (start.ok() && c.bytes.starts_with(*start)) return Status::Ok();
    }
    SILO_RETURN_IF_ERROR(MakeDirs(BlobDir(tenant, c.id), 0700));
  } else {
    // Pieces come in order; one that does not continue what is here (a
    // sender that restarted the blob) is refused and the sender resyncs.
    const auto have = std::filesystem::file_size(partial, ec);
    if (ec && whole) return Status::Ok();  // the rest of a crossing resend
    if (ec || have < c.offset) return FailedPrecondition("a blob chunk out of order");
  }
  SILO_RETURN_IF_ERROR(WriteAt(partial, c.offset, c.bytes, /*fresh=*/c.offset == 0));
  if (c.offset + c.bytes.size() < c.total) return Status::Ok();
  // The last piece: the blob is durable before it is acknowledged, and so
  // before any commit that names it is sent here (shipper.h).
  SILO_RETURN_IF_ERROR(SyncFile(partial));
  if (::rename(partial.c_str(), path.c_str()) != 0) return DiskError("rename blob");
  SILO_RETURN_IF_ERROR(SyncDir(BlobDir(tenant, c.id)));
  // A resumable upload's blob: its part (WriteUploadPart) is done with.
  if (::unlink(UploadPath(tenant, c.id).c_str()) != 0 && errno != ENOENT) {
    return DiskError("unlink upload part");
  }
  return Status::Ok();
}

std::string Replicas::UploadPath(const std::string& tenant_id, const std::string& upload_id) const {
  return layout::UploadFileIn(Dir(tenant_id) + "/files", upload_id);
}

Status Replicas::WriteUploadPart(const std::string& tenant, std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(BlobChunk c, DecodeBlobChunk(payload));
  // Completed meanwhile (its blob came after these pieces): nothing to do.
  if (PathExists(BlobPath(tenant, c.id))) return Status::Ok();
  const std::string path = UploadPath(tenant, c.id);
  std::error_code ec;
  const auto have = std::filesystem::file_size(path, ec);
  if (c.offset != 0 && (ec || have < c.offset)) {
    // What came before these bytes never reached this copy: the sender
    // sends the part whole.
    return FailedPrecondition("an upload part past what this copy holds");
  }
  if (c.offset == 0) {
    SILO_RETURN_IF_ERROR(MakeDirs(std::filesystem::path(path).parent_path().string(), 0700));
  }
  SILO_RETURN_IF_ERROR(WriteAt(path, c.offset, c.bytes, /*fresh=*/c.offset == 0));
  if (c.offset + c.bytes.size() < c.total) return Status::Ok();
  // The last piece: the part is the primary's, durable before the request
  // that wrote it is answered there.
  if (::truncate(path.c_str(), static_cast<off_t>(c.total)) != 0) return DiskError("truncate part");
  SILO_RETURN_IF_ERROR(SyncFile(path));
  return c.offset == 0 ? SyncDir(std::filesystem::path(path).parent_path().string()) : Status::Ok();
}

Status Replicas::BlobFromUploadPart(const std::string& tenant, std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(BlobFromPart b, DecodeBlobFromPart(payload));
  const std::string blob = BlobPath(tenant, b.id);
  std::error_code ec;
  const auto held = std::filesystem::file_size(blob, ec);
  if (!ec && held == b.total) return Status::Ok();  // as WriteBlobChunk
  const std::string part = UploadPath(tenant, b.id);
  auto digest = crypto::DigestFile(part);
  if (!digest.ok() && digest.status().code() != StatusCode::kNotFound) return digest.status();
  if (!digest.ok() || static_cast<uint64_t>(digest->size) != b.total ||
      digest->sha256 != crypto::HexEncode(b.sha256)) {
    return FailedPrecondition("the copy's upload part is not the blob");
  }
  // Its last piece made the part durable; the rename is made so too.
  SILO_RETURN_IF_ERROR(SyncFile(part));
  SILO_RETURN_IF_ERROR(MakeDirs(BlobDir(tenant, b.id), 0700));
  if (::rename(part.c_str(), blob.c_str()) != 0) return DiskError("rename part");
  SILO_RETURN_IF_ERROR(SyncDir(BlobDir(tenant, b.id)));
  return SyncDir(std::filesystem::path(part).parent_path().string());
}

Status Replicas::RemoveUploadPart(const std::string& tenant, const Copy& copy,
                                  std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(BlobRemove r, DecodeBlobRemove(payload));
  if (copy.applier && r.term < copy.applier->position().term) {
    return PermissionDenied("an upload removal of a stale term: a deposed primary");
  }
  if (::unlink(UploadPath(tenant, r.id).c_str()) != 0 && errno != ENOENT) {
    return DiskError("unlink upload part");
  }
  return Status::Ok();
}

Status Replicas::RemoveBlob(const std::string& tenant, const Copy& copy, std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(BlobRemove r, DecodeBlobRemove(payload));
  if (copy.applier && r.term < copy.applier->position().term) {
    return PermissionDenied("a blob removal of a stale term: a deposed primary");
  }
  const std::string path = BlobPath(tenant, r.id);
  for (const std::string& p : {path, path + ".partial"}) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return DiskError("unlink blob");
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Replicas::WantedBlobs(const std::string& tenant,
                                                       std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(std::vector<BlobEntry> list, DecodeBlobList(payload));
  std::vector<std::string> wanted;
  for (const BlobEntry& e : list) {
    std::error_code ec;
    const std::string path = BlobPath(tenant, e.id);
    const auto held = std::filesystem::file_size(path, ec);
    if (ec || held != e.size) {
      wanted.push_back(e.id);
      continue;
    }
    // Sealed again under another key (a re-key on the primary): wanted.
    auto epoch = BlobKeyEpoch(path);
    if (!epoch.ok() || *epoch != e.epoch) wanted.push_back(e.id);
  }
  return wanted;
}

Result<std::vector<std::string>> Replicas::HeldBlobs(const std::string& tenant,
                                                     std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(std::vector<std::string> cursor, DecodeBlobIds(payload));
  if (cursor.size() > 1) return InvalidArgument("a blob cursor names one id at most");
  const std::string after = cursor.empty() ? std::string() : cursor[0];
  namespace fs = std::filesystem;
  const fs::path root = Dir(tenant) + "/files/b";
  // An id's directory is its first two digits (layout::BlobDirIn), so the
  // directories in order, each listed in order, list the ids in order.
  std::vector<std::string> shards;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() == 2 && layout::ValidBlobId(name + std::string(kBlobIdSize - 2, '0')) &&
        name >= after.substr(0, std::min<size_t>(2, after.size()))) {
      shards.push_back(name);
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Internal("cannot list the copy's blobs").WithCause(ec.message());
  }
  std::sort(shards.begin(), shards.end());
  std::vector<std::string> held;
  for (const std::string& shard : shards) {
    std::vector<std::string> ids;
    for (auto it = fs::directory_iterator(root / shard, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      for (std::string_view suffix : {".sf", ".sf.partial"}) {
        if (name.size() > suffix.size() && name.ends_with(suffix)) {
          name.resize(name.size() - suffix.size());
          break;
        }
      }
      if (layout::ValidBlobId(name) && name > after) ids.push_back(std::move(name));
    }
    if (ec) return Internal("cannot list the copy's blobs").WithCause(ec.message());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (std::string& id : ids) {
      held.push_back(std::move(id));
      if (held.size() == kMaxBlobListEntries) return held;
    }
  }
  return held;
}

Result<TenantFiles> Replicas::Files(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("not a tenant id");
  const std::string dir = Dir(tenant_id);
  if (!PathExists(dir + "/" + kMetaName)) return NotFound("no tenant files yet");
  TenantFiles f;
  SILO_ASSIGN_OR_RETURN(f.meta, ReadFile(dir + "/" + kMetaName));
  SILO_ASSIGN_OR_RETURN(f.wrapped_key, ReadFile(dir + "/" + kKeyName));
  return f;
}

Status Replicas::ApplySnapshotChunk(const std::string& tenant, Copy& copy,
                                    std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(SnapshotChunk c, DecodeSnapshotChunk(payload));
  if (c.lineage.size() != kLineageSize) return InvalidArgument("bad lineage");
  SILO_RETURN_IF_ERROR(CheckSnapshotPiece(copy, c.term, c.offset));
  const std::string dir = Dir(tenant);
  const std::string partial = dir + "/" + kPartialName;
  SILO_RETURN_IF_ERROR(WriteAt(partial, c.offset, c.bytes, /*fresh=*/c.offset == 0));
  copy.snapshot_next = c.offset + c.bytes.size();
  if (copy.snapshot_next < c.total) return Status::Ok();
  return InstallSnapshot(tenant, copy, ReplicaPosition{c.lineage, c.term, c.seq, c.hash, 0});
}

Status Replicas::CheckSnapshotPiece(const Copy& copy, uint64_t term, uint64_t offset) {
  // A snapshot of a lower term than this copy has seen comes from a deposed
  // primary (segments are fenced the same way, in the applier).
  if (copy.applier && term < copy.applier->position().term) {
    return PermissionDenied("a snapshot of a stale term: a deposed primary");
  }
  if (offset != 0 && offset != copy.snapshot_next) {
    return FailedPrecondition("a snapshot piece out of order: start the snapshot again");
  }
  return Status::Ok();
}

Result<PageSums> Replicas::PageSumsOf(const std::string& tenant) {
  PageSums sums;
  const std::string path = Dir(tenant) + "/" + kReplicaDatabaseName;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return sums;
    return DiskError("open database");
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return DiskError("stat database");
  sums.size = static_cast<uint64_t>(st.st_size);
  const uint64_t pages = (sums.size + kPageSize - 1) / kPageSize;
  if (pages > kMaxPageSums) return sums;
  sums.sums.reserve(pages * kPageSumBytes);
  std::string piece;
  for (uint64_t at = 0; at < sums.size; at += piece.size()) {
    piece.resize(static_cast<size_t>(std::min<uint64_t>(256 * kPageSize, sums.size - at)));
    SILO_RETURN_IF_ERROR(internal::PreadAll(fd, piece, static_cast<int64_t>(at)));
    for (size_t p = 0; p < piece.size(); p += kPageSize) {
      sums.sums.append(PageSum(std::string_view(piece).substr(p, kPageSize)));
    }
  }
  return sums;
}

Status Replicas::ApplySnapshotPages(const std::string& tenant, Copy& copy,
                                    std::string_view payload) {
  SILO_ASSIGN_OR_RETURN(SnapshotPages p, DecodeSnapshotPages(payload));
  if (p.lineage.size() != kLineageSize || p.hash.size() != kHashSize) {
    return InvalidArgument("bad lineage or hash");
  }
  SILO_RETURN_IF_ERROR(CheckSnapshotPiece(copy, p.term, p.offset));
  const std::string dir = Dir(tenant);
  const std::string partial = dir + "/" + kPartialName;
  if (p.offset == 0) {
    SILO_RETURN_IF_ERROR(CopyWhole(dir + "/" + kReplicaDatabaseName, partial));
  }
  for (const PageRun& run : p.runs) {
    SILO_RETURN_IF_ERROR(WriteAt(partial, run.offset, run.bytes, /*fresh=*/false));
  }
  copy.snapshot_next = p.offset + p.span;
  if (copy.snapshot_next < p.total) return Status::Ok();

  copy.snapshot_next = 0;
  if (::truncate(partial.c_str(), static_cast<off_t>(p.total)) != 0) {
    return DiskError("truncate snapshot");
  }
  auto digest = crypto::DigestFile(partial);
  if (!digest.ok()) return DiskError("read snapshot");
  if (crypto::HexEncode(p.file_sha256) != digest->sha256) {
    ::unlink(partial.c_str());
    return DataLoss("the pages sent do not make the primary's file");
  }
  return InstallSnapshot(tenant, copy, ReplicaPosition{p.lineage, p.term, p.seq, p.hash, 0});
}

Status Replicas::InstallSnapshot(const std::string& tenant, Copy& copy, const ReplicaPosition& at) {
  const std::string dir = Dir(tenant);
  const std::string partial = dir + "/" + kPartialName;
  copy.snapshot_next = 0;
  copy.applier.reset();
  (void)Unpark(tenant);
  SILO_RETURN_IF_ERROR(SyncFile(partial));
  if (::unlink((dir + "/" + kReplicaWalName).c_str()) != 0 && errno != ENOENT) {
    return DiskError("unlink wal");
  }
  if (::rename(partial.c_str(), (dir + "/" + kReplicaDatabaseName).c_str()) != 0) {
    return DiskError("rename snapshot");
  }
  SILO_RETURN_IF_ERROR(SyncDir(dir));
  SILO_RETURN_IF_ERROR(Applier::Install(dir, at));
  SILO_ASSIGN_OR_RETURN(copy.applier, Applier::Open(dir, recent_));
  return Status::Ok();
}

cluster::Message Replicas::Answer(const cluster::Message& m, const Copy* copy, Status s) {
  cluster::Message answer{m.tenant, kAck, m.seq, {}};
  if (s.ok()) {
    if (copy->applier) {
      answer.payload = EncodeAck(copy->applier->position().seq, copy->applier->position().hash);
    } else {
      answer.payload = EncodeAck(0, std::string(kHashSize, '\0'));  // mid-snapshot
    }
    return answer;
  }
  if (s.code() == StatusCode::kFailedPrecondition ||
      (s.code() == StatusCode::kDataLoss && m.kind == kSegment &&
       s.message().find("diverged") != std::string::npos)) {
    answer.kind = kNeedSnapshot;
  } else {
    answer.kind = kRefused;
    log::Warn("replication.refused", {{"tenant", m.tenant}, {"reason", s.ToString()}});
  }
  answer.payload = s.message();
  return answer;
}

}  // namespace silo::replication
