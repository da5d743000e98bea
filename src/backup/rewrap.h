// A master-key rotation's part in the backup target (silo keys
// rotate-master, issue 22): after a rotation the new key alone must restore
// every backup. A tenant's backup key object (tenant_key.h) is wrapped under
// the master key and is re-wrapped; the format 2 manifests under it stay as
// they are. A format 1 manifest carries its data key wrapped under the master
// key itself, so it is rewritten with the key re-wrapped (and its MAC, under
// the unchanged backup key, recomputed). The data, files and checkpoints are
// untouched: they are sealed under the tenant's own keys.
#ifndef SILO_BACKUP_REWRAP_H_
#define SILO_BACKUP_REWRAP_H_

#include <cstdint>
#include <vector>

#include "backup/target.h"
#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::backup {

struct RewrapReport {
  int64_t rewrapped = 0;    // format 1 manifests rewritten now
  int64_t tenant_keys = 0;  // tenant backup keys rewritten now
  int64_t already = 0;      // under the new key already (an interrupted run's)
};

// Rewrites every tenant backup key and format 1 manifest in `target` wrapped
// under `old_master` so that `new_master` opens it; one at a time, each
// replaced whole, so a rerun after an interruption finishes the rest.
// DataLoss naming the object for one that fails its MAC or whose key opens
// under neither master key (nothing after it is rewritten).
Result<RewrapReport> RewrapManifests(Target& target, const crypto::SecretKey& old_master,
                                     const crypto::SecretKey& new_master);

}  // namespace silo::backup

#endif  // SILO_BACKUP_REWRAP_H_
