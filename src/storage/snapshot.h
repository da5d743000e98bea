// Plaintext images of a database, for backups (issue: backups). An image is
// the database's pages as SQLite sees them through the cipher VFS, held in
// memory only: nothing here writes a plaintext byte to disk, and images are
// wiped when they are released.
//
// Cost: an image takes as much memory as the database has pages (a 1 GiB
// tenant needs 1 GiB while it is backed up or restored).
#ifndef SILO_STORAGE_SNAPSHOT_H_
#define SILO_STORAGE_SNAPSHOT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"
#include "storage/database.h"

namespace silo::storage {

// A consistent image of one database. Move-only; wipes its memory when destroyed.
class Snapshot {
 public:
  ~Snapshot();
  Snapshot(Snapshot&& other) noexcept;
  Snapshot& operator=(Snapshot&&) = delete;
  Snapshot(const Snapshot&) = delete;

  // The pages, page 1 first; size() is a multiple of kPageSize.
  std::string_view bytes() const;

 private:
  friend Result<Snapshot> TakeSnapshot(Database&, const std::function<Status(Database&)>&);
  explicit Snapshot(sqlite3* memdb) : memdb_(memdb) {}
  sqlite3* memdb_;
};

// Copies `db` into memory inside one read transaction, so that writers on
// other connections go on and the image is the state of one instant.
// `inside` runs on `db` in the same transaction, before the copy: what it
// reads (the last event, the chain head) describes exactly this image.
// REQUIRES: `db` is not in a transaction (use a reader connection).
Result<Snapshot> TakeSnapshot(Database& db, const std::function<Status(Database&)>& inside);

// Writes `image` as a new database at `path`, encrypted under `key` (WAL
// mode, checkpointed, fsynced with its directory). AlreadyExists when `path`
// exists; DataLoss when `image` is not a SQLite database of Silo's page
// layout. `image` is used as scratch (its header is adjusted) and wiped.
// A failed write removes what it wrote.
Status WriteImage(std::string& image, const std::string& path, const crypto::SecretKey& key);

}  // namespace silo::storage

#endif  // SILO_STORAGE_SNAPSHOT_H_
