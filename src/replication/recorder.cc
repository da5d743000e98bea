#include "replication/recorder.h"

#include <utility>

namespace silo::replication {
namespace {

FileId Id(storage::repl::File file) {
  return file == storage::repl::File::kWal ? FileId::kWal : FileId::kDatabase;
}

}  // namespace

SegmentRecorder::SegmentRecorder(std::string lineage, uint64_t term, ChainHead head,
                                 Publish publish)
    : lineage_(std::move(lineage)),
      term_(term),
      head_(std::move(head)),
      publish_(std::move(publish)) {}

void SegmentRecorder::SetCommitFrame(std::optional<uint32_t> wal_commit_frame) {
  position_.wal_commit_frame = wal_commit_frame.value_or(0);
  frame_known_ = wal_commit_frame.has_value();
}

void SegmentRecorder::KeepLiveHead(std::unique_ptr<LiveHead> live) {
  if (!live_) live_ = std::move(live);
}

void SegmentRecorder::BeforeChange() {
  if (live_) live_->MarkDirty();
}

void SegmentRecorder::Write(storage::repl::File file, int64_t offset, std::string_view bytes) {
  // A write that continues the one before it (a commit's frames, one after
  // the other) joins it: the same bytes at the same places, in one op that
  // a follower writes with one call.
  Op* last = pending_.empty() ? nullptr : &pending_.back();
  if (last != nullptr && last->kind == OpKind::kWrite && last->file == Id(file) &&
      last->offset + static_cast<int64_t>(last->bytes.size()) == offset &&
      last->bytes.size() + bytes.size() <= kMaxWriteBytes) {
    last->bytes.append(bytes);
  } else {
    pending_.push_back(Op{OpKind::kWrite, Id(file), offset, std::string(bytes)});
  }
  pending_bytes_ += bytes.size();
  if (pending_bytes_ >= kCutBytes) {
    // A long transaction: ship what it wrote so far. Any prefix of the
    // changes, in order, is a state the disk could hold at a crash, so this
    // is safe; the transaction's own sync still answers for the commit.
    Status s = Cut();
    if (!s.ok() && deferred_.ok()) deferred_ = std::move(s);
  }
}

void SegmentRecorder::Truncate(storage::repl::File file, int64_t size) {
  pending_.push_back(Op{OpKind::kTruncate, Id(file), size, {}});
  if (file == storage::repl::File::kWal) (void)Cut();  // nothing waits on a truncate
}

void SegmentRecorder::Delete(storage::repl::File file) {
  pending_.push_back(Op{OpKind::kDelete, Id(file), 0, {}});
  (void)Cut();
}

Status SegmentRecorder::Sync(storage::repl::File file) {
  pending_.push_back(Op{OpKind::kSync, Id(file), 0, {}});
  Status s = Cut();
  if (!deferred_.ok()) s = std::exchange(deferred_, Status::Ok());
  return s;
}

Status SegmentRecorder::Cut() {
  SegmentHeader header{lineage_, term_, head_.seq + 1, head_.hash};
  std::string hash;
  std::string encoded = EncodeSegment(header, pending_, &hash);
  bool restarted = false;
  position_ = NextPosition(position_, header, pending_, hash, &restarted);
  frame_known_ = frame_known_ || restarted;
  // Before the publish, which may wait: a process that dies meanwhile has
  // its files at this head, whether or not a follower got it.
  if (live_ && frame_known_) live_->MarkClean(position_);
  pending_.clear();
  pending_bytes_ = 0;
  head_ = ChainHead{header.seq, std::move(hash)};
  return publish_(header.seq, encoded);
}

}  // namespace silo::replication
