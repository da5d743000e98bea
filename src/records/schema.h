// Collections and their typed fields, and the validation of record data
// against them. Pure functions over JSON values: no storage here.
//
// A collection as JSON (the API's body and the event log's value):
//   {"name": "tickets", "fields": [
//     {"name": "title", "type": "string", "required": true, "max": 200},
//     {"name": "state", "type": "enum", "values": ["open", "closed"], "indexed": true},
//     {"name": "ref", "type": "string", "unique": true},
//     {"name": "scan", "type": "file", "max_bytes": 10485760,
//      "types": ["image/*", "application/pdf"], "max_files": 3},
//     {"name": "customer", "type": "relation", "collection": "customers",
//      "multiple": false, "on_delete": "restrict"}]}
// Names (collections and fields) match [a-z][a-z0-9_]{0,62}; the record
// metadata names (id, version, created_at, ...) are reserved.
#ifndef SILO_RECORDS_SCHEMA_H_
#define SILO_RECORDS_SCHEMA_H_

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::records {

enum class FieldType {
  kString,
  kText,
  kInteger,
  kNumber,
  kBoolean,
  kDateTime,
  kEmail,
  kEnum,
  kJson,
  kFile,     // one file id (max_files 1) or an array of them; files/catalog.h
  kRelation  // one record id of `collection`, or an array of them (multiple)
};

// What deleting a record does to the records whose relation names it.
enum class OnDelete { kRestrict, kCascade, kSetNull };

std::string_view FieldTypeName(FieldType type);

struct FieldDef {
  std::string name;
  FieldType type = FieldType::kString;
  bool required = false;
  bool unique = false;
  bool indexed = false;
  size_t max_bytes = 0;                      // string, text, json, file: the limit in bytes
  std::vector<std::string> values;           // enum only
  std::vector<std::string> types;            // file only: allowed sniffed types; empty: any
  size_t max_files = 1;                      // file only
  std::string collection;                    // relation only: the target collection
  bool multiple = false;                     // relation only: an array of ids
  OnDelete on_delete = OnDelete::kRestrict;  // relation only
  // Set for a system field (SystemField): the records column it reads
  // instead of a member of the record's data.
  std::string column;
};

struct CollectionSchema {
  std::string name;
  std::vector<FieldDef> fields;
  // "public": {"create": true, "honeypot": "<name>"}: anonymous creates
  // through POST /api/public/<name> (a contact form); a submission that fills
  // the honeypot field (hidden from people, not a declared field) is dropped.
  bool public_create = false;
  std::string honeypot_field;

  const FieldDef* Find(std::string_view field) const;
  boost::json::object ToJson() const;
};

inline constexpr size_t kMaxFields = 64;
inline constexpr size_t kMaxRelationIds = 100;  // in one multiple relation
inline constexpr int kMaxJsonDepth = 16;

// [a-z][a-z0-9_]{0,62}
bool ValidName(std::string_view name);

// The read-only fields every record has, which filters and sorts take like
// declared fields: id, created_by and updated_by (the actor, "<kind>:<id>",
// strings) and created_at and updated_at (date-times, compared as the
// microseconds they are stored as). nullptr for any other name; their names
// are reserved, so no declared field shadows them.
const FieldDef* SystemField(std::string_view name);
inline constexpr std::string_view kSystemFieldNames =
    "id, created_at, created_by, updated_at, updated_by";
// A record id: [A-Za-z0-9_-]{1,64}.
bool ValidRecordId(std::string_view id);

// The file ids a file field's value names, or the record ids a relation
// field's value names (none for an absent value).
// REQUIRES: the value passed ValidateRecord.
std::vector<std::string> FileIds(const boost::json::value* value);
inline std::vector<std::string> RelatedIds(const boost::json::value* value) {
  return FileIds(value);
}

std::string_view OnDeleteName(OnDelete mode);

// Parses and checks a collection definition. InvalidArgument naming each
// bad field definition. What needs the other collections (a relation's
// target exists, cascades form no cycle) is the store's to check.
Result<CollectionSchema> ParseCollection(const boost::json::value& json);

// Checks a record's whole data (every field it has) against the schema and
// returns it normalised (date-times in UTC with six fraction digits).
// InvalidArgument naming each bad field: unknown fields, wrong types,
// missing required fields, values over their limits.
Result<boost::json::object> ValidateRecord(const CollectionSchema& schema,
                                           const boost::json::object& data);

// Parses one query-string value as the field's type (for filters and
// cursors), normalised like stored values. InvalidArgument when it does not
// parse.
Result<boost::json::value> ParseFieldValue(const FieldDef& field, std::string_view text);

}  // namespace silo::records

#endif  // SILO_RECORDS_SCHEMA_H_
