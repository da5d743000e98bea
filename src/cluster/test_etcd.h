// A real etcd for tests (Debian's etcd-server, installed by
// scripts/bootstrap.sh): one member on 127.0.0.1, its own data directory,
// started by the test and stopped (that process only) when it ends, or by
// the kernel when the test process dies without cleaning up.
#ifndef SILO_CLUSTER_TEST_ETCD_H_
#define SILO_CLUSTER_TEST_ETCD_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "cluster/etcd.h"

namespace silo::cluster::testing {

// A loopback port that was free a moment ago (the kernel's pick).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

class EtcdProcess {
 public:
  // Starts etcd and waits until it answers (up to 30 s); tries new ports
  // if another process took the chosen ones meanwhile. ok() says whether
  // it runs.
  EtcdProcess() {
    char tmpl[] = "/tmp/silo-etcd-XXXXXX";
    dir_ = mkdtemp(tmpl);
    for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) Start();
  }
  ~EtcdProcess() {
    Kill();
    std::filesystem::remove_all(dir_);
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  bool ok() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  const std::string& endpoint() const { return endpoint_; }
  EtcdOptions Options() const { return EtcdOptions{{endpoint_}, 2000, "", "", ""}; }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  void Start() {
    int client = FreePort();
    int peer = FreePort();
    std::string c = "http://127.0.0.1:" + std::to_string(client);
    std::string p = "http://127.0.0.1:" + std::to_string(peer);
    std::string data = dir_ + "/data-" + std::to_string(client);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // Dies with the thread that started it (a test's), even one killed
      // with no clean-up (SIGKILL, a CI job cancelled).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // it died before the line above
      std::string log = dir_ + "/etcd.log";
      FILE* out = std::freopen(log.c_str(), "a", stdout);
      FILE* err = std::freopen(log.c_str(), "a", stderr);
      (void)out;
      (void)err;
      ::execlp("etcd", "etcd", "--name", "t", "--data-dir", data.c_str(), "--listen-client-urls",
               c.c_str(), "--advertise-client-urls", c.c_str(), "--listen-peer-urls", p.c_str(),
               "--initial-advertise-peer-urls", p.c_str(), "--initial-cluster", ("t=" + p).c_str(),
               "--log-level", "error", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid < 0) return;
    pid_ = pid;
    endpoint_ = c;
    Etcd etcd(Options());
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {  // it exited: ports taken?
        pid_ = -1;
        return;
      }
      if (etcd.Get("/silo/ping").ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Kill();
  }

  std::string dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

}  // namespace silo::cluster::testing

#endif  // SILO_CLUSTER_TEST_ETCD_H_
