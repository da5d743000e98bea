// In-process tests of the transport on plain TCP (the operator listener's
// mode): the bounded handler pool, the standard headers, streamed request and
// response bodies.
#include "http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
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
  timeval limit{30, 0};  // a server that never answers fails the test, not hangs it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
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

// A connected client socket for tests that send in pieces. Reads give up
// after 30 s, so a server that never answers (or never closes) fails the
// test instead of hanging it.
int Connect(unsigned short port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval limit{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads until the server closes the connection.
std::string ReadToClose(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// Byte i of the test pattern: not periodic in 64 KiB, so a piece sent twice
// or out of order changes the digest.
char PatternByte(uint64_t i) { return static_cast<char>((i * 2654435761u) >> 13); }

uint64_t Fnv(std::string_view bytes, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string Pattern(uint64_t n) {
  std::string s(n, '\0');
  for (uint64_t i = 0; i < n; ++i) s[i] = PatternByte(i);
  return s;
}

// Serves `size` pattern bytes; fails after `fail_after` pieces when set.
class PatternSource : public BodySource {
 public:
  explicit PatternSource(int fail_after = -1) : fail_after_(fail_after) {}
  Status Read(std::span<char> out) override {
    if (fail_after_ >= 0 && pieces_++ >= fail_after_) return DataLoss("chunk failed to open");
    for (char& c : out) c = PatternByte(next_++);
    return Status::Ok();
  }

 private:
  int fail_after_;
  int pieces_ = 0;
  uint64_t next_ = 0;
};

// /up* streams (the handler reads 64 KiB at a time, or nothing for
// /up-refuse); /down* answers with a streamed body; /cache sets its own
// Cache-Control.
class StreamDispatcher : public Dispatcher {
 public:
  size_t BodyLimit(std::string_view, std::string_view target) const override {
    return target.starts_with("/up") ? kStreamed : 1024;
  }
  Response Handle(const Request& r) override {
    if (r.path == "/up-refuse") return Problem(413, "file larger than the field allows", "");
    if (r.path == "/up") {
      EXPECT_TRUE(r.body.empty());
      std::vector<char> piece(64 * 1024);
      uint64_t total = 0, h = Fnv("");
      for (;;) {
        auto n = r.body_stream->Read(piece);
        if (!n.ok()) {
          last_failure = n.status().code();
          return Problem(408, "stalled", "");
        }
        if (*n == 0) break;
        total += *n;
        h = Fnv(std::string_view(piece.data(), *n), h);
      }
      return Json(200,
                  "{\"bytes\":" + std::to_string(total) + ",\"fnv\":" + std::to_string(h) + "}");
    }
    if (r.path.starts_with("/down")) {
      Response res;
      res.content_type = "application/octet-stream";
      res.source = std::make_shared<PatternSource>(r.path == "/down-broken" ? 2 : -1);
      res.source_size = 1024 * 1024 + 5;
      return res;
    }
    Response res = Json(200, "{}");
    res.headers.emplace_back("Cache-Control", "private, max-age=60");
    res.headers.emplace_back("Content-Security-Policy", "sandbox");
    return res;
  }
  std::atomic<StatusCode> last_failure{StatusCode::kOk};
};

std::string UploadHead(uint64_t length, std::string_view path = "/up") {
  return "POST " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

TEST(ServerStreamTest, AStreamedBodyArrivesWholeAndInOrder) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  const std::string body = Pattern(3 * 64 * 1024 + 777);  // pieces that are not chunk-sized
  std::string answer = Exchange(*port, UploadHead(body.size()) + body);
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("{\"bytes\":" + std::to_string(body.size()) +
                        ",\"fnv\":" + std::to_string(Fnv(body)) + "}"),
            std::string::npos)
      << answer;
  // An empty body reads as 0 at once.
  answer = Exchange(*port, UploadHead(0));
  EXPECT_NE(answer.find("{\"bytes\":0,"), std::string::npos) << answer;
  server.Stop();
}

TEST(ServerStreamTest, AStreamedRouteWithoutContentLengthGets411) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string answer = Exchange(*port,
                                "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 411 Length Required", 0), 0u) << answer;
  answer = Exchange(*port, "POST /up HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 411", 0), 0u) << answer;
  EXPECT_EQ(d.last_failure.load(), StatusCode::kOk);  // the handler never ran
  server.Stop();
}

TEST(ServerStreamTest, AStalledBodyIsDroppedAndAMovingOneSurvives) {
  StreamDispatcher d;
  Metrics m;
  ServerOptions o = PlainOptions();
  o.progress_timeout = std::chrono::milliseconds(400);
  Server server(o, &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  // Half the body, then nothing: the client never sends more, so only the
  // progress deadline can end the request.
  const std::string body = Pattern(200 * 1024);
  int fd = Connect(*port);
  ASSERT_GE(fd, 0);
  SendAll(fd, UploadHead(body.size()) + body.substr(0, 100 * 1024));
  std::string answer = ReadToClose(fd);
  // The deadline closes the socket before the handler sees its read fail.
  for (int i = 0; i < 3000 && d.last_failure.load() == StatusCode::kOk; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(d.last_failure.load(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(answer.find("\"bytes\""), std::string::npos) << answer;
  EXPECT_NE(m.Render().find("reason=\"timeout\""), std::string::npos);

  // Slow but moving: 8 KiB every 20 ms, each 64 KiB piece well inside a
  // progress deadline of 5 s, the whole body (about 0.5 s) much longer than
  // the 400 ms that killed the stalled one above only because it stalled.
  d.last_failure = StatusCode::kOk;
  server.Stop();
  o.progress_timeout = std::chrono::milliseconds(5000);
  o.read_timeout = std::chrono::milliseconds(400);
  Server moving(o, &d, &m);
  port = moving.Start();
  ASSERT_OK(port);
  fd = Connect(*port);
  ASSERT_GE(fd, 0);
  SendAll(fd, UploadHead(body.size()));
  for (size_t at = 0; at < body.size(); at += 8 * 1024) {
    SendAll(fd, std::string_view(body).substr(at, 8 * 1024));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  answer = ReadToClose(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("\"fnv\":" + std::to_string(Fnv(body))), std::string::npos) << answer;
  EXPECT_EQ(d.last_failure.load(), StatusCode::kOk);
  moving.Stop();
}

TEST(ServerStreamTest, ABodyThatEndsEarlyFailsTheRead) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  int fd = Connect(*port);
  ASSERT_GE(fd, 0);
  SendAll(fd, UploadHead(100 * 1024) + Pattern(1000));
  shutdown(fd, SHUT_WR);  // the client is done sending, 1,000 bytes short
  std::string answer = ReadToClose(fd);
  EXPECT_EQ(d.last_failure.load(), StatusCode::kUnavailable);
  EXPECT_EQ(answer.find("\"bytes\""), std::string::npos) << answer;
  server.Stop();
}

TEST(ServerStreamTest, ARefusalWithoutReadingDrainsASmallBodyAndClosesOnALargeOne) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  // Up to 8 MiB: drained (the client reads the answer after sending it
  // all), and a second request on the same connection is served.
  const std::string small = Pattern(3 * 1024 * 1024);
  std::string two =
      "POST /up-refuse HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(small.size()) +
      "\r\n\r\n" + small + "GET /cache HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  std::string answer = Exchange(*port, two);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_NE(answer.find("HTTP/1.1 200"), std::string::npos) << answer;
  // Large, announced with Expect: the answer comes without a 100 Continue,
  // no byte of the body is awaited, and the connection ends.
  int fd = Connect(*port);
  ASSERT_GE(fd, 0);
  SendAll(fd,
          "POST /up-refuse HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
          "Content-Length: 10000000000\r\n\r\n");
  answer = ReadToClose(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  server.Stop();
}

TEST(ServerStreamTest, ExpectContinueIsAnsweredWhenTheHandlerReads) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  int fd = Connect(*port);
  ASSERT_GE(fd, 0);
  const std::string body = Pattern(5000);
  SendAll(fd,
          "POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nExpect: 100-continue\r\n"
          "Content-Length: 5000\r\n\r\n");
  // Nothing is sent until the interim answer arrives.
  std::string interim;
  char c;
  while (interim.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1) interim += c;
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, body);
  std::string answer = ReadToClose(fd);
  EXPECT_NE(answer.find("\"fnv\":" + std::to_string(Fnv(body))), std::string::npos) << answer;
  server.Stop();
}

TEST(ServerStreamTest, AStreamedAnswerArrivesWholeOrVisiblyShort) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string answer =
      Exchange(*port, "GET /down HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  size_t split = answer.find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos);
  const std::string head = answer.substr(0, split);
  EXPECT_NE(head.find("Content-Length: 1048581"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Type: application/octet-stream"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Content-Type-Options: nosniff"), std::string::npos) << head;
  EXPECT_EQ(answer.substr(split + 4), Pattern(1024 * 1024 + 5));
  // A piece that fails to read ends the connection: fewer bytes than the
  // Content-Length, never a wrong byte.
  answer = Exchange(*port, "GET /down-broken HTTP/1.1\r\nHost: t\r\n\r\n");
  split = answer.find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos);
  const std::string got = answer.substr(split + 4);
  EXPECT_EQ(got.size(), 2u * 64 * 1024);
  EXPECT_EQ(got, Pattern(got.size()));
  server.Stop();
}

TEST(ServerTest, AnswersToHeadCarryNoBodySoTheNextAnswerParses) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string answer = Exchange(*port,
                                "HEAD /cache HTTP/1.1\r\nHost: t\r\n\r\n"
                                "GET /cache HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  // The first answer declares the body's length and ends at its header; the
  // second starts right there.
  size_t first_end = answer.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << answer;
  EXPECT_NE(answer.substr(0, first_end).find("Content-Length: 2"), std::string::npos) << answer;
  EXPECT_EQ(answer.substr(first_end + 4, 15), "HTTP/1.1 200 OK") << answer;
  server.Stop();
}

TEST(ServerStreamTest, AnAnswerReplacesAStandardHeaderInsteadOfAddingASecond) {
  StreamDispatcher d;
  Metrics m;
  Server server(PlainOptions(), &d, &m);
  auto port = server.Start();
  ASSERT_OK(port);
  std::string answer =
      Exchange(*port, "GET /cache HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_NE(answer.find("Cache-Control: private, max-age=60\r\n"), std::string::npos) << answer;
  EXPECT_EQ(answer.find("no-store"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Content-Security-Policy: sandbox\r\n"), std::string::npos) << answer;
  EXPECT_EQ(answer.find("frame-ancestors"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Strict-Transport-Security"), std::string::npos) << answer;
  server.Stop();
}

}  // namespace
}  // namespace silo::http
