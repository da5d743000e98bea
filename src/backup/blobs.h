// A tenant's file blobs in backups (issue 17; docs/architecture.md "Backups
// of files"). Blobs are copied as the sealed bytes they already are, under
// FileBlobName, once: every backup that lists a blob shares the one object
// (blobs never change: an id names the same bytes for good). A backup's
// files list (archive.h) names each blob with the SHA-256 of its sealed
// bytes, under the backup's MAC, so an object altered in the target is
// caught before a byte of it is used.
//
// Memory: a blob is never whole in memory; targets copy in 1 MiB pieces and
// a re-seal holds one 64 KiB chunk. A restore's scratch copies go to the
// tenant's files/u/ under a random id, where the files module's orphan sweep
// removes what a crash leaves; a check's go to `scratch_dir`.
//
// Functions; the backup service serialises the calls.
#ifndef SILO_BACKUP_BLOBS_H_
#define SILO_BACKUP_BLOBS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backup/archive.h"
#include "backup/target.h"
#include "base/status.h"
#include "crypto/secret_key.h"
#include "files/catalog.h"

namespace silo::backup {

// Stores the blobs `kept` of tenant `tenant_id` that the target does not hold
// yet and returns the files list of a backup holding all of them. Each is
// named by the key epoch in its header (FileBlobName); `key_epoch`, the
// tenant key's, names one lost from disk. DataLoss naming the file when a
// kept file's blob is neither on disk nor in the target.
Result<std::vector<FileEntry>> StoreBlobs(Target& target, const std::string& data_dir,
                                          const std::string& tenant_id,
                                          const std::vector<files::KeptFile>& kept,
                                          uint32_t key_epoch);

// What checking a backup's blobs found.
struct BlobCheck {
  int64_t checked = 0;  // objects whose SHA-256 is the list's
  int64_t opened = 0;   // of them, blobs whose every chunk opened
};

// Fetches every listed blob of tenant `tenant_id` into `scratch_dir` and checks its SHA-256 against
// the list. With `files_key`, also opens every chunk of each blob whose plaintext size `sizes`
// gives (the backed-up database's files table): what a drill does. DataLoss naming the first bad
// blob.
Result<BlobCheck> CheckBlobs(Target& target, const std::string& scratch_dir,
                             const std::string& tenant_id, const std::vector<FileEntry>& list,
                             const crypto::SecretKey* files_key,
                             const std::map<std::string, uint64_t>& sizes);

// Where a restore's blobs come from and go to.
struct BlobRestore {
  std::string data_dir;
  std::string from_tenant;               // the backup's tenant
  const crypto::SecretKey* from_key;     // its files sub-key
  std::string to_tenant;                 // the tenant restored into
  const crypto::SecretKey* to_key;       // its files sub-key
  uint32_t to_epoch = 0;                 // and that key's epoch (what a re-seal carries)
  std::map<std::string, uint64_t> kept;  // the restored copy's kept files: id -> size
};
struct BlobRestoreReport {
  int64_t fetched = 0;   // copied from the target
  int64_t present = 0;   // already on disk with the listed bytes (in place)
  int64_t resealed = 0;  // re-sealed under another key (restore --as, or re-keyed since)
};

// Puts on disk, for `r.to_tenant`, every kept file of the restored copy:
// listed blobs are fetched and checked against the list (and, for another
// tenant or a tenant re-keyed since the backup, opened and sealed again
// under the live key, chunk by chunk); a blob already on disk with the
// listed bytes, or sealed under the live key, is kept. DataLoss when a kept file is
// neither listed nor (in place) on disk, or a fetched blob differs.
Result<BlobRestoreReport> RestoreBlobs(Target& target, const BlobRestore& r,
                                       const std::vector<FileEntry>& list);

// The blob objects of tenant `tenant_id` in the target.
Result<std::vector<std::string>> StoredBlobNames(Target& target, const std::string& tenant_id);

}  // namespace silo::backup

#endif  // SILO_BACKUP_BLOBS_H_
