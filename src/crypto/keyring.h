// Keyring: the per-tenant data keys (DEKs), stored only wrapped by the master key.
//
// Files (mode 0600, each replaced atomically; docs/formats.md):
//   <path>              {"format":2,"master_fingerprint":"<16 hex>"}
//   <path>.d/<tenant>   {"format":2,"tenant":"<id>","master_fingerprint":"<16 hex>",
//                        "wrapped":"<base64 of Seal(KEK, dek, AD)>","epoch":n}
//   <path>.d/<tenant>.next   the same for a key staged by a re-key
// `epoch` (absent: 0) counts the tenant's data keys: a re-key's new key has
// the next one, and the blobs it seals carry it (files/blob.h).
// KEK = DeriveKek(master); AD = "silo-dek-v1:" + tenant id, so a wrapped key
// copied to another tenant's file fails to open. One file per key: creating
// or destroying a key writes that key's file only, whatever the number of
// tenants (format 1 kept every key in <path> and rewrote it each time).
// A format 1 keyring is converted when opened: the key files first, then the
// header, so an interrupted conversion is redone from format 1 at the next
// open, and a key file that format 1 does not list is removed (a key
// destroyed meanwhile stays destroyed).
//
// Thread-safe: every method takes mutex_.
#ifndef SILO_CRYPTO_KEYRING_H_
#define SILO_CRYPTO_KEYRING_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::crypto {

class Keyring {
 public:
  // What a wrapped key is. The associated data names kind and tenant, so a
  // tenant's backup key never opens as its data key, nor as another's.
  //   kData:   the tenant's DEK ("silo-dek-v1:" + id), in the key files
  //   kBackup: the tenant's backup key ("silo-backup-key-v1:" + id), kept in
  //            the backup target (backup/tenant_key.h); it wraps the DEK in
  //            every backup of the tenant, and a crypto-shred destroys it
  enum class Kind { kData, kBackup };

  // Opens the keyring at `path`, creating an empty one if the file is missing.
  // FailedPrecondition when the file was written under another master key
  // ("wrong master key"), DataLoss when it or a key file cannot be parsed.
  static Result<std::unique_ptr<Keyring>> Open(const std::string& path, SecretKey master);

  // Generates, wraps and persists a new DEK. AlreadyExists if present;
  // InvalidArgument for an id that is not 1-64 of [A-Za-z0-9_-].
  Result<SecretKey> CreateKey(const std::string& tenant_id);
  // Unwraps the tenant's DEK. NotFound if absent, DataLoss if tampered.
  Result<SecretKey> GetKey(const std::string& tenant_id) const;
  // Removes the wrapped key for good (crypto-shredding the tenant's data).
  Status DestroyKey(const std::string& tenant_id);
  std::vector<std::string> TenantIds() const;
  // The epoch of the tenant's key (0 for its first). NotFound if absent.
  Result<uint32_t> Epoch(const std::string& tenant_id) const;

  // --- a tenant's re-key (silo tenant rekey); the key file is the commit
  // point: until CommitStaged the current key is the tenant's, after it the
  // staged one, and the current one is gone.
  struct Staged {
    SecretKey key;
    uint32_t epoch = 0;
  };
  // Generates the tenant's next key (epoch + 1) and persists it wrapped,
  // beside the current one. AlreadyExists when one is staged; NotFound
  // without a current key.
  Result<Staged> StageKey(const std::string& tenant_id);
  // Tenants with a staged key (a re-key that did not reach its commit).
  std::vector<std::string> StagedIds() const;
  // Forgets the staged key (file removed, directory synced); OK when none.
  Status DiscardStaged(const std::string& tenant_id);
  // Makes the staged key the tenant's: its file renamed over the current
  // one's, the directory synced. FailedPrecondition when none is staged.
  Status CommitStaged(const std::string& tenant_id);

  // The tenant's DEK as stored (wrapped, bound to the tenant id), for a
  // backup to carry: only this master key opens it. NotFound if absent.
  Result<std::string> Wrapped(const std::string& tenant_id) const;
  // Keeps a tenant key wrapped elsewhere under the same master key (a
  // cluster follower taking over a tenant): DataLoss when it does not open
  // under this master key for this tenant; OK when the same key is here.
  Status Import(const std::string& tenant_id, const std::string& wrapped);
  // Opens a wrapped DEK of `tenant_id` (from a backup) without storing it.
  // DataLoss when it was wrapped under another master key, for another
  // tenant, or altered.
  Result<SecretKey> Unwrap(const std::string& tenant_id, std::string_view wrapped,
                           Kind kind = Kind::kData) const;
  // `key` wrapped under this master key as `kind` of `tenant_id`.
  std::string Wrap(const std::string& tenant_id, const SecretKey& key, Kind kind) const;
  // This master key's fingerprint (16 hex), as in the keyring file.
  const std::string& master_fingerprint() const { return master_fingerprint_; }

  // --- master-key rotation (silo keys rotate-master) ---
  // How the keyring at `path` stands against two master keys.
  struct RotationState {
    std::string current;      // the header's master fingerprint
    std::string rotating_to;  // "" unless a rotation was begun and not finished
  };
  static Result<RotationState> ReadRotationState(const std::string& path);
  // Re-wraps every key file at `path` from `old_master` to `new_master`,
  // resumably: the header first names the rotation (Open refuses the keyring
  // until it ends, under either key), each key file is rewritten atomically
  // (one already under the new key is checked and kept), and only
  // FinishRotation makes the new key the keyring's. A rerun with the same two
  // keys continues; FailedPrecondition, with nothing changed, for an
  // `old_master` that is not the keyring's, a rotation begun towards another
  // key, or the same key twice. `stop_after` (tests): Unavailable after
  // rewrapping that many keys. Returns how many keys it rewrapped.
  static Result<int64_t> RotateKeys(const std::string& path, const SecretKey& old_master,
                                    const SecretKey& new_master, int64_t stop_after = -1);
  // Ends a rotation RotateKeys completed: the header names `new_master` alone.
  static Status FinishRotation(const std::string& path, const SecretKey& new_master);
  // A DEK of `tenant_id` wrapped under `from` (a keyring file's or a
  // backup's), re-wrapped under `to`. DataLoss when it does not open.
  static Result<std::string> Rewrap(const std::string& tenant_id, std::string_view wrapped,
                                    const SecretKey& from, const SecretKey& to,
                                    Kind kind = Kind::kData);
  // The same DEK unwrapped under `master` (to check what it protects).
  static Result<SecretKey> UnwrapWith(const std::string& tenant_id, std::string_view wrapped,
                                      const SecretKey& master, Kind kind = Kind::kData);

 private:
  Keyring(std::string path, SecretKey master);
  Status WriteHeader() const;
  Status WriteKeyFile(const std::string& tenant_id, const std::string& wrapped, uint32_t epoch = 0,
                      const std::string& suffix = "") const;
  Status LoadKeyFiles() REQUIRES(mutex_);
  // Writes format 1's keys (raw sealed bytes by tenant) as key files, then
  // the format 2 header.
  Status ConvertFormat1(std::map<std::string, std::string> keys) REQUIRES(mutex_);

  const std::string path_;
  const std::string keys_dir_;  // path_ + ".d"
  const SecretKey kek_;
  const std::string master_fingerprint_;
  mutable Mutex mutex_;
  std::map<std::string, std::string> wrapped_ GUARDED_BY(mutex_);  // raw sealed bytes
  std::map<std::string, uint32_t> epochs_ GUARDED_BY(mutex_);      // absent: 0
  struct StagedWrapped {
    std::string wrapped;
    uint32_t epoch = 0;
  };
  std::map<std::string, StagedWrapped> staged_ GUARDED_BY(mutex_);
};

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_KEYRING_H_
