// The cipher VFS: a shim over SQLite's `unix-excl` VFS that encrypts every
// page SQLite writes to a database, its WAL and its rollback journal, using
// page_cipher.h (DESIGN section 4; ../shared/notes/sqlite-encryption.md).
//
// Keys reach the VFS through a process-wide registry: RegisterKey() returns a
// handle whose id the caller puts in the database URI as `silo_key=<id>`; the
// VFS copies the keys into the open file, so the registration only needs to
// live across sqlite3_open_v2 or an ATTACH / VACUUM INTO. WAL and journal
// files take the keys of their main database. A main database opened through
// this VFS without a registered key fails with SQLITE_CANTOPEN: there is no
// plaintext fallback.
//
// Fail-closed rules: temporary files (name NULL, temp DB, sorter, transient
// index, statement journal) are refused with SQLITE_CANTOPEN; writes of any
// shape other than whole pages (database), frame header/page (WAL) or
// pgno/page/checksum records (journal) fail with SQLITE_IOERR_WRITE; a page
// that fails authentication reads as SQLITE_IOERR_AUTH; page 1 under another
// key or of a foreign file reads as SQLITE_NOTADB. PRAGMAs that would change
// the page size, leave WAL mode, put temp storage on disk or enable mmap are
// refused with an error message.
#ifndef SILO_STORAGE_CIPHER_VFS_H_
#define SILO_STORAGE_CIPHER_VFS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::storage {

// The name of the VFS over unix-excl, registered by EnsureCipherVfs().
inline constexpr char kCipherVfsName[] = "silo";

// Registers the "silo" VFS once (thread-safe, idempotent).
void EnsureCipherVfs();

// Registers a further cipher VFS named `name` over the VFS `lower` (tests put
// a fault-injecting VFS underneath). Idempotent per name.
Status RegisterCipherVfs(const std::string& name, const std::string& lower);

// A database key made available to the VFS while the handle lives.
class KeyRegistration {
 public:
  ~KeyRegistration();
  KeyRegistration(const KeyRegistration&) = delete;
  KeyRegistration& operator=(const KeyRegistration&) = delete;

  // Random, not derived from the key; safe in URIs and logs.
  const std::string& id() const { return id_; }

 private:
  friend std::unique_ptr<KeyRegistration> RegisterKey(const crypto::SecretKey& database_key);
  explicit KeyRegistration(std::string id) : id_(std::move(id)) {}
  std::string id_;
};

// Derives the page, mask and fingerprint keys from `database_key` (the
// tenant's KeyPurpose::kDatabasePages sub-key) and registers them.
std::unique_ptr<KeyRegistration> RegisterKey(const crypto::SecretKey& database_key);

// Builds "file:<path>?vfs=<vfs>&silo_key=<id>" with the path percent-escaped.
std::string CipherUri(const std::string& path, const KeyRegistration& key,
                      const std::string& vfs = kCipherVfsName);

// The main-database pages of this VFS read and written without SQLite, for
// streaming a database image to or from a file that no connection has open
// (snapshot.h). Pages are numbered from 1; `in` and `out` are kPageSize
// bytes. Thread-compatible.
class PageCodec {
 public:
  explicit PageCodec(const crypto::SecretKey& database_key);
  ~PageCodec();
  PageCodec(const PageCodec&) = delete;
  PageCodec& operator=(const PageCodec&) = delete;
  // Seals page `pgno` as the VFS writes it (page 1 must carry SQLite's header
  // for Silo's layout: InvalidArgument otherwise).
  Status Seal(uint32_t pgno, const uint8_t* in, uint8_t* out) const;
  // Opens page `pgno` as the VFS reads it; DataLoss when it does not
  // authenticate (`out` is then zeros).
  Status Open(uint32_t pgno, const uint8_t* in, uint8_t* out) const;

 private:
  crypto::SecretKey page_;
  std::string fingerprint_;
};

// Process-wide count of pages that failed authentication (for metrics).
uint64_t AuthFailureCount();

}  // namespace silo::storage

#endif  // SILO_STORAGE_CIPHER_VFS_H_
