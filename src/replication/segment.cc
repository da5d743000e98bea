#include "replication/segment.h"

#include <algorithm>
#include <cstdlib>

#include "crypto/crypto.h"

namespace silo::replication {
namespace {

constexpr std::string_view kMagic = "SLSG";
// What a primary writes. Format 1 differs only in its hash (BLAKE2b-256); a
// decoder still takes it, from the journals and histories of copies written
// before format 2 and from a primary not yet upgraded. A segment's hash
// function is its version's, so a hash of the other kind is a mismatch.
constexpr uint8_t kVersion = 2;
constexpr uint8_t kBlake2bVersion = 1;
// magic, version, lineage, term, seq, prev_hash, op count
constexpr size_t kHeaderSize = 4 + 1 + kLineageSize + 8 + 8 + kHashSize + 4;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// Reads little-endian integers and byte runs off the front of `in`; every
// read checks the length first.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t& v) {
    if (in_.empty()) return false;
    v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t& v) {
    uint64_t wide = 0;
    if (!Uint(4, wide)) return false;
    v = static_cast<uint32_t>(wide);
    return true;
  }
  bool U64(uint64_t& v) { return Uint(8, v); }
  bool Bytes(size_t n, std::string& out) {
    if (in_.size() < n) return false;
    out.assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  size_t left() const { return in_.size(); }

 private:
  bool Uint(int width, uint64_t& v) {
    if (in_.size() < static_cast<size_t>(width)) return false;
    v = 0;
    for (int i = 0; i < width; ++i) v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(width);
    return true;
  }
  std::string_view in_;
};

Status Broken(std::string why) {
  return DataLoss("not an intact replication segment").WithCause(std::move(why));
}

bool KnownVersion(uint8_t version) { return version == kVersion || version == kBlake2bVersion; }

std::string HashOf(uint8_t version, std::string_view body) {
  return version == kBlake2bVersion ? crypto::Blake2b256({body}) : crypto::Sha256(body);
}

uint32_t GetBigEndian32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

}  // namespace

std::string EncodeSegment(const SegmentHeader& header, const std::vector<Op>& ops,
                          std::string* hash) {
  if (header.lineage.size() != kLineageSize || header.prev_hash.size() != kHashSize ||
      header.seq == 0) {
    std::abort();  // a programming error: the recorder builds headers
  }
  std::string out;
  size_t payload = 0;
  for (const Op& op : ops) payload += 14 + op.bytes.size();
  out.reserve(kHeaderSize + payload + kHashSize);
  out.append(kMagic);
  out.push_back(static_cast<char>(kVersion));
  out.append(header.lineage);
  PutU64(out, header.term);
  PutU64(out, header.seq);
  out.append(header.prev_hash);
  PutU32(out, static_cast<uint32_t>(ops.size()));
  for (const Op& op : ops) {
    out.push_back(static_cast<char>(op.kind));
    out.push_back(static_cast<char>(op.file));
    PutU64(out, static_cast<uint64_t>(op.offset));
    if (op.kind == OpKind::kWrite) {
      PutU32(out, static_cast<uint32_t>(op.bytes.size()));
      out.append(op.bytes);
    }
  }
  std::string digest = HashOf(kVersion, out);
  out.append(digest);
  if (hash != nullptr) *hash = std::move(digest);
  return out;
}

uint64_t PeekSegmentSeq(std::string_view encoded) {
  if (encoded.size() < kHeaderSize + kHashSize) return 0;
  Reader in(encoded);
  std::string magic, lineage;
  uint8_t version = 0;
  uint64_t term = 0, seq = 0;
  if (!in.Bytes(kMagic.size(), magic) || magic != kMagic || !in.U8(version) ||
      !KnownVersion(version) || !in.Bytes(kLineageSize, lineage) || !in.U64(term) || !in.U64(seq)) {
    return 0;
  }
  return seq;
}

Result<Segment> DecodeSegment(std::string_view encoded) {
  if (encoded.size() < kHeaderSize + kHashSize) return Broken("shorter than a header");
  if (encoded.size() > kMaxSegmentBytes) return Broken("over the size limit");
  std::string_view body = encoded.substr(0, encoded.size() - kHashSize);
  Reader in(body);
  std::string magic;
  uint8_t version = 0;
  uint32_t count = 0;
  // The version names the hash function, so it is read before the hash is
  // checked; a flipped version byte still fails, as an unknown version or a
  // hash of the other function that does not match.
  if (!in.Bytes(kMagic.size(), magic) || magic != kMagic || !in.U8(version) ||
      !KnownVersion(version)) {
    return Broken("unknown magic or version");
  }
  Segment segment;
  segment.hash.assign(encoded.substr(body.size()));
  if (!crypto::ConstantTimeEquals(HashOf(version, body), segment.hash)) {
    return Broken("hash mismatch");
  }
  SegmentHeader& h = segment.header;
  if (!in.Bytes(kLineageSize, h.lineage) || !in.U64(h.term) || !in.U64(h.seq) ||
      !in.Bytes(kHashSize, h.prev_hash) || !in.U32(count)) {
    return Broken("truncated header");
  }
  if (h.seq == 0) return Broken("sequence number 0");
  // Each op takes at least 10 bytes: a count beyond that is a lie.
  if (count > in.left() / 10) return Broken("op count beyond the bytes");
  segment.ops.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    Op op;
    uint8_t kind = 0;
    uint8_t file = 0;
    uint64_t offset = 0;
    if (!in.U8(kind) || !in.U8(file) || !in.U64(offset)) return Broken("truncated op");
    if (kind < 1 || kind > 4) return Broken("unknown op kind");
    if (file > 1) return Broken("unknown file");
    if (offset > static_cast<uint64_t>(kMaxOffset)) return Broken("offset out of range");
    op.kind = static_cast<OpKind>(kind);
    op.file = static_cast<FileId>(file);
    op.offset = static_cast<int64_t>(offset);
    if (op.kind == OpKind::kWrite) {
      uint32_t length = 0;
      if (!in.U32(length) || length == 0 || length > kMaxWriteBytes ||
          !in.Bytes(length, op.bytes)) {
        return Broken("bad write length");
      }
    }
    segment.ops.push_back(std::move(op));
  }
  if (in.left() != 0) return Broken("bytes after the last op");
  return segment;
}

ReplicaPosition NextPosition(const ReplicaPosition& p, const SegmentHeader& header,
                             const std::vector<Op>& ops, const std::string& hash,
                             bool* wal_restarted) {
  ReplicaPosition next = p;
  for (const Op& op : ops) {
    if (op.file != FileId::kWal) continue;
    const bool restart = (op.kind == OpKind::kWrite && op.offset == 0) ||
                         op.kind == OpKind::kDelete ||
                         (op.kind == OpKind::kTruncate && op.offset <= kWalHeaderSize);
    if (restart && wal_restarted != nullptr) *wal_restarted = true;
    if (restart || (op.kind == OpKind::kTruncate &&
                    op.offset < kWalHeaderSize + int64_t{next.wal_commit_frame} * kFrameSize)) {
      next.wal_commit_frame = 0;
    }
    if (op.kind != OpKind::kWrite) continue;
    const int64_t end = op.offset + static_cast<int64_t>(op.bytes.size());
    // The first frame boundary at or after the write's start.
    int64_t frame = std::max(op.offset, kWalHeaderSize);
    const int64_t into = (frame - kWalHeaderSize) % kFrameSize;
    if (into != 0) frame += kFrameSize - into;
    for (; frame + kFrameHeaderSize <= end; frame += kFrameSize) {
      if (GetBigEndian32(op.bytes.data() + (frame - op.offset) + 4) != 0) {
        next.wal_commit_frame = static_cast<uint32_t>((frame - kWalHeaderSize) / kFrameSize + 1);
      }
    }
  }
  next.lineage = header.lineage;
  next.term = header.term;
  next.seq = header.seq;
  next.hash = hash;
  return next;
}

void AppendSegmentRecord(std::string& out, std::string_view encoded) {
  PutU32(out, static_cast<uint32_t>(encoded.size()));
  out.append(encoded);
}

std::vector<std::string_view> SegmentRecords(std::string_view bytes) {
  std::vector<std::string_view> records;
  while (bytes.size() >= 4) {
    uint32_t length = 0;
    Reader(bytes).U32(length);
    if (length > bytes.size() - 4) break;
    records.push_back(bytes.substr(4, length));
    bytes.remove_prefix(4 + size_t{length});
  }
  return records;
}

}  // namespace silo::replication
