// What a primary and a follower say to each other over a node link
// (cluster/peer_link.h): message kinds and the snapshot chunk header. The
// formats are in docs/formats.md ("Replication messages").
#ifndef SILO_REPLICATION_PROTOCOL_H_
#define SILO_REPLICATION_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo::replication {

enum MessageKind : uint8_t {
  // primary -> follower
  kSnapshotChunk = 1,  // payload: SnapshotChunk
  kSegment = 2,        // payload: an encoded segment (segment.h)
  kTenantFiles = 6,    // payload: TenantFiles, before each snapshot
  kProbe = 7,          // empty: where does the copy stand? (answered kAck)
  // follower -> primary
  kAck = 3,           // payload: seq (8 bytes) and hash (32) the copy now holds
  kNeedSnapshot = 4,  // payload: why (the copy cannot take segments of this chain)
  kRefused = 5,       // payload: why (damaged, stale term, bad tenant id)
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

std::string EncodeAck(uint64_t seq, const std::string& hash);
Result<std::pair<uint64_t, std::string>> DecodeAck(std::string_view payload);

}  // namespace silo::replication

#endif  // SILO_REPLICATION_PROTOCOL_H_
