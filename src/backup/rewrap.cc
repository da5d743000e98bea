#include "backup/rewrap.h"

#include "backup/archive.h"
#include "backup/tenant_key.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"

namespace silo::backup {

Result<RewrapReport> RewrapManifests(Target& target, const crypto::SecretKey& old_master,
                                     const crypto::SecretKey& new_master) {
  const std::string old_fp = crypto::KeyFingerprint(old_master);
  const std::string new_fp = crypto::KeyFingerprint(new_master);
  RewrapReport report;
  SILO_ASSIGN_OR_RETURN(auto names, target.List(""));
  for (const std::string& name : names) {
    if (name.ends_with("/tenant.key")) {
      SILO_ASSIGN_OR_RETURN(std::string text, target.Get(name));
      SILO_ASSIGN_OR_RETURN(TenantKeyObject o, DecodeTenantKey(text));
      if (TenantKeyName(o.tenant_id) != name) {
        return DataLoss("tenant key " + name + " is not where it says");
      }
      if (o.master_fingerprint == new_fp) {
        ++report.already;
        continue;
      }
      if (o.master_fingerprint != old_fp) {
        return DataLoss("tenant key " + name + " is wrapped under a third master key (" +
                        o.master_fingerprint + "); nothing after it was rewritten");
      }
      SILO_ASSIGN_OR_RETURN(o.wrapped,
                            crypto::Keyring::Rewrap(o.tenant_id, o.wrapped, old_master, new_master,
                                                    crypto::Keyring::Kind::kBackup));
      o.master_fingerprint = new_fp;
      SILO_RETURN_IF_ERROR(target.Put(name, EncodeTenantKey(o)));
      ++report.tenant_keys;
      continue;
    }
    if (!name.ends_with(".json")) continue;
    SILO_ASSIGN_OR_RETURN(std::string text, target.Get(name));
    SILO_ASSIGN_OR_RETURN(Manifest m, ParseManifest(text));
    if (ManifestName(m.id) != name) return DataLoss("backup " + name + " is not where it says");
    if (m.format != 1) continue;  // its key is under the tenant's backup key, rewrapped above
    if (m.master_fingerprint == new_fp) {
      ++report.already;
      continue;
    }
    if (m.master_fingerprint != old_fp) {
      return DataLoss("backup " + m.id + " is wrapped under a third master key (" +
                      m.master_fingerprint + "); nothing after it was rewritten");
    }
    auto wrapped = crypto::Base64Decode(m.wrapped_key);
    if (!wrapped.ok()) return DataLoss("backup " + m.id + " has a malformed key");
    SILO_ASSIGN_OR_RETURN(crypto::SecretKey dek,
                          crypto::Keyring::UnwrapWith(m.tenant_id, *wrapped, old_master));
    const crypto::SecretKey backup_key = crypto::DeriveSubkey(dek, crypto::KeyPurpose::kBackups);
    if (Status mac = CheckManifestMac(text, backup_key); !mac.ok()) {
      return DataLoss("backup " + m.id + ": " + mac.message() + "; nothing after it was rewritten");
    }
    SILO_ASSIGN_OR_RETURN(std::string rewrapped,
                          crypto::Keyring::Rewrap(m.tenant_id, *wrapped, old_master, new_master));
    m.wrapped_key = crypto::Base64Encode(rewrapped);
    m.master_fingerprint = new_fp;
    SILO_RETURN_IF_ERROR(target.Put(name, SerializeManifest(m, backup_key)));
    ++report.rewrapped;
  }
  return report;
}

}  // namespace silo::backup
