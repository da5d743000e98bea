// The SQLite implementation of the tenant store: the schema, the write
// protocol (stamp the time, append the event, apply it to the projections,
// all in one transaction), the helpers its sections share, and the store
// factories; projection.cc owns the tables. The sections are
// collection_store.cc, record_store.cc and tenant_log.cc.
#include <boost/json.hpp>
#include <map>
#include <set>

#include "base/time_util.h"
#include "crypto/crypto.h"
#include "records/list_sql.h"
#include "records/projection.h"
#include "records/sqlite_tenant_store_internal.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

namespace {

// The tenant schema. Append only: a released migration never changes (the
// migrator refuses a database whose history differs).
const storage::Migration kTenantMigrations[] = {
    {1, "tenant_meta",
     "CREATE TABLE tenant_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT"},
    {2, "event_and_audit_logs", events::kEventLogSchema},
    {3, "record_projections", proj::kSchema},
};

constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

}  // namespace

events::Actor ParseActor(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos) return {text, ""};
  return {text.substr(0, colon), text.substr(colon + 1)};
}

std::string NewRecordId(int64_t now_us) {
  std::string time(11, '0');
  uint64_t t = static_cast<uint64_t>(std::max<int64_t>(0, now_us));
  for (int i = 10; i >= 0 && t > 0; --i, t /= 36) time[i] = kBase36[t % 36];
  return time + crypto::RandomId(5);
}

namespace {

std::optional<std::string> Text(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  return json::serialize(*v);
}

}  // namespace

std::vector<events::Change> Diff(const CollectionSchema& schema, const json::object& before,
                                 const json::object& after) {
  std::vector<events::Change> out;
  for (const auto& f : schema.fields) {
    const json::value* a = before.if_contains(f.name);
    const json::value* b = after.if_contains(f.name);
    if (a == nullptr && b == nullptr) continue;
    if (a != nullptr && b != nullptr && *a == *b) continue;
    out.push_back({f.name, Text(a), Text(b), false});
  }
  return out;
}

Record ToRecord(const std::string& id, proj::Version v) {
  return Record{id,
                v.version,
                v.created_at_us,
                std::move(v.created_by),
                v.updated_at_us,
                std::move(v.updated_by),
                std::move(v.data)};
}

Collection ToCollection(proj::StoredCollection c) {
  return Collection{std::move(c.schema), c.version, c.created_at_us, c.updated_at_us};
}

Status CheckUnique(Database& db, const CollectionSchema& schema, const std::string& collection,
                   const std::string& id, const json::object& data) {
  std::vector<FieldError> taken;
  for (const auto& f : schema.fields) {
    const json::value* v = f.unique ? data.if_contains(f.name) : nullptr;
    if (v == nullptr) continue;
    auto stmt =
        db.Prepare("SELECT id FROM unique_values WHERE collection = ? AND field = ? AND value = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, collection).Bind(2, f.name).Bind(3, json::serialize(*v));
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (*row && stmt->ColumnText(0) != id) {
      taken.push_back({f.name, "already used by another record"});
    }
  }
  if (taken.empty()) return Status::Ok();
  return AlreadyExists("a unique value is already used").WithFields(std::move(taken));
}

Result<std::vector<std::string>> FirstColumn(Statement& stmt) {
  std::vector<std::string> out;
  while (true) {
    auto row = stmt.Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(stmt.ColumnText(0));
  }
}

Status CheckVersion(int64_t current, std::optional<int64_t> expected) {
  if (expected && *expected != current) {
    return VersionMismatch("the record is at version " + std::to_string(current));
  }
  return Status::Ok();
}

Result<TenantStoreInfo> SqliteTenantStore::Info() {
  TenantStoreInfo info;
  Status s = db_->Read([&](Database& db) -> Status {
    auto version = storage::SchemaVersion(db);
    if (!version.ok()) return version.status();
    info.schema_version = *version;
    auto stmt = db.Prepare("SELECT value FROM tenant_meta WHERE key = 'created_at'");
    if (!stmt.ok()) return stmt.status();
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (*row) info.created_at = stmt->ColumnText(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return info;
}

Status SqliteTenantStore::WriteEvent(
    const events::Origin& ctx, const std::function<Status(Database&, events::Event&)>& prepare,
    const std::function<Status(Database&)>& done) {
  return db_->WriteGrouped([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    events::Event e;
    if (Status s = prepare(db, e); !s.ok()) return s;
    if (!e.type.empty()) {
      if (Status s = AppendEvent(db, ctx, e); !s.ok()) return s;
      if (e.subject_kind == proj::kCollectionSubject) {
        // Schema changes are security relevant: also in the audit log.
        AuditEntry audit{e.type, e.subject_kind, e.subject_id, {}};
        if (Status s = AppendAudit(db, ctx, audit); !s.ok()) return s;
      }
    }
    if (done) {
      if (Status s = done(db); !s.ok()) return s;
    }
    return tx->Commit();
  });
}

Status SqliteTenantStore::AppendEvent(Database& db, const events::Origin& ctx, events::Event& e) {
  e.at_us = ctx.now_us;  // Append moves it past the last event's time
  e.actor = ctx.actor;
  e.request_id = ctx.request_id;
  e.client = ctx.client;
  auto seq = events::Append(db, e);
  if (!seq.ok()) return seq.status();
  return proj::Apply(db, *seq, e);
}

Status SqliteTenantStore::AppendAudit(Database& db, const events::Origin& ctx,
                                      const AuditEntry& entry) {
  return events::AppendAudit(db, ctx, entry.type, entry.subject_kind, entry.subject_id,
                             events::DetailChanges(entry.details));
}

namespace {

class SqliteTenantStores : public TenantStores {
 public:
  explicit SqliteTenantStores(std::shared_ptr<storage::TenantDatabases> databases)
      : databases_(std::move(databases)) {}

  Status Create(const std::string& tenant_id) override {
    auto db = databases_->Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return (*db)->Write([](Database& d) {
      return d.Exec(
          "INSERT OR IGNORE INTO tenant_meta (key, value) "
          "VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))");
    });
  }

  Result<std::unique_ptr<TenantStore>> Open(const std::string& tenant_id) override {
    auto db = databases_->Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return std::unique_ptr<TenantStore>(new SqliteTenantStore(std::move(db).value()));
  }

  void Close(const std::string& tenant_id) override { databases_->Close(tenant_id); }
  size_t open_count() const override { return databases_->open_count(); }

 private:
  std::shared_ptr<storage::TenantDatabases> databases_;
};

storage::TenantDatabasesOptions DatabaseOptions(const SqliteStoresOptions& o) {
  return {.max_open_tenants = o.max_open_tenants,
          .readers_per_tenant = o.readers_per_tenant,
          .open = {.synchronous = o.synchronous_full ? storage::Synchronous::kFull
                                                     : storage::Synchronous::kNormal}};
}

}  // namespace

std::span<const storage::Migration> TenantMigrations() { return kTenantMigrations; }

std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::shared_ptr<storage::TenantDatabases> databases) {
  return std::make_unique<SqliteTenantStores>(std::move(databases));
}

std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::function<Result<crypto::SecretKey>(const std::string&)> key_fn,
    std::function<std::string(const std::string&)> path_fn, SqliteStoresOptions options) {
  return NewSqliteTenantStores(std::make_shared<storage::TenantDatabases>(
      std::move(key_fn), std::move(path_fn), kTenantMigrations, DatabaseOptions(options)));
}

}  // namespace silo::records
