#include "storage/repl_vfs.h"

#include <sqlite3.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "storage/cipher_vfs.h"
#include "storage/vfs_shim.h"

namespace silo::storage::repl {
namespace {

constexpr char kLowerName[] = "repl-lower";
constexpr std::string_view kWalSuffix = "-wal";

// One attached database: its recorder and the lock that keeps its calls in
// order (a checkpoint's database writes and a WAL restart must reach the
// recorder in the order the disk saw them).
struct Attachment {
  std::mutex mu;
  std::shared_ptr<Recorder> recorder;
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Attachment>> by_path;  // full path of the database
};

Registry& R() {
  static auto* registry = new Registry();
  return *registry;
}

sqlite3_vfs* g_lower = nullptr;

thread_local CommitWaits* t_commit_waits = nullptr;

struct ReplFile {
  sqlite3_file base;
  sqlite3_file* lower;
  File file;
  std::shared_ptr<Attachment>* attachment;  // owned; set for recorded files only
};
constexpr int kReplFileSize = shim::AlignedSize(sizeof(ReplFile));
static_assert(offsetof(ReplFile, lower) == offsetof(shim::ShimFile, lower));

ReplFile* AsRepl(sqlite3_file* f) { return reinterpret_cast<ReplFile*>(f); }

// The attachment for the database file or WAL at `path`, if any.
std::shared_ptr<Attachment> Find(std::string_view path, File* file) {
  std::string db(path);
  *file = File::kDatabase;
  if (db.size() > kWalSuffix.size() && db.ends_with(kWalSuffix)) {
    db.resize(db.size() - kWalSuffix.size());
    *file = File::kWal;
  }
  std::lock_guard lock(R().mu);
  auto it = R().by_path.find(db);
  return it == R().by_path.end() ? nullptr : it->second;
}

int XClose(sqlite3_file* file) {
  ReplFile* f = AsRepl(file);
  int rc = f->lower->pMethods->xClose(f->lower);
  delete f->attachment;
  f->attachment = nullptr;
  return rc;
}
int XWrite(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
  ReplFile* f = AsRepl(file);
  Attachment& a = **f->attachment;
  std::lock_guard lock(a.mu);
  a.recorder->BeforeChange();
  int rc = f->lower->pMethods->xWrite(f->lower, buf, amount, offset);
  if (rc == SQLITE_OK) {
    a.recorder->Write(f->file, offset, std::string_view(static_cast<const char*>(buf), amount));
  }
  return rc;
}
int XTruncate(sqlite3_file* file, sqlite3_int64 size) {
  ReplFile* f = AsRepl(file);
  Attachment& a = **f->attachment;
  std::lock_guard lock(a.mu);
  a.recorder->BeforeChange();
  int rc = f->lower->pMethods->xTruncate(f->lower, size);
  if (rc == SQLITE_OK) a.recorder->Truncate(f->file, size);
  return rc;
}
int XSync(sqlite3_file* file, int flags) {
  ReplFile* f = AsRepl(file);
  Attachment& a = **f->attachment;
  std::lock_guard lock(a.mu);
  int rc = f->lower->pMethods->xSync(f->lower, flags);
  if (rc != SQLITE_OK) return rc;
  Status s = a.recorder->Sync(f->file);
  if (!s.ok()) {
    sqlite3_log(SQLITE_IOERR_FSYNC, "silo: replication refused a sync: %s", s.ToString().c_str());
    return SQLITE_IOERR_FSYNC;
  }
  return SQLITE_OK;
}
const sqlite3_io_methods* RecordedMethods() {
  static const sqlite3_io_methods methods =
      shim::WriteWatchingMethods(XClose, XWrite, XTruncate, XSync);
  return &methods;
}
const sqlite3_io_methods* PlainMethods() {
  static const sqlite3_io_methods methods = shim::PassThroughMethods();
  return &methods;
}

int XOpen(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  ReplFile* f = AsRepl(file);
  std::memset(static_cast<void*>(f), 0, sizeof(ReplFile));
  f->lower = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kReplFileSize);
  int rc = g_lower->xOpen(g_lower, name, f->lower, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  std::shared_ptr<Attachment> attachment;
  if (name != nullptr && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0) {
    File kind = File::kDatabase;
    attachment = Find(name, &kind);
    // Only the file the flags say: a WAL named like a database is not one.
    if (attachment != nullptr && (kind == File::kWal) == ((flags & SQLITE_OPEN_WAL) != 0)) {
      f->file = kind;
    } else {
      attachment = nullptr;
    }
  }
  if (attachment == nullptr) {
    f->base.pMethods = PlainMethods();
    return SQLITE_OK;
  }
  f->attachment = new std::shared_ptr<Attachment>(std::move(attachment));
  f->base.pMethods = RecordedMethods();
  return SQLITE_OK;
}
int XDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  File kind = File::kDatabase;
  std::shared_ptr<Attachment> attachment = Find(name, &kind);
  if (attachment == nullptr) return g_lower->xDelete(g_lower, name, sync_dir);
  std::lock_guard lock(attachment->mu);
  attachment->recorder->BeforeChange();
  int rc = g_lower->xDelete(g_lower, name, sync_dir);
  if (rc == SQLITE_OK) attachment->recorder->Delete(kind);
  return rc;
}

std::string FullPath(const std::string& path) {
  std::string out(static_cast<size_t>(g_lower->mxPathname) + 1, '\0');
  if (g_lower->xFullPathname(g_lower, path.c_str(), static_cast<int>(out.size()), out.data()) !=
      SQLITE_OK) {
    return path;
  }
  out.resize(std::strlen(out.c_str()));
  return out;
}

}  // namespace

CommitWaits::CommitWaits() : outer_(t_commit_waits) { t_commit_waits = this; }

CommitWaits::~CommitWaits() { t_commit_waits = outer_; }

CommitWaits* CommitWaits::Current() { return t_commit_waits; }

void CommitWaits::Add(std::function<Status()> wait) { waits_.push_back(std::move(wait)); }

Status CommitWaits::Wait() {
  Status first = Status::Ok();
  for (auto& wait : std::exchange(waits_, {})) {
    Status s = wait();
    if (!s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

void EnsureReplicationVfs() {
  static const bool registered = [] {
    g_lower = sqlite3_vfs_find("unix-excl");
    if (g_lower == nullptr) std::abort();
    static sqlite3_vfs vfs{};
    shim::PassThroughVfs(&vfs, g_lower);
    vfs.szOsFile = kReplFileSize + g_lower->szOsFile;
    vfs.zName = kLowerName;
    vfs.xOpen = XOpen;
    vfs.xDelete = XDelete;
    if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK) std::abort();
    if (!RegisterCipherVfs(kReplicatedCipherVfs, kLowerName).ok()) std::abort();
    return true;
  }();
  (void)registered;
}

void Attach(const std::string& path, std::shared_ptr<Recorder> recorder) {
  EnsureReplicationVfs();
  auto attachment = std::make_shared<Attachment>();
  attachment->recorder = std::move(recorder);
  std::lock_guard lock(R().mu);
  R().by_path[FullPath(path)] = std::move(attachment);
}

void Detach(const std::string& path) {
  EnsureReplicationVfs();
  std::lock_guard lock(R().mu);
  R().by_path.erase(FullPath(path));
}

Status WithChangesHeld(const std::string& path, const std::function<Status()>& fn) {
  EnsureReplicationVfs();
  std::shared_ptr<Attachment> attachment;
  {
    std::lock_guard lock(R().mu);
    auto it = R().by_path.find(FullPath(path));
    if (it == R().by_path.end()) return NotFound("the database is not attached");
    attachment = it->second;
  }
  std::lock_guard lock(attachment->mu);
  return fn();
}

}  // namespace silo::storage::repl
