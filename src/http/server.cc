// The only translation unit that includes Beast and Asio (compile-time budget).
#include "http/server.h"

#include <openssl/ssl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <latch>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "base/mutex.h"
#include "http/metrics.h"
#include "http/to_request.h"

namespace silo::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;

// TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD ciphers only.
// TLS 1.3 suites are all AEAD with forward secrecy; OpenSSL's defaults stand.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Applied to every response, errors included (ASVS 14.4). The API serves no
// HTML, so the CSP forbids everything; HSTS is two years.
constexpr std::pair<const char*, const char*> kSecurityHeaders[] = {
    {"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy",
     "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
    {"X-Frame-Options", "DENY"},
    {"Cross-Origin-Resource-Policy", "same-origin"},
    {"Cache-Control", "no-store"},
};

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

Result<std::shared_ptr<ssl::context>> MakeTlsContext(const std::string& cert,
                                                     const std::string& key) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use | ssl::context::no_compression);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return Internal("TLS cipher list rejected");
  }
  // Why no tickets: a long-lived ticket key would undo forward secrecy, and
  // resumption state is one more secret in memory. SSL_OP_NO_TICKET alone
  // stops TLS 1.2 tickets; TLS 1.3 would still send stateful tickets, so none
  // are sent at all (num_tickets 0) and no session is cached.
  SSL_CTX_set_options(native,
                      SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(native, 0);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec) return FailedPrecondition("cannot load TLS certificate " + cert);
  ctx->use_private_key_file(key, ssl::context::pem, ec);
  if (ec) return FailedPrecondition("cannot load TLS key " + key);
  if (SSL_CTX_check_private_key(native) != 1) {
    return FailedPrecondition("TLS key does not match the certificate");
  }
  return ctx;
}

// Per-connection state shared with Stop(). Touched only on the connection's
// strand (Stop posts there), so no lock is needed for its fields.
struct Connection {
  explicit Connection(asio::any_io_executor ex) : executor(std::move(ex)) {}
  asio::any_io_executor executor;
  beast::tcp_stream* tcp = nullptr;  // null once the connection has ended
  bool busy = false;                 // a request is being read, handled or answered
  std::string peer;                  // the peer's address (per-client cap); set at accept
};

// What a failed read of a request becomes: a metric (`rejection`, null for
// none) and an answer (`status` 0: none; the peer left or went quiet).
struct ReadFailure {
  const char* rejection = nullptr;
  int status = 0;
  const char* detail = "";
};

ReadFailure ClassifyHeaderError(const boost::system::error_code& ec, bool got_some) {
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::error::operation_aborted || ec == ssl::error::stream_truncated ||
      ec == asio::error::connection_reset) {
    return {};
  }
  if (ec == beast::error::timeout) return {got_some ? "timeout" : nullptr, 0, ""};
  if (ec == bhttp::error::header_limit) {
    return {"header_too_large", 431, "request header fields too large"};
  }
  if (ec == bhttp::error::body_limit) return {"body_too_large", 413, "request body too large"};
  return {"malformed", 400, "malformed request"};
}

ReadFailure ClassifyBodyError(const boost::system::error_code& ec) {
  if (ec == bhttp::error::body_limit) return {"body_too_large", 413, "request body too large"};
  if (ec == beast::error::timeout) return {"timeout", 0, ""};
  if (ec == asio::error::operation_aborted || ec == asio::error::eof ||
      ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) {
    return {};
  }
  return {"malformed", 400, "malformed request"};
}

}  // namespace

class Server::Impl {
 public:
  Impl(ServerOptions o, Dispatcher* d, Metrics* m)
      : opts_(std::move(o)),
        dispatcher_(d),
        metrics_(m),
        ioc_(static_cast<int>(opts_.io_threads)),
        pool_(opts_.handler_threads),
        slow_pool_(opts_.slow_threads),
        accept_strand_(asio::make_strand(ioc_)),
        acceptor_(accept_strand_) {}

  ~Impl() { Stop(); }

  // Each slow-pool thread lowers its own CPU priority (Linux nice is per
  // thread), so password hashing yields the cores to other requests. The
  // latch holds every task until all have started: one per thread.
  void LowerSlowPoolPriority() {
    auto all_started = std::make_shared<std::latch>(opts_.slow_threads);
    for (unsigned i = 0; i < opts_.slow_threads; ++i) {
      asio::post(slow_pool_, [all_started, nice = opts_.slow_nice] {
        all_started->arrive_and_wait();
        (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice);
      });
    }
  }

  Result<unsigned short> Start() {
    if (opts_.tls) {
      Status s = ReloadTls();
      if (!s.ok()) return s;
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(opts_.host, ec);
    if (ec) return InvalidArgument("bad listen address " + opts_.host);
    tcp::endpoint ep(addr, opts_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Unavailable("cannot listen on " + opts_.host + ":" + std::to_string(opts_.port) +
                         ": " + ec.message());
    }
    unsigned short port = acceptor_.local_endpoint().port();
    asio::co_spawn(accept_strand_, AcceptLoop(), asio::detached);
    for (unsigned i = 0; i < opts_.io_threads; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    LowerSlowPoolPriority();
    started_ = true;
    return port;
  }

  Status ReloadTls() {
    auto ctx = MakeTlsContext(opts_.tls_cert_file, opts_.tls_key_file);
    if (!ctx.ok()) return ctx.status();
    MutexLock lock(tls_mutex_);
    tls_ = std::move(*ctx);
    return Status::Ok();
  }

  void Stop() {
    if (!started_ || stopped_.exchange(true)) return;
    stopping_ = true;
    asio::post(accept_strand_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    auto deadline = Clock::now() + opts_.drain_timeout;
    while (open_.load() > 0 && Clock::now() < deadline) {
      CloseIdleConnections();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (open_.load() > 0) {
      log::Warn("drain timeout: cancelling open connections",
                {{"listener", opts_.name}, {"open", static_cast<long long>(open_.load())}});
    }
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    pool_.join();
    slow_pool_.join();
  }

  size_t open_connections() const { return open_.load(); }

 private:
  void CloseIdleConnections() {
    std::vector<std::shared_ptr<Connection>> conns;
    {
      MutexLock lock(conns_mutex_);
      conns.assign(conns_.begin(), conns_.end());
    }
    for (auto& c : conns) {
      asio::post(c->executor, [c] {
        if (c->tcp != nullptr && !c->busy) {
          boost::system::error_code ec;
          c->tcp->socket().shutdown(tcp::socket::shutdown_both, ec);
          c->tcp->socket().close(ec);
        }
      });
    }
  }

  awaitable<void> AcceptLoop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(ioc_), kTuple);
      if (stopping_) co_return;
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        // Out of descriptors and the like: back off instead of spinning.
        asio::steady_timer t(accept_strand_, std::chrono::milliseconds(50));
        co_await t.async_wait(kTuple);
        continue;
      }
      if (open_.load() >= opts_.max_connections) {
        metrics_->RecordRejection("connection_limit");
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      boost::system::error_code peer_ec;
      std::string peer = socket.remote_endpoint(peer_ec).address().to_string();
      auto conn = std::make_shared<Connection>(socket.get_executor());
      conn->peer = peer;
      {
        MutexLock lock(conns_mutex_);
        // One address cannot take every slot: its own cap comes first.
        size_t& mine = per_client_[peer];
        if (mine >= opts_.max_connections_per_client) {
          if (mine == 0) per_client_.erase(peer);
          metrics_->RecordRejection("client_connection_limit");
          boost::system::error_code ignored;
          socket.close(ignored);
          continue;
        }
        ++mine;
        conns_.insert(conn);
      }
      ++open_;
      std::shared_ptr<ssl::context> tls;
      if (opts_.tls) {
        MutexLock lock(tls_mutex_);
        tls = tls_;
      }
      auto ex = socket.get_executor();
      asio::co_spawn(
          ex, RunConnection(std::move(socket), std::move(tls), conn),
          [this, conn](std::exception_ptr e) {
            if (e) {
              try {
                std::rethrow_exception(e);
              } catch (const std::exception& ex) {
                log::Error("connection failed", {{"listener", opts_.name}, {"cause", ex.what()}});
              }
            }
            {
              MutexLock lock(conns_mutex_);
              conns_.erase(conn);
              auto it = per_client_.find(conn->peer);
              if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
            }
            --open_;
          });
    }
  }

  awaitable<void> RunConnection(tcp::socket socket, std::shared_ptr<ssl::context> tls,
                                std::shared_ptr<Connection> conn) {
    boost::system::error_code ec;
    std::string client_ip = socket.remote_endpoint(ec).address().to_string();
    socket.set_option(tcp::no_delay(true), ec);
    if (!opts_.tls) {
      beast::tcp_stream stream(std::move(socket));
      conn->tcp = &stream;
      co_await ServeRequests(stream, stream, conn, client_ip);
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      conn->tcp = nullptr;
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls);
    beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
    conn->tcp = &tcp_layer;
    tcp_layer.expires_after(opts_.read_timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
    if (hec) {
      metrics_->RecordRejection("tls_handshake");
      conn->tcp = nullptr;
      co_return;
    }
    co_await ServeRequests(stream, tcp_layer, conn, client_ip);
    if (tcp_layer.socket().is_open()) {
      tcp_layer.expires_after(std::chrono::seconds(1));
      co_await stream.async_shutdown(kTuple);
    }
    conn->tcp = nullptr;
  }

  // Counts a failed read and answers it when it has an answer.
  template <class Stream>
  awaitable<void> Fail(const ReadFailure& f, Stream& stream, beast::tcp_stream& tcp_layer,
                       const std::string& request_id, const std::string& client_ip,
                       Clock::time_point start) {
    if (f.rejection != nullptr) metrics_->RecordRejection(f.rejection);
    if (f.status != 0) {
      co_await WriteError(stream, tcp_layer, f.status, f.detail, request_id, client_ip, start);
    }
  }

  template <class Stream>
  awaitable<void> ServeRequests(Stream& stream, beast::tcp_stream& tcp_layer,
                                std::shared_ptr<Connection> conn, const std::string& client_ip) {
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
      if (stopping_) co_return;
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opts_.max_header_bytes));
      parser.body_limit(dispatcher_max_body());
      tcp_layer.expires_after(first ? opts_.read_timeout : opts_.idle_timeout);
      first = false;
      auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      const auto start = Clock::now();
      std::string request_id = NewRequestId();
      if (ec) {
        co_await Fail(ClassifyHeaderError(ec, parser.got_some() || buffer.size() > 0), stream,
                      tcp_layer, request_id, client_ip, start);
        co_return;
      }
      conn->busy = true;
      auto& header = parser.get();
      if (std::string why = FramingProblem(header.base()); !why.empty()) {
        // Where this request's body ends is ambiguous: answering and reading
        // on would let the bytes after it run as a second, smuggled request.
        metrics_->RecordRejection("malformed");
        co_await WriteError(stream, tcp_layer, 400, why, request_id, client_ip, start);
        co_return;
      }
      size_t limit = dispatcher_->BodyLimit(
          std::string_view(header.method_string().data(), header.method_string().size()),
          std::string_view(header.target().data(), header.target().size()));
      auto content_length = parser.content_length();
      if (limit == Dispatcher::kNoRoute) {
        // No route takes this request: the answer (404, 405, honeypot) does
        // not depend on the body, whatever its size. A small declared body is
        // read and dropped so the connection can go on; a larger or chunked
        // one is not read at all, and the connection ends with the answer.
        constexpr std::uint64_t kDrainBytes = Dispatcher::kUnroutedDrainBytes;
        if (parser.chunked() || content_length.value_or(0) > kDrainBytes) {
          auto msg = parser.release();
          Request req = ToRequest(msg, client_ip, request_id);
          Response res = co_await Dispatch(std::move(req));
          co_await WriteResponse(stream, tcp_layer, res, request_id, false, msg, client_ip, start);
          co_return;
        }
        limit = kDrainBytes;
      }
      if (content_length && *content_length > limit) {
        metrics_->RecordRejection("body_too_large");
        co_await WriteError(stream, tcp_layer, 413, "request body too large", request_id, client_ip,
                            start);
        co_return;
      }
      parser.body_limit(limit);
      tcp_layer.expires_after(opts_.read_timeout);
      auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
      if (bec) {
        co_await Fail(ClassifyBodyError(bec), stream, tcp_layer, request_id, client_ip, start);
        co_return;
      }
      auto msg = parser.release();
      Request req = ToRequest(msg, client_ip, request_id);
      bool keep_alive = msg.keep_alive();
      Response res = co_await Dispatch(std::move(req));
      if (res.delay_ms > 0 && !stopping_) {
        // A tarpit for refused clients: the answer waits on a timer, holding
        // no thread, so a flood of refused requests costs little CPU.
        asio::steady_timer t(co_await asio::this_coro::executor,
                             std::chrono::milliseconds(res.delay_ms));
        co_await t.async_wait(kTuple);
      }
      keep_alive = keep_alive && !stopping_;
      bool ok = co_await WriteResponse(stream, tcp_layer, res, request_id, keep_alive, msg,
                                       client_ip, start);
      conn->busy = false;
      if (!ok || !keep_alive) co_return;
    }
  }

  std::uint64_t dispatcher_max_body() const {
    // The parser's ceiling before the route is known; routes only lower it.
    return std::numeric_limits<std::uint32_t>::max();
  }

  awaitable<Response> Dispatch(Request req) {
    const bool slow = dispatcher_->Slow(req.method, req.target);
    std::atomic<size_t>& queued = slow ? slow_queued_ : queued_;
    const size_t capacity =
        slow ? opts_.slow_threads + opts_.slow_queue : opts_.handler_threads + opts_.handler_queue;
    if (queued.fetch_add(1) >= capacity) {
      --queued;
      metrics_->RecordRejection(slow ? "password_pool_full" : "overloaded");
      Response busy = Problem(503, "server busy, retry later", req.request_id);
      busy.headers.emplace_back("Retry-After", "1");
      // A full password pool means a login flood: slow the flood down.
      if (slow) busy.delay_ms = opts_.slow_reject_delay_ms;
      co_return busy;
    }
    Response res = co_await asio::co_spawn(
        slow ? slow_pool_.get_executor() : pool_.get_executor(),
        [this, &req]() -> awaitable<Response> {
          Response r;
          try {
            r = dispatcher_->Handle(req);
          } catch (const std::exception& e) {
            log::Error("handler threw", {{"request_id", req.request_id}, {"cause", e.what()}});
            r = Problem(500, "internal error", req.request_id);
          }
          co_return r;
        },
        use_awaitable);
    --queued;
    co_return res;
  }

  template <class Stream>
  awaitable<void> WriteError(Stream& stream, beast::tcp_stream& tcp_layer, int status,
                             std::string_view detail, const std::string& request_id,
                             const std::string& client_ip, Clock::time_point start) {
    bhttp::request<bhttp::string_body> none;
    none.method_string("-");
    Response res = Problem(status, detail, request_id);
    co_await WriteResponse(stream, tcp_layer, res, request_id, false, none, client_ip, start);
  }

  template <class Stream>
  awaitable<bool> WriteResponse(Stream& stream, beast::tcp_stream& tcp_layer, const Response& r,
                                const std::string& request_id, bool keep_alive,
                                const bhttp::request<bhttp::string_body>& req,
                                const std::string& client_ip, Clock::time_point start) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
    // The status line's reason is the problem's title (Beast's own table
    // has RFC 7231's older names, "Payload Too Large" for 413).
    if (std::string_view reason = StatusText(r.status); reason != "Error") res.reason(reason);
    std::string ctype = r.content_type;
    if (ctype.find("charset") == std::string::npos &&
        (ctype.find("json") != std::string::npos || ctype.rfind("text/", 0) == 0)) {
      ctype += "; charset=utf-8";
    }
    res.set(bhttp::field::content_type, ctype);
    for (const auto& [name, value] : kSecurityHeaders) res.set(name, value);
    res.set("X-Request-Id", request_id);
    for (const auto& [name, value] : r.headers) res.insert(name, value);
    res.keep_alive(keep_alive);
    res.body() = r.body;
    res.prepare_payload();
    tcp_layer.expires_after(opts_.read_timeout);
    auto [ec, n] = co_await bhttp::async_write(stream, res, kTuple);
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    metrics_->RecordRequest(opts_.name, r.route, r.status, secs);
    if (opts_.access_log) {
      std::string_view target(req.target().data(), req.target().size());
      std::string_view path = target.substr(0, target.find('?'));
      log::Info("request", {{"listener", opts_.name},
                            {"request_id", request_id},
                            {"method", std::string(req.method_string())},
                            {"path", path},
                            {"route", r.route},
                            {"status", r.status},
                            {"bytes", static_cast<long long>(r.body.size())},
                            {"duration_ms", secs * 1000.0},
                            {"client", client_ip}});
    }
    co_return !ec;
  }

  const ServerOptions opts_;
  Dispatcher* const dispatcher_;
  Metrics* const metrics_;
  asio::io_context ioc_;
  asio::thread_pool pool_;
  asio::thread_pool slow_pool_;
  asio::strand<asio::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;  // used only on accept_strand_
  std::vector<std::thread> threads_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> open_{0};
  std::atomic<size_t> queued_{0};
  std::atomic<size_t> slow_queued_{0};
  Mutex tls_mutex_;
  std::shared_ptr<ssl::context> tls_ GUARDED_BY(tls_mutex_);
  Mutex conns_mutex_;
  std::set<std::shared_ptr<Connection>> conns_ GUARDED_BY(conns_mutex_);
  std::unordered_map<std::string, size_t> per_client_ GUARDED_BY(conns_mutex_);
};

Server::Server(ServerOptions options, Dispatcher* dispatcher, Metrics* metrics)
    : impl_(std::make_unique<Impl>(std::move(options), dispatcher, metrics)) {}
Server::~Server() = default;
Result<unsigned short> Server::Start() { return impl_->Start(); }
Status Server::ReloadTls() { return impl_->ReloadTls(); }
void Server::Stop() { impl_->Stop(); }
size_t Server::open_connections() const { return impl_->open_connections(); }

}  // namespace silo::http
