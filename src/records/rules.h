// Record rules: what one caller may do with the records of one collection
// for one action (read, create, update, delete, history), as the grants of
// their roles say (rbac::Grant). A grant may carry a condition ("where", the
// listing filter syntax, every filter must hold) and a field list; a caller
// may act on a record when any of their grants for the action admits it,
// and sees (or writes) the fields of the grants that admit it.
//
// The store enforces them (TenantStore::SetRules): a listing's SQL carries
// the conditions, a read or write of one record checks them in C++ with
// Matches(), which must agree with the SQL of list_sql.cc (rules_test.cc
// compares the two on random records and filters).
#ifndef SILO_RECORDS_RULES_H_
#define SILO_RECORDS_RULES_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "records/query.h"
#include "records/schema.h"

namespace silo::records {

struct Record;

// What a condition's variables stand for: @me (the caller's user id; on
// created_by and updated_by, the actor "user:<id>"), @now (the request's
// time). `me` empty: the caller acts for no user, and @me matches nothing.
struct Variables {
  std::string me;
  int64_t now_us = 0;
};

// One grant as it applies to one collection.
struct Rule {
  std::vector<Filter> where;                    // all must hold; empty: every record
  std::optional<std::set<std::string>> fields;  // nullopt: every field
};

using FieldSet = std::optional<std::set<std::string>>;  // nullopt: every field

struct RecordRules {
  std::vector<Rule> rules;  // none: no record at all

  // Every record, every field (what a grant without condition and fields
  // gives): the store's fast path.
  bool Unrestricted() const;
  // Some rule admits every record (no SQL condition needed).
  bool AllRows() const;
  // Some rule's condition matches `r`.
  bool Admits(const Record& r) const;
  // The fields of the rules that admit `r` (nullopt: all).
  FieldSet FieldsFor(const Record& r) const;
  // The fields every rule gives: what filters and sorts may name, since
  // every listed record is admitted by some rule.
  FieldSet FieldsOfEveryRule() const;
};

// The rules that admit every record and field.
RecordRules AllowAll();

// Parses one grant's condition and field list against `schema`, with the
// variables substituted. InvalidArgument naming the problem: an unknown
// field or operator, an unknown variable, a value that does not parse, a
// condition through a relation.
Result<Rule> ParseRule(const CollectionSchema& schema, const std::vector<std::string>& where,
                       const std::vector<std::string>& fields, const Variables& vars);

// Whether `r` (its system fields and data) satisfies every filter, with
// SQLite's semantics for the listing's SQL: a missing field never matches,
// numbers compare as numbers, text byte-wise, a number is less than text.
// REQUIRES: no filter goes through a relation.
bool Matches(const std::vector<Filter>& where, const Record& r);

// `data` without the fields outside `fields`.
void KeepFields(const FieldSet& fields, boost::json::object* data);

// The rules of the caller for `action` on the collection `schema` describes.
using RulesProvider =
    std::function<Result<RecordRules>(const CollectionSchema& schema, std::string_view action)>;

}  // namespace silo::records

#endif  // SILO_RECORDS_RULES_H_
