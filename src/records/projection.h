// The projections of a tenant's event log in SQLite (DESIGN section 5):
// `collections`, `records` (current state) and `record_versions` (every
// version with its valid-from and valid-to time), plus `unique_values`
// (enforces unique fields) and one expression index per indexed field.
//
// Apply() is the only code that writes them: live writes call it right after
// appending the event, and a rebuild calls it for every stored event, so the
// two cannot drift apart. Internal to the records module.
#ifndef SILO_RECORDS_PROJECTION_H_
#define SILO_RECORDS_PROJECTION_H_

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "events/event_log.h"
#include "records/schema.h"
#include "storage/database.h"

namespace silo::records::projection {

extern const std::string_view kSchema;

// valid_to of a version that is still current.
inline constexpr int64_t kForever = INT64_MAX;

// Event subjects: ("collection", name) and ("record", "<collection>/<id>").
inline constexpr std::string_view kCollectionSubject = "collection";
inline constexpr std::string_view kRecordSubject = "record";

// Updates the projections for one event.
// REQUIRES: db.InTransaction().
Status Apply(storage::Database& db, int64_t seq, const events::Event& event);

// The event as stored in the log's body (inverse of the body format).
Result<events::Event> ParseBody(std::string_view body);

struct StoredCollection {
  CollectionSchema schema;
  int64_t version = 0;
  int64_t created_at_us = 0;
  int64_t updated_at_us = 0;
};
// NotFound when there is no such collection.
Result<StoredCollection> LoadCollection(storage::Database& db, const std::string& name);

// The newest version of a record, deleted or not; nullopt when it never existed.
struct Version {
  int64_t version = 0;
  bool deleted = false;
  boost::json::object data;
  int64_t created_at_us = 0;
  std::string created_by;
  int64_t updated_at_us = 0;
  std::string updated_by;
};
Result<std::optional<Version>> LoadLatest(storage::Database& db, const std::string& collection,
                                          const std::string& id);
// The current (live) versions of those of `ids` that are live, by id; one
// statement per 100 ids.
Result<std::map<std::string, Version>> LoadCurrentMany(storage::Database& db,
                                                       const std::string& collection,
                                                       const std::vector<std::string>& ids);
// The version with that number, or the one valid at `at_us`.
Result<std::optional<Version>> LoadVersion(storage::Database& db, const std::string& collection,
                                           const std::string& id, int64_t version);
Result<std::optional<Version>> LoadAt(storage::Database& db, const std::string& collection,
                                      const std::string& id, int64_t at_us);

// SHA-256 over every projection row in key order (hex).
Result<std::string> Checksum(storage::Database& db);
// Empties every projection and drops the field indexes (before a rebuild).
Status Clear(storage::Database& db);

// Clears every projection and applies every event of the log in order
// (what a rebuild and a restore "as of" do); `events` receives how many.
// DataLoss when an event's body was purged. REQUIRES: db.InTransaction().
Status ReplayAll(storage::Database& db, int64_t* events);

// The SQL expression for a declared field's value in `data`. The name comes
// from a schema definition, which only admits [a-z][a-z0-9_]*.
std::string FieldExpr(const FieldDef& field);

}  // namespace silo::records::projection

#endif  // SILO_RECORDS_PROJECTION_H_
