// Backups of tenants (issue: backups): run, list, verify, restore, drill,
// prune, over one Target. What each does is in docs/architecture.md
// "Backups"; the format is in archive.h.
//
// Thread-safe: one operation runs at a time (they are long and share the
// target); callers queue on an internal mutex.
#ifndef SILO_BACKUP_SERVICE_H_
#define SILO_BACKUP_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backup/archive.h"
#include "backup/retention.h"
#include "backup/target.h"
#include "base/file_util.h"
#include "base/mutex.h"
#include "base/status.h"
#include "crypto/keyring.h"
#include "records/tenant_store.h"
#include "storage/tenant_databases.h"
#include "tenant/registry.h"

namespace silo::backup {

struct Listed {
  Manifest manifest;
  bool good = false;      // the manifest authenticates and its data object is there
  bool shredded = false;  // its tenant's backup key was destroyed (Service::Shred)
  std::string problem;    // why not good
};

struct ShredReport {
  int64_t backups = 0;        // of the tenant in the target, now unreadable
  int64_t rewrapped = 0;      // format 1 manifests moved under the tenant's backup key first
  int64_t dropped = 0;        // format 1 manifests under another master key: deleted
  int64_t blobs_deleted = 0;  // the tenant's file blobs in the target
};

// What a re-key did (Service::Rekey).
struct RekeyReport {
  std::string tenant_id, tenant_slug;
  uint32_t key_epoch = 0;      // the new key's (crypto::Keyring::Epoch)
  int64_t database_bytes = 0;  // the database file, re-encrypted
  int64_t files = 0;           // blobs sealed again under the new key
  int64_t files_missing = 0;   // files whose blob was not on disk (nothing to seal)
  // TOTP secrets moved to the new key, and recovery codes dropped (kept
  // only as hashes keyed with the old key): their users make new ones.
  int64_t secrets_resealed = 0, recovery_codes_dropped = 0;
  double pause_seconds = 0;  // writes refused: the copy, the sealing of late blobs, the swap
  double seconds = 0;
};

struct RestoreRequest {
  std::string backup_id;
  std::optional<std::string> as_slug;  // a new tenant; else the backup's tenant, in place
  std::optional<int64_t> at_us;        // the state as of this time
  std::string request_id;
};

struct RestoreReport {
  std::string backup_id;
  std::string tenant_id, tenant_slug;
  bool new_tenant = false;
  int64_t events = 0;                             // in the restored tenant
  int64_t events_dropped = 0, audit_dropped = 0;  // by --at (audit: only with --as)
  // In place: the backup of the state it replaced, taken first, so that the
  // restore itself can be undone; and how many live audit entries were kept
  // (an in-place restore never rolls the audit log back).
  std::string pre_restore_backup_id;
  int64_t audit_kept = 0;
  int64_t sessions_ended = 0;
  int64_t image_bytes = 0;
  // Files: kept by the restored records (attached or tombstones), and how
  // their blobs got there (BlobRestoreReport); links dropped (a restore
  // never brings a revoked link back).
  int64_t files = 0, files_fetched = 0, files_present = 0, files_resealed = 0;
  int64_t links_dropped = 0;
  // A copy restored as another tenant: TOTP secrets moved to its key, and
  // recovery codes dropped (kept only as hashes keyed with the old key).
  int64_t secrets_resealed = 0, recovery_codes_dropped = 0;
  double seconds = 0;
};

struct DrillReport {
  std::string tenant_id, tenant_slug, backup_id;
  int64_t backup_taken_at_us = 0;
  bool ok = false;
  std::string problem;  // empty when ok
  std::string integrity;
  bool events_chain_ok = false, audit_chain_ok = false;
  int64_t events = 0, events_expected = 0;
  std::string chain_head, chain_head_expected;
  int64_t image_bytes = 0;
  int64_t files = 0, files_bytes = 0;  // listed in the backup
  int64_t files_checked = 0;           // fetched, hashed and every chunk opened
  double restore_seconds = 0;          // fetch, verify, decrypt, write, check: the RTO
  int64_t at_us = 0;
  std::string ToJson() const;
};

struct Stats {
  int64_t backups_ok = 0, backups_failed = 0;
  int64_t restores_ok = 0, restores_failed = 0;
  int64_t drills_ok = 0, drills_failed = 0;
  int64_t pruned = 0;
  double last_backup_seconds = 0, last_drill_seconds = 0;
  int64_t last_backup_bytes = 0;
  int64_t last_success_us = 0;  // of a backup
};

// What a restored copy must forget before it goes live, run on the copy inside
// the restore's transaction; returns how many sessions it ended. backup does
// not know whose tables those are: app wires auth's
// EndSessionsAndOneTimeTokens here, so a restore's effect on identity is
// stated in one place.
using ForgetOnRestore = std::function<Result<int64_t>(storage::Database& copy)>;
// Re-seals, in a copy restored as another tenant (restore --as), what is
// sealed under the backup's tenant's secret-fields sub-key
// (KeyPurpose::kSecretFields, `from`) under the copy's (`to`), inside the
// restore's transaction. app wires auth's ResealSecretFields here. Returns
// (secrets re-sealed, values that cannot move and were dropped).
using ResealOnRestore = std::function<Result<std::pair<int64_t, int64_t>>(
    storage::Database& copy, const crypto::SecretKey& from, const crypto::SecretKey& to)>;
// Signs a checkpoint of a backup's chain heads (app wires it to
// checkpoint::Book, which also keeps it as the tenant's newest where it saw
// at least as much): the text stored beside the backup.
using SignCheckpoint = std::function<Result<std::string>(const Manifest& manifest)>;

class Service {
 public:
  // Every pointer must outlive this. Drill reports go to
  // <data_dir>/platform/drills/, scratch copies under <data_dir>/tenants/.
  // REQUIRES: forget is set (a restore runs it on every copy).
  Service(std::unique_ptr<Target> target, tenant::TenantRegistry* tenants, crypto::Keyring* keyring,
          std::shared_ptr<storage::TenantDatabases> databases, records::TenantStores* stores,
          std::string data_dir, RetentionPolicy retention, ForgetOnRestore forget);

  // Before the first Run (not thread-safe): every backup from then on stores
  // a signed checkpoint of its chain heads beside it (CheckpointName).
  void SetCheckpointSigner(SignCheckpoint sign) { sign_checkpoint_ = std::move(sign); }
  // Before the first Restore (not thread-safe): how a copy that becomes
  // another tenant moves its secrets to that tenant's key. Without it, such
  // a copy's TOTP secrets stay under the old tenant's key and do not open.
  void SetResealer(ResealOnRestore reseal) { reseal_ = std::move(reseal); }
  // Before the first Rekey or Restore (not thread-safe): runs inside the
  // swap of a re-key (before the new key is committed) and of a restore in
  // place (before the file is replaced), the tenant closed; its failure
  // refuses the re-key or restore (nothing changed). A cluster node ends
  // the tenant's replication chain there (app::ClusterMember::EndChain):
  // the followers' copies are of the files being replaced, and none may be
  // elected from then on.
  using BeforeSwap = std::function<Status(const std::string& tenant_id)>;
  void SetBeforeSwap(BeforeSwap hook) { before_swap_ = std::move(hook); }

  // Backs up one tenant; returns its manifest.
  Result<Manifest> Run(const tenant::TenantInfo& tenant) EXCLUDES(mu_);
  // Every backup (of one tenant when given), oldest first.
  Result<std::vector<Listed>> List(const std::optional<std::string>& tenant_id) EXCLUDES(mu_);
  // Checks the manifest, the key, every chunk and every listed file's
  // SHA-256; the manifest when all is well.
  Result<Manifest> Verify(const std::string& backup_id) EXCLUDES(mu_);
  // Verifies, writes a new database, checks it (integrity_check, both
  // chains, the manifest's last event), applies `at_us`, ends sessions, and
  // only then swaps it in (or resumes the new tenant). In place it first
  // backs up the live tenant (pre_restore_backup_id), and the swapped-in
  // database carries the live audit log, every entry of it, followed by
  // `backup.restored`: records, events and identity state go back, the audit
  // trail never does. On any failure the live tenant is untouched and nothing
  // is left behind (but the pre-restore backup, which is a good backup).
  Result<RestoreReport> Restore(const RestoreRequest& request) EXCLUDES(mu_);
  // Restores the newest good backup of `tenant` into a scratch database,
  // checks it against the manifest, times it, deletes it; writes the report
  // file and an audit entry in the tenant's log. A failed drill is a report
  // with ok == false (the error is for not being able to drill at all).
  Result<DrillReport> Drill(const tenant::TenantInfo& tenant) EXCLUDES(mu_);
  // Crypto-shreds the tenant's backups (issue 22): every backup's data key
  // is first wrapped under the tenant's backup key alone (format 1
  // manifests are rewritten; one that does not open under this master key
  // loses its manifest), then "<tenant-id>/tenant.shredded" is written and
  // the key object deleted, and read back to make sure it is gone. From
  // then on no backup of the tenant opens, under any key, and none is taken.
  // Its file blobs are deleted; the backups' other objects stay until
  // retention prunes them, and List shows them as shredded. A rerun after
  // an interruption finishes the job.
  Result<ShredReport> Shred(const std::string& tenant_id, const std::string& slug) EXCLUDES(mu_);
  // Gives the tenant a new data key (silo tenant rekey; docs/architecture.md
  // "Tenant rekey"): the next key is staged in the keyring; the blobs are
  // sealed again under it beside the originals and the database copied
  // under it (storage::LiveCopy) while the tenant runs; then writes are
  // refused (reads go on) while the copy's last pages are copied, the blobs
  // uploaded meanwhile sealed, and, in the copy, the TOTP secrets moved to
  // it and `tenant.rekeyed` appended to the audit log; then, with the
  // tenant closed (TenantDatabases::Exclusive), the key
  // is committed and every file renamed over its original. The old key is
  // gone from the keyring; backups taken before keep it (they are the old
  // data). Any failure before the commit leaves the tenant as it was.
  // FailedPrecondition while resumable uploads are in progress;
  // Unavailable when the tenant stayed in use past the swap's wait.
  Result<RekeyReport> Rekey(const tenant::TenantInfo& tenant, const std::string& request_id)
      EXCLUDES(mu_);
  // Tests: the next re-keys stop at `step` ("staged", "blobs", "copying",
  // "copied", "committed") with Internal; `as_crash` leaves everything as a crash
  // there would (no roll back), for the start's recovery to meet.
  void SetRekeyStopForTest(std::string step, bool as_crash) {
    rekey_stop_ = std::move(step);
    rekey_stop_as_crash_ = as_crash;
  }

  // Deletes what the retention policy drops as of `now_us`; returns the ids.
  Result<std::vector<std::string>> Prune(int64_t now_us) EXCLUDES(mu_);

  Stats stats() const;
  std::string target_description() const { return target_->Describe(); }
  const RetentionPolicy& retention() const { return retention_; }

 private:
  // A backup checked as far as LoadLocked goes: manifest, key, MAC, the data
  // object's size and SHA-256 (it waits in scratch), the files list.
  struct Loaded {
    Manifest manifest;
    std::unique_ptr<RemoveOnExit> data;            // the .data object, sealed
    std::optional<crypto::SecretKey> backup_key;   // always set
    std::vector<FileEntry> files;                  // the authenticated files list
    std::optional<crypto::SecretKey> files_key;    // the backup's tenant's files sub-key
    std::optional<crypto::SecretKey> secrets_key;  // and its secret-fields sub-key
  };
  Result<Manifest> RunLocked(const tenant::TenantInfo& tenant) REQUIRES(mu_);
  // The tenant's backup key from the target (tenant_key.h); with `create`,
  // one is made and stored when there is none. FailedPrecondition when the
  // tenant was shredded, DataLoss when the object is missing, altered or
  // under another master key.
  Result<crypto::SecretKey> TenantKeyLocked(const std::string& tenant_id, bool create)
      REQUIRES(mu_);
  // The data key `m` carries, opened (under the master key for format 1,
  // the tenant's backup key for format 2). `keys` caches tenant keys over
  // one listing.
  struct TenantKeys;
  Result<crypto::SecretKey> DataKeyLocked(const Manifest& m, TenantKeys* keys = nullptr)
      REQUIRES(mu_);
  // `open_chunks`: also opens every chunk (verify); a restore and a drill
  // open them as they write the image (WriteImageOf).
  Result<Loaded> LoadLocked(const std::string& backup_id, bool open_chunks) REQUIRES(mu_);
  // The image of `loaded` as a new database at `path` under `key`.
  Status WriteImageOf(const Loaded& loaded, const std::string& path, const crypto::SecretKey& key);
  // A backup's files list (its manifest already authenticated).
  Result<std::vector<FileEntry>> FilesListLocked(const Manifest& m) REQUIRES(mu_);
  Result<std::vector<Listed>> ListLocked(const std::optional<std::string>& tenant_id) REQUIRES(mu_);
  Result<RestoreReport> RestoreLocked(const RestoreRequest& request) REQUIRES(mu_);
  Result<DrillReport> DrillLocked(const tenant::TenantInfo& tenant) REQUIRES(mu_);
  Result<RekeyReport> RekeyLocked(const tenant::TenantInfo& tenant, const std::string& request_id)
      REQUIRES(mu_);
  Status AuditLive(const std::string& tenant_id, const records::AuditEntry& entry);

  const std::unique_ptr<Target> target_;
  tenant::TenantRegistry* const tenants_;
  crypto::Keyring* const keyring_;
  const std::shared_ptr<storage::TenantDatabases> databases_;
  records::TenantStores* const stores_;
  const std::string data_dir_;
  const RetentionPolicy retention_;
  const ForgetOnRestore forget_;
  SignCheckpoint sign_checkpoint_;  // may be empty
  ResealOnRestore reseal_;          // may be empty
  BeforeSwap before_swap_;          // may be empty
  std::string rekey_stop_;          // tests; empty: none
  bool rekey_stop_as_crash_ = false;

  Mutex mu_;  // one operation at a time: the *Locked functions hold it
  mutable Mutex stats_mu_;
  Stats stats_ GUARDED_BY(stats_mu_);
};

}  // namespace silo::backup

#endif  // SILO_BACKUP_SERVICE_H_
