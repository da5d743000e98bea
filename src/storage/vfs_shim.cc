#include "storage/vfs_shim.h"

namespace silo::storage::shim {
namespace {

sqlite3_file* Lower(sqlite3_file* file) { return reinterpret_cast<ShimFile*>(file)->lower; }
sqlite3_vfs* Lower(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

int Close(sqlite3_file* f) {
  return Lower(f)->pMethods ? Lower(f)->pMethods->xClose(Lower(f)) : SQLITE_OK;
}
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Lower(f)->pMethods->xRead(Lower(f), buf, n, off);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  return Lower(f)->pMethods->xWrite(Lower(f), buf, n, off);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return Lower(f)->pMethods->xTruncate(Lower(f), size);
}
int Sync(sqlite3_file* f, int flags) { return Lower(f)->pMethods->xSync(Lower(f), flags); }
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Lower(f)->pMethods->xFileSize(Lower(f), size);
}
int Lock(sqlite3_file* f, int level) { return Lower(f)->pMethods->xLock(Lower(f), level); }
int Unlock(sqlite3_file* f, int level) { return Lower(f)->pMethods->xUnlock(Lower(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Lower(f)->pMethods->xCheckReservedLock(Lower(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Lower(f)->pMethods->xFileControl(Lower(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Lower(f)->pMethods->xSectorSize(Lower(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Lower(f)->pMethods->xDeviceCharacteristics(Lower(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Lower(f)->pMethods->xShmMap(Lower(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Lower(f)->pMethods->xShmLock(Lower(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Lower(f)->pMethods->xShmBarrier(Lower(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return Lower(f)->pMethods->xShmUnmap(Lower(f), delete_flag);
}

int Delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  return Lower(v)->xDelete(Lower(v), name, sync_dir);
}
int Access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return Lower(v)->xAccess(Lower(v), name, flags, out);
}
int FullPathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return Lower(v)->xFullPathname(Lower(v), name, n, out);
}
void* DlOpen(sqlite3_vfs* v, const char* name) { return Lower(v)->xDlOpen(Lower(v), name); }
void DlError(sqlite3_vfs* v, int n, char* out) { Lower(v)->xDlError(Lower(v), n, out); }
void (*DlSym(sqlite3_vfs* v, void* handle, const char* symbol))(void) {
  return Lower(v)->xDlSym(Lower(v), handle, symbol);
}
void DlClose(sqlite3_vfs* v, void* handle) { Lower(v)->xDlClose(Lower(v), handle); }
int Randomness(sqlite3_vfs* v, int n, char* out) { return Lower(v)->xRandomness(Lower(v), n, out); }
int Sleep(sqlite3_vfs* v, int micros) { return Lower(v)->xSleep(Lower(v), micros); }
int CurrentTime(sqlite3_vfs* v, double* out) { return Lower(v)->xCurrentTime(Lower(v), out); }
int GetLastError(sqlite3_vfs* v, int n, char* out) {
  return Lower(v)->xGetLastError(Lower(v), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* out) {
  return Lower(v)->xCurrentTimeInt64(Lower(v), out);
}

}  // namespace

void PassThroughVfs(sqlite3_vfs* vfs, sqlite3_vfs* lower) {
  vfs->iVersion = 2;
  vfs->mxPathname = lower->mxPathname;
  vfs->pAppData = lower;
  vfs->xDelete = Delete;
  vfs->xAccess = Access;
  vfs->xFullPathname = FullPathname;
  vfs->xDlOpen = DlOpen;
  vfs->xDlError = DlError;
  vfs->xDlSym = DlSym;
  vfs->xDlClose = DlClose;
  vfs->xRandomness = Randomness;
  vfs->xSleep = Sleep;
  vfs->xCurrentTime = CurrentTime;
  vfs->xGetLastError = GetLastError;
  vfs->xCurrentTimeInt64 = CurrentTimeInt64;
}

sqlite3_io_methods PassThroughMethods() {
  sqlite3_io_methods m{};
  m.iVersion = 2;
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  m.xShmMap = ShmMap;
  m.xShmLock = ShmLock;
  m.xShmBarrier = ShmBarrier;
  m.xShmUnmap = ShmUnmap;
  return m;
}

sqlite3_io_methods WriteWatchingMethods(
    int (*close)(sqlite3_file*), int (*write)(sqlite3_file*, const void*, int, sqlite3_int64),
    int (*truncate)(sqlite3_file*, sqlite3_int64), int (*sync)(sqlite3_file*, int)) {
  sqlite3_io_methods m = PassThroughMethods();
  m.xClose = close;
  m.xWrite = write;
  m.xTruncate = truncate;
  m.xSync = sync;
  return m;
}

}  // namespace silo::storage::shim
