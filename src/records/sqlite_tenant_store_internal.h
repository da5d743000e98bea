// What the files of the SQLite tenant store share: the class (its methods
// are spread over sqlite_tenant_store.cc, collection_store.cc,
// record_store.cc and tenant_log.cc, as leveldb spreads DBImpl) and its
// helpers. Only those files include this header; everyone else goes through
// tenant_store.h.
#ifndef SILO_RECORDS_SQLITE_TENANT_STORE_INTERNAL_H_
#define SILO_RECORDS_SQLITE_TENANT_STORE_INTERNAL_H_

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "events/event_log.h"
#include "records/projection.h"
#include "records/tenant_store.h"
#include "storage/database.h"
#include "storage/tenant_databases.h"

namespace silo::records {

inline constexpr size_t kMaxOffendingIds = 100;
inline constexpr int kMaxEventsPage = 1000;

// "<kind>:<id>" as an actor.
events::Actor ParseActor(const std::string& text);
// A generated record id: 11 base-36 digits of the creation time in
// microseconds, then 5 random characters. Why time first: new records land at
// the end of every B-tree keyed by id instead of on random pages, which keeps
// a create to a few dirty pages however large the collection grows (the
// creation time is no secret: created_at says the same).
std::string NewRecordId(int64_t now_us);
// Changes from `before` to `after`, in schema order.
std::vector<events::Change> Diff(const CollectionSchema& schema, const boost::json::object& before,
                                 const boost::json::object& after);
Record ToRecord(const std::string& id, projection::Version v);
Collection ToCollection(projection::StoredCollection c);
// Rejects values another record already holds in a unique field.
Status CheckUnique(storage::Database& db, const CollectionSchema& schema,
                   const std::string& collection, const std::string& id,
                   const boost::json::object& data);
// The first column of every row `stmt` yields, as text.
Result<std::vector<std::string>> FirstColumn(storage::Statement& stmt);
// VersionMismatch when `expected` is given and is not `current`.
Status CheckVersion(int64_t current, std::optional<int64_t> expected);
// InvalidArgument naming each relation field of `after` that names a record
// that is not live in its target collection (ids already in `before` are
// not looked up again: deleting a target first follows on_delete).
// With `rules`, a new id must also be a record the caller may read (the
// same answer as a missing one: an id is not a way to learn that a record
// exists).
Status CheckRelations(storage::Database& db, const CollectionSchema& schema,
                      const boost::json::object& before, const boost::json::object& after,
                      const RulesProvider* rules = nullptr);
// What a record write from `before` to `after` does to the files its file
// fields name (files/catalog.h): new ids are attached, dropped ones become
// tombstones, in the write's transaction. InvalidArgument naming each field
// whose files cannot be attached.
Status ReconcileFiles(storage::Database& db, const events::Origin& ctx,
                      const CollectionSchema& schema, const std::string& collection,
                      const std::string& id, const boost::json::object& before,
                      const boost::json::object& after);

// One tenant's store. Not thread-safe: one per request.
class SqliteTenantStore : public TenantStore {
 public:
  explicit SqliteTenantStore(std::shared_ptr<storage::TenantDatabase> db) : db_(std::move(db)) {}

  Result<TenantStoreInfo> Info() override;

  void SetRules(RulesProvider rules) override { rules_ = std::move(rules); }

  Result<std::vector<Collection>> ListCollections() override;

  Result<Collection> GetCollection(const std::string& name) override;

  Result<Collection> CreateCollection(const events::Origin& ctx,
                                      const CollectionSchema& schema) override;

  Result<Collection> UpdateCollection(const events::Origin& ctx,
                                      const CollectionSchema& schema) override;

  Status DeleteCollection(const events::Origin& ctx, const std::string& name) override;

  Result<Record> CreateRecord(const events::Origin& ctx, const std::string& collection,
                              const boost::json::object& input) override;

  Result<Record> GetRecord(const std::string& collection, const std::string& id,
                           std::optional<int64_t> at_us) override;

  Result<Record> UpdateRecord(const events::Origin& ctx, const std::string& collection,
                              const std::string& id, const boost::json::object& patch,
                              std::optional<int64_t> if_version) override;

  Status DeleteRecord(const events::Origin& ctx, const std::string& collection,
                      const std::string& id, std::optional<int64_t> if_version) override;

  Result<Record> RevertRecord(const events::Origin& ctx, const std::string& collection,
                              const std::string& id, const RevertTarget& target,
                              std::optional<int64_t> if_version) override;

  Result<std::vector<Record>> GetRecords(const std::string& collection,
                                         const std::vector<std::string>& ids,
                                         std::optional<int64_t> at_us) override;

  Result<RecordPage> ListRecords(const std::string& collection, const ListQuery& q) override;

  Result<std::vector<HistoryEntry>> History(const std::string& collection,
                                            const std::string& id) override;

  Result<std::vector<events::StoredEvent>> Events(int64_t after, int limit) override;
  Result<int64_t> LastSeq(events::Log log, const std::vector<std::string>& types) override;

  Status Audit(const events::Origin& ctx, const AuditEntry& entry) override;

  Result<std::vector<events::StoredEvent>> QueryAudit(const AuditQuery& q) override;

  Result<int64_t> PurgeAudit(int64_t before_us) override;

  Result<ChainReport> VerifyChains() override;

  Result<RebuildReport> Rebuild() override;

  Status Export(std::optional<int64_t> at_us,
                const std::function<Status(const std::string&, const Record&)>& sink) override;
  Status ExportCollection(const std::string& collection, std::optional<int64_t> at_us,
                          const std::function<Status(const Record&)>& sink) override;

 private:
  using Database = storage::Database;

  // The write protocol. `prepare` checks the request and fills the event;
  // leaving its type empty means "nothing to change". Then, in the same
  // transaction: stamp the time, append, apply; `done` reads the result back.
  Status WriteEvent(const events::Origin& ctx,
                    const std::function<Status(Database&, events::Event&)>& prepare,
                    const std::function<Status(Database&)>& done);

  static Status AppendAudit(Database& db, const events::Origin& ctx, const AuditEntry& entry);

  // Stamps `e` with the origin, appends it and applies it to the
  // projections (what WriteEvent does for its one event; a delete's
  // cascades append more in the same transaction).
  static Status AppendEvent(Database& db, const events::Origin& ctx, events::Event& e);
  static Status AppendRecordEvent(Database& db, const events::Origin& ctx, std::string type,
                                  const CollectionSchema& schema, const std::string& id,
                                  const boost::json::object& before,
                                  const boost::json::object& after);

  // InvalidArgument when a relation of `schema` names no collection, or when
  // with it the cascades of all collections would form a cycle.
  static Status CheckSchemaRelations(Database& db, const CollectionSchema& schema);
  // FailedPrecondition while another collection's relation names `name`.
  static Status CheckNotRelatedTo(Database& db, const std::string& name);

  // What deleting records reaches: every record it deletes ("<c>/<id>") and
  // the restricting references it met ("<c>/<id>", field), over the
  // collections' schemas as the delete began (loaded once).
  struct DeleteClosure {
    std::map<std::string, CollectionSchema> schemas;
    std::set<std::string> gone;
    std::vector<std::pair<std::string, std::string>> restricted;
  };
  // Follows on_delete for every record that refers to collection/id: a
  // cascade deletes the referrer (after following its own referrers), a
  // set_null removes the id from its field, each an event of its own; a
  // restrict is noted. The caller refuses the delete when a noted referrer
  // is not itself in `gone` at the end.
  static Status FollowOnDelete(Database& db, const events::Origin& ctx,
                               const std::string& collection, const std::string& id,
                               DeleteClosure* closure);

  static Result<std::vector<std::string>> CollectionNames(Database& db);
  // Every collection's schema, by name.
  static Result<std::map<std::string, CollectionSchema>> AllSchemas(Database& db);

  static Status LoadCollectionInto(Database& db, const std::string& name,
                                   std::optional<Collection>* out);

  static Status LoadCurrent(Database& db, const std::string& collection, const std::string& id,
                            std::optional<Record>* out);

  // FailedPrecondition naming the records that the new schema would refuse.
  static Status CheckRecordsFit(Database& db, const CollectionSchema& schema);

  // Adds the read rules' conditions to `q` (and to its filters through
  // relations, the targets' rules); PermissionDenied for a filter or sort on
  // a field the rules do not show on every record, or through a relation to
  // a collection the caller may not read.
  Status ScopeQuery(Database& db, const RecordRules& read, ListQuery* q) const;

  static Status List(Database& db, const std::string& collection, const ListQuery& q,
                     RecordPage* page);

  static Status ExportIn(Database& db, std::optional<int64_t> at_us,
                         const std::function<Status(const std::string&, const Record&)>& sink);
  static Status ExportCollectionIn(Database& db, const std::string& collection,
                                   std::optional<int64_t> at_us,
                                   const std::function<Status(const Record&)>& sink);

  // The caller's rules for `action` on the collection (AllowAll without a
  // provider).
  Result<RecordRules> RulesFor(const CollectionSchema& schema, std::string_view action) const;
  const RulesProvider* provider() const { return rules_ ? &rules_ : nullptr; }

  // `r` as the read rules show it: nullopt when they do not admit it, else
  // without the fields they do not give.
  static std::optional<Record> Visible(const RecordRules& read, Record r);
  // A written record as the read rules show it: Visible, or without any
  // data when they do not admit it (the write happened; what it left is not
  // the caller's to read).
  static Record Shown(const RecordRules& read, Record r);

  std::shared_ptr<storage::TenantDatabase> db_;
  RulesProvider rules_;
};

}  // namespace silo::records

#endif  // SILO_RECORDS_SQLITE_TENANT_STORE_INTERNAL_H_
