// Node links over real mutual TLS on loopback.
#include "cluster/peer_link.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status_matchers.h"
#include "cluster/test_certs.h"
#include "crypto/crypto.h"

namespace silo::cluster {
namespace {

using namespace std::chrono_literals;

class PeerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-link-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ASSERT_TRUE(testing::MakeCa(dir_, "ca") && testing::MakeCa(dir_, "other-ca"))
        << "openssl failed (scripts/bootstrap.sh installs it)";
    server_tls_ = testing::MakeNode(dir_, "ca", "node-1");
    client_tls_ = testing::MakeNode(dir_, "ca", "node-2");
    ASSERT_FALSE(server_tls_.cert_file.empty());
    ASSERT_FALSE(client_tls_.cert_file.empty());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<PeerListener> Listen(Handler handler) {
    auto listener = PeerListener::Start("127.0.0.1:0", server_tls_, std::move(handler));
    EXPECT_OK(listener);
    return listener.ok() ? std::move(listener).value() : nullptr;
  }
  std::string Address(const PeerListener& l) { return "127.0.0.1:" + std::to_string(l.port()); }

  std::string dir_;
  PeerTls server_tls_;
  PeerTls client_tls_;
};

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// Echoes the payload's hash, and checks each tenant's messages come in
// order.
struct Echo {
  std::mutex mu;
  std::map<std::string, uint64_t> last_seq;
  std::atomic<int> out_of_order{0};
  std::atomic<int> calls{0};
  Message operator()(const Message& m) {
    ++calls;
    {
      std::lock_guard lock(mu);
      if (m.seq <= last_seq[m.tenant]) ++out_of_order;
      last_seq[m.tenant] = m.seq;
    }
    return Message{m.tenant, 7, m.seq, crypto::Sha256Hex(m.payload)};
  }
};

TEST_F(PeerLinkTest, ManyTenantsShareOneLinkAndEachKeepsItsOrder) {
  Echo echo;
  auto listener = Listen([&](const Message& m) { return echo(m); });
  ASSERT_NE(listener, nullptr);
  auto client = PeerClient::Connect(Address(*listener), client_tls_);
  ASSERT_OK(client);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string tenant = "tenant-" + std::to_string(t);
      for (uint64_t seq = 1; seq <= 30; ++seq) {
        // Up to 1 MiB: several chunks, interleaved with other tenants'.
        std::string payload(static_cast<size_t>((seq * 37'123 * (t + 1)) % (1 << 20)) + 1,
                            static_cast<char>('a' + t));
        auto answer = (*client)->Call(Message{tenant, 1, seq, payload}, 30s);
        if (!answer.ok() || answer->payload != crypto::Sha256Hex(payload) || answer->kind != 7 ||
            answer->tenant != tenant || answer->seq != seq) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(echo.out_of_order, 0);
  EXPECT_EQ(echo.calls, 120);
}

TEST_F(PeerLinkTest, ATenantWhoseHandlerIsStuckHoldsUpNoOtherTenant) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> slow_entered{0};
  Echo echo;
  auto listener = Listen([&](const Message& m) {
    if (m.tenant == "slow") {
      ++slow_entered;
      released.wait();
    }
    return echo(m);
  });
  ASSERT_NE(listener, nullptr);
  auto client = PeerClient::Connect(Address(*listener), client_tls_);
  ASSERT_OK(client);
  // The slow tenant: a big message whose handler blocks, and more behind
  // it on the same link.
  std::vector<std::future<Result<Message>>> slow;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    slow.push_back(std::async(std::launch::async, [&, seq] {
      return (*client)->Call(Message{"slow", 1, seq, std::string(3 << 20, 's')}, 120s);
    }));
  }
  while (slow_entered == 0) std::this_thread::yield();  // it is stuck now
  // Every other tenant's calls are answered while it is stuck.
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    auto answer = (*client)->Call(Message{"fast", 1, seq, std::string(1000, 'f')}, 60s);
    ASSERT_OK(answer);
  }
  EXPECT_EQ(slow_entered, 1) << "the slow tenant's messages ran out of order or in parallel";
  release.set_value();
  for (auto& f : slow) ASSERT_OK(f.get());  // (sent from three threads: in any order)
}

TEST_F(PeerLinkTest, OnlyPeersWithACertificateFromTheClusterCaGetIn) {
  std::atomic<int> calls{0};
  auto listener = Listen([&](const Message& m) {
    ++calls;
    return m;
  });
  ASSERT_NE(listener, nullptr);
  // A node certificate from another CA: the listener refuses it. (In TLS
  // 1.3 the client learns it at its first read: the call fails.)
  PeerTls stranger = testing::MakeNode(dir_, "other-ca", "stranger");
  stranger.ca_file = client_tls_.ca_file;  // it trusts our CA, we do not trust its
  auto intruder = PeerClient::Connect(Address(*listener), stranger);
  EXPECT_TRUE(!intruder.ok() || !(*intruder)->Call(Message{"t", 1, 1, "hello"}, 10s).ok());
  // A listener from another CA: our client refuses it at the handshake.
  PeerTls foreign_server = testing::MakeNode(dir_, "other-ca", "foreign");
  auto foreign = PeerListener::Start("127.0.0.1:0", foreign_server, [&](const Message& m) {
    ++calls;
    return m;
  });
  ASSERT_OK(foreign);
  EXPECT_STATUS(
      StatusCode::kUnavailable,
      PeerClient::Connect("127.0.0.1:" + std::to_string((*foreign)->port()), client_tls_));
  // A cluster member's certificate for another address: whoever answers at
  // this address is not that node, so our client refuses it.
  PeerTls elsewhere = testing::MakeNode(dir_, "ca", "elsewhere", "IP:10.9.9.9");
  ASSERT_FALSE(elsewhere.cert_file.empty());
  auto impostor = PeerListener::Start("127.0.0.1:0", elsewhere, [&](const Message& m) {
    ++calls;
    return m;
  });
  ASSERT_OK(impostor);
  EXPECT_STATUS(
      StatusCode::kUnavailable,
      PeerClient::Connect("127.0.0.1:" + std::to_string((*impostor)->port()), client_tls_));
  // Plain bytes instead of TLS: the link is dropped, the listener goes on.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(listener->port());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_GT(::write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 0);
  char buf[64];
  ssize_t got = ::read(fd, buf, sizeof buf);  // returns once the listener drops it
  EXPECT_LE(got, 7) << "the listener answered plain bytes with more than a TLS alert";
  ::close(fd);
  EXPECT_EQ(calls, 0) << "a handler ran for a peer that is not in the cluster";

  auto member = PeerClient::Connect(Address(*listener), client_tls_);
  ASSERT_OK(member);
  ASSERT_OK((*member)->Call(Message{"t", 1, 1, "hello"}, 10s));
  EXPECT_EQ(calls, 1);
}

TEST_F(PeerLinkTest, ACallWithoutAnAnswerTimesOutAndALostLinkFailsEveryCall) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto listener = Listen([&](const Message& m) {
    released.wait();
    return m;
  });
  ASSERT_NE(listener, nullptr);
  auto client = PeerClient::Connect(Address(*listener), client_tls_);
  ASSERT_OK(client);
  EXPECT_STATUS(StatusCode::kDeadlineExceeded, (*client)->Call(Message{"t", 1, 1, "x"}, 200ms));
  auto pending = std::async(std::launch::async, [&] {
    return (*client)->Call(Message{"t", 1, 2, "y"}, 120s);
  });
  release.set_value();
  listener->Stop();
  Result<Message> after = pending.get();
  // Either answered before the stop or failed by it; never hanging.
  if (!after.ok()) {
    EXPECT_EQ(after.status().code(), StatusCode::kUnavailable);
  }
  EXPECT_STATUS(StatusCode::kUnavailable, (*client)->Call(Message{"t", 1, 3, "z"}, 10s));
}

// A TCP relay between a client and a listener that can stop taking bytes
// from the client: a peer that reads nothing (a stopped or stalled node).
class Relay {
 public:
  explicit Relay(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    // Small buffers on the client's side, so what the client sends fills
    // them after a few hundred KiB.
    int small = 64 << 10;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr = Loopback(0);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listen_fd_, 1);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_ = std::thread([this] {
      int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in to = Loopback(target_port_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
        ::close(client);
        return;
      }
      fds_ = {client, server};
      pumps_.emplace_back([this, client, server] { Pump(client, server, /*pausable=*/true); });
      pumps_.emplace_back([this, client, server] { Pump(server, client, /*pausable=*/false); });
    });
  }
  ~Relay() {
    Resume();
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_.join();
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  void Pause() {
    std::lock_guard lock(mu_);
    paused_ = true;
  }
  void Resume() {
    {
      std::lock_guard lock(mu_);
      paused_ = false;
    }
    cv_.notify_all();
  }

 private:
  void Pump(int from, int to, bool pausable) {
    char buf[16 << 10];
    while (true) {
      if (pausable) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !paused_; });
      }
      ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(to, buf + done, static_cast<size_t>(n - done));
        if (w <= 0) return;
        done += w;
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> fds_;
  std::thread accept_;
  std::vector<std::thread> pumps_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false;
};

// A primary sends each segment on its commit path: a follower that stops
// reading must not stop the commits before that follower's window is full
// (kWindowBytes). Send used to write the message itself, so it blocked
// once the socket's buffers were full.
TEST_F(PeerLinkTest, ASendDoesNotWaitForAPeerThatStoppedReading) {
  Echo echo;
  auto listener = Listen([&](const Message& m) { return echo(m); });
  ASSERT_NE(listener, nullptr);
  Relay relay(listener->port());
  auto client = PeerClient::Connect("127.0.0.1:" + std::to_string(relay.port()), client_tls_);
  ASSERT_OK(client);
  ASSERT_OK((*client)->Call(Message{"t", 1, 1, "hello"}, 30s));  // the link works
  relay.Pause();
  // 30 messages of a chunk each: 7.5 MiB, within the tenant's window, far
  // more than the buffers between here and the relay hold.
  constexpr int kMessages = 30;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  auto sends = std::async(std::launch::async, [&] {
    for (uint64_t seq = 2; seq < 2 + kMessages; ++seq) {
      std::string payload(kChunkBytes, static_cast<char>('a' + seq % 26));
      Status s =
          (*client)->Send(Message{"t", 1, seq, payload}, 60s, [&, payload](Result<Message> answer) {
            if (answer.ok() && answer->payload == crypto::Sha256Hex(payload)) {
              ++answered;
            } else {
              ++failed;
            }
          });
      if (!s.ok()) return s;
    }
    return Status::Ok();
  });
  // Generous: the sends take milliseconds; the old Send never returned
  // while the relay was paused (it returns once the relay resumes).
  const bool returned_while_paused = sends.wait_for(30s) == std::future_status::ready;
  const int answered_while_paused = answered;
  relay.Resume();
  EXPECT_TRUE(returned_while_paused) << "Send waited for a peer that reads nothing";
  EXPECT_OK(sends.get());
  EXPECT_EQ(answered_while_paused, 0) << "answered while the relay held every byte";
  // Then every message arrives, in order, and is answered.
  for (int i = 0; i < 6000 && answered + failed < kMessages; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(answered, kMessages);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(echo.out_of_order, 0);
}

// A peer that asks for a TLS key update before every answer, written with
// OpenSSL directly (the link itself never asks for one): it answers each
// request with an empty reply, one connection, one thread. With `flood`, it
// first sends that many key updates in a row, reading nothing.
class KeyUpdatingPeer {
 public:
  explicit KeyUpdatingPeer(const PeerTls& tls, int flood = 0) : flood_(flood) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(ctx_, 0);
    ok_ = SSL_CTX_use_certificate_chain_file(ctx_, tls.cert_file.c_str()) == 1 &&
          SSL_CTX_use_PrivateKey_file(ctx_, tls.key_file.c_str(), SSL_FILETYPE_PEM) == 1 &&
          SSL_CTX_load_verify_locations(ctx_, tls.ca_file.c_str(), nullptr) == 1;
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    ok_ = ok_ && ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
          ::listen(listen_fd_, 1) == 0;
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~KeyUpdatingPeer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (conn_fd_ >= 0) ::shutdown(conn_fd_, SHUT_RDWR);
    thread_.join();
    if (conn_fd_ >= 0) ::close(conn_fd_);
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_; }
  int port() const { return port_; }
  int key_updates() const { return key_updates_; }
  // Why the peer stopped reading, once the link ended ("" while it runs).
  std::string ended() {
    std::lock_guard lock(mu_);
    return ended_;
  }

 private:
  void Serve() {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    conn_fd_ = fd;
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, fd);
    std::string why = "handshake";
    if (SSL_accept(ssl) == 1) why = Flood(ssl);
    if (why.empty()) why = Answer(ssl);
    {
      std::lock_guard lock(mu_);
      ended_ = why;
    }
    SSL_free(ssl);
  }
  static bool ReadAll(SSL* ssl, char* out, size_t n) {
    for (size_t done = 0, got = 0; done < n; done += got) {
      if (SSL_read_ex(ssl, out + done, n - done, &got) != 1) return false;
    }
    return true;
  }
  // "" once flood_ key updates went out.
  std::string Flood(SSL* ssl) {
    for (int i = 0; i < flood_; ++i) {
      if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1) {
        return "flood";
      }
      ++key_updates_;
    }
    return "";
  }
  // Frames as in docs/formats.md ("Node link frame").
  std::string Answer(SSL* ssl) {
    while (true) {
      unsigned char length[4];
      if (!ReadAll(ssl, reinterpret_cast<char*>(length), 4)) return "read";
      size_t n = (size_t{length[0]} << 24) | (length[1] << 16) | (length[2] << 8) | length[3];
      std::string frame(n, '\0');
      if (n < 16 || !ReadAll(ssl, frame.data(), n)) return "frame";
      if ((frame[2] & 1) == 0) continue;  // not the message's last chunk
      const size_t tenant_size = static_cast<uint8_t>(frame[3]);
      // A reply (type 2, kind 7, last chunk) with the request's tenant and
      // seq and an empty payload.
      std::string reply = {0, 0, 0, static_cast<char>(16 + tenant_size),
                           2, 7, 1, static_cast<char>(tenant_size)};
      reply.append(frame, 4, 8);  // seq
      reply.append(4, '\0');      // total: 0
      reply.append(frame, 16, tenant_size);
      if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1) return "key update";
      ++key_updates_;
      size_t written = 0;
      if (SSL_write_ex(ssl, reply.data(), reply.size(), &written) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        return std::string("write: ") + why;
      }
    }
  }

  const int flood_;
  SSL_CTX* ctx_ = nullptr;
  bool ok_ = false;
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  int port_ = 0;
  std::atomic<int> key_updates_{0};
  std::mutex mu_;
  std::string ended_;
  std::thread thread_;
};

// A peer's KeyUpdate makes the receiving end's SSL_read write a KeyUpdate
// of its own, which must not meet the writer thread's SSL_write on the same
// SSL object (OpenSSL allows one call at a time per object): every message
// is answered and the link stays up.
TEST_F(PeerLinkTest, APeerThatUpdatesItsKeysWhileMessagesFlowBreaksNothing) {
  KeyUpdatingPeer peer(server_tls_);
  ASSERT_TRUE(peer.ok());
  auto client = PeerClient::Connect("127.0.0.1:" + std::to_string(peer.port()), client_tls_);
  ASSERT_OK(client);
  constexpr int kTenants = 4;
  constexpr int kMessages = 150;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kTenants; ++t) {
    threads.emplace_back([&, t] {
      std::string tenant = "tenant-" + std::to_string(t);
      std::string payload(64 << 10, static_cast<char>('a' + t));
      for (uint64_t seq = 1; seq <= kMessages; ++seq) {
        Status s =
            (*client)->Send(Message{tenant, 1, seq, payload}, 60s,
                            [&](Result<Message> answer) { ++(answer.ok() ? answered : failed); });
        if (!s.ok()) {
          ++failed;
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6000 && answered + failed < kTenants * kMessages; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(answered, kTenants * kMessages) << "the peer stopped: " << peer.ended();
  EXPECT_EQ(failed, 0);
  EXPECT_FALSE((*client)->broken());
  EXPECT_EQ(peer.key_updates(), kTenants * kMessages);
}

// Each key update a peer asks for makes our SSL_read queue one of ours
// until our next write (27 bytes). A peer that floods them on a link we
// write nothing to is dropped once they pass 64 KiB (kMaxQueuedByReads),
// not left to grow our memory; a peer that asks for a thousand (27 KB) is
// answered as any other, its key updates sent with our next message.
TEST_F(PeerLinkTest, APeerFloodingKeyUpdatesIsDroppedBeforeOurAnswersToItGrowPast64KiB) {
  for (const int flood : {1'000, 10'000}) {
    SCOPED_TRACE("key updates in a row: " + std::to_string(flood));
    KeyUpdatingPeer peer(server_tls_, flood);
    ASSERT_TRUE(peer.ok());
    auto client = PeerClient::Connect("127.0.0.1:" + std::to_string(peer.port()), client_tls_);
    ASSERT_OK(client);
    for (int i = 0; i < 3000 && peer.key_updates() < flood && peer.ended().empty(); ++i) {
      std::this_thread::sleep_for(10ms);
    }
    // What the peer sent is read before the reply to the message below.
    std::promise<Status> answer;
    Status sent = (*client)->Send(Message{"acme", 1, 1, "after the flood"}, 30s,
                                  [&](Result<Message> m) { answer.set_value(m.status()); });
    Status answered = sent.ok() ? answer.get_future().get() : sent;
    if (flood == 1'000) {
      EXPECT_OK(answered);
      EXPECT_EQ(peer.key_updates(), flood + 1);
      EXPECT_FALSE((*client)->broken());
    } else {
      EXPECT_FALSE(answered.ok()) << "the flooding peer's link stayed up";
      EXPECT_TRUE((*client)->broken());
    }
  }
}

// What the handler writes may be removed once Stop returns: Stop waits for
// the run being handled (it used to return while a worker still wrote, and a
// test's clean-up raced the follower's files).
TEST_F(PeerLinkTest, StopReturnsOnlyOnceNoHandlerRuns) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> entered{false};
  std::atomic<bool> finished{false};
  auto listener = Listen([&](const Message& m) {
    entered = true;
    released.wait();
    finished = true;
    return m;
  });
  ASSERT_NE(listener, nullptr);
  auto client = PeerClient::Connect(Address(*listener), client_tls_);
  ASSERT_OK(client);
  auto pending = std::async(std::launch::async, [&] {
    return (*client)->Call(Message{"t", 1, 1, "x"}, 120s);
  });
  while (!entered) std::this_thread::yield();
  auto stopped = std::async(std::launch::async, [&] {
    listener->Stop();
    return finished.load();
  });
  // Stop cannot return while the handler is held; give a Stop that does not
  // wait time to show it (this only bounds how soon a wrong Stop is caught).
  EXPECT_EQ(stopped.wait_for(1s), std::future_status::timeout);
  release.set_value();
  EXPECT_TRUE(stopped.get()) << "Stop returned while a handler still ran";
  (void)pending.get();
}

}  // namespace
}  // namespace silo::cluster
