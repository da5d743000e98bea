// The seam between handlers and a tenant's storage (DESIGN section 10):
// plain C++ values in and out, no SQL and no sqlite3 types, so a PostgreSQL
// backend (a database per tenant) could implement the same interface
// without touching handlers. Later issues add record operations here.
#ifndef SILO_STORAGE_TENANT_STORE_H_
#define SILO_STORAGE_TENANT_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::storage {

struct TenantStoreInfo {
  int schema_version = 0;
  std::string created_at;  // RFC 3339, when the tenant's storage was created
};

// One tenant's storage, for the duration of a request.
class TenantStore {
 public:
  virtual ~TenantStore() = default;
  virtual Result<TenantStoreInfo> Info() = 0;
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
};

// Encrypted SQLite per tenant, at path_fn(id), under key_fn(id) (the
// tenant's KeyPurpose::kDatabasePages sub-key).
std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::function<Result<crypto::SecretKey>(const std::string&)> key_fn,
    std::function<std::string(const std::string&)> path_fn, SqliteStoresOptions options);

}  // namespace silo::storage

#endif  // SILO_STORAGE_TENANT_STORE_H_
