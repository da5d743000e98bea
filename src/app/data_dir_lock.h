// DataDirLock: one owner process per data directory (<data>/silo.lock, an
// exclusive flock held for the life of the process). Why: every tenant
// database is opened through unix-excl, which keeps the WAL index in process
// memory; two processes on one database would corrupt it.
#ifndef SILO_APP_DATA_DIR_LOCK_H_
#define SILO_APP_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "base/status.h"

namespace silo::app {

class DataDirLock {
 public:
  // FailedPrecondition when another process holds the lock.
  static Result<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace silo::app

#endif  // SILO_APP_DATA_DIR_LOCK_H_
