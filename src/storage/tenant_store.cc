#include "storage/tenant_store.h"

#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::storage {
namespace {

// The tenant schema. Append only: a released migration never changes (the
// migrator refuses a database whose history differs).
constexpr Migration kTenantMigrations[] = {
    {1, "tenant_meta",
     "CREATE TABLE tenant_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT"},
};

class SqliteTenantStore : public TenantStore {
 public:
  explicit SqliteTenantStore(std::shared_ptr<TenantDatabase> db) : db_(std::move(db)) {}

  Result<TenantStoreInfo> Info() override {
    TenantStoreInfo info;
    Status s = db_->Read([&](Database& db) -> Status {
      auto version = SchemaVersion(db);
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

 private:
  std::shared_ptr<TenantDatabase> db_;
};

class SqliteTenantStores : public TenantStores {
 public:
  SqliteTenantStores(TenantDatabases::KeyFn key_fn, TenantDatabases::PathFn path_fn,
                     SqliteStoresOptions options)
      : databases_(std::move(key_fn), std::move(path_fn), kTenantMigrations,
                   {.max_open_tenants = options.max_open_tenants,
                    .readers_per_tenant = options.readers_per_tenant,
                    .open = {}}) {}

  Status Create(const std::string& tenant_id) override {
    auto db = databases_.Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return (*db)->Write([](Database& d) {
      return d.Exec(
          "INSERT OR IGNORE INTO tenant_meta (key, value) "
          "VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))");
    });
  }

  Result<std::unique_ptr<TenantStore>> Open(const std::string& tenant_id) override {
    auto db = databases_.Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return std::unique_ptr<TenantStore>(new SqliteTenantStore(std::move(db).value()));
  }

  void Close(const std::string& tenant_id) override { databases_.Close(tenant_id); }
  size_t open_count() const override { return databases_.open_count(); }

 private:
  TenantDatabases databases_;
};

}  // namespace

std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::function<Result<crypto::SecretKey>(const std::string&)> key_fn,
    std::function<std::string(const std::string&)> path_fn, SqliteStoresOptions options) {
  return std::make_unique<SqliteTenantStores>(std::move(key_fn), std::move(path_fn), options);
}

}  // namespace silo::storage
