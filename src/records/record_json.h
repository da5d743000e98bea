// A record as the API shows it: its system fields (id, version, created_at
// and _by, updated_at and _by) and its data fields, in one JSON object. One
// shape for the records routes and the realtime records channels.
#ifndef SILO_RECORDS_RECORD_JSON_H_
#define SILO_RECORDS_RECORD_JSON_H_

#include <boost/json/object.hpp>

#include "records/tenant_store.h"

namespace silo::records {

// The system fields only.
boost::json::object RecordMetaJson(const Record& record);
// The system fields, then the data fields the record carries.
boost::json::object RecordJson(const Record& record);

}  // namespace silo::records

#endif  // SILO_RECORDS_RECORD_JSON_H_
