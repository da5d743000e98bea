// Page sealing and opening for the cipher VFS: a pure function of (key, page,
// associated data), with no I/O, so that it can be tested and fuzzed alone
// (DESIGN section 4; ../shared/notes/sqlite-encryption.md sections 0 and 4).
//
// Page layout (P = 4096, R = 48 reserved bytes at the end of every page):
//   [0, 4048)      content, encrypted (page 1: [16, 4048), see below)
//   [4048, 4072)   nonce: 24 fresh random bytes per seal
//   [4072, 4088)   Poly1305 tag
//   [4088]         format version (1)
//   [4089]         key epoch (0 until key rotation lands)
//   [4090, 4096)   zero
// Cipher: XChaCha20-Poly1305-IETF, detached tag.
// Associated data = caller's `ad` (file kind, page number, WAL/journal
// position: the VFS builds it) || version || epoch || (page 1) the header.
//
// Page 1 replaces SQLite's 16-byte magic "SQLite format 3\0" with a plaintext
// Silo header: "SILODB" | version (2 bytes, big-endian) | key fingerprint (8),
// and encrypts everything after it, so the page size, page count, schema
// cookie and the rest of SQLite's header are hidden. Opening restores the
// magic. A wrong key is told apart from damage by the fingerprint.
//
// Thread-safe: no shared state.
#ifndef SILO_STORAGE_PAGE_CIPHER_H_
#define SILO_STORAGE_PAGE_CIPHER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::storage {

inline constexpr size_t kPageSize = 4096;
inline constexpr size_t kReserveBytes = 48;
inline constexpr size_t kUsableSize = kPageSize - kReserveBytes;
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kFingerprintSize = 8;
inline constexpr uint8_t kFormatVersion = 1;

enum class PageOpenError {
  kOk,
  kNotSilo,     // page 1 is not a Silo page (plaintext SQLite, other file)
  kWrongKey,    // page 1 written under another key (fingerprint differs)
  kAuthFailed,  // tampered, moved, truncated or damaged
  kBadVersion,  // written by a newer format
};

// Seals one page image. `in` and `out` are kPageSize bytes and may not
// overlap (SQLite's page cache keeps using `in`). For page 1, `in` must carry
// SQLite's magic, page size 4096 and reserve 48, else InvalidArgument: the VFS
// fails closed rather than write a page it could not read back.
// REQUIRES: fingerprint.size() == kFingerprintSize.
Status SealPage(const crypto::SecretKey& key, std::string_view fingerprint, bool page_one,
                std::string_view ad, const uint8_t* in, uint8_t* out);

// Opens one sealed page into `out` (kPageSize bytes; reserve zeroed, page 1
// magic restored). Never writes unauthenticated plaintext to `out`: on error
// `out` is zero-filled.
PageOpenError OpenPage(const crypto::SecretKey& key, std::string_view fingerprint, bool page_one,
                       std::string_view ad, const uint8_t* in, uint8_t* out);

// The 8 bytes stored in page 1 to recognise the key (keyed BLAKE2b).
std::string PageKeyFingerprint(const crypto::SecretKey& key);

}  // namespace silo::storage

#endif  // SILO_STORAGE_PAGE_CIPHER_H_
