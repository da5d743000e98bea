#include "replication/promotion.h"

#include <memory>

#include "replication/applier.h"
#include "storage/database.h"

namespace silo::replication {
namespace {

Status Mismatch(std::string cause) {
  return DataLoss("the replica does not match its recorded position: it needs a resync")
      .WithCause(std::move(cause));
}

}  // namespace

Status CheckPromotable(const std::string& dir, const crypto::SecretKey& database_key,
                       const std::string& vfs) {
  SILO_ASSIGN_OR_RETURN(std::unique_ptr<Applier> applier, Applier::Open(dir));
  const ReplicaPosition& position = applier->position();
  if (position.seq == 0) return Mismatch("the replica holds no segment");
  storage::OpenOptions options;
  options.create = false;
  options.vfs = vfs;
  auto db = storage::Database::Open(dir + "/" + kReplicaDatabaseName, database_key, options);
  if (!db.ok()) return Mismatch("open: " + db.status().ToString());
  Result<int64_t> frames = (*db)->WalFrames();
  if (!frames.ok()) return Mismatch("WAL: " + frames.status().ToString());
  if (*frames != int64_t{position.wal_commit_frame}) {
    return Mismatch("recovered " + std::to_string(*frames) + " WAL frames, recorded " +
                    std::to_string(position.wal_commit_frame));
  }
  Result<std::string> check = (*db)->QuickCheck();
  if (!check.ok()) return Mismatch("quick_check: " + check.status().ToString());
  if (*check != "ok") return Mismatch("quick_check: " + *check);
  return Status::Ok();
}

}  // namespace silo::replication
