// Node links over real mutual TLS on loopback.
#include "cluster/peer_link.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

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
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(listener->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
