// The seam between handlers and a tenant's data (DESIGN section 10): plain
// C++ values and JSON in and out, no SQL and no sqlite3 types, so a
// PostgreSQL backend (a database per tenant) could implement the same
// interface without touching handlers.
//
// Every write appends one event to the tenant's hash-chained event log and
// updates the projections (current records, their system-versioned history)
// in the same transaction (DESIGN section 5). Event times are strictly
// increasing per tenant: a write at or before the last event's time is
// stamped one microsecond after it, so "as of T" is always well defined.
#ifndef SILO_RECORDS_TENANT_STORE_H_
#define SILO_RECORDS_TENANT_STORE_H_

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/secret_key.h"
#include "events/event_log.h"
#include "records/query.h"
#include "records/rules.h"
#include "records/schema.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::records {

struct TenantStoreInfo {
  int schema_version = 0;
  std::string created_at;  // RFC 3339, when the tenant's storage was created
};

// Writes are stamped with an events::Origin: who writes, and when (the
// caller's clock; tests pass simulated time).
struct Collection {
  CollectionSchema schema;
  int64_t version = 0;  // bumped by each schema change
  int64_t created_at_us = 0;
  int64_t updated_at_us = 0;
};

struct Record {
  std::string id;
  int64_t version = 0;
  int64_t created_at_us = 0;
  std::string created_by;  // "<actor kind>:<actor id>"
  int64_t updated_at_us = 0;
  std::string updated_by;
  boost::json::object data;  // the declared fields it has
};

struct RecordPage {
  std::vector<Record> records;
  std::optional<std::string> next_cursor;  // nullopt on the last page
};

// One version of a record, from the event that made it.
struct HistoryEntry {
  int64_t version = 0;
  int64_t seq = 0;
  int64_t at_us = 0;
  std::string type;  // record.created, record.updated, record.deleted, record.reverted
  events::Actor actor;
  std::string request_id;
  // {field: [old, new]}; a side is null when the field was absent. Null
  // (not an object) when the event body was purged.
  boost::json::value changes;
};

// Which old state a revert writes back: a version, or the state at a time.
struct RevertTarget {
  std::optional<int64_t> version;
  std::optional<int64_t> at_us;
};

struct AuditEntry {
  std::string type;  // e.g. "tenant.exported", "collection.created"
  std::string subject_kind;
  std::string subject_id;
  boost::json::object details;  // never secrets
};

struct AuditQuery {
  std::optional<std::string> actor;  // "<kind>:<id>"
  std::optional<std::string> type;
  std::optional<int64_t> from_us, to_us;  // inclusive range on the entry time
  int64_t after = 0;                      // seq
  int limit = 100;
};

struct ChainReport {
  int64_t events_checked = 0;
  std::optional<int64_t> events_first_broken;
  int64_t audit_checked = 0;
  std::optional<int64_t> audit_first_broken;
  std::string reason;  // of the first break found
  // PRAGMA integrity_check of the whole database, in the same snapshot:
  // "ok", or what it found (every page is read, so also every page's tag).
  std::string integrity = "ok";
  bool ok() const { return !events_first_broken && !audit_first_broken && integrity == "ok"; }
};

struct RebuildReport {
  int64_t events = 0;
  std::string checksum_before;
  std::string checksum_after;
  bool equal() const { return checksum_before == checksum_after; }
};

// One tenant's storage, for the duration of a request. Not thread-safe: one
// per request (the database serialises writes across them). API tokens are
// auth's (auth/api_tokens.h), though they live in the same database.
class TenantStore {
 public:
  virtual ~TenantStore() = default;
  virtual Result<TenantStoreInfo> Info() = 0;

  // Holds every later record call to the caller's record rules (rules.h):
  // a record outside the read, update, delete or history rules is NotFound
  // (its existence is not revealed); a create or update whose result falls
  // outside the rule, or that writes a field the rule does not give, is
  // PermissionDenied; reads omit the fields the rules do not give, and a
  // filter or sort naming one is PermissionDenied; a relation may name only
  // records the caller may read. Without rules (the default) every record
  // and field is reachable. A delete's cascades and set_nulls follow the
  // schema, not the caller's rules, as foreign-key actions do in SQL.
  virtual void SetRules(RulesProvider rules) = 0;

  virtual Result<std::vector<Collection>> ListCollections() = 0;
  virtual Result<Collection> GetCollection(const std::string& name) = 0;
  // AlreadyExists when the name is taken.
  virtual Result<Collection> CreateCollection(const events::Origin& ctx,
                                              const CollectionSchema& schema) = 0;
  // Replaces the fields. FailedPrecondition, naming the offending record ids
  // (at most 100) when current records would violate the new schema.
  virtual Result<Collection> UpdateCollection(const events::Origin& ctx,
                                              const CollectionSchema& schema) = 0;
  // FailedPrecondition while the collection still holds records or another
  // collection's relation names it.
  virtual Status DeleteCollection(const events::Origin& ctx, const std::string& name) = 0;

  // `data` may carry "id" (else one is generated). InvalidArgument naming
  // each bad field (a relation naming no live record of its collection
  // included); AlreadyExists for a used id or a duplicate unique value.
  virtual Result<Record> CreateRecord(const events::Origin& ctx, const std::string& collection,
                                      const boost::json::object& data) = 0;
  // The record now, or as it was at `at_us` (NotFound when it did not exist
  // or was deleted then).
  virtual Result<Record> GetRecord(const std::string& collection, const std::string& id,
                                   std::optional<int64_t> at_us) = 0;
  // The live records among `ids` (now, or at `at_us`), in the order given;
  // ids with no such record are left out. One snapshot.
  virtual Result<std::vector<Record>> GetRecords(const std::string& collection,
                                                 const std::vector<std::string>& ids,
                                                 std::optional<int64_t> at_us) = 0;
  // Sets the given fields; a null value removes a field. VersionMismatch
  // when `if_version` is given and not the current version.
  virtual Result<Record> UpdateRecord(const events::Origin& ctx, const std::string& collection,
                                      const std::string& id, const boost::json::object& patch,
                                      std::optional<int64_t> if_version) = 0;
  // Follows the on_delete of every relation naming the record, in the same
  // transaction: cascade deletes the referrer (one event each, recursively),
  // set_null removes the id from its field; FailedPrecondition naming the
  // referrers (at most 100) when a restrict relation still names it.
  virtual Status DeleteRecord(const events::Origin& ctx, const std::string& collection,
                              const std::string& id, std::optional<int64_t> if_version) = 0;
  virtual Result<RecordPage> ListRecords(const std::string& collection, const ListQuery& query) = 0;
  virtual Result<std::vector<HistoryEntry>> History(const std::string& collection,
                                                    const std::string& id) = 0;
  // Writes an old state back as a new version (restoring a deleted record).
  virtual Result<Record> RevertRecord(const events::Origin& ctx, const std::string& collection,
                                      const std::string& id, const RevertTarget& target,
                                      std::optional<int64_t> if_version) = 0;

  // The change feed: events with seq > after, in order.
  virtual Result<std::vector<events::StoredEvent>> Events(int64_t after, int limit) = 0;
  // The seq of `log`'s last entry, or of the last whose type is one of
  // `types` when given; 0 when there is none.
  virtual Result<int64_t> LastSeq(events::Log log, const std::vector<std::string>& types) = 0;

  virtual Status Audit(const events::Origin& ctx, const AuditEntry& entry) = 0;
  virtual Result<std::vector<events::StoredEvent>> QueryAudit(const AuditQuery& query) = 0;
  // Drops the bodies of audit entries older than `before_us`; the chain stays
  // verifiable. Returns how many.
  virtual Result<int64_t> PurgeAudit(int64_t before_us) = 0;

  virtual Result<ChainReport> VerifyChains() = 0;
  // Recreates every projection from the event log inside one transaction and
  // commits only when the result's checksum equals the one before.
  virtual Result<RebuildReport> Rebuild() = 0;
  // Every collection's live records as of `at_us` (now when nullopt), one
  // call per record, in collection then id order.
  virtual Status Export(
      std::optional<int64_t> at_us,
      const std::function<Status(const std::string& collection, const Record& record)>& sink) = 0;
  // One collection's live records as of `at_us`, every field, in id order,
  // whatever rules are set (the export permission takes no conditions or
  // fields: rbac.h). NotFound for an unknown collection.
  virtual Status ExportCollection(const std::string& collection, std::optional<int64_t> at_us,
                                  const std::function<Status(const Record& record)>& sink) = 0;
};

// Every tenant's storage. Thread-safe.
class TenantStores {
 public:
  virtual ~TenantStores() = default;
  // Creates the tenant's storage (idempotent).
  virtual Status Create(const std::string& tenant_id) = 0;
  // Unavailable when too many tenants are in use at once.
  virtual Result<std::unique_ptr<TenantStore>> Open(const std::string& tenant_id) = 0;
  // Closes the tenant's storage (before suspension or deletion).
  virtual void Close(const std::string& tenant_id) = 0;
  virtual size_t open_count() const = 0;
};

struct SqliteStoresOptions {
  size_t max_open_tenants = 256;
  size_t readers_per_tenant = 4;
  bool synchronous_full =
      true;  // false: synchronous=NORMAL (WAL; a power cut may lose the last commits)
};

// The records module's migrations of the tenant schema (1..3). Other modules
// that keep tables in the tenant database append theirs after these (auth:
// API tokens 4-5, identity 6).
std::span<const storage::Migration> TenantMigrations();

// Over databases opened by the caller (with TenantMigrations() first in
// their migration list).
std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::shared_ptr<storage::TenantDatabases> databases);

// Encrypted SQLite per tenant, at path_fn(id), under key_fn(id) (the
// tenant's KeyPurpose::kDatabasePages sub-key), with records' migrations only.
std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::function<Result<crypto::SecretKey>(const std::string&)> key_fn,
    std::function<std::string(const std::string&)> path_fn, SqliteStoresOptions options);

}  // namespace silo::records

#endif  // SILO_RECORDS_TENANT_STORE_H_
