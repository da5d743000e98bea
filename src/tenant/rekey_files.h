// The on-disk side of a tenant re-key (silo tenant rekey; docs/architecture.md
// "Tenant rekey"). Every file sealed under the tenant's data key gets a
// sibling "<file>.rekey" sealed under the staged key (crypto::Keyring::StageKey):
// the database, tenant.meta, each file blob. The keyring is the commit point:
// while the new key is staged, the siblings are a re-key not yet made (roll
// back: remove them, then the staged key); once it is the tenant's key, they
// are the tenant's files (roll forward: rename each over its original).
// Removal comes before the staged key goes, so a sibling without a staged key
// always means the commit was made.
//
// Functions; the caller keeps the tenant's files still (no connection open,
// or at start before anything opened them).
#ifndef SILO_TENANT_REKEY_FILES_H_
#define SILO_TENANT_REKEY_FILES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/keyring.h"

namespace silo::tenant {

inline constexpr std::string_view kRekeySuffix = ".rekey";
// An original a re-key set aside after its commit, removed once the tenant
// is open again (or at the next start): its blocks are freed outside the
// pause.
inline constexpr std::string_view kOldSuffix = ".rekey-old";

// Removes every sibling of the tenant's files (and a sibling database's
// -wal and -journal). OK when there is none.
Status RemoveRekeySiblings(const std::string& data_dir, const std::string& tenant_id);

// Puts every sibling in place of its original: the database's old -wal and
// -journal go first (they belong to the old file), then each rename, then
// the directories are synced. Returns how many files it put in place;
// running it again does nothing more. With `unsynced`, the blob
// directories are not synced but added there, for the caller to sync once
// the tenant is open again (a crash before that leaves siblings, which the
// next start renames again: blobs are not written after). With `kept_old`,
// each original is kept aside as "<file>.rekey-old" (listed there) for the
// caller to remove then.
Result<int64_t> InstallRekeySiblings(const std::string& data_dir, const std::string& tenant_id,
                                     std::vector<std::string>* unsynced = nullptr,
                                     std::vector<std::string>* kept_old = nullptr);

// "<tenant dir>/rekey.pending": written (synced) before a re-key stages its
// key, removed once all its files are in place, or removed. A start looks
// for this one name per tenant, and reads a tenant's files only when it is
// there.
Status MarkRekey(const std::string& data_dir, const std::string& tenant_id);
Status UnmarkRekey(const std::string& data_dir, const std::string& tenant_id);

enum class RekeyResolution { kNone, kRolledBack, kRolledForward };
// Ends a re-key of `tenant_id` that began (MarkRekey) and did not end: a
// key still staged means the commit was not made (siblings removed, then
// the key); otherwise the siblings are put in place and the originals set
// aside removed. Then the mark goes. kNone when no re-key was pending, or
// one past its commit had nothing left to rename.
Result<RekeyResolution> ResolveRekey(const std::string& data_dir, crypto::Keyring& keyring,
                                     const std::string& tenant_id);

struct RekeyRecovery {
  int64_t rolled_back = 0;     // tenants whose re-key had not reached its commit
  int64_t rolled_forward = 0;  // tenants whose re-key had, with files still to rename
};
// At start, before the registry reads tenant.meta: ResolveRekey for every
// tenant marked or with a staged key.
Result<RekeyRecovery> RecoverRekeys(const std::string& data_dir, crypto::Keyring& keyring);

}  // namespace silo::tenant

#endif  // SILO_TENANT_REKEY_FILES_H_
