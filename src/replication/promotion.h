// The check a follower passes before it may become a tenant's primary (the
// one step of replication that needs the tenant's key).
//
// A follower cannot check its copy without the key: the WAL's checksums are
// masked. SQLite, opening the copy, ends the log at the first frame that
// fails authentication, which would silently drop every commit after a
// damaged frame (notes: replication.md, P5). So the copy is opened with the
// key and must recover exactly the commit frame the applier recorded, and
// pass quick_check; otherwise the follower is refused and must resync.
#ifndef SILO_REPLICATION_PROMOTION_H_
#define SILO_REPLICATION_PROMOTION_H_

#include <string>

#include "base/status.h"
#include "crypto/secret_key.h"
#include "storage/database.h"

namespace silo::replication {

// OK when the replica in `dir` opens under `database_key` (the tenant's
// database-pages sub-key) with the WAL the applier recorded, whole, and
// passes quick_check. DataLoss "the replica does not match its recorded
// position: it needs a resync" otherwise (the cause says what differed).
// Opening recovers the WAL and may checkpoint it: call it only on a copy
// that is about to be promoted or discarded. `vfs` is the cipher VFS it
// is opened through: the replicated one (storage/repl_vfs.h) when the
// copy's chain goes on, so that what the check writes is recorded too.
Status CheckPromotable(const std::string& dir, const crypto::SecretKey& database_key,
                       const std::string& vfs = storage::kCipherVfsName);

}  // namespace silo::replication

#endif  // SILO_REPLICATION_PROMOTION_H_
