#include "backup/target.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include "base/file_util.h"
#include "crypto/crypto.h"

namespace silo::backup {
namespace {

namespace fs = std::filesystem;

// Names are "<dir>/<file>" of [0-9A-Za-z.-]: nothing can climb out of the target.
bool SafeName(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos) return false;
  return name.find_first_not_of(
             "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-/") ==
         std::string::npos;
}

// Copies `from` to `to` in 1 MiB pieces through a temporary file beside
// `to`, synced, then renamed over it: all or nothing.
Status CopyFile(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    if (errno == ENOENT) return NotFound("no file " + from);
    return Unavailable("cannot read " + from).WithCause(std::strerror(errno));
  }
  const std::string tmp = to + ".tmp." + crypto::HexEncode(crypto::RandomBytes(4));
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    ::close(in);
    return Unavailable("cannot write " + to).WithCause(std::strerror(errno));
  }
  std::vector<char> piece(1 << 20);
  Status s;
  for (;;) {
    ssize_t n = ::read(in, piece.data(), piece.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = Unavailable("cannot read " + from).WithCause(std::strerror(errno));
      break;
    }
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, piece.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        s = Unavailable("cannot write " + to).WithCause(std::strerror(errno));
        break;
      }
      done += w;
    }
    if (!s.ok()) break;
  }
  ::close(in);
  if (s.ok() && ::fsync(out) != 0) s = Unavailable("cannot sync " + to);
  ::close(out);
  if (s.ok() && ::rename(tmp.c_str(), to.c_str()) != 0) s = Unavailable("cannot rename " + tmp);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return SyncDir(fs::path(to).parent_path().string());
}

class DirectoryTarget : public Target {
 public:
  explicit DirectoryTarget(std::string dir) : dir_(std::move(dir)) {}

  Status Put(const std::string& name, std::string_view bytes) override {
    if (!SafeName(name)) return InvalidArgument("bad object name");
    std::string path = dir_ + "/" + name;
    std::string parent = fs::path(path).parent_path().string();
    if (Status s = MakeDirs(parent, 0700); !s.ok()) {
      return Unavailable("cannot store the backup object").WithCause(s.ToString());
    }
    if (Status s = WriteFileAtomic(path, bytes, 0600); !s.ok()) {
      return Unavailable("cannot store the backup object").WithCause(s.ToString());
    }
    return Status::Ok();
  }

  Result<std::string> Get(const std::string& name) override {
    if (!SafeName(name)) return InvalidArgument("bad object name");
    std::string path = dir_ + "/" + name;
    if (!PathExists(path)) return NotFound("no object " + name);
    return ReadFile(path);
  }

  Result<std::vector<std::string>> List(const std::string& prefix) override {
    std::vector<std::string> names;
    std::error_code ec;
    if (!fs::exists(dir_, ec)) return names;
    for (auto it = fs::recursive_directory_iterator(dir_, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      std::string name = fs::relative(it->path(), dir_).string();
      if (name.find(".tmp.") != std::string::npos) continue;  // a Put in progress
      if (name.rfind(prefix, 0) == 0) names.push_back(name);
    }
    if (ec) return Unavailable("cannot list the backups").WithCause(dir_ + ": " + ec.message());
    std::sort(names.begin(), names.end());
    return names;
  }

  Status Delete(const std::string& name) override {
    if (!SafeName(name)) return InvalidArgument("bad object name");
    std::string path = dir_ + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Unavailable("cannot delete the backup object")
          .WithCause(path + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }

  Status PutFile(const std::string& name, const std::string& path) override {
    if (!SafeName(name)) return InvalidArgument("bad object name");
    const std::string to = dir_ + "/" + name;
    if (Status s = MakeDirs(fs::path(to).parent_path().string(), 0700); !s.ok()) {
      return Unavailable("cannot store the backup object").WithCause(s.ToString());
    }
    return CopyFile(path, to);
  }

  Status GetFile(const std::string& name, const std::string& path) override {
    if (!SafeName(name)) return InvalidArgument("bad object name");
    const std::string from = dir_ + "/" + name;
    if (!PathExists(from)) return NotFound("no object " + name);
    return CopyFile(from, path);
  }

  std::string Describe() const override { return "dir:" + dir_; }

 private:
  const std::string dir_;
};

}  // namespace

std::unique_ptr<Target> NewDirectoryTarget(std::string dir) {
  return std::make_unique<DirectoryTarget>(std::move(dir));
}

}  // namespace silo::backup
