// The replication shim: a VFS below the cipher VFS (where the tests' fault
// VFS sits) that tells a Recorder every change made to an attached
// database's files, `tenant.db` and its `-wal`, in the order it was made:
// each write (sealed bytes, exactly as they reach the disk), truncate,
// delete and sync. A follower that repeats them in order, syncing where the
// primary synced, holds at every instant a pair of files the primary's disk
// could have held at a crash: SQLite's recovery opens it (notes:
// replication.md section 3.3). The shim never sees plaintext and holds no key.
//
// The rollback journal is not recorded: attach databases that are in WAL
// mode (a tenant's database always is: it is created whole from a template,
// storage::TenantDatabases), or a crash during a rollback-mode write could
// leave a follower with half a transaction and no journal to undo it.
//
// Registered once as "repl-lower" over unix-excl, with the cipher VFS
// kReplicatedCipherVfs over it. Databases that are not attached pass through
// at the cost of one map lookup per file open.
#ifndef SILO_STORAGE_REPL_VFS_H_
#define SILO_STORAGE_REPL_VFS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::storage::repl {

inline constexpr char kReplicatedCipherVfs[] = "silo-repl";

enum class File : uint8_t { kDatabase = 0, kWal = 1 };

// Receives one database's changes. Calls come from the thread that made the
// change, after the disk accepted it, and never concurrently for one
// database (SQLite writes a database from one connection at a time, and the
// shim serialises calls per recorder besides).
class Recorder {
 public:
  virtual ~Recorder() = default;
  // A write, truncate or delete is about to reach the disk (it may fail;
  // the call after it follows only if it did not).
  virtual void BeforeChange() {}
  virtual void Write(File file, int64_t offset, std::string_view bytes) = 0;
  virtual void Truncate(File file, int64_t size) = 0;
  virtual void Delete(File file) = 0;
  // The file is durable on this disk. A non-ok answer fails the sync
  // (SQLITE_IOERR_FSYNC), so the commit that asked for it is not reported
  // as done: this is where a synchronous replica's acknowledgement is
  // awaited, or, when the thread has a CommitWaits, handed to it.
  virtual Status Sync(File file) = 0;
};

// What a commit must still wait for before it is answered, taken out of
// the database's write lock: the writer of a database (TenantDatabase)
// installs one on its thread for the span of a batch of writes, a recorder
// that would wait in Sync for a replica's acknowledgement adds that wait
// here instead and lets the commit finish, and the writer, once it has let
// go of the write lock (so the next batch commits meanwhile), waits before
// it answers. The commit is then visible to readers on this node before it
// is acknowledged, never answered before.
//
// One per thread at a time (a nested one stands in for the outer until it
// is destroyed). Not thread-safe: used by the thread that installed it.
class CommitWaits {
 public:
  CommitWaits();
  ~CommitWaits();
  CommitWaits(const CommitWaits&) = delete;
  CommitWaits& operator=(const CommitWaits&) = delete;

  // The one this thread installed, or null (wait in place).
  static CommitWaits* Current();

  void Add(std::function<Status()> wait);
  // Runs every wait added, in order, each once (the rest too after one
  // failed); returns the first failure. Afterwards none is left.
  Status Wait();

 private:
  CommitWaits* outer_;
  std::vector<std::function<Status()>> waits_;
};

// Registers the shim and the cipher VFS over it (thread-safe, idempotent).
void EnsureReplicationVfs();

// Records every change to the database at `path` (and `path`-wal) made
// through kReplicatedCipherVfs into `recorder`, until Detach(). Files opened
// before Attach() are not recorded: attach before the first connection.
void Attach(const std::string& path, std::shared_ptr<Recorder> recorder);
void Detach(const std::string& path);

// Runs `fn` while no change to the attached database at `path` reaches its
// files or its recorder (writers wait at their next write, truncate, delete
// or sync): the files and the recorder's chain head are one consistent
// state, as a snapshot needs. NotFound when `path` is not attached.
Status WithChangesHeld(const std::string& path, const std::function<Status()>& fn);

}  // namespace silo::storage::repl

#endif  // SILO_STORAGE_REPL_VFS_H_
