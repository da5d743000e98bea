#include "records/record_json.h"

#include "base/time_util.h"

namespace silo::records {

boost::json::object RecordMetaJson(const Record& r) {
  boost::json::object o;
  o["id"] = r.id;
  o["version"] = r.version;
  o["created_at"] = FormatRfc3339Micros(r.created_at_us);
  o["created_by"] = r.created_by;
  o["updated_at"] = FormatRfc3339Micros(r.updated_at_us);
  o["updated_by"] = r.updated_by;
  return o;
}

boost::json::object RecordJson(const Record& r) {
  boost::json::object o = RecordMetaJson(r);
  for (const auto& kv : r.data) o[kv.key()] = kv.value();
  return o;
}

}  // namespace silo::records
