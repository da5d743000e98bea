// A tenant's backup key (issue 22, crypto-shredding): one random key per
// tenant, kept in the backup target wrapped under the master key. A backup
// of format 2 carries the tenant's data key wrapped under this key, not
// under the master key, so destroying the one object (silo tenant delete
// --shred) leaves every backup of the tenant sealed under keys that nothing
// opens any more, the master key included (docs/formats.md "Backups").
//
//   <tenant-id>/tenant.key       {"format":1,"tenant":"<id>",
//                                 "master_fingerprint":"<16 hex>",
//                                 "wrapped":"<base64: Keyring::Wrap(id, key, kBackup)>"}
//   <tenant-id>/tenant.shredded  {"format":1,"tenant":"<id>","slug":"<slug>",
//                                 "shredded_at_us":N}: the key was destroyed
//
// Pure functions, no I/O. Thread-safe.
#ifndef SILO_BACKUP_TENANT_KEY_H_
#define SILO_BACKUP_TENANT_KEY_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::backup {

// "<tenant-id>/tenant.key" and "<tenant-id>/tenant.shredded".
std::string TenantKeyName(const std::string& tenant_id);
std::string ShreddedName(const std::string& tenant_id);

struct TenantKeyObject {
  std::string tenant_id;
  std::string master_fingerprint;  // of the master key that wrapped it
  std::string wrapped;             // raw sealed bytes
};
std::string EncodeTenantKey(const TenantKeyObject& o);
// DataLoss when `text` is not a tenant key object.
Result<TenantKeyObject> DecodeTenantKey(std::string_view text);

std::string EncodeShredded(const std::string& tenant_id, const std::string& slug, int64_t at_us);

// A backup's data key wrapped under the tenant's backup key (AD
// "silo-backup-dek-v1:" + tenant id), and opened again: DataLoss when the
// key, the tenant or a byte differs.
std::string WrapDataKey(const crypto::SecretKey& tenant_key, const std::string& tenant_id,
                        const crypto::SecretKey& dek);
Result<crypto::SecretKey> UnwrapDataKey(const crypto::SecretKey& tenant_key,
                                        const std::string& tenant_id, std::string_view wrapped);

// Names a tenant backup key in manifests (16 hex, not secret).
std::string TenantKeyId(const crypto::SecretKey& tenant_key);

}  // namespace silo::backup

#endif  // SILO_BACKUP_TENANT_KEY_H_
