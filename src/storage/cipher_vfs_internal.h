// What the files of the cipher VFS share (cipher_vfs.cc: keys, the main
// database file, the io_methods and the VFS; cipher_vfs_logs.cc: the WAL and
// the rollback journal). Only those two files include this header; everyone
// else goes through cipher_vfs.h. Formats in docs/storage_format.md.
#ifndef SILO_STORAGE_CIPHER_VFS_INTERNAL_H_
#define SILO_STORAGE_CIPHER_VFS_INTERNAL_H_

#include <sodium.h>
#include <sqlite3.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "crypto/secret_key.h"
#include "storage/page_cipher.h"

namespace silo::storage::cipher {

constexpr int64_t kP = static_cast<int64_t>(kPageSize);
constexpr int64_t kWalHeaderSize = 32;
constexpr int64_t kFrameHeaderSize = 24;
constexpr int64_t kFrameSize = kP + kFrameHeaderSize;
constexpr size_t kMaskNonceSize = 8;

// The three keys derived from one database key. Immutable once built.
struct CipherKeys {
  crypto::SecretKey page;  // page AEAD
  crypto::SecretKey mask;  // PRF masking plaintext-derived checksums
  std::string fingerprint;
};

inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline void Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
inline bool AllZero(const uint8_t* p, size_t n) {
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
inline void Mask(const CipherKeys& keys, const Ad& ad, uint8_t* out, size_t n) {
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

inline const CipherKeys& Keys(SiloFile* f) { return **f->keys; }

// Counts and logs a sealed unit that failed authentication.
void ReportAuthFailure(SiloFile* f, const char* what, int64_t offset);
int LowerRead(SiloFile* f, void* buf, int amount, int64_t offset);
int LowerWrite(SiloFile* f, const void* buf, int amount, int64_t offset);

// The WAL and the rollback journal (cipher_vfs_logs.cc): SQLite's reads and
// writes of those files, sealed and opened. SQLite result codes.
int WalRead(SiloFile* f, void* out, int amount, int64_t offset);
int WalWrite(SiloFile* f, const void* in, int amount, int64_t offset);
int JournalRead(SiloFile* f, void* out, int amount, int64_t offset);
int JournalWrite(SiloFile* f, const void* in, int amount, int64_t offset);

}  // namespace silo::storage::cipher

#endif  // SILO_STORAGE_CIPHER_VFS_INTERNAL_H_
