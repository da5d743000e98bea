// Plumbing shared by VFS shims (the cipher VFS, the tests' fault VFS): the
// pass-through methods, so each shim writes only what it changes.
//
// Contract: a shim's file struct starts with `ShimFile` (SQLite's
// sqlite3_file, then the lower file), and its sqlite3_vfs::pAppData is the
// lower sqlite3_vfs.
#ifndef SILO_STORAGE_VFS_SHIM_H_
#define SILO_STORAGE_VFS_SHIM_H_

#include <sqlite3.h>

#include <cstddef>

namespace silo::storage::shim {

struct ShimFile {
  sqlite3_file base;
  sqlite3_file* lower;
};

// Sets every method of `vfs` but xOpen to pass through to `lower`, and
// iVersion 2, mxPathname, pAppData = lower. The caller sets zName, szOsFile
// and xOpen.
void PassThroughVfs(sqlite3_vfs* vfs, sqlite3_vfs* lower);

// io_methods version 2 (no xFetch: nothing memory-maps) passing every call
// through to ShimFile::lower. A shim copies it and replaces what it changes.
sqlite3_io_methods PassThroughMethods();

// PassThroughMethods() with the calls that change a file or make it durable
// replaced: what a shim that watches writes (the fault VFS, the replication
// shim) changes.
sqlite3_io_methods WriteWatchingMethods(
    int (*close)(sqlite3_file*), int (*write)(sqlite3_file*, const void*, int, sqlite3_int64),
    int (*truncate)(sqlite3_file*, sqlite3_int64), int (*sync)(sqlite3_file*, int));

// Rounds a shim's file struct size up so the lower file behind it is aligned.
constexpr int AlignedSize(size_t size) { return static_cast<int>((size + 15) & ~size_t{15}); }

}  // namespace silo::storage::shim

#endif  // SILO_STORAGE_VFS_SHIM_H_
