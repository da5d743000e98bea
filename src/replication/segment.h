// Replication segments: what a primary ships to its followers.
//
// A segment is a run of the changes the storage layer made to one tenant's
// `tenant.db` and `tenant.db-wal` below the cipher VFS (storage/repl_vfs.h),
// in the order they were made, ending at a publish point (a sync, a WAL
// truncate or delete). The bytes are the sealed bytes on the primary's disk:
// a follower applies them without any key and never sees plaintext.
//
// Segments form a hash chain per lineage: `hash` = SHA-256 of every encoded
// byte before it (BLAKE2b-256 in format 1, still read), and each header
// names the previous segment's hash.
// A follower cannot check the masked WAL checksums (no key), so the chain is
// what tells it that it holds exactly the primary's sequence of changes.
// The encoding is in docs/formats.md ("Replication segment").
#ifndef SILO_REPLICATION_SEGMENT_H_
#define SILO_REPLICATION_SEGMENT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::replication {

enum class FileId : uint8_t { kDatabase = 0, kWal = 1 };

enum class OpKind : uint8_t {
  kWrite = 1,     // bytes at offset
  kTruncate = 2,  // the file cut to `offset` bytes
  kSync = 3,      // the primary made the file durable here
  kDelete = 4,    // the file removed
};

struct Op {
  OpKind kind = OpKind::kWrite;
  FileId file = FileId::kDatabase;
  int64_t offset = 0;  // kWrite: where; kTruncate: the new size
  std::string bytes;   // kWrite only

  bool operator==(const Op&) const = default;
};

inline constexpr size_t kLineageSize = 16;
inline constexpr size_t kHashSize = 32;
// Bounds a decoder enforces (a segment is one transaction's changes or one
// checkpoint's; a primary cuts larger runs before they reach these).
inline constexpr size_t kMaxSegmentBytes = size_t{64} << 20;
inline constexpr size_t kMaxWriteBytes = size_t{1} << 20;
inline constexpr int64_t kMaxOffset = int64_t{1} << 44;

struct SegmentHeader {
  std::string lineage;    // kLineageSize random bytes: one history of one database
  uint64_t term = 0;      // the primary's fencing term when it cut the segment
  uint64_t seq = 0;       // 1 for a lineage's first segment, then +1
  std::string prev_hash;  // kHashSize bytes; zeros for seq 1
};

struct Segment {
  SegmentHeader header;
  std::vector<Op> ops;
  std::string hash;  // kHashSize bytes
};

// The storage format's page and WAL geometry (docs/storage_format.md): the
// cipher VFS refuses any other page size, so a copy may rely on it.
inline constexpr int64_t kPageSize = 4096;
inline constexpr int64_t kWalHeaderSize = 32;
inline constexpr int64_t kFrameHeaderSize = 24;
inline constexpr int64_t kFrameSize = kFrameHeaderSize + kPageSize;

// Where a copy of a chain stands (a follower's, or the primary's own files
// at a cut: LiveHead).
struct ReplicaPosition {
  std::string lineage;  // empty before the first segment or snapshot
  uint64_t term = 0;
  uint64_t seq = 0;  // 0: a snapshot taken before the lineage's first segment
  std::string hash;  // of segment `seq` (zeros for 0)
  // The WAL frame (from 1) of the last commit written since the WAL last
  // started; 0 when it holds none. What SQLite must recover at promotion:
  // fewer means the log ends early (a damaged frame), and the follower
  // refuses to be promoted.
  uint32_t wal_commit_frame = 0;
};

// The position after a segment of `ops` (its `header` and `hash`) from `p`:
// it follows the WAL's last commit frame. A header written at the start (a
// restart) or a delete begins a new log; a truncate that cuts the frame off
// leaves none; a frame header whose commit size (in the clear) is not 0 is a
// commit. A write may hold several whole frames (contiguous writes,
// coalesced). `*wal_restarted`, when not null, is set when the WAL began
// anew or went in these ops (its commit frame is then known from them alone).
ReplicaPosition NextPosition(const ReplicaPosition& p, const SegmentHeader& header,
                             const std::vector<Op>& ops, const std::string& hash,
                             bool* wal_restarted = nullptr);

// Encodes a segment and computes its hash (returned in `hash` when not null).
// REQUIRES: lineage and prev_hash of the right sizes, seq >= 1, ops within
// the bounds above (a primary's own changes always are).
std::string EncodeSegment(const SegmentHeader& header, const std::vector<Op>& ops,
                          std::string* hash = nullptr);

// Decodes and checks a segment: framing, bounds, known kinds and files, and
// its own hash. DataLoss for anything that is not a whole, intact segment.
Result<Segment> DecodeSegment(std::string_view encoded);

// The seq an encoded segment's header names, read without checking anything
// else (not its hash): for records only skipped or counted, never applied or
// sent on unchecked. 0 when it is shorter than a header or of another format.
uint64_t PeekSegmentSeq(std::string_view encoded);

// A run of encoded segments as a file holds them (a follower's journal and
// history, a stopped primary's chain.recent; docs/formats.md): each as its
// length (4 bytes, little-endian), then its bytes.
void AppendSegmentRecord(std::string& out, std::string_view encoded);
// The whole records of `bytes`, in order, each a view of its encoded segment
// (not checked: DecodeSegment before use); the first torn one (the process
// died writing it) ends them.
std::vector<std::string_view> SegmentRecords(std::string_view bytes);

}  // namespace silo::replication

#endif  // SILO_REPLICATION_SEGMENT_H_
