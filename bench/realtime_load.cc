// Load generator for `make bench-realtime` (bench/realtime_bench.sh): real
// TLS WebSocket clients of a running `silo serve`, on one thread beside the
// server. Modes:
//   deliver  N subscribers join broadcast:bench; publishers (their own
//            connections) publish 200-byte messages carrying their send
//            time, in a closed loop (at most --window messages not yet seen
//            by every reading subscriber); prints deliveries/s and the
//            publish-to-delivery latency p50/p99 over --seconds. With
//            --stall, one subscriber stops reading after it joined. With
//            --records 1, the subscribers join records:bench instead and one
//            writer creates records over HTTPS, one at a time once every
//            subscriber saw the last: create-to-delivery latency.
//   idle     N connections join (--parallel at a time) and stay; prints
//            READY, then holds them until stdin closes (the script reads the
//            server's RSS).
//   connect  N connections connect, authenticate and join as fast as the
//            server takes them (--parallel at a time); prints joins/s.
// Lines "RESULT k=v ..." are what the script reads.
#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Ws = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string slug = "bench";
  std::string token;
  std::string mode = "deliver";
  int conns = 1000;
  int publishers = 8;
  int window = 8;
  int seconds = 5;
  int parallel = 64;
  bool stall = false;
  // records: subscribers join records:bench and a writer creates records
  // over HTTPS (one keep-alive connection, one create at a time), each
  // carrying its send time: create-to-delivery latency.
  bool records = false;
};

struct State {
  Options o;
  int joined = 0;
  int failed = 0;
  int64_t published = 0;
  int64_t delivered = 0;  // to reading subscribers
  bool measuring = false;
  bool done = false;
  std::vector<double> latency_ms;
  Clock::time_point t0 = Clock::now();
};

int64_t NowNs(const State& s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - s.t0).count();
}

asio::awaitable<std::unique_ptr<Ws>> Open(State& s, ssl::context& tls) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(s.o.host, s.o.port, kTuple);
  if (rec) co_return nullptr;
  auto ws = std::make_unique<Ws>(ex, tls);
  auto [cec, ep] = co_await beast::get_lowest_layer(*ws).async_connect(results, kTuple);
  if (cec) co_return nullptr;
  beast::get_lowest_layer(*ws).socket().set_option(tcp::no_delay(true));
  auto [hec] = co_await ws->next_layer().async_handshake(ssl::stream_base::client, kTuple);
  if (hec) co_return nullptr;
  beast::get_lowest_layer(*ws).expires_never();
  ws->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  const std::string auth = "Bearer " + s.o.token;
  ws->set_option(websocket::stream_base::decorator(
      [auth](websocket::request_type& r) { r.set(beast::http::field::authorization, auth); }));
  auto [wec] = co_await ws->async_handshake(s.o.host, "/t/" + s.o.slug + "/api/realtime", kTuple);
  if (wec) co_return nullptr;
  ws->text(true);
  std::string sub = s.o.records ? R"({"type":"subscribe","id":"s","channel":"records:bench"})"
                                : R"({"type":"subscribe","id":"s","channel":"broadcast:bench"})";
  auto [sec, sn] = co_await ws->async_write(asio::buffer(sub), kTuple);
  if (sec) co_return nullptr;
  for (;;) {  // until the ack
    beast::flat_buffer b;
    auto [ec, n] = co_await ws->async_read(b, kTuple);
    if (ec) co_return nullptr;
    if (beast::buffers_to_string(b.data()).find(R"("type":"ack")") != std::string::npos) break;
  }
  co_return ws;
}

asio::awaitable<void> Subscriber(State& s, ssl::context& tls, bool stalled,
                                 std::vector<std::unique_ptr<Ws>>* keep) {
  auto ws = co_await Open(s, tls);
  if (!ws) {
    ++s.failed;
    co_return;
  }
  ++s.joined;
  if (stalled || s.o.mode != "deliver") {
    keep->push_back(std::move(ws));  // held open, never read
    co_return;
  }
  beast::flat_buffer b;
  while (!s.done) {
    b.clear();
    auto [ec, n] = co_await ws->async_read(b, kTuple);
    if (ec) {
      ++s.failed;
      co_return;
    }
    std::string text = beast::buffers_to_string(b.data());
    size_t at = text.find(R"("ts":)");
    if (at == std::string::npos) continue;
    ++s.delivered;
    if (s.measuring) {
      const char* digits = text.c_str() + at + 5;
      if (*digits == '"') ++digits;  // a record's ts is a string field
      int64_t ts = std::strtoll(digits, nullptr, 10);
      s.latency_ms.push_back((NowNs(s) - ts) / 1e6);
    }
  }
  keep->push_back(std::move(ws));
}

asio::awaitable<void> Publisher(State& s, ssl::context& tls, int readers) {
  auto ws = co_await Open(s, tls);
  if (!ws) {
    ++s.failed;
    co_return;
  }
  auto ex = co_await asio::this_coro::executor;
  // Acks are read and dropped, so the publisher's own queue never fills.
  asio::co_spawn(
      ex,
      [&s, w = ws.get()]() -> asio::awaitable<void> {
        beast::flat_buffer b;
        while (!s.done) {
          b.clear();
          auto [ec, n] = co_await w->async_read(b, kTuple);
          if (ec) co_return;
        }
      },
      asio::detached);
  const std::string pad(150, 'x');
  asio::steady_timer wait(ex);
  while (!s.done) {
    // Closed loop: at most `window` messages ahead of the slowest reader.
    if (readers > 0 && s.published - s.delivered / readers >= s.o.window) {
      wait.expires_after(std::chrono::microseconds(200));
      co_await wait.async_wait(kTuple);
      continue;
    }
    ++s.published;
    std::string m = R"({"type":"publish","id":"p","channel":"broadcast:bench","event":"m",)"
                    R"("payload":{"ts":)" +
                    std::to_string(NowNs(s)) + R"(,"pad":")" + pad + R"("}})";
    auto [ec, n] = co_await ws->async_write(asio::buffer(m), kTuple);
    if (ec) {
      ++s.failed;
      co_return;
    }
  }
  beast::error_code ignored;
  beast::get_lowest_layer(*ws).socket().close(ignored);
}

// Creates records one at a time over one HTTPS keep-alive connection, each
// with its send time, after every reading subscriber saw the last one.
asio::awaitable<void> Writer(State& s, ssl::context& tls, int readers) {
  namespace http = beast::http;
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(s.o.host, s.o.port, kTuple);
  beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
  auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(results, kTuple);
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kTuple);
  if (rec || cec || hec) {
    ++s.failed;
    co_return;
  }
  asio::steady_timer wait(ex);
  beast::flat_buffer buffer;
  while (!s.done) {
    if (s.published * readers > s.delivered) {  // the last one not yet everywhere
      wait.expires_after(std::chrono::microseconds(100));
      co_await wait.async_wait(kTuple);
      continue;
    }
    ++s.published;
    http::request<http::string_body> req{http::verb::post,
                                         "/t/" + s.o.slug + "/api/collections/bench/records", 11};
    req.set(http::field::host, s.o.host);
    req.set(http::field::authorization, "Bearer " + s.o.token);
    req.set(http::field::content_type, "application/json");
    req.body() = R"({"ts":")" + std::to_string(NowNs(s)) + R"("})";
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, kTuple);
    http::response<http::string_body> res;
    auto [rec2, rn] = co_await http::async_read(stream, buffer, res, kTuple);
    if (wec || rec2 || res.result_int() != 201) {
      std::fprintf(stderr, "create failed: %d\n", res.result_int());
      ++s.failed;
      co_return;
    }
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int main(int argc, char** argv) {
  State s;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      s.o.port = v;
    else if (k == "--slug")
      s.o.slug = v;
    else if (k == "--mode")
      s.o.mode = v;
    else if (k == "--conns")
      s.o.conns = std::stoi(v);
    else if (k == "--publishers")
      s.o.publishers = std::stoi(v);
    else if (k == "--window")
      s.o.window = std::stoi(v);
    else if (k == "--seconds")
      s.o.seconds = std::stoi(v);
    else if (k == "--parallel")
      s.o.parallel = std::stoi(v);
    else if (k == "--stall")
      s.o.stall = v == "1";
    else if (k == "--records")
      s.o.records = v == "1";
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  // The token comes from the environment, never the command line.
  if (const char* t = std::getenv("BENCH_TOKEN")) s.o.token = t;
  if (s.o.port.empty() || s.o.token.empty()) {
    std::cerr << "usage: BENCH_TOKEN=... realtime_load --port P [--mode deliver|idle|connect]\n";
    return 2;
  }
  asio::io_context ioc(1);
  ssl::context tls(ssl::context::tls_client);
  tls.set_verify_mode(ssl::verify_none);  // the development certificate
  std::vector<std::unique_ptr<Ws>> keep;
  const auto start = Clock::now();

  if (s.o.mode == "connect" || s.o.mode == "idle") {
    // --parallel connections in flight at a time.
    auto next = std::make_shared<int>(0);
    for (int w = 0; w < s.o.parallel; ++w) {
      asio::co_spawn(
          ioc,
          [&, next]() -> asio::awaitable<void> {
            while ((*next)++ < s.o.conns) co_await Subscriber(s, tls, true, &keep);
          },
          asio::detached);
    }
    ioc.run();
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (s.o.mode == "idle") {
      // Held (in `keep`) until stdin closes: the script reads the server's
      // RSS meanwhile.
      std::printf("%s %d\n", s.failed == 0 ? "READY" : "FAILED", s.joined);
      std::fflush(stdout);
      std::string line;
      std::getline(std::cin, line);
      return s.failed == 0 ? 0 : 1;
    }
    std::printf("RESULT joins_per_s=%.1f joined=%d failed=%d\n", s.joined / secs, s.joined,
                s.failed);
    return s.failed == 0 ? 0 : 1;
  }

  for (int i = 0; i < s.o.conns; ++i) {
    const bool stalled = s.o.stall && i == 0;
    asio::co_spawn(ioc, Subscriber(s, tls, stalled, &keep), asio::detached);
  }
  while (s.joined + s.failed < s.o.conns) ioc.run_for(std::chrono::milliseconds(50));
  if (s.failed > 0) {
    std::fprintf(stderr, "%d connections failed\n", s.failed);
    return 1;
  }
  const int readers = s.o.conns - (s.o.stall ? 1 : 0);
  if (s.o.records) {
    asio::co_spawn(ioc, Writer(s, tls, readers), asio::detached);
  } else {
    for (int p = 0; p < s.o.publishers; ++p) {
      asio::co_spawn(ioc, Publisher(s, tls, readers), asio::detached);
    }
  }
  ioc.run_for(std::chrono::seconds(1));  // warm-up
  s.measuring = true;
  const int64_t d0 = s.delivered;
  const auto m0 = Clock::now();
  ioc.run_for(std::chrono::seconds(s.o.seconds));
  const int64_t d1 = s.delivered;
  const double secs = std::chrono::duration<double>(Clock::now() - m0).count();
  s.measuring = false;
  s.done = true;
  std::printf("RESULT deliveries_per_s=%.0f p50_ms=%.2f p99_ms=%.2f failed=%d\n", (d1 - d0) / secs,
              Percentile(s.latency_ms, 0.5), Percentile(s.latency_ms, 0.99), s.failed);
  std::fflush(stdout);
  std::_Exit(0);  // the connections are dropped with the process
}
