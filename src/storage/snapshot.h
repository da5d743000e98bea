// Plaintext images of a database, for backups (issue: backups; issue 17 made
// them stream). An image is the database's pages as SQLite sees them through
// the cipher VFS. Nothing here writes a plaintext byte to disk: an image is
// taken as an encrypted copy under a throwaway key and read out a piece at a
// time, and written back page by page, sealed as it arrives.
//
// Memory: one piece (the caller's choice, typically 1 MiB) plus SQLite's page
// cache, whatever the size of the database.
#ifndef SILO_STORAGE_SNAPSHOT_H_
#define SILO_STORAGE_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"
#include "storage/database.h"
#include "storage/page_cipher.h"

struct sqlite3_backup;

namespace silo::storage {

// A consistent copy of one database, taken for an image: a database file at
// the path given, under a fresh random key, removed when this is destroyed.
// Move-only.
class ImageCopy {
 public:
  ~ImageCopy();
  ImageCopy(ImageCopy&& other) noexcept;
  ImageCopy& operator=(ImageCopy&&) = delete;
  ImageCopy(const ImageCopy&) = delete;

  // The image's size: its pages times kPageSize.
  int64_t bytes() const { return pages_ * static_cast<int64_t>(kPageSize); }
  // Calls `sink` with the plaintext pages in order, page 1 first, in pieces
  // of up to `piece_bytes` (rounded down to whole pages, at least one), each
  // wiped after its call. DataLoss when a page fails to open; the sink's
  // error stops the stream.
  Status Stream(size_t piece_bytes, const std::function<Status(std::string_view)>& sink) const;

 private:
  friend Result<ImageCopy> TakeImageCopy(Database&, const std::function<Status(Database&)>&,
                                         const std::string&);
  ImageCopy(std::string path, crypto::SecretKey key, int64_t pages);
  std::string path_;  // empty once moved from
  crypto::SecretKey key_;
  int64_t pages_ = 0;
};

// Copies `db` to a new database at `path` (AlreadyExists if it exists) inside
// one read transaction, so that writers on other connections go on and the
// copy is the state of one instant. `inside` runs on `db` in the same
// transaction, before the copy: what it reads (the last event, the chain
// head) describes exactly this image. A failed copy removes what it wrote.
// REQUIRES: `db` is not in a transaction (use a reader connection).
Result<ImageCopy> TakeImageCopy(Database& db, const std::function<Status(Database&)>& inside,
                                const std::string& path);

// A copy of a live database into a new database file under another key
// (a re-key), made a step at a time by SQLite's online backup API while the
// source goes on writing between the steps. The API applies what the
// source's own connection writes to the pages already copied, as it writes
// them, so the copy never starts over; once the last step ran, the copy is
// the source as of that step. Memory: SQLite's page caches.
// REQUIRES: every write to the source database goes through `source` (the
// tenant's one writer connection), `source` outlives this, and every call
// (the destructor too) runs where `source` is otherwise idle (the writer
// held, no transaction open): the connection has no mutex of its own.
// Thread-compatible.
class LiveCopy {
 public:
  // AlreadyExists when `path` exists.
  static Result<std::unique_ptr<LiveCopy>> Start(Database& source, const std::string& path,
                                                 const crypto::SecretKey& key);
  ~LiveCopy();  // unfinished: the copy is removed
  LiveCopy(const LiveCopy&) = delete;
  LiveCopy& operator=(const LiveCopy&) = delete;

  // Copies up to `pages` pages, leaving at least `leave` (>= 1) uncopied:
  // the step that copies the last page ends the copy (the API then follows
  // the source no more), which is Finish's. Returns the pages still to copy.
  Result<int64_t> Step(int64_t pages, int64_t leave);
  // Copies the rest, and syncs the file: the source as of now, under `key`.
  // The file is then the caller's (no longer removed).
  Status Finish();

 private:
  LiveCopy(std::string path, sqlite3* target, sqlite3_backup* backup);
  std::string path_;
  sqlite3* target_;
  sqlite3_backup* backup_;
  bool finished_ = false;
};

// Writes an image arriving in pieces as a new database at `path`, encrypted
// under `key`, each page sealed as it arrives; after Finish, a database that
// Database::Open reads (WAL mode, synced with its directory). Page 1 must be
// a SQLite header of Silo's page layout and the image must hold exactly the
// pages its header counts: DataLoss otherwise. A writer destroyed before
// Finish succeeded removes its file. Thread-compatible.
class ImageWriter {
 public:
  // AlreadyExists when `path` exists.
  static Result<std::unique_ptr<ImageWriter>> Create(const std::string& path,
                                                     const crypto::SecretKey& key);
  ~ImageWriter();
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;

  // Any number of bytes; whole pages are sealed and written at once, a
  // partial page waits for the rest.
  Status Append(std::string_view bytes);
  Status Finish();

 private:
  struct Impl;
  explicit ImageWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streams an image through an ImageWriter: for tests and small images.
Status WriteImage(std::string_view image, const std::string& path, const crypto::SecretKey& key);

}  // namespace silo::storage

#endif  // SILO_STORAGE_SNAPSHOT_H_
