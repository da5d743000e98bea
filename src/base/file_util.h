// Small, careful file helpers. Every write that must survive a crash goes through
// WriteFileAtomic: temp file in the same directory, fsync, rename, fsync of the
// directory. Files are created with the mode given (0600 for anything secret).
#ifndef SILO_BASE_FILE_UTIL_H_
#define SILO_BASE_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo {

Result<std::string> ReadFile(const std::string& path);

// Replaces `path` atomically with `contents`, created with `mode`.
Status WriteFileAtomic(const std::string& path, std::string_view contents, mode_t mode = 0600);

// Creates `path` and missing parents with `mode` (existing directories keep
// their mode).
Status MakeDirs(const std::string& path, mode_t mode = 0700);

// fsyncs a directory so that a rename or unlink inside it is durable.
Status SyncDir(const std::string& path);

// fsync()s an existing file's contents.
Status SyncFile(const std::string& path);

// Removes a directory tree. Missing is not an error.
Status RemoveTree(const std::string& path);

bool PathExists(const std::string& path);

// A file as stat() sees it: device, inode, size and modification time, what
// a rename, a write or a truncate after the moment it was taken would alter.
// Compared to tell "the same files as then" (a closed tenant reopened, a
// killed node's record of its files); `exists` is false when stat() fails.
struct FileIdentity {
  bool exists = false;
  uint64_t device = 0, inode = 0, size = 0;
  int64_t modified_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};
FileIdentity IdentityOf(const std::string& path);

// A scratch file's path; the file (if any) is removed when this goes out of
// scope.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
  ~RemoveOnExit();
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace silo

#endif  // SILO_BASE_FILE_UTIL_H_
