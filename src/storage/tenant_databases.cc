#include "storage/tenant_databases.h"

#include <algorithm>
#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "storage/repl_vfs.h"
#include "storage/snapshot.h"

namespace silo::storage {

TenantDatabase::TenantDatabase(std::string path, crypto::SecretKey key, OpenOptions options,
                               size_t max_readers, std::unique_ptr<Database> writer,
                               size_t max_group, std::function<void()> on_closed)
    : on_closed_{std::move(on_closed)},
      path_(std::move(path)),
      key_(std::move(key)),
      options_(std::move(options)),
      max_readers_(max_readers == 0 ? 1 : max_readers),
      max_group_(max_group == 0 ? 1 : max_group),
      writer_(std::move(writer)) {
  writer_->set_tenant_cache(&cache_);
}

Status TenantDatabase::Write(const std::function<Status(Database&)>& fn) {
  Pending p{&fn, false, Status::Ok()};
  return Submit(p);
}

Status TenantDatabase::WriteGrouped(const std::function<Status(Database&)>& fn) {
  Pending p{&fn, true, Status::Ok()};
  return Submit(p);
}

void TenantDatabase::RefuseWrites(Status why) {
  MutexLock lock(queue_mu_);
  refused_ = std::move(why);
}

Status TenantDatabase::Submit(Pending& p) {
  queue_mu_.Lock();
  if (!refused_.ok()) {
    Status why = refused_;
    queue_mu_.Unlock();
    return why;
  }
  queue_.push_back(&p);
  while (!p.done) {
    if (leading_ || p.taken) {
      queue_cv_.Wait(queue_mu_);
      continue;
    }
    if (!refused_.ok()) {
      // Writes refused while these waited: none of them runs.
      for (Pending* q : queue_) {
        q->status = refused_;
        q->done = true;
      }
      queue_.clear();
      queue_cv_.SignalAll();
      continue;
    }
    // Not done and no one leads: `p` is still queued, so the queue is not
    // empty. Lead one batch: the oldest write alone when it is exclusive,
    // otherwise the oldest run of grouped writes. Writes that queue while
    // it runs form the next batch.
    leading_ = true;
    size_t n = 1;
    if (queue_.front()->grouped) {
      while (n < queue_.size() && n < max_group_ && queue_[n]->grouped) ++n;
    }
    std::vector<Pending*> batch(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    for (Pending* q : batch) q->taken = true;
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    queue_mu_.Unlock();
    repl::CommitWaits waits;  // a synchronous replica's acknowledgements
    RunBatch(batch);
    queue_mu_.Lock();
    leading_ = false;
    queue_cv_.SignalAll();  // the next batch commits while this one waits
    queue_mu_.Unlock();
    Status acked = waits.Wait();
    queue_mu_.Lock();
    for (Pending* q : batch) {
      if (!acked.ok() && q->status.ok()) q->status = acked;
      q->done = true;
    }
    queue_cv_.SignalAll();
  }
  queue_mu_.Unlock();
  return p.status;
}

void TenantDatabase::RunBatch(const std::vector<Pending*>& batch) {
  MutexLock lock(write_mu_);
  if (batch.front()->grouped) {
    RunGroup(batch);
  } else {
    batch.front()->status = (*batch.front()->fn)(*writer_);
  }
  // Before any caller of the batch answers: a request that starts after a
  // write was answered cannot be served a value derived before it. Also
  // after a failure (dropping the entries is always safe).
  cache_.Invalidate();
}

void TenantDatabase::RunGroup(const std::vector<Pending*>& group) {
  Database& db = *writer_;
  size_t first = 0;  // the oldest write in the open transaction
  Status begun = db.Exec("BEGIN IMMEDIATE");
  for (size_t i = 0; i < group.size(); ++i) {
    if (!begun.ok()) {
      group[i]->status = begun;
      continue;
    }
    group[i]->status = (*group[i]->fn)(db);
    if (!db.InTransaction()) {
      // SQLite rolled the whole transaction back (an I/O error, a full
      // disk): the writes before this one in it are gone. None was
      // answered yet; each is told, and the rest start a new transaction.
      log::Warn("group commit: transaction rolled back under it",
                {{"file", path_}, {"writes_lost", std::to_string(i + 1 - first)}});
      for (size_t j = first; j <= i; ++j) {
        if (group[j]->status.ok()) group[j]->status = Unavailable("the write was not saved; retry");
      }
      first = i + 1;
      begun = db.Exec("BEGIN IMMEDIATE");
    }
  }
  if (!begun.ok() || first == group.size()) {
    if (begun.ok()) (void)db.Exec("COMMIT");  // empty
    return;
  }
  Status committed = db.Exec("COMMIT");
  if (!committed.ok()) {
    if (db.InTransaction()) (void)db.Exec("ROLLBACK");
    for (size_t j = first; j < group.size(); ++j) {
      if (group[j]->status.ok()) group[j]->status = committed;
    }
    return;
  }
  ++group_commits_;
}

int64_t TenantDatabase::group_commits() const {
  MutexLock lock(write_mu_);
  return group_commits_;
}

size_t TenantDatabase::queued_writes() const {
  MutexLock lock(queue_mu_);
  return queue_.size();
}

Status TenantDatabase::ReadShort(const std::function<Status(Database&)>& fn) {
  bool on_writer;
  {
    MutexLock lock(read_mu_);
    on_writer = readers_open_ == 0;
  }
  if (on_writer) {
    // Leading keeps writers out, as a write batch does (Submit).
    MutexLock lock(queue_mu_);
    on_writer = !leading_ && queue_.empty();
    if (on_writer) leading_ = true;
  }
  if (!on_writer) return Read(fn);
  Status s;
  {
    MutexLock lock(write_mu_);
    s = fn(*writer_);
    if (writer_->InTransaction()) (void)writer_->Exec("ROLLBACK");
  }
  MutexLock lock(queue_mu_);
  leading_ = false;
  queue_cv_.SignalAll();
  return s;
}

Status TenantDatabase::Read(const std::function<Status(Database&)>& fn) {
  std::unique_ptr<Database> reader;
  {
    MutexLock lock(read_mu_);
    while (idle_readers_.empty() && readers_open_ >= max_readers_) read_cv_.Wait(read_mu_);
    if (!idle_readers_.empty()) {
      reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    } else {
      ++readers_open_;  // reserve the slot, open outside the lock
    }
  }
  if (reader == nullptr) {
    OpenOptions options = options_;
    options.create = false;
    auto opened = Database::Open(path_, key_, options);
    if (!opened.ok()) {
      MutexLock lock(read_mu_);
      --readers_open_;
      read_cv_.Signal();
      return opened.status();
    }
    reader = std::move(opened).value();
    reader->set_tenant_cache(&cache_);
  }
  Status s = fn(*reader);
  {
    MutexLock lock(read_mu_);
    idle_readers_.push_back(std::move(reader));
  }
  read_cv_.Signal();
  return s;
}

TenantDatabases::TenantDatabases(KeyFn key_fn, PathFn path_fn,
                                 std::span<const Migration> migrations,
                                 TenantDatabasesOptions options)
    : key_fn_(std::move(key_fn)),
      path_fn_(std::move(path_fn)),
      migrations_(migrations),
      options_(std::move(options)),
      closer_([this] { CloseLoop(); }) {}

TenantDatabases::~TenantDatabases() {
  {
    MutexLock lock(close_mu_);
    stopping_ = true;
    close_cv_.SignalAll();
  }
  closer_.join();
}

void TenantDatabases::CloseLoop() {
  close_mu_.Lock();
  while (true) {
    while (to_close_.empty() && !stopping_) close_cv_.Wait(close_mu_);
    if (to_close_.empty()) break;  // stopping, and nothing left to close
    auto [tenant_id, db] = std::move(to_close_.front());
    to_close_.pop_front();
    close_mu_.Unlock();
    db.reset();  // the last reference: the connections close here
    close_mu_.Lock();
    closing_.erase(closing_.find(tenant_id));
    close_cv_.SignalAll();
  }
  close_mu_.Unlock();
}

namespace {

// The image of an empty database with `migrations` applied, built at
// `scratch` under a throwaway key (removed afterwards). Its header says WAL
// (bytes 18 and 19 of the file format: 2), as Database::Open would make it,
// so opening a copy needs no write.
Result<std::string> BuildTemplate(const std::string& scratch,
                                  std::span<const Migration> migrations) {
  const std::string build = scratch + ".build", copy = scratch + ".copy";
  RemoveDatabaseFiles(build);
  RemoveDatabaseFiles(copy);
  std::string image;
  Status s = [&]() -> Status {
    OpenOptions options;
    options.synchronous = Synchronous::kNormal;  // thrown away: nothing to keep
    SILO_ASSIGN_OR_RETURN(auto db, Database::Open(build, crypto::SecretKey::Random(), options));
    SILO_RETURN_IF_ERROR(Migrate(*db, migrations));
    SILO_ASSIGN_OR_RETURN(ImageCopy c, TakeImageCopy(
                                           *db, [](Database&) { return Status::Ok(); }, copy));
    image.reserve(static_cast<size_t>(c.bytes()));
    return c.Stream(1 << 20, [&](std::string_view piece) {
      image.append(piece);
      return Status::Ok();
    });
  }();
  RemoveDatabaseFiles(build);
  RemoveDatabaseFiles(copy);
  SILO_RETURN_IF_ERROR(s);
  if (image.size() < kPageSize) return Internal("empty database template");
  image[18] = 2;  // file format write version: WAL
  image[19] = 2;  // file format read version: WAL
  return image;
}

}  // namespace

Status TenantDatabases::CreateFromTemplate(const std::string& path, const crypto::SecretKey& key) {
  if (template_.empty()) {
    SILO_ASSIGN_OR_RETURN(template_, BuildTemplate(path + ".template", migrations_));
  }
  // Under a temporary name until whole and synced: a crash midway leaves
  // no half-written tenant.db (the next Acquire starts over).
  const std::string staging = path + ".new";
  RemoveDatabaseFiles(staging);
  Status s = WriteImage(template_, staging, key);  // syncs the file and its directory
  // `path` is not there (Acquire checked); a log left beside it by a
  // database that is gone would be replayed into the new one.
  if (s.ok()) RemoveDatabaseFiles(path);
  if (s.ok() && std::rename(staging.c_str(), path.c_str()) != 0) {
    s = Unavailable("cannot create the database").WithCause(path);
  }
  if (s.ok()) s = SyncDir(std::filesystem::path(path).parent_path().string());
  if (!s.ok()) RemoveDatabaseFiles(staging);
  return s;
}

bool TenantDatabases::MakeRoomLocked() {
  for (auto it = lru_.end(); open_.size() >= options_.max_open_tenants && it != lru_.begin();) {
    --it;
    auto entry = open_.find(*it);
    if (entry->second.db.use_count() == 1) {  // only the cache holds it: idle
      {
        MutexLock lock(close_mu_);
        closing_.insert(*it);
        to_close_.emplace_back(*it, std::move(entry->second.db));
        close_cv_.SignalAll();
      }
      open_.erase(entry);
      it = lru_.erase(it);
    }
  }
  return open_.size() < options_.max_open_tenants;
}

Result<std::shared_ptr<TenantDatabase>> TenantDatabases::Acquire(const std::string& tenant_id) {
  {
    MutexLock lock(mu_);
    if (auto held = exclusive_.find(tenant_id); held != exclusive_.end())
      return Unavailable(held->second + "; retry shortly");
    auto it = open_.find(tenant_id);
    if (it != open_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.db;
    }
  }
  // Opening takes milliseconds (key derivation, page 1, migrations): not
  // under mu_, so hits on other tenants are not held up.
  MutexLock opening(open_mu_);
  {
    // Closes are handed off, but not without bound: while as many tenants
    // wait to be closed as may be open, opening another waits (open files
    // and memory stay within twice the cache).
    MutexLock lock(close_mu_);
    while (closing_.size() >= std::max<size_t>(options_.max_open_tenants, 1)) {
      close_cv_.Wait(close_mu_);
    }
  }
  {
    MutexLock lock(mu_);
    if (auto held = exclusive_.find(tenant_id); held != exclusive_.end())
      return Unavailable(held->second + "; retry shortly");
    auto it = open_.find(tenant_id);  // opened while we waited
    if (it != open_.end()) return it->second.db;
    if (!MakeRoomLocked()) {
      return Unavailable("too many tenants open; retry shortly");
    }
  }
  {
    // Its last open may still be closing (checkpointing, detaching): one
    // file, one set of connections at a time.
    MutexLock lock(close_mu_);
    while (closing_.count(tenant_id) != 0) close_cv_.Wait(close_mu_);
  }
  {
    // Taken out of the cache while a caller still holds it (Close before a
    // suspend or a delete, an Exclusive that gave up waiting): not opened a
    // second time beside it. Its detach, run when that holder lets go,
    // would follow this open's attach (on a cluster node, the old open's
    // detach would drop this one from what the node leads).
    MutexLock lock(live_->mu);
    if (live_->count.count(tenant_id) != 0) {
      return Unavailable("the tenant's last open is still in use; retry shortly");
    }
  }
  auto key = key_fn_(tenant_id);
  if (!key.ok()) return key.status();
  std::string path = path_fn_(tenant_id);
  if (options_.open.create && !PathExists(path)) {
    SILO_RETURN_IF_ERROR(CreateFromTemplate(path, *key));
  }
  std::function<void()> detach;
  if (options_.attach) {
    SILO_RETURN_IF_ERROR(options_.attach(tenant_id, path));
    if (options_.detach) detach = [fn = options_.detach, tenant_id, path] { fn(tenant_id, path); };
  }
  {
    MutexLock lock(live_->mu);
    ++live_->count[tenant_id];
  }
  // After the last connection closed (and the detach): no longer live.
  auto closed = [live = live_, tenant_id, detach] {
    if (detach) detach();
    MutexLock lock(live->mu);
    if (--live->count[tenant_id] == 0) live->count.erase(tenant_id);
  };
  auto writer = Database::Open(path, *key, options_.open);
  if (writer.ok()) {
    if (Status s = Migrate(**writer, migrations_); !s.ok()) writer = s;
  }
  if (!writer.ok()) {
    closed();  // after the writer closed
    return writer.status();
  }
  auto db = std::make_shared<TenantDatabase>(path, std::move(key).value(), options_.open,
                                             options_.readers_per_tenant, std::move(writer).value(),
                                             options_.max_group, std::move(closed));
  MutexLock lock(mu_);
  lru_.push_front(tenant_id);
  open_[tenant_id] = Entry{db, lru_.begin()};
  return db;
}

void TenantDatabases::Close(const std::string& tenant_id) {
  MutexLock lock(mu_);
  auto it = open_.find(tenant_id);
  if (it == open_.end()) return;
  lru_.erase(it->second.lru);
  open_.erase(it);
}

Status TenantDatabases::Exclusive(const std::string& tenant_id, std::string why,
                                  std::chrono::milliseconds wait,
                                  const std::function<Status()>& fn) {
  {
    MutexLock lock(mu_);
    auto [held, inserted] = exclusive_.emplace(tenant_id, std::move(why));
    if (!inserted) return Unavailable(held->second + "; retry shortly");
  }
  auto release = [&] {
    MutexLock lock(mu_);
    exclusive_.erase(tenant_id);
  };
  // An Acquire that passed its check before the insert may still be opening:
  // open_mu_ waits for it, then the entry it made is dropped like any other.
  std::weak_ptr<TenantDatabase> held;
  {
    MutexLock opening(open_mu_);
    MutexLock lock(mu_);
    auto it = open_.find(tenant_id);
    if (it != open_.end()) {
      held = it->second.db;
      lru_.erase(it->second.lru);
      open_.erase(it);
    }
  }
  // The connections close when the last holder lets go, after its last
  // reference is gone: wait for the close itself (its checkpoint, the
  // detach), not only for the reference.
  auto live = [&] {
    MutexLock lock(live_->mu);
    return live_->count.count(tenant_id) != 0;
  };
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (!held.expired() || live()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      release();
      return Unavailable("the tenant's database is still in use; retry shortly");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Status s = fn();
  release();
  return s;
}

size_t TenantDatabases::open_count() const {
  MutexLock lock(mu_);
  return open_.size();
}

}  // namespace silo::storage
