// In-process tests of the transport on plain TCP (the operator listener's
// mode): the bounded handler pool and the standard headers.
#include "http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "base/status_matchers.h"
#include "http/metrics.h"

namespace silo::http {
namespace {

// Every request takes `delay`; counts how many ran.
class SlowDispatcher : public Dispatcher {
 public:
  explicit SlowDispatcher(std::chrono::milliseconds delay) : delay_(delay) {}
  size_t BodyLimit(std::string_view, std::string_view) const override { return 1024; }
  Response Handle(const Request& r) override {
    ++ran;
    std::this_thread::sleep_for(delay_);
    return Json(200, "{\"ok\":true}");
  }
  std::atomic<int> ran{0};

 private:
  std::chrono::milliseconds delay_;
};

std::string Exchange(unsigned short port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  send(fd, request.data(), request.size(), 0);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

ServerOptions PlainOptions() {
  ServerOptions o;
  o.name = "test";
  o.host = "127.0.0.1";
  o.port = 0;
  o.tls = false;
  o.access_log = false;
  o.io_threads = 2;
  return o;
}

TEST(ServerTest, FullHandlerPoolAnswers503InsteadOfQueueing) {
  SlowDispatcher d(std::chrono::milliseconds(400));
  Metrics m;
  ServerOptions o = PlainOptions();
  o.handler_threads = 1;
  o.handler_queue = 1;  // at most 2 requests in flight
  Server server(o, &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::vector<std::string> answers(6);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < answers.size(); ++i) {
    clients.emplace_back([&, i] {
      answers[i] = Exchange(*port, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    });
  }
  for (auto& t : clients) t.join();
  int ok = 0, busy = 0;
  for (const auto& a : answers) {
    if (a.rfind("HTTP/1.1 200", 0) == 0) ++ok;
    if (a.rfind("HTTP/1.1 503", 0) == 0) {
      ++busy;
      EXPECT_NE(a.find("Retry-After: 1"), std::string::npos);
      EXPECT_NE(a.find("application/problem+json"), std::string::npos);
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
  EXPECT_LE(d.ran.load(), 5);  // refused requests never reached the handler
  EXPECT_NE(m.Render().find("reason=\"overloaded\""), std::string::npos);
  server.Stop();
}

// "/slow" runs on the slow pool and sleeps; anything else answers at once.
class TwoLaneDispatcher : public Dispatcher {
 public:
  size_t BodyLimit(std::string_view, std::string_view) const override { return 1024; }
  bool Slow(std::string_view, std::string_view target) const override { return target == "/slow"; }
  Response Handle(const Request& r) override {
    if (r.path == "/slow") {
      ++slow_ran;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return Json(200, "{\"ok\":true}");
  }
  std::atomic<int> slow_ran{0};
};

TEST(ServerTest, AFullSlowPoolAnswers503FromATarpitAndOtherRequestsStillPass) {
  TwoLaneDispatcher d;
  Metrics m;
  ServerOptions o = PlainOptions();
  o.slow_threads = 1;
  o.slow_queue = 0;
  o.slow_reject_delay_ms = 300;
  Server server(o, &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string first, second;
  std::thread a([&] {
    first = Exchange(*port, "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  });
  while (d.slow_ran.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto t0 = std::chrono::steady_clock::now();
  second = Exchange(*port, "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  auto waited = std::chrono::steady_clock::now() - t0;
  // The fast lane is not blocked by the busy slow pool.
  auto t1 = std::chrono::steady_clock::now();
  std::string fast = Exchange(*port, "GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  auto fast_took = std::chrono::steady_clock::now() - t1;
  a.join();
  EXPECT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;
  EXPECT_EQ(second.rfind("HTTP/1.1 503", 0), 0u) << second;
  EXPECT_GE(waited, std::chrono::milliseconds(250));  // the tarpit
  EXPECT_EQ(fast.rfind("HTTP/1.1 200", 0), 0u) << fast;
  EXPECT_LT(fast_took, std::chrono::milliseconds(250));
  EXPECT_EQ(d.slow_ran.load(), 1);
  EXPECT_NE(m.Render().find("reason=\"password_pool_full\""), std::string::npos);
  server.Stop();
}

TEST(ServerTest, StopWaitsForInFlightRequest) {
  SlowDispatcher d(std::chrono::milliseconds(300));
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string answer;
  std::thread client([&] { answer = Exchange(*port, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"); });
  while (d.ran.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Stop();  // must not cut the running request off
  client.join();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_NE(answer.find("Strict-Transport-Security: max-age=63072000"), std::string::npos);
}

}  // namespace
}  // namespace silo::http
