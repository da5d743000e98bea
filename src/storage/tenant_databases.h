// Open tenant databases: one writer connection per tenant (writes are
// serialised), a small pool of reader connections (WAL lets them read while
// the writer writes), and a bounded cache of open tenants that closes the
// least recently used idle tenant when full.
//
// Thread-safe.
#ifndef SILO_STORAGE_TENANT_DATABASES_H_
#define SILO_STORAGE_TENANT_DATABASES_H_

#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "cache/tenant_cache.h"
#include "crypto/secret_key.h"
#include "storage/database.h"
#include "storage/migrator.h"

namespace silo::storage {

// One tenant's open database. Obtained from TenantDatabases::Acquire; keep
// the shared_ptr only for the duration of a request.
class TenantDatabase {
 public:
  TenantDatabase(std::string path, crypto::SecretKey key, OpenOptions options, size_t max_readers,
                 std::unique_ptr<Database> writer);

  // Runs `fn` on the writer connection, one caller at a time; then
  // invalidates the tenant's cache (whatever `fn` did or returned).
  Status Write(const std::function<Status(Database&)>& fn);
  // Runs `fn` on a reader connection (opened on demand, at most
  // `max_readers` at once; further callers wait).
  Status Read(const std::function<Status(Database&)>& fn);

  // What this tenant's code caches (cache/tenant_cache.h): lives as long as
  // this open database, so a restore, suspend or delete starts it empty.
  cache::TenantCache& cache() { return cache_; }

 private:
  const std::string path_;
  const crypto::SecretKey key_;
  const OpenOptions options_;
  const size_t max_readers_;
  cache::TenantCache cache_;  // before the connections that point at it

  Mutex write_mu_;
  std::unique_ptr<Database> writer_ GUARDED_BY(write_mu_);

  Mutex read_mu_;
  CondVar read_cv_;
  std::vector<std::unique_ptr<Database>> idle_readers_ GUARDED_BY(read_mu_);
  size_t readers_open_ GUARDED_BY(read_mu_) = 0;
};

struct TenantDatabasesOptions {
  size_t max_open_tenants = 256;
  size_t readers_per_tenant = 4;
  OpenOptions open;
};

class TenantDatabases {
 public:
  // The database key of a tenant (its KeyPurpose::kDatabasePages sub-key).
  using KeyFn = std::function<Result<crypto::SecretKey>(const std::string& tenant_id)>;
  // The database file of a tenant.
  using PathFn = std::function<std::string(const std::string& tenant_id)>;

  // `migrations` must outlive this object.
  TenantDatabases(KeyFn key_fn, PathFn path_fn, std::span<const Migration> migrations,
                  TenantDatabasesOptions options);

  // The tenant's open database, opening (creating, migrating) it on first
  // use. Unavailable when the cache is full of tenants in use.
  Result<std::shared_ptr<TenantDatabase>> Acquire(const std::string& tenant_id);

  // Drops the tenant from the cache (before suspend or delete). Callers that
  // still hold it finish their work; the connections close after them.
  void Close(const std::string& tenant_id);

  // Runs `fn` while nothing has the tenant's database open: closes it, waits
  // up to `wait` for callers still holding it to finish, and refuses every
  // Acquire (Unavailable) until `fn` returns. For replacing the file (a
  // restore). Unavailable when the holders do not finish in time or another
  // Exclusive runs for the tenant; otherwise what `fn` returns.
  Status Exclusive(const std::string& tenant_id, std::chrono::milliseconds wait,
                   const std::function<Status()>& fn);

  size_t open_count() const;

 private:
  struct Entry {
    std::shared_ptr<TenantDatabase> db;
    std::list<std::string>::iterator lru;
  };
  // Closes idle tenants from the cold end until there is room for one more.
  bool MakeRoomLocked() REQUIRES(mu_);

  const KeyFn key_fn_;
  const PathFn path_fn_;
  const std::span<const Migration> migrations_;
  const TenantDatabasesOptions options_;

  mutable Mutex mu_;
  Mutex open_mu_;  // one tenant opening at a time
  std::map<std::string, Entry> open_ GUARDED_BY(mu_);
  std::list<std::string> lru_ GUARDED_BY(mu_);       // front = most recent
  std::set<std::string> exclusive_ GUARDED_BY(mu_);  // tenants in Exclusive()
};

}  // namespace silo::storage

#endif  // SILO_STORAGE_TENANT_DATABASES_H_
