// Ordered, checksummed schema migrations for one database.
//
// Each migration has a version (1, 2, 3, ... with no gaps), a name and SQL.
// Applied migrations are recorded in `silo_migrations` with a SHA-256 of
// name and SQL; PRAGMA user_version mirrors the highest. Migrate() applies
// the missing ones in order, all in one transaction (a failure in any leaves
// none applied), and refuses:
//   - a database written by a newer version (a recorded version this build
//     does not know): FailedPrecondition, nothing changed;
//   - a recorded migration whose checksum differs from this build's (the
//     history was edited after release): DataLoss, nothing changed.
#ifndef SILO_STORAGE_MIGRATOR_H_
#define SILO_STORAGE_MIGRATOR_H_

#include <span>
#include <string_view>

#include "base/status.h"
#include "storage/database.h"

namespace silo::storage {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

Status Migrate(Database& db, std::span<const Migration> migrations);

// The highest applied version (0 for a new database).
Result<int> SchemaVersion(Database& db);

}  // namespace silo::storage

#endif  // SILO_STORAGE_MIGRATOR_H_
