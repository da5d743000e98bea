// The files table of a tenant database (migration 7): everything Silo knows
// about an uploaded file except its bytes. Name, declared and sniffed types,
// size, SHA-256, uploader and state live here, under the database's page
// cipher, in every backup; the bytes live in a sealed blob (blob.h) named by
// the same id. No path or name on disk carries a user byte.
//
// A file's life: an upload makes it `pending`, owned by its uploader, for a
// collection's file field, until `expires_at`; a record write that names it
// in that field attaches it to that one record for good (`attached`); a write
// that drops it, or deletes the record, makes it a tombstone (`deleted`)
// whose bytes stay for the backup retention, so that history, time travel and
// revert still find them. A file is never moved to another record or field.
//
// Functions over a storage::Database; the writers run inside the caller's
// transaction, so that attachment commits with the record's event or not at
// all.
#ifndef SILO_FILES_CATALOG_H_
#define SILO_FILES_CATALOG_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "storage/database.h"
#include "storage/migrator.h"

namespace silo::files {

// Migrations 7 (files), 8 (resumable uploads) and 9 (file links) of the
// tenant schema (after records 1-3, auth 4-6).
std::span<const storage::Migration> CatalogMigrations();

enum class FileState { kPending, kAttached, kDeleted };
std::string_view FileStateName(FileState state);

struct FileRow {
  std::string id;             // the blob id (blob.h): 32 lowercase hex
  std::string owner;          // the uploader, "<kind>:<id>"
  std::string name;           // the client's file name, cleaned (CleanFileName)
  std::string declared_type;  // what the client said; kept, never trusted
  std::string type;           // sniffed (sniff.h): what the file is served as
  uint64_t size = 0;
  std::string sha256;  // hex, of the plaintext
  FileState state = FileState::kPending;
  std::string collection, field;  // the file field it was uploaded for
  std::string record_id;          // empty while pending
  int64_t created_at_us = 0;
  int64_t expires_at_us = 0;  // pending only: collected after this
  int64_t deleted_at_us = 0;  // tombstones only
};

// What a file field admits (records' `file` field options).
struct FieldLimits {
  uint64_t max_bytes = 5 * 1024 * 1024;
  std::vector<std::string> types;  // allow-list of sniffed types; "image/*"; empty: any
  size_t max_files = 1;
};

// Whether the sniffed `type` is in `allowed` ("image/png", or "image/*" for
// a whole top-level type). An empty list allows every type.
bool TypeAllowed(const std::vector<std::string>& allowed, std::string_view type);

// A client's file name made safe to keep and to send back in a
// Content-Disposition: the last path segment, control characters, quotes and
// backslashes removed, at most 255 bytes (cut at a UTF-8 boundary); "file"
// when nothing is left.
std::string CleanFileName(std::string_view name);

// NotFound when there is no such file.
Result<FileRow> LoadFile(storage::Database& db, std::string_view id);
Status InsertFile(storage::Database& db, const FileRow& row);

struct Usage {
  uint64_t live_bytes = 0;      // pending and attached files
  uint64_t retained_bytes = 0;  // tombstones whose bytes are kept
  int64_t files = 0;            // rows of either
  uint64_t upload_bytes = 0;    // declared lengths of resumable uploads in progress
  int64_t uploads = 0;
};
Result<Usage> LoadUsage(storage::Database& db);

// A resumable (tus) upload in progress: its bytes are sealed in
// files/u/<id>.part as they arrive (the offset is what that file holds in
// whole chunks, never stored); complete, it becomes the pending file `id`.
// Its declared length counts against the quota from creation on.
struct UploadRow {
  std::string id;  // also the file id it becomes
  std::string owner;
  std::string collection, field;
  std::string name, declared_type;
  uint64_t length = 0;
  int64_t created_at_us = 0;
  int64_t expires_at_us = 0;
};
Status InsertUpload(storage::Database& db, const UploadRow& row);
// NotFound when there is no such upload.
Result<UploadRow> LoadUpload(storage::Database& db, std::string_view id);
Status DeleteUpload(storage::Database& db, std::string_view id);

// A link to one file that works without credentials (an <img> on another
// origin), until it expires or is revoked. Only the token's SHA-256 is kept.
struct LinkRow {
  std::string id;
  std::string file_id;
  std::string created_by;  // "<kind>:<id>"
  int64_t created_at_us = 0;
  int64_t expires_at_us = 0;
  int64_t revoked_at_us = 0;  // 0: not revoked
};
Status InsertLink(storage::Database& db, const LinkRow& row, std::string_view token_hash);
// NotFound when no link has this token hash.
Result<LinkRow> LoadLinkByHash(storage::Database& db, std::string_view token_hash);
// NotFound unless link `id` is a link to `file_id`.
Status RevokeLink(storage::Database& db, std::string_view file_id, std::string_view id,
                  int64_t now_us);

// Ids of pending files and of resumable uploads whose expiry is at or
// before `now_us`, at most `limit` of each.
Result<std::vector<std::string>> ExpiredPending(storage::Database& db, int64_t now_us, int limit);
Result<std::vector<std::string>> ExpiredUploads(storage::Database& db, int64_t now_us, int limit);
// Removes a pending file's row (never an attached file or a tombstone:
// FailedPrecondition).
Status DeletePendingFile(storage::Database& db, std::string_view id);
// Ids of tombstones deleted at or before `cutoff_us`, at most `limit`.
Result<std::vector<std::string>> TombstonesBefore(storage::Database& db, int64_t cutoff_us,
                                                  int limit);
// Removes a tombstone's row (FailedPrecondition for any other file).
Status DeleteTombstone(storage::Database& db, std::string_view id);
// Whether any row (file or upload) has this id.
Result<bool> IdKnown(storage::Database& db, std::string_view id);

// Where a file field's files belong.
struct Holder {
  std::string collection, field, record_id;
};

// What one record write does to the files one of its file fields names,
// `before` and `after` being the field's file ids. Each id new to the field
// must be a pending file its uploader (`actor`, "<kind>:<id>") uploaded for
// this collection and field, within `limits`, or a file of this very record
// and field coming back (a revert): it is attached. Each id dropped becomes a
// tombstone at `now_us`. Errors go to `errors` (field-named, safe to show);
// a file of another tenant, record or field, or one that does not exist,
// reads "no such file" alike.
Status Reconcile(storage::Database& db, const Holder& holder, const std::string& actor,
                 const FieldLimits& limits, const std::vector<std::string>& before,
                 const std::vector<std::string>& after, int64_t now_us,
                 std::vector<FieldError>* errors);

// A file whose bytes a backup keeps: every attached file and every tombstone
// (history, time travel and revert still name them). Pending files are not
// kept: an upload not yet attached is not part of the tenant's state.
struct KeptFile {
  std::string id;
  uint64_t size = 0;  // plaintext
};
Result<std::vector<KeptFile>> FilesToKeep(storage::Database& db);
// Every file that has a blob on disk, pending ones included: what a re-key
// seals again.
Result<std::vector<KeptFile>> FilesWithBytes(storage::Database& db);
// Resumable uploads not finished (their partial blobs are under the key
// they began with): a re-key waits until there are none.
Result<int64_t> UploadsInProgress(storage::Database& db);

// On a restored copy, before it goes live (REQUIRES: db.InTransaction()):
// forgets what must not come back from the past (every link, revoked or not,
// so that a revocation is never undone; every resumable upload and pending
// file, whose bytes a backup does not hold), then makes the files the
// records name `attached` and every other kept file a tombstone (deleted at
// `now_us` unless it already was one). `referenced` is every file id a
// current record's file field names (after a rewind, those of the time).
struct RestoredFiles {
  int64_t links_dropped = 0, uploads_dropped = 0, pending_dropped = 0;
  int64_t attached = 0, tombstones = 0;
};
Result<RestoredFiles> ResetForRestore(storage::Database& db,
                                      const std::vector<std::string>& referenced, int64_t now_us);

}  // namespace silo::files

#endif  // SILO_FILES_CATALOG_H_
