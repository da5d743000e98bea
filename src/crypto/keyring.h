// Keyring: the per-tenant data keys (DEKs), stored only wrapped by the master key.
//
// File format (platform/keyring, mode 0600, replaced atomically on every change):
//   {"format":1,"master_fingerprint":"<16 hex>",
//    "keys":{"<tenant-id>":"<base64 of Seal(KEK, dek, AD)>", ...}}
// KEK = DeriveKek(master); AD = "silo-dek-v1:" + tenant id, so a wrapped key
// copied to another tenant's entry fails to open.
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
  // Opens the keyring at `path`, creating an empty one if the file is missing.
  // FailedPrecondition when the file was written under another master key
  // ("wrong master key"), DataLoss when it cannot be parsed.
  static Result<std::unique_ptr<Keyring>> Open(const std::string& path, SecretKey master);

  // Generates, wraps and persists a new DEK. AlreadyExists if present.
  Result<SecretKey> CreateKey(const std::string& tenant_id);
  // Unwraps the tenant's DEK. NotFound if absent, DataLoss if tampered.
  Result<SecretKey> GetKey(const std::string& tenant_id) const;
  // Removes the wrapped key for good (crypto-shredding the tenant's data).
  Status DestroyKey(const std::string& tenant_id);
  std::vector<std::string> TenantIds() const;

  // The tenant's DEK as stored (wrapped, bound to the tenant id), for a
  // backup to carry: only this master key opens it. NotFound if absent.
  Result<std::string> Wrapped(const std::string& tenant_id) const;
  // Opens a wrapped DEK of `tenant_id` (from a backup) without storing it.
  // DataLoss when it was wrapped under another master key, for another
  // tenant, or altered.
  Result<SecretKey> Unwrap(const std::string& tenant_id, std::string_view wrapped) const;
  // This master key's fingerprint (16 hex), as in the keyring file.
  const std::string& master_fingerprint() const { return master_fingerprint_; }

 private:
  Keyring(std::string path, SecretKey master);
  Status PersistLocked() const REQUIRES(mutex_);

  const std::string path_;
  const SecretKey kek_;
  const std::string master_fingerprint_;
  mutable Mutex mutex_;
  std::map<std::string, std::string> wrapped_ GUARDED_BY(mutex_);  // raw sealed bytes
};

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_KEYRING_H_
