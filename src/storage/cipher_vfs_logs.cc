// The cipher VFS's logs: the WAL (32-byte header, then frames of a 24-byte
// header and a page) and the rollback journal (headers in the clear, page
// records sealed). Formats in docs/storage_format.md.
#include "base/log.h"
#include "storage/cipher_vfs_internal.h"

namespace silo::storage::cipher {
namespace {

// ---- WAL: 32-byte header, then frames of a 24-byte header and a page. ------
//
// On disk a frame header is: page number | commit size | 8-byte random nonce
// (in place of the salts) | checksum XOR PRF(mask; frame, page, commit, WAL
// salts, nonce). SQLite's placeholder header (salts and checksum zero while a
// frame rewrite is pending) is stored as is. The page is sealed with
// AD "W" | frame | page | commit | WAL-header salts.

int ReadWalSalts(SiloFile* f, uint8_t salts[8]) {
  int rc = LowerRead(f, salts, 8, 16);
  return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_IOERR_READ : rc;
}

Ad FrameHeaderMaskAd(uint32_t frame, const uint8_t* header, const uint8_t* salts,
                     const uint8_t* nonce) {
  Ad ad('H');
  ad.U32(frame).Bytes(header, 8).Bytes(salts, 8).Bytes(nonce, kMaskNonceSize);
  return ad;
}

Ad FramePageAd(uint32_t frame, uint32_t pgno, uint32_t commit, const uint8_t* salts) {
  Ad ad('W');
  ad.U32(frame).U32(pgno).U32(commit).Bytes(salts, 8);
  return ad;
}

// Turns the on-disk header `disk` of `frame` into SQLite's header in `out`.
void UnmaskFrameHeader(SiloFile* f, uint32_t frame, const uint8_t* disk, const uint8_t* salts,
                       uint8_t* out) {
  std::memcpy(out, disk, kFrameHeaderSize);
  if (AllZero(disk + 8, 16)) return;  // placeholder
  uint8_t mask[8];
  Mask(Keys(f), FrameHeaderMaskAd(frame, disk, salts, disk + 8), mask, sizeof mask);
  std::memcpy(out + 8, salts, 8);
  for (int i = 0; i < 8; ++i) out[16 + i] = disk[16 + i] ^ mask[i];
}

int WalWriteHeader(SiloFile* f, uint32_t frame, const uint8_t* in, int64_t offset) {
  uint8_t out[kFrameHeaderSize];
  std::memcpy(out, in, kFrameHeaderSize);
  f->pending = PendingHeader{};
  f->pending.offset = offset;
  f->pending.pgno = Get32(in);
  f->pending.commit = Get32(in + 4);
  if (!AllZero(in + 8, 16)) {
    do {
      randombytes_buf(out + 8, kMaskNonceSize);
    } while (AllZero(out + 8, kMaskNonceSize));
    uint8_t mask[8];
    Mask(Keys(f), FrameHeaderMaskAd(frame, in, in + 8, out + 8), mask, sizeof mask);
    for (int i = 0; i < 8; ++i) out[16 + i] = in[16 + i] ^ mask[i];
    f->pending.salts_known = true;
    std::memcpy(f->pending.salts, in + 8, 8);
  }
  return LowerWrite(f, out, kFrameHeaderSize, offset);
}

int WalWritePage(SiloFile* f, uint32_t frame, const uint8_t* in, int64_t offset) {
  int64_t header_offset = offset - kFrameHeaderSize;
  PendingHeader header = f->pending;
  f->pending = PendingHeader{};
  if (header.offset != header_offset) {
    // A page rewritten in place: the header on disk says which page it is.
    uint8_t disk[8];
    int rc = LowerRead(f, disk, 8, header_offset);
    if (rc != SQLITE_OK) return SQLITE_IOERR_WRITE;
    header.pgno = Get32(disk);
    header.commit = Get32(disk + 4);
    header.salts_known = false;
  }
  if (!header.salts_known && ReadWalSalts(f, header.salts) != SQLITE_OK) return SQLITE_IOERR_WRITE;
  Status s =
      SealPage(Keys(f).page, Keys(f).fingerprint, header.pgno == 1,
               FramePageAd(frame, header.pgno, header.commit, header.salts).view(), in, f->disk);
  if (!s.ok()) {
    sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused WAL frame %u: %s", frame, s.message().c_str());
    return SQLITE_IOERR_WRITE;
  }
  return LowerWrite(f, f->disk, kPageSize, offset);
}

}  // namespace

int WalWrite(SiloFile* f, const void* in, int amount, int64_t offset) {
  const auto* src = static_cast<const uint8_t*>(in);
  if (offset + amount <= kWalHeaderSize) {
    f->pending = PendingHeader{};
    return LowerWrite(f, in, amount, offset);  // the WAL header holds no page data
  }
  if (offset >= kWalHeaderSize) {
    int64_t rel = offset - kWalHeaderSize;
    auto frame = static_cast<uint32_t>(rel / kFrameSize + 1);
    int64_t within = rel % kFrameSize;
    if (within == 0 && amount == kFrameHeaderSize) return WalWriteHeader(f, frame, src, offset);
    if (within == kFrameHeaderSize && amount == kP) return WalWritePage(f, frame, src, offset);
    if (within == 0 && amount == kFrameSize) {
      int rc = WalWriteHeader(f, frame, src, offset);
      return rc != SQLITE_OK ? rc : WalWritePage(f, frame, src + kFrameHeaderSize, offset + 24);
    }
  }
  sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused a %d-byte WAL write at %lld", amount,
              static_cast<long long>(offset));
  return SQLITE_IOERR_WRITE;
}

int WalRead(SiloFile* f, void* out, int amount, int64_t offset) {
  auto* dst = static_cast<uint8_t*>(out);
  if (offset + amount <= kWalHeaderSize) return LowerRead(f, out, amount, offset);
  if (offset < kWalHeaderSize) return SQLITE_IOERR_READ;
  int64_t rel = offset - kWalHeaderSize;
  auto frame = static_cast<uint32_t>(rel / kFrameSize + 1);
  int64_t within = rel % kFrameSize;
  int64_t frame_offset = offset - within;
  bool header_only = within + amount <= kFrameHeaderSize;
  bool page_only = within == kFrameHeaderSize && amount == kP;
  bool whole = within == 0 && amount == kFrameSize;
  if (!header_only && !page_only && !whole) {
    sqlite3_log(SQLITE_IOERR_READ, "silo: refused a %d-byte WAL read at %lld", amount,
                static_cast<long long>(offset));
    return SQLITE_IOERR_READ;
  }
  int rc = LowerRead(f, f->disk, header_only ? kFrameHeaderSize : kFrameSize, frame_offset);
  if (rc == SQLITE_IOERR_SHORT_READ) {
    std::memset(out, 0, amount);
    return rc;
  }
  if (rc != SQLITE_OK) return rc;
  uint8_t salts[8];
  if ((rc = ReadWalSalts(f, salts)) != SQLITE_OK) return rc;
  uint8_t header[kFrameHeaderSize];
  UnmaskFrameHeader(f, frame, f->disk, salts, header);
  if (header_only) {
    std::memcpy(dst, header + within, amount);
    return SQLITE_OK;
  }
  uint32_t pgno = Get32(f->disk);
  uint32_t commit = Get32(f->disk + 4);
  uint8_t* page = whole ? dst + kFrameHeaderSize : dst;
  PageOpenError err =
      OpenPage(Keys(f).page, Keys(f).fingerprint, pgno == 1,
               FramePageAd(frame, pgno, commit, salts).view(), f->disk + kFrameHeaderSize, page);
  if (err == PageOpenError::kOk) {
    if (whole) std::memcpy(dst, header, kFrameHeaderSize);
    return SQLITE_OK;
  }
  if (whole) {
    // Recovery scans whole frames. A torn last frame after a crash, or a
    // frame of an earlier WAL generation, is normal: hand SQLite a frame with
    // page number 0, which it treats as the end of the log.
    std::memset(dst, 0, kFrameSize);
    log::Warn("WAL frame failed authentication; the log ends before it",
              {{"file", f->name}, {"frame", std::to_string(frame)}});
    return SQLITE_OK;
  }
  ReportAuthFailure(f, "WAL frame", frame_offset);
  return SQLITE_IOERR_AUTH;
}

// ---- Rollback journal: header(s) in the clear; page records sealed. ---------

namespace {

Ad JournalPageAd(uint32_t pgno, int64_t record_offset) {
  Ad ad('J');
  ad.U32(pgno).U64(static_cast<uint64_t>(record_offset));
  return ad;
}

void JournalChecksumMask(SiloFile* f, const LastOp& page, uint8_t mask[4]) {
  Ad ad('C');
  ad.U32(page.pgno).U64(static_cast<uint64_t>(page.offset - 4)).Bytes(page.nonce, 24);
  Mask(Keys(f), ad, mask, 4);
}

bool Follows(const LastOp& last, bool write, int amount, int64_t offset) {
  return last.valid && last.write == write && last.amount == amount &&
         last.offset + amount == offset;
}

}  // namespace

int JournalWrite(SiloFile* f, const void* in, int amount, int64_t offset) {
  const auto* src = static_cast<const uint8_t*>(in);
  LastOp prev = f->last;
  f->last = LastOp{true, true, offset, amount};
  if (amount == kP) {
    if (!Follows(prev, true, 4, offset)) {
      sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused a page-sized journal write at %lld",
                  static_cast<long long>(offset));
      f->last.valid = false;
      return SQLITE_IOERR_WRITE;
    }
    f->last.pgno = prev.value;
    Status s = SealPage(Keys(f).page, Keys(f).fingerprint, prev.value == 1,
                        JournalPageAd(prev.value, offset - 4).view(), src, f->disk);
    if (!s.ok()) return SQLITE_IOERR_WRITE;
    std::memcpy(f->last.nonce, f->disk + kUsableSize, 24);
    return LowerWrite(f, f->disk, kPageSize, offset);
  }
  if (amount == 4 && Follows(prev, true, static_cast<int>(kP), offset)) {
    uint8_t mask[4], out[4];
    JournalChecksumMask(f, prev, mask);
    for (int i = 0; i < 4; ++i) out[i] = src[i] ^ mask[i];
    f->last.valid = false;
    return LowerWrite(f, out, 4, offset);
  }
  if (amount == 4) f->last.value = Get32(src);
  return LowerWrite(f, in, amount, offset);
}

int JournalRead(SiloFile* f, void* out, int amount, int64_t offset) {
  auto* dst = static_cast<uint8_t*>(out);
  LastOp prev = f->last;
  f->last = LastOp{true, false, offset, amount};
  if (amount == kP) {
    if (!Follows(prev, false, 4, offset)) {
      f->last.valid = false;
      return SQLITE_IOERR_READ;
    }
    int rc = LowerRead(f, f->disk, kPageSize, offset);
    if (rc != SQLITE_OK) {
      if (rc == SQLITE_IOERR_SHORT_READ) std::memset(out, 0, amount);
      return rc;
    }
    f->last.pgno = prev.value;
    std::memcpy(f->last.nonce, f->disk + kUsableSize, 24);
    PageOpenError err = OpenPage(Keys(f).page, Keys(f).fingerprint, prev.value == 1,
                                 JournalPageAd(prev.value, offset - 4).view(), f->disk, dst);
    if (err != PageOpenError::kOk) {
      // A torn record: zeros fail SQLite's record checksum, which ends playback.
      log::Warn("journal record failed authentication; playback ends before it",
                {{"file", f->name}, {"offset", std::to_string(offset)}});
    }
    return SQLITE_OK;
  }
  int rc = LowerRead(f, out, amount, offset);
  if (rc != SQLITE_OK) return rc;
  if (amount == 4 && Follows(prev, false, static_cast<int>(kP), offset)) {
    uint8_t mask[4];
    JournalChecksumMask(f, prev, mask);
    for (int i = 0; i < 4; ++i) dst[i] ^= mask[i];
    f->last.valid = false;
  } else if (amount == 4) {
    f->last.value = Get32(dst);
  }
  return SQLITE_OK;
}

}  // namespace silo::storage::cipher
