// Disk writes shared by the applier and the follower's snapshot files
// (module-internal): a failure is Internal with the errno text as its
// private cause.
#ifndef SILO_REPLICATION_DISK_INTERNAL_H_
#define SILO_REPLICATION_DISK_INTERNAL_H_

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo::replication::internal {

// Internal("the replica's disk failed"), caused by `what` and errno.
inline Status DiskError(std::string_view what) {
  return Internal("the replica's disk failed")
      .WithCause(std::string(what) + ": " + std::strerror(errno));
}

// Little-endian unsigned integers of `width` bytes (the copy's own records).
inline void PutUint(std::string& out, uint64_t v, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
inline uint64_t GetUint(const char* p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

// Writes all of `bytes` at `offset` of `fd`.
inline Status PwriteAll(int fd, std::string_view bytes, int64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return DiskError("pwrite");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Fills `out` (its size) from `offset` of `fd`; Internal when the file ends
// first or cannot be read.
inline Status PreadAll(int fd, std::string& out, int64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                        static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return DiskError("pread");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// The first `n` bytes of `path` (fewer when it is shorter).
inline Result<std::string> ReadStart(const std::string& path, size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DiskError("open");
  std::string out(n, '\0');
  const ssize_t got = ::pread(fd, out.data(), n, 0);
  const int err = errno;
  ::close(fd);
  errno = err;
  if (got < 0) return DiskError("pread");
  out.resize(static_cast<size_t>(got));
  return out;
}

}  // namespace silo::replication::internal

#endif  // SILO_REPLICATION_DISK_INTERNAL_H_
