#include "storage/cipher_vfs.h"

#include <sodium.h>
#include <sqlite3.h>
#include <strings.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>

#include "base/log.h"
#include "crypto/crypto.h"
#include "crypto/sodium_init.h"
#include "storage/page_cipher.h"
#include "storage/vfs_shim.h"

namespace silo::storage {
namespace {

constexpr int64_t kP = static_cast<int64_t>(kPageSize);
constexpr int64_t kWalHeaderSize = 32;
constexpr int64_t kFrameHeaderSize = 24;
constexpr int64_t kFrameSize = kP + kFrameHeaderSize;
constexpr size_t kMaskNonceSize = 8;

std::atomic<uint64_t> g_auth_failures{0};

// The three keys derived from one database key. Immutable once built.
struct CipherKeys {
  crypto::SecretKey page;  // page AEAD
  crypto::SecretKey mask;  // PRF masking plaintext-derived checksums
  std::string fingerprint;
};

std::mutex g_registry_mu;
std::map<std::string, std::shared_ptr<const CipherKeys>>& Registry() {
  static auto* registry = new std::map<std::string, std::shared_ptr<const CipherKeys>>();
  return *registry;
}

std::shared_ptr<const CipherKeys> LookupKey(const char* id) {
  if (id == nullptr) return nullptr;
  std::lock_guard lock(g_registry_mu);
  auto it = Registry().find(id);
  return it == Registry().end() ? nullptr : it->second;
}

crypto::SecretKey DeriveKey(const crypto::SecretKey& key, std::string_view label) {
  std::string bytes = crypto::KeyedHash(key, label, crypto::SecretKey::kSize);
  auto derived = crypto::SecretKey::FromBytes(bytes);
  crypto::WipeString(bytes);
  return std::move(derived).value();
}

uint32_t Get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Associated data, built in a fixed buffer (no allocation per page).
class Ad {
 public:
  explicit Ad(char kind) { bytes_[len_++] = static_cast<uint8_t>(kind); }
  Ad& U32(uint32_t v) {
    Put32(bytes_.data() + len_, v);
    len_ += 4;
    return *this;
  }
  Ad& U64(uint64_t v) {
    Put64(bytes_.data() + len_, v);
    len_ += 8;
    return *this;
  }
  Ad& Bytes(const uint8_t* p, size_t n) {
    std::memcpy(bytes_.data() + len_, p, n);
    len_ += n;
    return *this;
  }
  std::string_view view() const { return {reinterpret_cast<const char*>(bytes_.data()), len_}; }

 private:
  std::array<uint8_t, 64> bytes_{};
  size_t len_ = 0;
};

// PRF(mask key, ad) truncated to `n` bytes: the mask for a checksum that
// SQLite computed over plaintext.
void Mask(const CipherKeys& keys, const Ad& ad, uint8_t* out, size_t n) {
  crypto_generichash(out, n, reinterpret_cast<const uint8_t*>(ad.view().data()), ad.view().size(),
                     keys.mask.data(), keys.mask.size());
}

enum class FileKind { kMainDb, kWal, kJournal, kPassThrough };

// The last I/O on a journal handle: a page record is recognised only as
// "4 bytes at o-4, then P bytes at o, then 4 bytes at o+P" (note section 5.7).
struct LastOp {
  bool valid = false;
  bool write = false;
  int64_t offset = 0;
  int amount = 0;
  uint32_t value = 0;  // the 4 bytes, big-endian, when amount == 4
  uint32_t pgno = 0;   // of the page record, when amount == P
  uint8_t nonce[24] = {};
};

// The frame header most recently written on a WAL handle, so the page write
// that follows needs no read-back.
struct PendingHeader {
  int64_t offset = -1;
  uint32_t pgno = 0;
  uint32_t commit = 0;
  bool salts_known = false;
  uint8_t salts[8] = {};
};

struct VfsInfo {
  sqlite3_vfs vfs;
  std::string name;  // vfs.zName points here
};

// Lives in the memory SQLite allocates (szOsFile); the lower file follows it.
struct SiloFile {
  sqlite3_file base;
  sqlite3_file* lower;
  FileKind kind;
  std::shared_ptr<const CipherKeys>* keys;  // owned; null for pass-through files
  const char* name;
  LastOp last;
  PendingHeader pending;
  uint8_t disk[kFrameSize];
  uint8_t plain[kPageSize];
};
constexpr int kSiloFileSize = shim::AlignedSize(sizeof(SiloFile));
static_assert(offsetof(SiloFile, lower) == offsetof(shim::ShimFile, lower));

const CipherKeys& Keys(SiloFile* f) { return **f->keys; }

void ReportAuthFailure(SiloFile* f, const char* what, int64_t offset) {
  g_auth_failures.fetch_add(1, std::memory_order_relaxed);
  sqlite3_log(SQLITE_IOERR_AUTH, "silo: %s failed authentication in %s at offset %lld", what,
              f->name ? f->name : "?", static_cast<long long>(offset));
  log::Warn(
      "page failed authentication",
      {{"file", f->name ? f->name : "?"}, {"kind", what}, {"offset", std::to_string(offset)}});
}

int LowerRead(SiloFile* f, void* buf, int amount, int64_t offset) {
  return f->lower->pMethods->xRead(f->lower, buf, amount, offset);
}
int LowerWrite(SiloFile* f, const void* buf, int amount, int64_t offset) {
  return f->lower->pMethods->xWrite(f->lower, buf, amount, offset);
}

// ---- Main database: whole pages at page-aligned offsets. -------------------

int DbOpenPage(SiloFile* f, int64_t index, const uint8_t* in, uint8_t* out) {
  uint32_t pgno = static_cast<uint32_t>(index + 1);
  Ad ad('D');
  ad.U32(pgno);
  PageOpenError err = OpenPage(Keys(f).page, Keys(f).fingerprint, pgno == 1, ad.view(), in, out);
  switch (err) {
    case PageOpenError::kOk: return SQLITE_OK;
    case PageOpenError::kNotSilo:
    case PageOpenError::kWrongKey:
    case PageOpenError::kBadVersion:
      if (pgno == 1) {
        sqlite3_log(SQLITE_NOTADB, "silo: %s: wrong key or not a silo database", f->name);
        return SQLITE_NOTADB;
      }
      [[fallthrough]];
    case PageOpenError::kAuthFailed: break;
  }
  ReportAuthFailure(f, "database page", index * kP);
  return SQLITE_IOERR_AUTH;
}

int DbRead(SiloFile* f, void* out, int amount, int64_t offset) {
  auto* dst = static_cast<uint8_t*>(out);
  int64_t first = offset / kP;
  int64_t last = (offset + amount - 1) / kP;
  for (int64_t index = first; index <= last; ++index) {
    int rc = LowerRead(f, f->disk, kPageSize, index * kP);
    if (rc == SQLITE_IOERR_SHORT_READ) {
      // Past the end (new or empty file): zeros, never decrypted.
      std::memset(out, 0, amount);
      return rc;
    }
    if (rc != SQLITE_OK) return rc;
    int64_t page_start = index * kP;
    int64_t from = std::max(offset, page_start);
    int64_t to = std::min(offset + amount, page_start + kP);
    bool whole = from == page_start && to == page_start + kP;
    uint8_t* target = whole ? dst + (from - offset) : f->plain;
    rc = DbOpenPage(f, index, f->disk, target);
    if (rc != SQLITE_OK) {
      std::memset(out, 0, amount);
      return rc;
    }
    if (!whole) std::memcpy(dst + (from - offset), f->plain + (from - page_start), to - from);
  }
  return SQLITE_OK;
}

int DbWrite(SiloFile* f, const void* in, int amount, int64_t offset) {
  if (offset % kP != 0 || amount % kP != 0 || amount == 0) {
    sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused a %d-byte database write at %lld", amount,
                static_cast<long long>(offset));
    return SQLITE_IOERR_WRITE;
  }
  const auto* src = static_cast<const uint8_t*>(in);
  for (int64_t done = 0; done < amount; done += kP) {
    uint32_t pgno = static_cast<uint32_t>((offset + done) / kP + 1);
    Ad ad('D');
    ad.U32(pgno);
    Status s =
        SealPage(Keys(f).page, Keys(f).fingerprint, pgno == 1, ad.view(), src + done, f->disk);
    if (!s.ok()) {
      sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused page %u: %s", pgno, s.message().c_str());
      return SQLITE_IOERR_WRITE;
    }
    int rc = LowerWrite(f, f->disk, kPageSize, offset + done);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

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

// ---- io_methods -------------------------------------------------------------

SiloFile* AsSilo(sqlite3_file* file) { return reinterpret_cast<SiloFile*>(file); }

int XClose(sqlite3_file* file) {
  SiloFile* f = AsSilo(file);
  int rc = SQLITE_OK;
  if (f->lower->pMethods != nullptr) rc = f->lower->pMethods->xClose(f->lower);
  delete f->keys;
  f->keys = nullptr;
  return rc;
}

int XRead(sqlite3_file* file, void* buf, int amount, sqlite3_int64 offset) {
  SiloFile* f = AsSilo(file);
  switch (f->kind) {
    case FileKind::kMainDb: return DbRead(f, buf, amount, offset);
    case FileKind::kWal: return WalRead(f, buf, amount, offset);
    case FileKind::kJournal: return JournalRead(f, buf, amount, offset);
    case FileKind::kPassThrough: break;
  }
  return LowerRead(f, buf, amount, offset);
}

int XWrite(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
  SiloFile* f = AsSilo(file);
  switch (f->kind) {
    case FileKind::kMainDb: return DbWrite(f, buf, amount, offset);
    case FileKind::kWal: return WalWrite(f, buf, amount, offset);
    case FileKind::kJournal: return JournalWrite(f, buf, amount, offset);
    case FileKind::kPassThrough: break;
  }
  return LowerWrite(f, buf, amount, offset);
}

int XTruncate(sqlite3_file* file, sqlite3_int64 size) {
  SiloFile* f = AsSilo(file);
  f->pending = PendingHeader{};
  f->last = LastOp{};
  return f->lower->pMethods->xTruncate(f->lower, size);
}
int XDeviceCharacteristics(sqlite3_file* file) {
  int caps = AsSilo(file)->lower->pMethods->xDeviceCharacteristics(AsSilo(file)->lower);
  // Power-safe overwrite: no WAL padding frames and no page writes split at
  // sector boundaries. No atomic-write claims: a sealed page is written whole
  // but SQLite must not rely on batches.
  caps |= SQLITE_IOCAP_POWERSAFE_OVERWRITE;
  caps &= ~(SQLITE_IOCAP_BATCH_ATOMIC | SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_ATOMIC512 |
            SQLITE_IOCAP_ATOMIC1K | SQLITE_IOCAP_ATOMIC2K | SQLITE_IOCAP_ATOMIC4K |
            SQLITE_IOCAP_ATOMIC8K | SQLITE_IOCAP_ATOMIC16K | SQLITE_IOCAP_ATOMIC32K |
            SQLITE_IOCAP_ATOMIC64K);
  return caps;
}

// Returns a refusal message for a PRAGMA the format cannot allow, or nullptr.
const char* VetoPragma(const char* name, const char* value) {
  if (name == nullptr || value == nullptr) return nullptr;  // queries are fine
  if (strcasecmp(name, "page_size") == 0 && std::strtol(value, nullptr, 10) != kP) {
    return "silo: the page size is fixed at 4096";
  }
  if (strcasecmp(name, "journal_mode") == 0 && strcasecmp(value, "wal") != 0) {
    return "silo: databases stay in WAL mode";
  }
  if (strcasecmp(name, "temp_store") == 0 && strcasecmp(value, "memory") != 0 &&
      std::strcmp(value, "2") != 0) {
    return "silo: temporary storage stays in memory (no plaintext temp files)";
  }
  if (strcasecmp(name, "mmap_size") == 0 && std::strtoll(value, nullptr, 10) != 0) {
    return "silo: memory-mapped I/O is off (it would bypass decryption)";
  }
  return nullptr;
}

int XFileControl(sqlite3_file* file, int op, void* arg) {
  SiloFile* f = AsSilo(file);
  if (op == SQLITE_FCNTL_PRAGMA && f->kind == FileKind::kMainDb) {
    char** az = static_cast<char**>(arg);
    if (const char* veto = VetoPragma(az[1], az[2])) {
      az[0] = sqlite3_mprintf("%s", veto);
      return SQLITE_ERROR;
    }
  }
  int rc = f->lower->pMethods->xFileControl(f->lower, op, arg);
  if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK) {
    char** name = static_cast<char**>(arg);
    char* wrapped = sqlite3_mprintf("silo/%z", *name);
    *name = wrapped;
  }
  return rc;
}

// iVersion 2 (from the shim plumbing): no xFetch, so the pager never
// memory-maps ciphertext.
const sqlite3_io_methods* Methods() {
  static const sqlite3_io_methods methods = [] {
    sqlite3_io_methods m = shim::PassThroughMethods();
    m.xClose = XClose;
    m.xRead = XRead;
    m.xWrite = XWrite;
    m.xTruncate = XTruncate;
    m.xFileControl = XFileControl;
    m.xDeviceCharacteristics = XDeviceCharacteristics;
    return m;
  }();
  return &methods;
}

// ---- the VFS ----------------------------------------------------------------

int XOpen(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* lower = static_cast<sqlite3_vfs*>(vfs->pAppData);
  SiloFile* f = AsSilo(file);
  std::memset(static_cast<void*>(f), 0, sizeof(SiloFile));
  f->lower = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kSiloFileSize);
  f->name = name;
  f->pending = PendingHeader{};
  constexpr int kTemporary = SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL |
                             SQLITE_OPEN_TRANSIENT_DB | SQLITE_OPEN_SUBJOURNAL;
  std::shared_ptr<const CipherKeys> keys;
  if (name == nullptr || (flags & kTemporary) != 0) {
    // Temp files would hold plaintext: the connection keeps them in memory.
    sqlite3_log(SQLITE_CANTOPEN, "silo: refused a temporary file (flags 0x%x)", flags);
    return SQLITE_CANTOPEN;
  } else if (flags & SQLITE_OPEN_MAIN_DB) {
    f->kind = FileKind::kMainDb;
    keys = LookupKey(sqlite3_uri_parameter(name, "silo_key"));
  } else if (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) {
    f->kind = (flags & SQLITE_OPEN_WAL) ? FileKind::kWal : FileKind::kJournal;
    sqlite3_file* main = sqlite3_database_file_object(name);
    if (main != nullptr && main->pMethods == Methods() && AsSilo(main)->keys != nullptr) {
      keys = *AsSilo(main)->keys;
    }
  } else if (flags & SQLITE_OPEN_SUPER_JOURNAL) {
    f->kind = FileKind::kPassThrough;  // holds file names only
  } else {
    return SQLITE_CANTOPEN;
  }
  if (f->kind != FileKind::kPassThrough && keys == nullptr) {
    sqlite3_log(SQLITE_CANTOPEN, "silo: no key registered for %s", name);
    return SQLITE_CANTOPEN;
  }
  int rc = lower->xOpen(lower, name, f->lower, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  if (keys != nullptr) f->keys = new std::shared_ptr<const CipherKeys>(std::move(keys));
  f->base.pMethods = Methods();
  return SQLITE_OK;
}

std::mutex g_vfs_mu;

}  // namespace

Status RegisterCipherVfs(const std::string& name, const std::string& lower_name) {
  crypto::EnsureSodium();
  std::lock_guard lock(g_vfs_mu);
  if (sqlite3_vfs_find(name.c_str()) != nullptr) return Status::Ok();
  sqlite3_vfs* lower = sqlite3_vfs_find(lower_name.c_str());
  if (lower == nullptr) return NotFound("no SQLite VFS named " + lower_name);
  if (lower->iVersion < 2) return InvalidArgument("lower VFS too old: " + lower_name);
  auto* info = new VfsInfo{};  // registered for the life of the process
  info->name = name;
  sqlite3_vfs& v = info->vfs;
  shim::PassThroughVfs(&v, lower);
  v.szOsFile = kSiloFileSize + lower->szOsFile;
  v.zName = info->name.c_str();
  v.xOpen = XOpen;
  int rc = sqlite3_vfs_register(&v, 0);
  if (rc != SQLITE_OK) return Internal("sqlite3_vfs_register failed");
  return Status::Ok();
}

void EnsureCipherVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    Status s = RegisterCipherVfs(kCipherVfsName, "unix-excl");
    if (!s.ok()) {
      log::Error("cannot register the cipher VFS", {{"error", s.message()}});
      std::abort();  // no encryption means no storage at all
    }
  });
}

KeyRegistration::~KeyRegistration() {
  std::lock_guard lock(g_registry_mu);
  Registry().erase(id_);
}

std::unique_ptr<KeyRegistration> RegisterKey(const crypto::SecretKey& database_key) {
  crypto::EnsureSodium();
  auto keys = std::make_shared<CipherKeys>(CipherKeys{
      DeriveKey(database_key, "silo page cipher key v1"),
      DeriveKey(database_key, "silo checksum mask key v1"),
      PageKeyFingerprint(database_key),
  });
  std::string id = crypto::HexEncode(crypto::RandomBytes(16));
  {
    std::lock_guard lock(g_registry_mu);
    Registry()[id] = std::move(keys);
  }
  return std::unique_ptr<KeyRegistration>(new KeyRegistration(id));
}

std::string CipherUri(const std::string& path, const KeyRegistration& key, const std::string& vfs) {
  std::string uri = "file:";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c == '&' || c == '=' || c < 0x20 || c >= 0x7f) {
      uri.push_back('%');
      uri.push_back(kHex[c >> 4]);
      uri.push_back(kHex[c & 15]);
    } else {
      uri.push_back(static_cast<char>(c));
    }
  }
  return uri + "?vfs=" + vfs + "&silo_key=" + key.id();
}

uint64_t AuthFailureCount() { return g_auth_failures.load(std::memory_order_relaxed); }

}  // namespace silo::storage
