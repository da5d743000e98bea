// The unencrypted control of `make bench-files` (issue 17): the same HTTPS
// transport and streaming path as the file routes of `silo serve`
// (http::Server, a streamed upload read through BodyStream 64 KiB at a time,
// a download pulled through BodySource), minus the files module: no sealing,
// no SHA-256, no type sniffing, no database. An upload is written to a plain
// file as it arrives and fsynced, as a blob is; a download reads it back.
// Bench only: it writes what it is sent in the clear, under the directory
// given, and binds 127.0.0.1 only.
//
//   build/files_control <dir> <cert.pem> <key.pem>
//
// Prints "listening <port>" and serves until stdin closes.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "http/metrics.h"
#include "http/server.h"

namespace {

using namespace silo;

constexpr size_t kPiece = 64 * 1024;  // what the files module reads and seals at a time

class FileSource : public http::BodySource {
 public:
  explicit FileSource(int fd) : fd_(fd) {}
  ~FileSource() override { ::close(fd_); }
  Status Read(std::span<char> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::read(fd_, out.data() + done, std::min(kPiece, out.size() - done));
      if (n <= 0) return Unavailable("short read");
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

 private:
  int fd_;
};

class ControlDispatcher : public http::Dispatcher {
 public:
  explicit ControlDispatcher(std::string dir) : dir_(std::move(dir)) {}
  size_t BodyLimit(std::string_view method, std::string_view) const override {
    return method == "POST" ? kStreamed : 0;
  }
  http::Response Handle(const http::Request& r) override {
    const std::string path = dir_ + "/upload.bin";
    if (r.method == "POST" && r.body_stream != nullptr) {
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return http::Problem(500, "cannot write", r.request_id);
      std::vector<char> piece(kPiece);
      uint64_t total = 0;
      for (;;) {
        auto n = r.body_stream->Read(piece);
        if (!n.ok() || *n == 0) break;
        if (::write(fd, piece.data(), *n) != static_cast<ssize_t>(*n)) break;
        total += *n;
      }
      ::fsync(fd);
      ::close(fd);
      return http::Json(201, "{\"size\":" + std::to_string(total) + "}");
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return http::Problem(404, "no upload yet", r.request_id);
    http::Response out;
    out.content_type = "application/octet-stream";
    out.source_size = static_cast<uint64_t>(::lseek(fd, 0, SEEK_END));
    ::lseek(fd, 0, SEEK_SET);
    out.source = std::make_shared<FileSource>(fd);
    out.route = "/control";
    return out;
  }

 private:
  std::string dir_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: files_control <dir> <cert.pem> <key.pem>\n");
    return 2;
  }
  ControlDispatcher dispatcher(argv[1]);
  http::Metrics metrics;
  http::ServerOptions o;  // the defaults `silo serve` starts from
  o.name = "control";
  o.host = "127.0.0.1";
  o.tls_cert_file = argv[2];
  o.tls_key_file = argv[3];
  o.stream_threads = 32;  // SILO_UPLOADS_TOTAL's default
  http::Server server(o, &dispatcher, &metrics);
  auto port = server.Start();
  if (!port.ok()) {
    std::fprintf(stderr, "files_control: %s\n", port.status().ToString().c_str());
    return 1;
  }
  std::printf("listening %u\n", static_cast<unsigned>(*port));
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  server.Stop();
  return 0;
}
