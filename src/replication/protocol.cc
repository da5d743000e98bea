#include "replication/protocol.h"

#include "base/data_layout.h"
#include "cluster/peer_link.h"
#include "crypto/crypto.h"
#include "replication/disk_internal.h"
#include "replication/segment.h"

namespace silo::replication {
namespace {

// lineage, term, seq, hash, offset, total
constexpr size_t kChunkHeader = kLineageSize + 8 + 8 + kHashSize + 8 + 8;

// Little-endian unsigned integers of T's width.
template <typename T>
void PutLe(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
template <typename T>
T GetLe(std::string_view in) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= T{static_cast<uint8_t>(in[i])} << (8 * i);
  return v;
}
void PutU64(std::string& out, uint64_t v) { PutLe(out, v); }
uint64_t GetU64(std::string_view in) { return GetLe<uint64_t>(in); }
void PutU32(std::string& out, uint32_t v) { PutLe(out, v); }
uint32_t GetU32(std::string_view in) { return GetLe<uint32_t>(in); }

// Where a snapshot stands on its chain: lineage, term, seq, hash.
void PutSnapshotHead(std::string& out, const std::string& lineage, uint64_t term, uint64_t seq,
                     const std::string& hash) {
  out.append(lineage);
  PutU64(out, term);
  PutU64(out, seq);
  out.append(hash);
}

// Reads what PutSnapshotHead wrote off the front of `in`.
// REQUIRES: `in` holds at least that many bytes.
void TakeSnapshotHead(std::string_view& in, std::string& lineage, uint64_t& term, uint64_t& seq,
                      std::string& hash) {
  lineage.assign(in.substr(0, kLineageSize));
  in.remove_prefix(kLineageSize);
  term = GetU64(in);
  seq = GetU64(in.substr(8));
  in.remove_prefix(16);
  hash.assign(in.substr(0, kHashSize));
  in.remove_prefix(kHashSize);
}

}  // namespace

std::string EncodeSnapshotChunk(const SnapshotChunk& c) {
  std::string out;
  out.reserve(kChunkHeader + c.bytes.size());
  PutSnapshotHead(out, c.lineage, c.term, c.seq, c.hash);
  PutU64(out, c.offset);
  PutU64(out, c.total);
  out.append(c.bytes);
  return out;
}

Result<SnapshotChunk> DecodeSnapshotChunk(std::string_view in) {
  if (in.size() < kChunkHeader) return InvalidArgument("a snapshot chunk shorter than its header");
  SnapshotChunk c;
  TakeSnapshotHead(in, c.lineage, c.term, c.seq, c.hash);
  c.offset = GetU64(in);
  c.total = GetU64(in.substr(8));
  c.bytes.assign(in.substr(16));
  if (c.total > static_cast<uint64_t>(kMaxOffset) || c.offset > c.total ||
      c.bytes.size() > c.total - c.offset || c.bytes.size() > kSnapshotChunkBytes) {
    return InvalidArgument("a snapshot chunk outside its file");
  }
  return c;
}

static_assert(8 + kMaxPageSums * kPageSumBytes <= cluster::kMaxPayload,
              "a copy's page sums must fit in one message");

std::string PageSum(std::string_view page) { return crypto::Sha256(page).substr(0, kPageSumBytes); }

std::string EncodePageSums(const PageSums& p) {
  std::string out;
  out.reserve(8 + p.sums.size());
  PutU64(out, p.size);
  out.append(p.sums);
  return out;
}

Result<PageSums> DecodePageSums(std::string_view in) {
  if (in.size() < 8) return InvalidArgument("page sums shorter than their header");
  PageSums p;
  p.size = GetU64(in);
  p.sums.assign(in.substr(8));
  const uint64_t pages = (p.size + kPageSize - 1) / kPageSize;
  if (p.size > static_cast<uint64_t>(kMaxOffset) ||
      (!p.sums.empty() && (pages > kMaxPageSums || p.sums.size() != pages * kPageSumBytes))) {
    return InvalidArgument("page sums not of their file's pages");
  }
  return p;
}

std::string EncodeSnapshotPages(const SnapshotPages& p) {
  std::string out;
  PutSnapshotHead(out, p.lineage, p.term, p.seq, p.hash);
  PutU64(out, p.offset);
  PutU64(out, p.span);
  PutU64(out, p.total);
  out.push_back(p.file_sha256.empty() ? '\0' : '\1');
  out.append(p.file_sha256);
  PutU32(out, static_cast<uint32_t>(p.runs.size()));
  for (const PageRun& r : p.runs) {
    PutU64(out, r.offset);
    PutU32(out, static_cast<uint32_t>(r.bytes.size()));
    out.append(r.bytes);
  }
  return out;
}

Result<SnapshotPages> DecodeSnapshotPages(std::string_view in) {
  auto bad = [] { return InvalidArgument("not a span of snapshot pages"); };
  // lineage, term, seq, hash, offset, span, total, has-digest
  constexpr size_t kHeader = kLineageSize + 8 + 8 + kHashSize + 8 + 8 + 8 + 1;
  if (in.size() < kHeader) return bad();
  SnapshotPages p;
  TakeSnapshotHead(in, p.lineage, p.term, p.seq, p.hash);
  p.offset = GetU64(in);
  p.span = GetU64(in.substr(8));
  p.total = GetU64(in.substr(16));
  const char digest = in[24];
  in.remove_prefix(25);
  if (p.total > static_cast<uint64_t>(kMaxOffset) || p.span > kSnapshotChunkBytes ||
      p.offset > p.total || p.span > p.total - p.offset || (digest != 0 && digest != 1)) {
    return bad();
  }
  // The digest comes with the span that ends the file, and only with it.
  if ((digest == 1) != (p.offset + p.span == p.total)) return bad();
  if (digest == 1) {
    if (in.size() < kHashSize) return bad();
    p.file_sha256.assign(in.substr(0, kHashSize));
    in.remove_prefix(kHashSize);
  }
  if (in.size() < 4) return bad();
  const uint32_t count = GetU32(in);
  in.remove_prefix(4);
  uint64_t next = p.offset;  // runs ascend, do not overlap, and stay inside the span
  for (uint32_t i = 0; i < count; ++i) {
    if (in.size() < 12) return bad();
    PageRun r;
    r.offset = GetU64(in);
    const uint32_t length = GetU32(in.substr(8));
    in.remove_prefix(12);
    if (length == 0 || length > in.size() || r.offset < next || r.offset - p.offset > p.span ||
        length > p.span - (r.offset - p.offset)) {
      return bad();
    }
    r.bytes.assign(in.substr(0, length));
    in.remove_prefix(length);
    next = r.offset + length;
    p.runs.push_back(std::move(r));
  }
  if (!in.empty()) return bad();
  return p;
}

std::string EncodeTenantFiles(const TenantFiles& f) {
  std::string out;
  PutU64(out, f.meta.size());
  out.append(f.meta);
  out.append(f.wrapped_key);
  return out;
}

Result<TenantFiles> DecodeTenantFiles(std::string_view in) {
  if (in.size() < 8) return InvalidArgument("tenant files shorter than their header");
  uint64_t meta = GetU64(in);
  in.remove_prefix(8);
  if (meta == 0 || meta > kMaxTenantFileBytes || meta >= in.size() ||
      in.size() - meta > kMaxTenantFileBytes) {
    return InvalidArgument("tenant files of impossible sizes");
  }
  return TenantFiles{std::string(in.substr(0, meta)), std::string(in.substr(meta))};
}

std::string EncodeBlobChunk(const BlobChunk& c) {
  std::string out;
  out.reserve(kBlobIdSize + 16 + c.bytes.size());
  out.append(c.id);
  PutU64(out, c.offset);
  PutU64(out, c.total);
  out.append(c.bytes);
  return out;
}

Result<BlobChunk> DecodeBlobChunk(std::string_view in) {
  if (in.size() < kBlobIdSize + 16) return InvalidArgument("a blob chunk shorter than its header");
  BlobChunk c;
  c.id.assign(in.substr(0, kBlobIdSize));
  c.offset = GetU64(in.substr(kBlobIdSize));
  c.total = GetU64(in.substr(kBlobIdSize + 8));
  c.bytes.assign(in.substr(kBlobIdSize + 16));
  if (!layout::ValidBlobId(c.id)) return InvalidArgument("not a blob id");
  if (c.total > static_cast<uint64_t>(kMaxOffset) || c.offset > c.total ||
      c.bytes.size() > c.total - c.offset || c.bytes.size() > kBlobChunkBytes ||
      (c.bytes.empty() && c.offset != c.total)) {
    return InvalidArgument("a blob chunk outside its file");
  }
  return c;
}

std::string EncodeBlobFromPart(const BlobFromPart& m) {
  std::string out = m.id;
  PutU64(out, m.total);
  out.append(m.sha256);
  return out;
}

Result<BlobFromPart> DecodeBlobFromPart(std::string_view in) {
  if (in.size() != kBlobIdSize + 8 + 32 || !layout::ValidBlobId(in.substr(0, kBlobIdSize))) {
    return InvalidArgument("not a blob from a part");
  }
  BlobFromPart m{std::string(in.substr(0, kBlobIdSize)), GetU64(in.substr(kBlobIdSize)),
                 std::string(in.substr(kBlobIdSize + 8))};
  if (m.total > static_cast<uint64_t>(kMaxOffset)) return InvalidArgument("a blob too large");
  return m;
}

std::string EncodeBlobRemove(const BlobRemove& r) {
  std::string out;
  PutU64(out, r.term);
  out.append(r.id);
  return out;
}

Result<BlobRemove> DecodeBlobRemove(std::string_view in) {
  if (in.size() != 8 + kBlobIdSize || !layout::ValidBlobId(in.substr(8))) {
    return InvalidArgument("not a blob removal");
  }
  return BlobRemove{GetU64(in), std::string(in.substr(8))};
}

Result<uint32_t> BlobKeyEpoch(const std::string& path) {
  SILO_ASSIGN_OR_RETURN(std::string start, internal::ReadStart(path, 16));
  if (start.size() < 16) return 0u;
  const auto b = [&](size_t i) { return uint32_t{static_cast<uint8_t>(start[i])}; };
  return (b(12) << 24) | (b(13) << 16) | (b(14) << 8) | b(15);
}

std::string EncodeBlobList(const std::vector<BlobEntry>& entries) {
  std::string out;
  out.reserve(entries.size() * (kBlobIdSize + 12));
  for (const BlobEntry& e : entries) {
    out.append(e.id);
    PutU64(out, e.size);
    PutU32(out, e.epoch);
  }
  return out;
}

Result<std::vector<BlobEntry>> DecodeBlobList(std::string_view in) {
  constexpr size_t kEntry = kBlobIdSize + 12;
  if (in.size() % kEntry != 0 || in.size() / kEntry > kMaxBlobListEntries) {
    return InvalidArgument("not a blob list");
  }
  std::vector<BlobEntry> out;
  out.reserve(in.size() / kEntry);
  for (size_t at = 0; at < in.size(); at += kEntry) {
    BlobEntry e{std::string(in.substr(at, kBlobIdSize)), GetU64(in.substr(at + kBlobIdSize)),
                GetU32(in.substr(at + kBlobIdSize + 8))};
    if (!layout::ValidBlobId(e.id) || e.size > static_cast<uint64_t>(kMaxOffset)) {
      return InvalidArgument("not a blob list");
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string EncodeBlobIds(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out.append(id);
  return out;
}

Result<std::vector<std::string>> DecodeBlobIds(std::string_view in) {
  if (in.size() % kBlobIdSize != 0 || in.size() / kBlobIdSize > kMaxBlobListEntries) {
    return InvalidArgument("not a list of blob ids");
  }
  std::vector<std::string> out;
  for (size_t at = 0; at < in.size(); at += kBlobIdSize) {
    out.emplace_back(in.substr(at, kBlobIdSize));
    if (!layout::ValidBlobId(out.back())) return InvalidArgument("not a list of blob ids");
  }
  return out;
}

std::string EncodeAck(uint64_t seq, const std::string& hash) {
  std::string out;
  PutU64(out, seq);
  out.append(hash);
  return out;
}

Result<std::pair<uint64_t, std::string>> DecodeAck(std::string_view in) {
  if (in.size() != 8 + kHashSize) return InvalidArgument("not an acknowledgement");
  return std::make_pair(GetU64(in), std::string(in.substr(8)));
}

}  // namespace silo::replication
