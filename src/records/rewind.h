// Restoring "as of" a time (issue: backups): a database copy is cut back to
// the events up to T and its projections rebuilt from them. Used on a
// restored copy before it goes live, never on a live tenant.
#ifndef SILO_RECORDS_REWIND_H_
#define SILO_RECORDS_REWIND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/database.h"

namespace silo::records {

struct RewindReport {
  int64_t events_kept = 0;
  int64_t events_dropped = 0;
  int64_t audit_dropped = 0;
};

// In one transaction: checks the event chain, drops the events and audit
// entries later than `at_us` (the chains stay valid: what remains is a
// prefix), and rebuilds every projection from the events that remain.
// DataLoss when the event log does not verify or an event body was purged;
// nothing changes then.
Result<RewindReport> RewindTo(storage::Database& db, int64_t at_us);

// Every file id that a file field of a current record names (after a
// rewind: those of the time), for files::ResetForRestore.
Result<std::vector<std::string>> ReferencedFileIds(storage::Database& db);

}  // namespace silo::records

#endif  // SILO_RECORDS_REWIND_H_
