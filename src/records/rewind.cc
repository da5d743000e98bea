#include "records/rewind.h"

#include <boost/json.hpp>

#include "events/event_log.h"
#include "records/projection.h"
#include "records/schema.h"

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

Result<std::vector<std::string>> ReferencedFileIds(storage::Database& db) {
  namespace json = boost::json;
  auto collections = db.Prepare("SELECT name FROM collections ORDER BY name");
  if (!collections.ok()) return collections.status();
  std::vector<std::string> names;
  for (;;) {
    SILO_ASSIGN_OR_RETURN(bool row, collections->Step());
    if (!row) break;
    names.push_back(collections->ColumnText(0));
  }
  std::vector<std::string> out;
  for (const auto& name : names) {
    SILO_ASSIGN_OR_RETURN(auto stored, projection::LoadCollection(db, name));
    std::vector<std::string> fields;
    for (const FieldDef& f : stored.schema.fields) {
      if (f.type == FieldType::kFile) fields.push_back(f.name);
    }
    if (fields.empty()) continue;
    auto records = db.Prepare("SELECT data FROM records WHERE collection = ?");
    if (!records.ok()) return records.status();
    records->Bind(1, name);
    for (;;) {
      SILO_ASSIGN_OR_RETURN(bool row, records->Step());
      if (!row) break;
      boost::system::error_code ec;
      json::value data = json::parse(records->ColumnText(0), ec);
      if (ec || !data.is_object()) return DataLoss("a stored record is not a JSON object");
      for (const auto& field : fields) {
        for (auto& id : FileIds(data.as_object().if_contains(field))) out.push_back(std::move(id));
      }
    }
  }
  return out;
}

}  // namespace silo::records
