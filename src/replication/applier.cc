#include "replication/applier.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "base/file_util.h"
#include "crypto/crypto.h"
#include "replication/disk_internal.h"
#include "replication/segment.h"

namespace silo::replication {
namespace {

using internal::DiskError;
using internal::GetUint;
using internal::PutUint;
using internal::PwriteAll;

// replica.pos: two slots of kSlotSize bytes; a position goes to slot seq % 2,
// or to the other one when that slot holds the newest position (a run of
// segments made durable together skips seqs), so a torn write never takes
// the only intact newest position with it.
constexpr std::string_view kSlotMagic = "SLRP";
constexpr uint8_t kSlotVersion = 1;
constexpr int64_t kSlotSize = 128;
// magic, version + 3 zero bytes, seq, term, commit frame, lineage, hash
constexpr size_t kSlotBody = 4 + 4 + 8 + 8 + 4 + kLineageSize + kHashSize;

std::string EncodeSlot(const ReplicaPosition& p) {
  std::string out(kSlotMagic);
  PutUint(out, kSlotVersion, 4);
  PutUint(out, p.seq, 8);
  PutUint(out, p.term, 8);
  PutUint(out, p.wal_commit_frame, 4);
  out.append(p.lineage);
  out.append(p.hash);
  out.append(crypto::Blake2b256({out}));
  out.resize(kSlotSize, '\0');
  return out;
}

// The position in a slot, or nullopt for a torn, empty or foreign one.
std::optional<ReplicaPosition> DecodeSlot(std::string_view slot) {
  if (slot.size() < kSlotBody + kHashSize) return std::nullopt;
  std::string_view body = slot.substr(0, kSlotBody);
  if (!body.starts_with(kSlotMagic) || GetUint(body.data() + 4, 4) != kSlotVersion ||
      !crypto::ConstantTimeEquals(crypto::Blake2b256({body}), slot.substr(kSlotBody, kHashSize))) {
    return std::nullopt;
  }
  ReplicaPosition p;
  p.seq = GetUint(body.data() + 8, 8);
  p.term = GetUint(body.data() + 16, 8);
  p.wal_commit_frame = static_cast<uint32_t>(GetUint(body.data() + 24, 4));
  p.lineage.assign(body.substr(28, kLineageSize));
  p.hash.assign(body.substr(28 + kLineageSize, kHashSize));
  return p;
}

}  // namespace

// The journal becomes the copy's history (`replica.prev`, replacing the one
// before) at the first position write once it holds this much, all of it
// recorded then: the copy keeps on disk at least this much of the segments
// it applied last (History; as much as a copy keeps in memory,
// RecentBudget::per_copy), and at most about twice as much plus what is
// not recorded yet (kJournalCap).
constexpr int64_t kHistoryBytes = int64_t{8} << 20;

// The copy's open files. A descriptor is -1 until first needed.
struct Applier::Files {
  std::string dir;
  int fd[2] = {-1, -1};  // by FileId
  bool dirty[2] = {false, false};
  int position_fd = -1;
  int newest_slot = -1;  // the slot holding the newest position; -1: none
  int journal_fd = -1;
  int64_t journal_size = 0;      // the journal's records, in bytes
  int64_t journal_recorded = 0;  // of which behind the recorded position
  bool journal_synced = true;    // nothing journaled since its last fdatasync

  ~Files() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
    if (position_fd >= 0) ::close(position_fd);
    if (journal_fd >= 0) ::close(journal_fd);
  }

  std::string JournalPath() const { return dir + "/" + kReplicaJournalName; }
  std::string HistoryPath() const { return dir + "/" + kReplicaHistoryName; }
  int64_t Unrecorded() const { return journal_size - journal_recorded; }

  // The journal, all of it recorded, becomes the history, replacing the one
  // before; the next segment starts a new journal, whose creation makes the
  // rename durable (until then a crash leaves the old names: the same
  // records, all behind the position).
  Status RetireJournal() {
    ::close(journal_fd);
    journal_fd = -1;
    journal_size = journal_recorded = 0;
    if (::rename(JournalPath().c_str(), HistoryPath().c_str()) != 0) {
      return DiskError("rename journal");
    }
    return Status::Ok();
  }

  // Appends one segment to the journal, as a record (AppendSegmentRecord:
  // its length, then its bytes, written in place). Durable at the next SyncJournal (applier.h).
  Status Journal(std::string_view encoded) {
    if (journal_fd < 0) {
      const bool existed = PathExists(JournalPath());
      journal_fd = ::open(JournalPath().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (journal_fd < 0) return DiskError("open journal");
      if (::ftruncate(journal_fd, 0) != 0) return DiskError("ftruncate journal");
      journal_size = journal_recorded = 0;
      journal_synced = true;
      if (!existed) SILO_RETURN_IF_ERROR(SyncDir(dir));  // its name survives a power loss
    }
    std::string length;
    PutUint(length, encoded.size(), 4);
    SILO_RETURN_IF_ERROR(PwriteAll(journal_fd, length, journal_size));
    SILO_RETURN_IF_ERROR(PwriteAll(journal_fd, encoded, journal_size + 4));
    journal_size += 4 + static_cast<int64_t>(encoded.size());
    journal_synced = false;
    return Status::Ok();
  }

  // Makes the journal's records durable.
  Status SyncJournal() {
    if (journal_fd < 0 || journal_synced) return Status::Ok();
    if (::fdatasync(journal_fd) != 0) return DiskError("fdatasync journal");
    journal_synced = true;
    return Status::Ok();
  }

  std::string Path(FileId id) const {
    return dir + "/" + (id == FileId::kWal ? kReplicaWalName : kReplicaDatabaseName);
  }

  Result<int> Fd(FileId id) {
    int& f = fd[static_cast<int>(id)];
    if (f >= 0) return f;
    std::string path = Path(id);
    bool existed = PathExists(path);
    f = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0) return DiskError("open");
    if (!existed) SILO_RETURN_IF_ERROR(SyncDir(dir));  // the new file's name is durable
    return f;
  }

  Status Sync(FileId id) {
    SILO_ASSIGN_OR_RETURN(int f, Fd(id));
    if (::fdatasync(f) != 0) return DiskError("fdatasync");
    dirty[static_cast<int>(id)] = false;
    return Status::Ok();
  }

  Status Apply(const Op& op) {
    int i = static_cast<int>(op.file);
    switch (op.kind) {
      case OpKind::kWrite: {
        SILO_ASSIGN_OR_RETURN(int f, Fd(op.file));
        SILO_RETURN_IF_ERROR(PwriteAll(f, op.bytes, op.offset));
        dirty[i] = true;
        return Status::Ok();
      }
      case OpKind::kTruncate: {
        SILO_ASSIGN_OR_RETURN(int f, Fd(op.file));
        if (::ftruncate(f, op.offset) != 0) return DiskError("ftruncate");
        dirty[i] = true;
        return Status::Ok();
      }
      case OpKind::kSync: return Sync(op.file);
      case OpKind::kDelete:
        if (fd[i] >= 0) ::close(fd[i]);
        fd[i] = -1;
        dirty[i] = false;
        if (::unlink(Path(op.file).c_str()) != 0 && errno != ENOENT) return DiskError("unlink");
        return SyncDir(dir);
    }
    return Internal("unknown op");
  }

  Status WritePosition(const ReplicaPosition& p) {
    if (position_fd < 0) {
      position_fd =
          ::open((dir + "/" + kReplicaPositionName).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (position_fd < 0) return DiskError("open position");
      SILO_RETURN_IF_ERROR(SyncDir(dir));
    }
    std::string slot = EncodeSlot(p);
    int index = static_cast<int>(p.seq % 2);
    if (index == newest_slot) index = 1 - index;
    SILO_RETURN_IF_ERROR(PwriteAll(position_fd, slot, int64_t{index} * kSlotSize));
    if (::fdatasync(position_fd) != 0) return DiskError("fdatasync position");
    newest_slot = index;
    // Recorded: what the journal holds is behind the position now, the
    // copy's history, retired once there is enough of it.
    journal_recorded = journal_size;
    if (journal_size >= kHistoryBytes) return RetireJournal();
    return Status::Ok();
  }
};

namespace {

// The position `replica.pos` in `dir` records (none: an empty copy), and in
// `newest_slot` the slot holding it (-1: none).
Result<ReplicaPosition> ReadSlots(const std::string& dir, int& newest_slot) {
  ReplicaPosition position;
  newest_slot = -1;
  std::string path = dir + "/" + kReplicaPositionName;
  if (!PathExists(path)) return position;
  SILO_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  std::optional<ReplicaPosition> a = DecodeSlot(std::string_view(bytes).substr(0, kSlotSize));
  std::optional<ReplicaPosition> b = bytes.size() > kSlotSize
                                         ? DecodeSlot(std::string_view(bytes).substr(kSlotSize))
                                         : std::nullopt;
  if (!a && !b) {
    return DataLoss("the replica's position is damaged: it needs a new snapshot");
  }
  bool first = a && (!b || a->seq > b->seq);
  newest_slot = first ? 0 : 1;
  return first ? *a : *b;
}

}  // namespace

Result<ReplicaPosition> Applier::RecordedPosition(const std::string& dir) {
  int newest_slot = -1;
  return ReadSlots(dir, newest_slot);
}

Result<std::unique_ptr<Applier>> Applier::Open(const std::string& dir,
                                               std::shared_ptr<RecentBudget> recent) {
  SILO_RETURN_IF_ERROR(MakeDirs(dir));
  int newest_slot = -1;
  SILO_ASSIGN_OR_RETURN(ReplicaPosition position, ReadSlots(dir, newest_slot));
  auto files = std::make_unique<Files>();
  files->dir = dir;
  files->newest_slot = newest_slot;
  std::unique_ptr<Applier> applier(
      new Applier(std::move(position), std::move(files), std::move(recent)));
  SILO_RETURN_IF_ERROR(applier->RollForward());
  return applier;
}

Status Applier::RollForward() {
  const std::string path = files_->JournalPath();
  if (!PathExists(path)) return Status::Ok();
  {
    // What a process that died left in the kernel's cache is made durable
    // before any of it reaches the files.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return DiskError("open journal");
    const int rc = ::fdatasync(fd);
    ::close(fd);
    if (rc != 0) return DiskError("fdatasync journal");
  }
  SILO_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  size_t kept = 0;  // the journal's bytes up to the last record kept
  for (std::string_view encoded : SegmentRecords(bytes)) {
    // Recorded before: history, only skipped (History checks it whole).
    const uint64_t seq = PeekSegmentSeq(encoded);
    if (seq == 0) break;
    if (seq > position_.seq) {
      Result<Segment> segment = DecodeSegment(encoded);
      if (!segment.ok()) break;
      Status s = ApplyDecoded(*std::move(segment), encoded, /*may_defer=*/true, /*journal=*/false);
      // One that does not continue the chain ends the roll forward (nothing
      // of it was written); a disk that fails fails the open.
      if (s.code() == StatusCode::kInternal) return s;
      if (!s.ok()) break;
    }
    kept = static_cast<size_t>(encoded.data() + encoded.size() - bytes.data());
  }
  // Recorded before the journal goes on (journal_fd is not open yet: the
  // position write leaves the file alone).
  if (deferred_) SILO_RETURN_IF_ERROR(Record());
  // It goes on, all of it history now, without what ended the roll forward.
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return DiskError("open journal");
  files_->journal_fd = fd;
  if (::ftruncate(fd, static_cast<off_t>(kept)) != 0) return DiskError("ftruncate journal");
  files_->journal_size = files_->journal_recorded = static_cast<int64_t>(kept);
  if (files_->journal_size >= kHistoryBytes) return files_->RetireJournal();
  return Status::Ok();
}

std::vector<std::string> Applier::History(const std::string& dir, size_t max_bytes) {
  int newest_slot = -1;
  auto position = ReadSlots(dir, newest_slot);
  if (!position.ok() || position->seq == 0) return {};
  // The records of the history, then of the journal, oldest first.
  std::vector<std::string> files;
  files.reserve(2);  // never moved: `records` points into them
  std::vector<std::string_view> records;
  for (const char* name : {kReplicaHistoryName, kReplicaJournalName}) {
    auto bytes = ReadFile(dir + "/" + name);
    if (!bytes.ok()) continue;
    files.push_back(*std::move(bytes));
    for (std::string_view r : SegmentRecords(files.back())) records.push_back(r);
  }
  // From the position back, each the one its successor names.
  std::vector<std::string> kept;
  uint64_t seq = position->seq;
  std::string hash = position->hash;
  size_t bytes = 0;
  for (auto it = records.rbegin(); it != records.rend() && seq > 0; ++it) {
    if (PeekSegmentSeq(*it) > seq) continue;  // past the position (not recorded)
    if (!kept.empty() && bytes + it->size() > max_bytes) break;
    Result<Segment> segment = DecodeSegment(*it);
    if (!segment.ok() || segment->header.seq != seq || segment->hash != hash ||
        segment->header.lineage != position->lineage) {
      break;
    }
    kept.emplace_back(*it);
    bytes += it->size();
    hash = segment->header.prev_hash;
    --seq;
  }
  std::reverse(kept.begin(), kept.end());
  return kept;
}

Status Applier::Install(const std::string& dir, const ReplicaPosition& position) {
  std::string slots(2 * kSlotSize, '\0');
  slots.replace(static_cast<size_t>(position.seq % 2) * kSlotSize, kSlotSize, EncodeSlot(position));
  SILO_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kReplicaPositionName, slots));
  // Segments journaled before the snapshot precede it.
  for (const char* name : {kReplicaJournalName, kReplicaHistoryName}) {
    const std::string path = dir + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return DiskError("unlink journal");
  }
  return Status::Ok();
}

Applier::Applier(ReplicaPosition position, std::unique_ptr<Files> files,
                 std::shared_ptr<RecentBudget> recent)
    : position_(std::move(position)), files_(std::move(files)), budget_(std::move(recent)) {}

Applier::~Applier() { TakeRecent(); }

namespace {

// A segment that only appends WAL frames (a commit's): its sync may wait, as
// SQLite's own synchronous=NORMAL lets a commit's, since the journal holds
// it. A checkpoint or a new log (a header) is recorded at once.
bool OnlyAppendsFrames(const Segment& segment) {
  for (const Op& op : segment.ops) {
    if (op.file != FileId::kWal) return false;
    if (op.kind == OpKind::kSync) continue;
    if (op.kind != OpKind::kWrite || op.offset < kWalHeaderSize) return false;
  }
  return true;
}

size_t WrittenBytes(const Segment& segment) {
  size_t n = 0;
  for (const Op& op : segment.ops) n += op.bytes.size();
  return n;
}

// A journal's records at most, between two position writes: a follower
// reopened rolls forward through at most this much.
constexpr int64_t kJournalCap = int64_t{16} << 20;
// Deferred bytes held in memory at most: more are written out at once.
constexpr size_t kMaxUnappliedBytes = size_t{8} << 20;

}  // namespace

Status Applier::WriteUnapplied() {
  if (unapplied_.empty()) return Status::Ok();
  // The journal holds them durably before any of their bytes reach the
  // files (applier.h): a power loss never leaves a file past its journal.
  SILO_RETURN_IF_ERROR(files_->SyncJournal());
  for (const Segment& segment : unapplied_) {
    for (const Op& op : segment.ops) {
      if (op.kind != OpKind::kSync) SILO_RETURN_IF_ERROR(files_->Apply(op));
    }
  }
  unapplied_.clear();
  unapplied_bytes_ = 0;
  return Status::Ok();
}

Status Applier::Record() {
  SILO_RETURN_IF_ERROR(WriteUnapplied());
  for (FileId id : {FileId::kDatabase, FileId::kWal}) {
    if (files_->dirty[static_cast<int>(id)]) SILO_RETURN_IF_ERROR(files_->Sync(id));
  }
  // Whatever the files hold is durable before the position says so; the
  // position write empties the journal.
  SILO_RETURN_IF_ERROR(files_->WritePosition(position_));
  deferred_ = false;
  return Status::Ok();
}

Status Applier::Flush() {
  if (!deferred_) return Status::Ok();
  SILO_RETURN_IF_ERROR(WriteUnapplied());
  if (files_->Unrecorded() >= kJournalCap) return Record();
  deferred_ = false;
  return Status::Ok();
}

Status Applier::Settle() {
  if (files_->Unrecorded() == 0 && !deferred_) return Status::Ok();
  return Record();
}

Status Applier::Apply(std::string_view encoded, bool may_defer) {
  SILO_ASSIGN_OR_RETURN(Segment segment, DecodeSegment(encoded));
  return ApplyDecoded(std::move(segment), encoded, may_defer, /*journal=*/true);
}

Status Applier::ApplyDecoded(Segment segment, std::string_view encoded, bool may_defer,
                             bool journal) {
  const SegmentHeader& h = segment.header;
  ReplicaPosition& p = position_;
  if (p.lineage.empty()) {
    if (h.seq != 1 || h.prev_hash != std::string(kHashSize, '\0')) {
      return FailedPrecondition("an empty replica starts at a lineage's first segment");
    }
    // A database with no position is no copy of any chain (a former
    // primary's files, Replicas::SeedFrom): only a snapshot replaces it.
    // (One rolled forward was taken before: its own bytes may be there.)
    if (journal && PathExists(files_->dir + "/" + kReplicaDatabaseName)) {
      return FailedPrecondition("a replica holding files of no position needs a snapshot");
    }
  } else {
    if (h.lineage != p.lineage) {
      return FailedPrecondition("a segment of another lineage: the replica needs a snapshot");
    }
    if (h.term < p.term) return PermissionDenied("a segment of a stale term: a deposed primary");
    if (h.seq == p.seq && segment.hash == p.hash) return Status::Ok();  // a resend
    if (h.seq <= p.seq) return FailedPrecondition("a segment behind the replica");
    if (h.seq > p.seq + 1) return FailedPrecondition("a gap before this segment");
    if (h.prev_hash != p.hash) {
      return DataLoss("the segment does not follow the replica's chain: diverged");
    }
  }

  if (journal) SILO_RETURN_IF_ERROR(files_->Journal(encoded));
  ReplicaPosition next = NextPosition(p, segment.header, segment.ops, segment.hash);
  if (may_defer && OnlyAppendsFrames(segment)) {
    // Its bytes wait in memory until the journal is synced (Flush).
    unapplied_bytes_ += WrittenBytes(segment);
    const uint64_t seq = segment.header.seq;
    unapplied_.push_back(std::move(segment));
    position_ = std::move(next);
    deferred_ = true;
    Remember(seq, encoded);
    if (unapplied_bytes_ >= kMaxUnappliedBytes) return Flush();
    return Status::Ok();
  }
  // The deferred segments before it, then it, each durable in the journal
  // before its bytes reach the files; the frames it may copy (a checkpoint)
  // durable in the WAL before it changes anything.
  SILO_RETURN_IF_ERROR(WriteUnapplied());
  for (FileId id : {FileId::kDatabase, FileId::kWal}) {
    if (files_->dirty[static_cast<int>(id)]) SILO_RETURN_IF_ERROR(files_->Sync(id));
  }
  SILO_RETURN_IF_ERROR(files_->SyncJournal());
  for (const Op& op : segment.ops) SILO_RETURN_IF_ERROR(files_->Apply(op));
  position_ = std::move(next);
  Remember(h.seq, encoded);
  return Record();
}

void Applier::Remember(uint64_t seq, std::string_view encoded) {
  if (!budget_) return;
  if (!recent_.empty() && recent_.back().first + 1 != seq) {
    TakeRecent();  // not contiguous (cannot happen: applied in order)
  }
  // The oldest go while this one would pass a bound (all of them, when it
  // alone does). The last to go lends its buffer when about the right size:
  // a busy copy then allocates nothing and faults in no fresh pages per
  // segment, and holds no buffer much larger than what it counts.
  std::string buffer;
  while (!recent_.empty() && (recent_bytes_ + encoded.size() > budget_->per_copy ||
                              budget_->held.load() + encoded.size() > budget_->total)) {
    buffer = std::move(recent_.front().second);
    recent_bytes_ -= buffer.size();
    budget_->held -= buffer.size();
    recent_.pop_front();
  }
  if (buffer.capacity() > 2 * encoded.size()) buffer = std::string();
  buffer.assign(encoded);
  recent_bytes_ += encoded.size();
  budget_->held += encoded.size();
  recent_.emplace_back(seq, std::move(buffer));
}

void Applier::Seed(std::vector<std::string> segments) {
  if (!budget_ || segments.empty() || !recent_.empty() || segments.size() > position_.seq) {
    return;
  }
  auto last = DecodeSegment(segments.back());
  if (!last.ok() || last->header.seq != position_.seq || last->hash != position_.hash) return;
  // Contiguous, as TakeRecent gave them (a chain: Shipper::ContinueFrom
  // checks the links again before it retains any).
  uint64_t seq = position_.seq - segments.size() + 1;
  for (const std::string& encoded : segments) Remember(seq++, encoded);
}

std::vector<std::string> Applier::TakeRecent() {
  std::vector<std::string> taken;
  taken.reserve(recent_.size());
  for (auto& [seq, encoded] : recent_) taken.push_back(std::move(encoded));
  recent_.clear();
  if (budget_) budget_->held -= recent_bytes_;
  recent_bytes_ = 0;
  return taken;
}

}  // namespace silo::replication
