// The backup format (issue: backups; docs/formats.md "Backups"): one tenant's
// database image, compressed with zstd and sealed with the tenant's backup
// sub-key, plus a manifest that says what it is and is itself authenticated.
//
//   <backup-id>.data      "SILOBAK1", then chunks: u32 big-endian length ||
//                         Seal(backup key, zstd(up to 4 MiB of the image), AD)
//                         AD = "silo-backup-v1:" id ":" index ":" ("more"|"last")
//   <backup-id>.json      the Manifest as JSON, with "mac": keyed BLAKE2b of
//                         the rest under the backup key
//
// The AD binds every chunk to its backup, its place and whether it ends the
// image, so moved, reordered, dropped or appended chunks fail to open.
// Pure functions: no I/O. Thread-safe.
#ifndef SILO_BACKUP_ARCHIVE_H_
#define SILO_BACKUP_ARCHIVE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/crypto.h"
#include "crypto/secret_key.h"

namespace silo::backup {

// Format 2 (issue 22): the data key is wrapped under the tenant's backup key
// (tenant_key.h), named by tenant_key_id. Format 1 wrapped it under the
// master key (master_fingerprint); both are read, only 2 is written.
inline constexpr int kFormatVersion = 2;
inline constexpr size_t kChunkBytes = size_t{4} << 20;  // image bytes per chunk

struct ChainHead {
  int64_t seq = 0;   // last entry (0: empty log)
  std::string hash;  // its chain hash (hex; empty for an empty log)
  int64_t count = 0;
};

struct Manifest {
  int format = kFormatVersion;
  std::string id;
  std::string tenant_id;
  std::string tenant_slug;
  int64_t taken_at_us = 0;
  ChainHead events;
  ChainHead audit;
  int64_t image_bytes = 0;   // the plaintext database image
  int64_t stored_bytes = 0;  // the .data object
  int64_t chunks = 0;
  std::string sha256;  // of the .data object, hex
  std::string key_id;  // identifies the backup sub-key (not secret)
  // The tenant's data key, wrapped (base64): format 2 under the tenant's
  // backup key (tenant_key_id), format 1 under the master key
  // (master_fingerprint). The other field is empty.
  std::string wrapped_key;
  std::string master_fingerprint;
  std::string tenant_key_id;
  // The tenant's file blobs this backup holds: stored once each, as the
  // sealed bytes they are, under FileBlobName and shared by every backup
  // that lists them; the list is the sealed object FilesListName(id). A
  // backup of a tenant without files, and one made before files, has none
  // (files_list_sha256 empty, and no "files" member in the manifest).
  int64_t files = 0;
  int64_t files_bytes = 0;        // on disk, sealed
  std::string files_list_sha256;  // of the FilesListName object, hex
};

// One blob in a backup's files list.
struct FileEntry {
  std::string blob_id;
  int64_t sealed_bytes = 0;
  std::string sha256;      // of the sealed file, hex
  uint32_t key_epoch = 0;  // its header's (files/blob.h): which tenant key sealed it
};

// A new backup id: "<tenant-id>-<YYYYMMDDTHHMMSS>Z-<4 hex>", path-safe and
// ordered by time within a tenant.
std::string NewBackupId(const std::string& tenant_id, int64_t taken_at_us);
// The tenant id in a backup id; InvalidArgument when `id` is not one.
Result<std::string> TenantOfBackupId(std::string_view id);

// "<tenant-id>/<id>.json" and "<tenant-id>/<id>.data": names within a target.
std::string ManifestName(const std::string& id);
std::string DataName(const std::string& id);
// "<tenant-id>/<id>.files": the backup's sealed files list.
std::string FilesListName(const std::string& id);
// "<tenant-id>/<id>.checkpoint": the signed checkpoint of the backup's chain
// heads (checkpoint/book.h), kept beside it in the target, off the tenant's
// disk. Backups made before checkpoints have none.
std::string CheckpointName(const std::string& id);
// "<tenant-id>/files/<blob-id>.sf": a blob, shared by the backups that list
// it; "<blob-id>.k<epoch>.sf" once a re-key sealed it under the tenant's key
// of that epoch (the same id then names other bytes, and old backups keep
// theirs).
std::string FileBlobName(const std::string& tenant_id, const std::string& blob_id,
                         uint32_t key_epoch = 0);

// The files list sealed for backup `m.id` (AD binds it to the backup);
// fills m.files, m.files_bytes and m.files_list_sha256.
std::string SealFilesList(const std::vector<FileEntry>& entries,
                          const crypto::SecretKey& backup_key, Manifest& m);
// Checks `sealed` against m.files_list_sha256, opens it and parses it; its
// count and bytes must be the manifest's. DataLoss otherwise.
Result<std::vector<FileEntry>> OpenFilesList(std::string_view sealed,
                                             const crypto::SecretKey& backup_key,
                                             const Manifest& m);

// The key id of a backup sub-key.
std::string BackupKeyId(const crypto::SecretKey& backup_key);

// Seals an image arriving in pieces for backup `m.id`, a chunk at a time:
// the .data object's bytes go to `out` in order. Finish fills m.image_bytes,
// m.stored_bytes, m.chunks, m.sha256 and m.key_id. Memory: one chunk.
class ImageSealer {
 public:
  // `backup_key` and `m` must outlive this.
  ImageSealer(const crypto::SecretKey& backup_key, Manifest& m,
              std::function<Status(std::string_view)> out);
  ~ImageSealer();  // wipes the plaintext it holds
  ImageSealer(const ImageSealer&) = delete;
  ImageSealer& operator=(const ImageSealer&) = delete;
  Status Add(std::string_view image_bytes);
  Status Finish();

 private:
  Status Emit(std::string_view bytes);
  Status SealChunk(std::string_view plain, bool last);
  const crypto::SecretKey& key_;
  Manifest& m_;
  std::function<Status(std::string_view)> out_;
  std::string pending_;  // image bytes not sealed yet (at most a chunk and a piece)
  crypto::Sha256Stream digest_;
  int64_t index_ = 0, image_bytes_ = 0, stored_bytes_ = 0;
};

// DataLoss unless a .data object of `size` bytes with this SHA-256 is the
// manifest's ("truncated", "altered").
Status CheckData(int64_t size, std::string_view sha256, const Manifest& m);

// Opens the chunks of a .data object whose size and SHA-256 were checked
// (CheckData), read in order by `read` (which fills `out` with exactly `n`
// bytes, or fails), and hands each chunk's image bytes to `sink`, wiped after.
// DataLoss with the reason when a chunk does not open. Never hands out
// unauthenticated bytes.
Status OpenImageChunks(const std::function<Status(size_t n, std::string& out)>& read,
                       const crypto::SecretKey& backup_key, const Manifest& m,
                       const std::function<Status(std::string_view)>& sink);

// Both in memory, for small images and tests.
std::string SealImage(std::string_view image, const crypto::SecretKey& backup_key, Manifest& m);
Result<std::string> OpenImage(std::string_view data, const crypto::SecretKey& backup_key,
                              const Manifest& m);

// The manifest as JSON with its MAC.
std::string SerializeManifest(const Manifest& m, const crypto::SecretKey& backup_key);
// Reads a manifest without checking its MAC (the key needed for that is in
// it, wrapped). DataLoss when it is not one.
Result<Manifest> ParseManifest(std::string_view json);
// DataLoss unless `json`'s MAC is right under `backup_key`.
Status CheckManifestMac(std::string_view json, const crypto::SecretKey& backup_key);

}  // namespace silo::backup

#endif  // SILO_BACKUP_ARCHIVE_H_
