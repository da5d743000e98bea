// What a primary and a follower say to each other over a node link
// (cluster/peer_link.h): message kinds and the snapshot chunk header. The
// formats are in docs/formats.md ("Replication messages").
#ifndef SILO_REPLICATION_PROTOCOL_H_
#define SILO_REPLICATION_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::replication {

enum MessageKind : uint8_t {
  // primary -> follower
  kSnapshotChunk = 1,   // payload: SnapshotChunk
  kSegment = 2,         // payload: an encoded segment (segment.h)
  kTenantFiles = 6,     // payload: TenantFiles, before each snapshot
  kProbe = 7,           // empty: where does the copy stand? (answered kAck)
  kBlobChunk = 8,       // payload: BlobChunk (answered kAck once written; the last, once durable)
  kBlobRemove = 9,      // payload: BlobRemove (answered kAck)
  kBlobList = 10,       // payload: a blob list (answered kBlobWant)
  kBlobHeld = 12,       // payload: a blob cursor (answered kBlobHeldIds)
  kUploadPart = 14,     // payload: BlobChunk of an upload's part (answered as kBlobChunk)
  kUploadRemove = 15,   // payload: BlobRemove of an upload's part (answered kAck)
  kBlobFromPart = 16,   // payload: BlobFromPart (answered kAck once the blob is durable)
  kPageSums = 17,       // empty: what the copy's database holds (answered kPageSumList)
  kSnapshotPages = 18,  // payload: SnapshotPages (answered as kSnapshotChunk)
  // follower -> primary
  kAck = 3,           // payload: seq (8 bytes) and hash (32) the copy now holds
  kNeedSnapshot = 4,  // payload: why (the copy cannot take segments of this chain)
  kRefused = 5,       // payload: why (damaged, stale term, bad tenant id)
  kBlobWant = 11,     // payload: the ids of a kBlobList's blobs the copy lacks
  kBlobHeldIds = 13,  // payload: the ids of the blobs the copy holds after the cursor
  kPageSumList = 19,  // payload: PageSums
};

// A piece of a snapshot: the database file (sealed bytes, as on the
// primary's disk right after a TRUNCATE checkpoint, so there is no WAL) at
// the point of a chain after which segments continue.
struct SnapshotChunk {
  std::string lineage;  // kLineageSize bytes
  uint64_t term = 0;
  uint64_t seq = 0;     // the chain head the snapshot stands at (0: none yet)
  std::string hash;     // kHashSize bytes (zeros for seq 0)
  uint64_t offset = 0;  // where `bytes` go in the file
  uint64_t total = 0;   // the file's size
  std::string bytes;
};

inline constexpr size_t kSnapshotChunkBytes = size_t{4} << 20;

std::string EncodeSnapshotChunk(const SnapshotChunk& chunk);
// InvalidArgument for anything that is not one.
Result<SnapshotChunk> DecodeSnapshotChunk(std::string_view payload);

// A snapshot sent as the pages that differ from those the follower's copy
// holds (a copy that left the chain: diverged, ahead of a new primary, too
// far behind, of an ended term; most of its pages are still the primary's,
// byte for byte): the follower first says what its database file holds,
// one sum per page (PageSums, answering kPageSums); the primary then sends
// each span of its file as the pages whose sums differ (SnapshotPages).
// The follower makes the new file of its own and those pages, and installs
// it only when the SHA-256 of the whole, which the last span carries, is
// the primary's file's.
inline constexpr size_t kPageSumBytes = 8;
// Past this many pages (16 GiB) a copy sends no sums, a whole snapshot
// goes (their answer stays within cluster::kMaxPayload).
inline constexpr size_t kMaxPageSums = size_t{1} << 22;
struct PageSums {
  uint64_t size = 0;  // of the copy's database file
  // kPageSumBytes per kPageSize bytes of the file from its start (a short
  // last page summed as it is): PageSum of each. Empty past kMaxPageSums.
  std::string sums;
};
// The first kPageSumBytes of the SHA-256 of `page`.
std::string PageSum(std::string_view page);
std::string EncodePageSums(const PageSums& sums);
// InvalidArgument unless the sums are as many as the size's pages (or none).
Result<PageSums> DecodePageSums(std::string_view payload);

struct PageRun {
  uint64_t offset = 0;  // in the file
  std::string bytes;
};
struct SnapshotPages {
  std::string lineage;  // as SnapshotChunk
  uint64_t term = 0;
  uint64_t seq = 0;
  std::string hash;
  uint64_t offset = 0;  // the span of the file this covers: [offset, offset + span)
  uint64_t span = 0;    // at most kSnapshotChunkBytes
  uint64_t total = 0;   // the file's size
  // kHashSize bytes: SHA-256 of the whole file, in the span that ends it;
  // empty in the others.
  std::string file_sha256 = std::string();
  // The span's bytes that differ from the copy's, ascending, not
  // overlapping, inside it.
  std::vector<PageRun> runs = {};
};
std::string EncodeSnapshotPages(const SnapshotPages& pages);
// InvalidArgument for anything that is not one.
Result<SnapshotPages> DecodeSnapshotPages(std::string_view payload);

// What a follower keeps beside a tenant's copy so that it can be promoted:
// the tenant's metadata file (tenant/registry.h; its customer fields are
// sealed) and its data key as the keyring holds it, wrapped under the
// master key. Neither is readable without the master key.
struct TenantFiles {
  std::string meta;
  std::string wrapped_key;
};
inline constexpr size_t kMaxTenantFileBytes = size_t{64} << 10;

std::string EncodeTenantFiles(const TenantFiles& files);
// InvalidArgument for anything that is not one (either part over
// kMaxTenantFileBytes, or empty).
Result<TenantFiles> DecodeTenantFiles(std::string_view payload);

// A tenant's file blobs (files/blob.h) travel as the sealed files they are
// on the primary's disk: a follower stores them beside its copy
// (files/b/<aa>/<id>.sf) and can read none of them. A blob id is 32
// lowercase hex digits (layout::ValidBlobId), so it names no other path.
inline constexpr size_t kBlobIdSize = 32;
inline constexpr size_t kBlobChunkBytes = size_t{1} << 20;
// A sealed blob's header (files/blob.h): its first bytes.
inline constexpr size_t kBlobHeaderBytes = 64;

// A piece of blob `id`: `bytes` at `offset` of a file of `total` bytes.
struct BlobChunk {
  std::string id;
  uint64_t offset = 0;
  uint64_t total = 0;
  std::string bytes;
};
std::string EncodeBlobChunk(const BlobChunk& chunk);
// InvalidArgument for anything that is not one.
Result<BlobChunk> DecodeBlobChunk(std::string_view payload);

// Blob `id` is gone from the primary (purged, collected) under `term`: a
// copy that has seen a higher term refuses it (a deposed primary).
struct BlobRemove {
  uint64_t term = 0;
  std::string id;
};
std::string EncodeBlobRemove(const BlobRemove& remove);
Result<BlobRemove> DecodeBlobRemove(std::string_view payload);

// A blob list (id, size and key epoch each; at most kMaxBlobListEntries)
// and the answer's ids. A blob sealed again by a re-key keeps its id and
// size: its epoch tells the copies apart.
struct BlobEntry {
  std::string id;
  uint64_t size = 0;
  uint32_t epoch = 0;
};
// The key epoch a sealed blob's header names (files/blob.h: big-endian, at
// byte 12), read from `path`; 0 for a file too short to have one. Internal
// when there is no file or it cannot be read.
Result<uint32_t> BlobKeyEpoch(const std::string& path);
inline constexpr size_t kMaxBlobListEntries = 50'000;
std::string EncodeBlobList(const std::vector<BlobEntry>& entries);
Result<std::vector<BlobEntry>> DecodeBlobList(std::string_view payload);
std::string EncodeBlobIds(const std::vector<std::string>& ids);
Result<std::vector<std::string>> DecodeBlobIds(std::string_view payload);
// A kBlobHeld cursor is blob ids too: none (from the first) or one, the
// last id of the answer before. The answer lists the ids after it, in
// increasing order, at most kMaxBlobListEntries: fewer means the end.

// A resumable upload is complete on the primary: its blob `id` is the part
// the copy was sent as it grew (kUploadPart), `total` bytes whose SHA-256
// (32 raw bytes) is `sha256`. A copy whose part is that makes it the blob
// (a rename: its bytes do not travel twice); one whose part is not
// answers kNeedSnapshot and is sent the blob whole (kBlobChunk).
struct BlobFromPart {
  std::string id;
  uint64_t total = 0;
  std::string sha256;
};
std::string EncodeBlobFromPart(const BlobFromPart& m);
Result<BlobFromPart> DecodeBlobFromPart(std::string_view payload);

std::string EncodeAck(uint64_t seq, const std::string& hash);
Result<std::pair<uint64_t, std::string>> DecodeAck(std::string_view payload);

}  // namespace silo::replication

#endif  // SILO_REPLICATION_PROTOCOL_H_
