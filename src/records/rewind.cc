#include "records/rewind.h"

#include "events/event_log.h"
#include "records/projection.h"

namespace silo::records {

Result<RewindReport> RewindTo(storage::Database& db, int64_t at_us) {
  auto tx = storage::Transaction::Begin(db);
  if (!tx.ok()) return tx.status();
  auto verify = events::Verify(db, events::Log::kEvents);
  if (!verify.ok()) return verify.status();
  if (verify->first_broken) {
    return DataLoss("the event log is broken at entry " + std::to_string(*verify->first_broken) +
                    " (" + verify->reason + ")");
  }
  RewindReport report;
  SILO_ASSIGN_OR_RETURN(report.events_dropped,
                        events::TruncateAfter(db, at_us, events::Log::kEvents));
  SILO_ASSIGN_OR_RETURN(report.audit_dropped,
                        events::TruncateAfter(db, at_us, events::Log::kAudit));
  if (Status s = projection::ReplayAll(db, &report.events_kept); !s.ok()) return s;
  if (Status s = tx->Commit(); !s.ok()) return s;
  return report;
}

}  // namespace silo::records
