// Open tenant databases: one writer connection per tenant (writes are
// serialised), a small pool of reader connections (WAL lets them read while
// the writer writes), and a bounded cache of open tenants that closes the
// least recently used idle tenant when full.
//
// Thread-safe.
#ifndef SILO_STORAGE_TENANT_DATABASES_H_
#define SILO_STORAGE_TENANT_DATABASES_H_

#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
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
  // `on_closed` runs once every connection of this database has closed.
  TenantDatabase(std::string path, crypto::SecretKey key, OpenOptions options, size_t max_readers,
                 std::unique_ptr<Database> writer, size_t max_group = 64,
                 std::function<void()> on_closed = nullptr);

  // Runs `fn` on the writer connection, alone and outside any transaction
  // (it may checkpoint, snapshot or manage its own transactions); then
  // invalidates the tenant's cache (whatever `fn` did or returned).
  Status Write(const std::function<Status(Database&)>& fn);
  // Group commit: runs `fn` inside one transaction shared with the grouped
  // writes that queued while the previous commit was being made durable,
  // so they pay one COMMIT (one WAL fsync with synchronous=FULL) between
  // them. Returns only after that COMMIT: an OK answer is as durable as a
  // Write's. `fn` must not BEGIN or COMMIT itself; a storage::Transaction
  // inside it becomes a savepoint, so a failing `fn` (its Transaction not
  // committed) undoes its own changes and no one else's. Statements `fn`
  // runs outside a Transaction are kept even when it fails, as they would
  // be in autocommit. When the shared COMMIT fails, every `fn` of the group
  // gets that error. The wait is bounded: a group holds at most
  // `max_group` writes (TenantDatabasesOptions).
  Status WriteGrouped(const std::function<Status(Database&)>& fn);

  // Refuses every write from now on with `why`, those already queued
  // included, while reads go on: how a re-key holds the tenant still while
  // it copies the database under a new key (it calls this inside its own
  // Write, so no write runs after the copy's snapshot). The tenant is then
  // closed and opened again; this object never writes again.
  void RefuseWrites(Status why);

  // Commits made by WriteGrouped (each made one or more writes durable):
  // for tests and benchmarks.
  int64_t group_commits() const;
  // Writes waiting for the writer: for tests that build a group on purpose.
  size_t queued_writes() const;
  // Runs `fn` on a reader connection (opened on demand, at most
  // `max_readers` at once; further callers wait).
  Status Read(const std::function<Status(Database&)>& fn);
  // A short read (a lookup by key, one bounded page): runs on the writer
  // connection while the writer is idle and this tenant has opened no
  // reader yet, otherwise as Read. A tenant just opened then serves its
  // first requests without a second connection (each one parses the whole
  // schema: most of a cold read's CPU). Writes queued meanwhile wait until
  // `fn` returns, so never for a read that streams or scans; `fn` must not
  // write (it would wait for itself). A transaction `fn` leaves open is
  // rolled back.
  Status ReadShort(const std::function<Status(Database&)>& fn);

  // What this tenant's code caches (cache/tenant_cache.h): lives as long as
  // this open database, so a restore, suspend or delete starts it empty.
  cache::TenantCache& cache() { return cache_; }

 private:
  // Runs a function when destroyed: the first member, so after every
  // connection below has closed.
  struct OnClosed {
    std::function<void()> fn;
    ~OnClosed() {
      if (fn) fn();
    }
  };
  OnClosed on_closed_;
  const std::string path_;
  const crypto::SecretKey key_;
  const OpenOptions options_;
  const size_t max_readers_;
  const size_t max_group_;
  cache::TenantCache cache_;  // before the connections that point at it

  // A write waiting in the queue; its caller waits until `done`.
  struct Pending {
    const std::function<Status(Database&)>* fn;
    bool grouped;
    Status status;
    bool taken = false;  // in a batch: its leader answers it
    bool done = false;
  };
  // Queues `p` and waits until a leader (the first waiting caller while no
  // one leads; possibly this one) has run it and the batch's commits are
  // acknowledged by the replicas they wait for (repl::CommitWaits): the
  // leader waits for those after it stops leading, so the next batch
  // commits meanwhile.
  Status Submit(Pending& p);
  // Runs `batch` on the writer: one exclusive write, or grouped writes in
  // one transaction. Sets each one's status.
  void RunBatch(const std::vector<Pending*>& batch);
  void RunGroup(const std::vector<Pending*>& group) REQUIRES(write_mu_);

  mutable Mutex queue_mu_;
  CondVar queue_cv_;
  std::vector<Pending*> queue_ GUARDED_BY(queue_mu_);  // front = oldest
  bool leading_ GUARDED_BY(queue_mu_) = false;
  Status refused_ GUARDED_BY(queue_mu_);  // not OK once RefuseWrites ran

  mutable Mutex write_mu_;  // held by the leader while it runs a batch
  std::unique_ptr<Database> writer_ GUARDED_BY(write_mu_);
  int64_t group_commits_ GUARDED_BY(write_mu_) = 0;

  Mutex read_mu_;
  CondVar read_cv_;
  std::vector<std::unique_ptr<Database>> idle_readers_ GUARDED_BY(read_mu_);
  size_t readers_open_ GUARDED_BY(read_mu_) = 0;
};

struct TenantDatabasesOptions {
  size_t max_open_tenants = 256;
  size_t readers_per_tenant = 4;
  // Most writes one group commit holds (TenantDatabase::WriteGrouped); 1
  // turns grouping off (each write its own COMMIT), the benchmark baseline.
  size_t max_group = 64;
  OpenOptions open;
  // Called before a tenant's first connection opens (its file exists) and
  // after its last one closed: where a cluster node attaches the
  // replication shim (storage/repl_vfs.h) and lets it go. A non-ok
  // `attach` refuses the open with its status (a tenant whose primary is
  // another node). Either may be empty.
  std::function<Status(const std::string& tenant_id, const std::string& path)> attach = nullptr;
  std::function<void(const std::string& tenant_id, const std::string& path)> detach = nullptr;
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
  // Closes the tenants still waiting to be closed, then the open ones.
  ~TenantDatabases();

  // The tenant's open database, opening (creating, migrating) it on first
  // use. Unavailable when the cache is full of tenants in use, and while a
  // caller still holds the tenant's last open after it left the cache
  // (Close, an Exclusive that gave up): one set of connections and one
  // attach per tenant at a time. Opening waits while this tenant's last
  // open is still closing, and while as many tenants wait to be closed as
  // the cache holds.
  Result<std::shared_ptr<TenantDatabase>> Acquire(const std::string& tenant_id);

  // Drops the tenant from the cache (before suspend or delete). Callers that
  // still hold it finish their work; the connections close after them, and
  // until then Acquire refuses the tenant.
  void Close(const std::string& tenant_id);

  // Runs `fn` while nothing has the tenant's database open: closes it, waits
  // up to `wait` for callers still holding it to finish, and refuses every
  // Acquire until `fn` returns, with Unavailable("<why>; retry shortly"):
  // `why` is what a client is told ("the tenant is being restored"), so it
  // names this caller's reason. For replacing the file (a restore, a rekey)
  // or holding it closed. Unavailable when the holders do not finish in
  // time or another Exclusive runs for the tenant (its `why`); otherwise
  // what `fn` returns.
  Status Exclusive(const std::string& tenant_id, std::string why, std::chrono::milliseconds wait,
                   const std::function<Status()>& fn);

  size_t open_count() const;

 private:
  struct Entry {
    std::shared_ptr<TenantDatabase> db;
    std::list<std::string>::iterator lru;
  };
  // Takes idle tenants out of the cache from the cold end until there is
  // room for one more, and hands them to the closer thread: closing one
  // checkpoints its log and syncs (milliseconds), which the request that
  // needed the room does not wait for.
  bool MakeRoomLocked() REQUIRES(mu_);
  // The closer thread: closes what MakeRoomLocked handed over, oldest
  // first, until the destructor stops it.
  void CloseLoop();
  // Creates the database of a new tenant at `path` from template_ (built on
  // first use, beside `path`): its pages sealed under `key`, written to a
  // temporary name, synced, renamed into place, the directory synced.
  Status CreateFromTemplate(const std::string& path, const crypto::SecretKey& key)
      REQUIRES(open_mu_);

  const KeyFn key_fn_;
  const PathFn path_fn_;
  const std::span<const Migration> migrations_;
  const TenantDatabasesOptions options_;

  mutable Mutex mu_;
  Mutex open_mu_;  // one tenant opening at a time
  // The pages of an empty database with every migration applied, as
  // SQLite sees them (schema only: no tenant's data, no key).
  std::string template_ GUARDED_BY(open_mu_);
  std::map<std::string, Entry> open_ GUARDED_BY(mu_);
  std::list<std::string> lru_ GUARDED_BY(mu_);  // front = most recent
  // Tenants in Exclusive(), each with its `why`.
  std::map<std::string, std::string> exclusive_ GUARDED_BY(mu_);
  // How many TenantDatabase objects of each tenant are not yet closed (a
  // holder's last reference goes before the connections close): what
  // Exclusive waits for. Shared with each object's close callback, which
  // may run after this is gone.
  struct Live {
    Mutex mu;
    std::map<std::string, int> count GUARDED_BY(mu);
  };
  const std::shared_ptr<Live> live_ = std::make_shared<Live>();

  // Tenants taken out of the cache, waiting for the closer thread; a
  // tenant is in closing_ until its connections have closed, and Acquire
  // waits for that before it opens the tenant again.
  Mutex close_mu_;
  CondVar close_cv_;
  std::deque<std::pair<std::string, std::shared_ptr<TenantDatabase>>> to_close_
      GUARDED_BY(close_mu_);
  std::multiset<std::string> closing_ GUARDED_BY(close_mu_);
  bool stopping_ GUARDED_BY(close_mu_) = false;
  std::thread closer_;  // last: starts after the members it uses
};

}  // namespace silo::storage

#endif  // SILO_STORAGE_TENANT_DATABASES_H_
