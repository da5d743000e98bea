#include "replication/protocol.h"

#include "replication/segment.h"

namespace silo::replication {
namespace {

// lineage, term, seq, hash, offset, total
constexpr size_t kChunkHeader = kLineageSize + 8 + 8 + kHashSize + 8 + 8;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetU64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return v;
}

}  // namespace

std::string EncodeSnapshotChunk(const SnapshotChunk& c) {
  std::string out;
  out.reserve(kChunkHeader + c.bytes.size());
  out.append(c.lineage);
  PutU64(out, c.term);
  PutU64(out, c.seq);
  out.append(c.hash);
  PutU64(out, c.offset);
  PutU64(out, c.total);
  out.append(c.bytes);
  return out;
}

Result<SnapshotChunk> DecodeSnapshotChunk(std::string_view in) {
  if (in.size() < kChunkHeader) return InvalidArgument("a snapshot chunk shorter than its header");
  SnapshotChunk c;
  size_t at = 0;
  c.lineage.assign(in.substr(at, kLineageSize));
  at += kLineageSize;
  c.term = GetU64(in.substr(at));
  c.seq = GetU64(in.substr(at + 8));
  at += 16;
  c.hash.assign(in.substr(at, kHashSize));
  at += kHashSize;
  c.offset = GetU64(in.substr(at));
  c.total = GetU64(in.substr(at + 8));
  at += 16;
  c.bytes.assign(in.substr(at));
  if (c.total > static_cast<uint64_t>(kMaxOffset) || c.offset > c.total ||
      c.bytes.size() > c.total - c.offset || c.bytes.size() > kSnapshotChunkBytes) {
    return InvalidArgument("a snapshot chunk outside its file");
  }
  return c;
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
