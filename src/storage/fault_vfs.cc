#include "storage/fault_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>

#include "storage/cipher_vfs.h"
#include "storage/vfs_shim.h"

namespace silo::storage::testing {
namespace {

// What a write or truncate replaced: bytes at `offset` (empty for bytes that
// did not exist before).
struct Undo {
  int64_t offset;
  std::string old_bytes;
};

struct FileUndo {
  int64_t synced_size = -1;  // size at the last sync; -1 = nothing pending
  std::vector<Undo> entries;
};

struct State {
  std::mutex mu;
  FaultStats stats;
  std::vector<std::string> needles;
  std::map<std::string, FileUndo> undo;  // by path
  int64_t writes_left = -1;              // -1: no cut scheduled
  bool cut = false;
};

State& S() {
  static auto* state = new State();
  return *state;
}

sqlite3_vfs* g_lower = nullptr;

enum class Kind { kDb, kWal, kJournal, kOther };

struct FaultFile {
  sqlite3_file base;
  sqlite3_file* lower;
  Kind kind;
  std::string* path;
};
constexpr int kFaultFileSize = shim::AlignedSize(sizeof(FaultFile));
static_assert(offsetof(FaultFile, lower) == offsetof(shim::ShimFile, lower));

FaultFile* AsFault(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }

int64_t LowerSize(FaultFile* f) {
  sqlite3_int64 size = 0;
  f->lower->pMethods->xFileSize(f->lower, &size);
  return size;
}

// Records what [offset, offset+amount) holds now, before it changes.
void RememberOld(FaultFile* f, int64_t offset, int64_t amount) {
  FileUndo& u = S().undo[*f->path];
  int64_t size = LowerSize(f);
  if (u.synced_size < 0) u.synced_size = size;
  Undo entry{offset, {}};
  int64_t keep = std::min(amount, std::max<int64_t>(0, size - offset));
  if (keep > 0) {
    entry.old_bytes.resize(keep);
    f->lower->pMethods->xRead(f->lower, entry.old_bytes.data(), static_cast<int>(keep), offset);
  }
  u.entries.push_back(std::move(entry));
}

int XClose(sqlite3_file* file) {
  FaultFile* f = AsFault(file);
  int rc = f->lower->pMethods->xClose(f->lower);
  delete f->path;
  return rc;
}
int XWrite(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
  FaultFile* f = AsFault(file);
  {
    std::lock_guard lock(S().mu);
    if (S().cut) return SQLITE_IOERR_WRITE;
    if (S().writes_left == 0) {
      S().cut = true;
      return SQLITE_IOERR_WRITE;
    }
    if (S().writes_left > 0) --S().writes_left;
    FaultStats& st = S().stats;
    if (f->kind == Kind::kDb) ++st.db_writes;
    if (f->kind == Kind::kWal) ++st.wal_writes;
    if (f->kind == Kind::kJournal) ++st.journal_writes;
    std::string_view bytes(static_cast<const char*>(buf), amount);
    for (const auto& needle : S().needles) {
      if (bytes.find(needle) != std::string_view::npos) {
        ++st.needle_hits;
        st.needle_files.push_back(*f->path);
      }
    }
    RememberOld(f, offset, amount);
  }
  return f->lower->pMethods->xWrite(f->lower, buf, amount, offset);
}
int XTruncate(sqlite3_file* file, sqlite3_int64 size) {
  FaultFile* f = AsFault(file);
  {
    std::lock_guard lock(S().mu);
    if (S().cut) return SQLITE_IOERR_TRUNCATE;
    int64_t old = LowerSize(f);
    if (old > size) RememberOld(f, size, old - size);
  }
  return f->lower->pMethods->xTruncate(f->lower, size);
}
int XSync(sqlite3_file* file, int flags) {
  FaultFile* f = AsFault(file);
  std::lock_guard lock(S().mu);
  if (S().cut) return SQLITE_IOERR_FSYNC;
  ++S().stats.syncs;
  int rc = f->lower->pMethods->xSync(f->lower, flags);
  if (rc == SQLITE_OK) S().undo.erase(*f->path);  // now durable
  return rc;
}
const sqlite3_io_methods* Methods() {
  static const sqlite3_io_methods methods =
      shim::WriteWatchingMethods(XClose, XWrite, XTruncate, XSync);
  return &methods;
}

int XOpen(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  FaultFile* f = AsFault(file);
  std::memset(static_cast<void*>(f), 0, sizeof(FaultFile));
  f->lower = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kFaultFileSize);
  int rc = g_lower->xOpen(g_lower, name, f->lower, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  f->kind = (flags & SQLITE_OPEN_MAIN_DB)        ? Kind::kDb
            : (flags & SQLITE_OPEN_WAL)          ? Kind::kWal
            : (flags & SQLITE_OPEN_MAIN_JOURNAL) ? Kind::kJournal
                                                 : Kind::kOther;
  f->path = new std::string(name != nullptr ? name : "");
  f->base.pMethods = Methods();
  return SQLITE_OK;
}
int XDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  {
    std::lock_guard lock(S().mu);
    if (S().cut) return SQLITE_IOERR_DELETE;
    S().undo.erase(name);  // a deleted file has nothing left to roll back
  }
  return g_lower->xDelete(g_lower, name, sync_dir);
}
}  // namespace

FaultVfs& FaultVfs::Get() {
  static FaultVfs* instance = [] {
    g_lower = sqlite3_vfs_find("unix-excl");
    static sqlite3_vfs vfs{};
    shim::PassThroughVfs(&vfs, g_lower);
    vfs.szOsFile = kFaultFileSize + g_lower->szOsFile;
    vfs.zName = "fault-lower";
    vfs.xOpen = XOpen;
    vfs.xDelete = XDelete;
    sqlite3_vfs_register(&vfs, 0);
    Status s = RegisterCipherVfs(kFaultCipherVfs, "fault-lower");
    if (!s.ok()) std::abort();
    return new FaultVfs();
  }();
  return *instance;
}

void FaultVfs::Reset() {
  std::lock_guard lock(S().mu);
  S().stats = FaultStats{};
  S().needles.clear();
  S().undo.clear();
  S().writes_left = -1;
  S().cut = false;
}

void FaultVfs::AddNeedle(const std::string& needle) {
  std::lock_guard lock(S().mu);
  S().needles.push_back(needle);
}

FaultStats FaultVfs::stats() const {
  std::lock_guard lock(S().mu);
  return S().stats;
}

void FaultVfs::CutPowerAfterWrites(int64_t n) {
  std::lock_guard lock(S().mu);
  S().writes_left = n;
}

bool FaultVfs::power_cut() const {
  std::lock_guard lock(S().mu);
  return S().cut;
}

void FaultVfs::RestorePower() {
  std::lock_guard lock(S().mu);
  for (auto& [path, u] : S().undo) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    for (auto it = u.entries.rbegin(); it != u.entries.rend(); ++it) {
      if (!it->old_bytes.empty()) {
        ssize_t n = ::pwrite(fd, it->old_bytes.data(), it->old_bytes.size(), it->offset);
        (void)n;
      }
    }
    if (u.synced_size >= 0 && ::ftruncate(fd, u.synced_size) != 0) std::abort();
    ::close(fd);
  }
  S().undo.clear();
  S().writes_left = -1;
  S().cut = false;
}

}  // namespace silo::storage::testing
