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
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <future>
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
namespace websocket = boost::beast::websocket;
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
// HTML, so the CSP forbids everything, and `sandbox` makes an answer opened
// as a document (a navigation to a JSON URL) an opaque origin with no script
// (ASVS 5.0 3.2.1); HSTS is two years.
constexpr std::pair<const char*, const char*> kSecurityHeaders[] = {
    {"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy",
     "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"},
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

// The outgoing side of an upgraded connection: messages queue here from any
// thread and a writer coroutine on the connection's strand drains them.
// `bytes_` counts what is queued or being written: past the cap the queue is
// dropped and the connection closed as a slow consumer.
class Outbox : public MessageChannel, public std::enable_shared_from_this<Outbox> {
 public:
  Outbox(asio::any_io_executor strand, size_t cap) : strand_(strand), cap_(cap), wake_(strand) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }

  bool Send(std::shared_ptr<const std::string> message) override {
    MutexLock lock(mu_);
    if (closing_ || ended_) return false;
    if (bytes_ + message->size() > cap_) {
      queue_.clear();
      CloseLocked(kSlowConsumerCode, "slow consumer");
      slow_ = true;
      return false;
    }
    bytes_ += message->size();
    queue_.push_back(std::move(message));
    WakeLocked();
    return true;
  }

  void Close(int code, std::string_view reason) override {
    MutexLock lock(mu_);
    if (closing_ || ended_) return;
    CloseLocked(code, reason);
  }

  // What the writer does next, taken on the strand.
  struct Work {
    std::deque<std::shared_ptr<const std::string>> messages;
    bool close = false;  // after the messages: send the close
    bool end = false;    // the connection is over: stop
    int code = 0;
    std::string reason;
  };
  Work Take() {
    MutexLock lock(mu_);
    wake_pending_ = false;
    Work w;
    w.messages.swap(queue_);
    w.end = ended_;
    if (closing_ && !close_taken_) {
      close_taken_ = true;
      w.close = true;
      w.code = code_;
      w.reason = reason_;
    }
    return w;
  }
  void Written(size_t n) {
    MutexLock lock(mu_);
    bytes_ -= std::min(bytes_, n);
  }
  // The reader saw the end: Send is refused from now on.
  void End() {
    MutexLock lock(mu_);
    ended_ = true;
    WakeLocked();
  }
  bool closing() {
    MutexLock lock(mu_);
    return closing_;
  }
  bool slow() {
    MutexLock lock(mu_);
    return slow_;
  }
  // Parks the writer until something is queued, a close asked for or the
  // end seen. On the strand.
  awaitable<void> Wait() {
    {
      MutexLock lock(mu_);
      if (!queue_.empty() || ended_ || (closing_ && !close_taken_)) co_return;
    }
    wake_.expires_at(asio::steady_timer::time_point::max());
    co_await wake_.async_wait(kTuple);
  }

  static constexpr int kSlowConsumerCode = 4008;

 private:
  void CloseLocked(int code, std::string_view reason) REQUIRES(mu_) {
    closing_ = true;
    code_ = code;
    reason_ = std::string(reason.substr(0, 120));
    WakeLocked();
  }
  // The timer is touched only on the strand; one wake-up in flight at a time.
  void WakeLocked() REQUIRES(mu_) {
    if (wake_pending_) return;
    wake_pending_ = true;
    asio::post(strand_, [self = shared_from_this()] { self->wake_.cancel(); });
  }

  asio::any_io_executor strand_;
  const size_t cap_;
  asio::steady_timer wake_;
  Mutex mu_;
  std::deque<std::shared_ptr<const std::string>> queue_ GUARDED_BY(mu_);
  size_t bytes_ GUARDED_BY(mu_) = 0;
  bool wake_pending_ GUARDED_BY(mu_) = false;
  bool closing_ GUARDED_BY(mu_) = false;
  bool close_taken_ GUARDED_BY(mu_) = false;
  bool ended_ GUARDED_BY(mu_) = false;
  bool slow_ GUARDED_BY(mu_) = false;
  int code_ GUARDED_BY(mu_) = 1000;
  std::string reason_ GUARDED_BY(mu_);
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

// Whether the client waits for "100 Continue" before sending the body.
template <class Fields>
bool ExpectsContinue(const bhttp::header<true, Fields>& head) {
  auto it = head.find(bhttp::field::expect);
  return it != head.end() && beast::iequals(it->value(), "100-continue");
}

// Reads and drops the rest of `parser`'s body (up to its body limit) under
// the deadline the caller set. True when the body ended.
template <class Stream>
awaitable<bool> DropBody(Stream& stream, beast::flat_buffer& buffer,
                         bhttp::request_parser<bhttp::buffer_body>& parser) {
  std::vector<char> scratch(16 * 1024);
  while (!parser.is_done()) {
    parser.get().body().data = scratch.data();
    parser.get().body().size = scratch.size();
    auto [ec, n] = co_await bhttp::async_read_some(stream, buffer, parser, kTuple);
    if (ec && ec != bhttp::error::need_buffer) co_return false;
  }
  co_return true;
}

// BodyStream over a Beast parser. Read runs on a handler thread: each call
// hands one read to the connection's strand (where the connection's
// coroutine is parked, awaiting the handler) and waits for it.
template <class Stream>
class StreamedBody : public BodyStream {
 public:
  using Parser = bhttp::request_parser<bhttp::buffer_body>;
  using Outcome = std::pair<boost::system::error_code, size_t>;

  StreamedBody(Stream& stream, beast::tcp_stream& tcp, beast::flat_buffer& buffer, Parser& parser,
               uint64_t length, bool send_continue, std::chrono::milliseconds progress_timeout,
               const std::atomic<bool>& io_stopped, Metrics* metrics)
      : stream_(stream),
        tcp_(tcp),
        buffer_(buffer),
        parser_(parser),
        length_(length),
        send_continue_(send_continue),
        progress_timeout_(progress_timeout),
        io_stopped_(io_stopped),
        metrics_(metrics) {}

  uint64_t length() const override { return length_; }

  Result<size_t> Read(std::span<char> out) override {
    if (!failure_.ok()) return failure_;
    if (out.empty() || parser_.is_done()) return size_t{0};
    auto done = std::make_shared<std::promise<Outcome>>();
    auto outcome = done->get_future();
    asio::co_spawn(stream_.get_executor(), ReadInto(out), [done](std::exception_ptr e, Outcome r) {
      if (e) r.first = asio::error::operation_aborted;
      done->set_value(r);
    });
    // The strand stops running at a forced shutdown: never wait past it.
    while (outcome.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (io_stopped_.load()) return failure_ = Unavailable("the server is stopping");
    }
    auto [ec, n] = outcome.get();
    if (!ec) return n;
    // Counted before the handler hears of it, so that whatever the handler
    // does next happens after the count.
    if (ec == beast::error::timeout) {
      metrics_->RecordRejection("timeout");
      failure_ = DeadlineExceeded("the request body stalled");
    } else {
      metrics_->RecordRejection("body_incomplete");
      failure_ = Unavailable("the request body ended early");
    }
    return failure_;
  }

  const Status& failure() const { return failure_; }

  // On the strand, after the handler: reads and drops what the handler left
  // unread, when it is at most `limit` bytes. True when the body was read to
  // its end (the connection can go on).
  awaitable<bool> Drain(uint64_t limit, std::chrono::milliseconds timeout) {
    if (!failure_.ok()) co_return false;
    if (parser_.is_done()) co_return true;
    if (length_ - consumed_ > limit) co_return false;
    tcp_.expires_after(timeout);
    co_return co_await DropBody(stream_, buffer_, parser_);
  }

 private:
  awaitable<Outcome> ReadInto(std::span<char> out) {
    tcp_.expires_after(progress_timeout_);
    if (send_continue_) {
      send_continue_ = false;
      bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, 11};
      auto [ec, n] = co_await bhttp::async_write(stream_, go_on, kTuple);
      if (ec) co_return Outcome{ec, 0};
    }
    size_t got = 0;
    while (got < out.size() && !parser_.is_done()) {
      auto& body = parser_.get().body();
      body.data = out.data() + got;
      body.size = out.size() - got;
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buffer_, parser_, kTuple);
      got = out.size() - body.size;
      if (ec && ec != bhttp::error::need_buffer) {
        consumed_ += got;
        co_return Outcome{ec, got};
      }
    }
    consumed_ += got;
    co_return Outcome{{}, got};
  }

  Stream& stream_;
  beast::tcp_stream& tcp_;
  beast::flat_buffer& buffer_;
  Parser& parser_;
  const uint64_t length_;
  bool send_continue_;
  const std::chrono::milliseconds progress_timeout_;
  const std::atomic<bool>& io_stopped_;
  Metrics* const metrics_;
  uint64_t consumed_ = 0;
  Status failure_;
};

// Which pool runs a request's handler.
enum class Lane { kHandler, kSlow, kStream };

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
        stream_pool_(opts_.stream_threads),
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
    io_stopped_ = true;  // a handler waiting on a body read gives up
    for (auto& t : threads_) t.join();
    threads_.clear();
    pool_.join();
    slow_pool_.join();
    stream_pool_.join();
  }

  size_t open_connections() const { return open_.load(); }

 private:
  void CloseIdleConnections() {
    std::vector<std::shared_ptr<Connection>> conns;
    std::vector<std::shared_ptr<Outbox>> upgraded;
    {
      MutexLock lock(conns_mutex_);
      conns.assign(conns_.begin(), conns_.end());
      upgraded.assign(upgraded_.begin(), upgraded_.end());
    }
    for (auto& u : upgraded) u->Close(1001, "server stopping");
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
      // No body limit before the route is known: a streamed route takes
      // files of any size its handler admits. Each route sets its own below.
      parser.body_limit(boost::none);
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
      Exchange ex{request_id, client_ip, start};
      bool go_on = limit == Dispatcher::kStreamed
                       ? co_await ServeStreamed(stream, tcp_layer, buffer, parser, ex)
                       : co_await ServeBuffered(stream, tcp_layer, buffer, parser, limit, ex);
      conn->busy = false;
      if (!go_on) co_return;
    }
  }

  // What every answer to one request carries.
  struct Exchange {
    std::string request_id;
    std::string client_ip;
    Clock::time_point start;
  };

  // A request whose body is read whole before the handler runs. True when
  // the connection can take another request.
  template <class Stream>
  awaitable<bool> ServeBuffered(Stream& stream, beast::tcp_stream& tcp_layer,
                                beast::flat_buffer& buffer,
                                bhttp::request_parser<bhttp::string_body>& parser, size_t limit,
                                const Exchange& ex) {
    auto content_length = parser.content_length();
    if (limit == Dispatcher::kNoRoute) {
      // No route takes this request: the answer (404, 405, honeypot) does
      // not depend on the body, whatever its size. A small declared body is
      // read and dropped so the connection can go on; a larger or chunked
      // one is not read at all, and the connection ends with the answer.
      constexpr std::uint64_t kDrainBytes = Dispatcher::kUnroutedDrainBytes;
      if (parser.chunked() || content_length.value_or(0) > kDrainBytes) {
        auto msg = parser.release();
        Request req = ToRequest(msg, ex.client_ip, ex.request_id);
        co_await Answer(stream, tcp_layer, co_await Dispatch(std::move(req), Lane::kHandler), false,
                        msg.method_string(), msg.target(), ex);
        co_return false;
      }
      limit = kDrainBytes;
    }
    if (content_length && *content_length > limit) {
      metrics_->RecordRejection("body_too_large");
      co_await WriteError(stream, tcp_layer, 413, "request body too large", ex.request_id,
                          ex.client_ip, ex.start);
      co_return false;
    }
    parser.body_limit(limit);
    tcp_layer.expires_after(opts_.read_timeout);
    if (ExpectsContinue(parser.get().base()) && content_length.value_or(1) > 0) {
      bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, 11};
      auto [cec, cn] = co_await bhttp::async_write(stream, go_on, kTuple);
      if (cec) co_return false;
    }
    auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
    if (bec) {
      co_await Fail(ClassifyBodyError(bec), stream, tcp_layer, ex.request_id, ex.client_ip,
                    ex.start);
      co_return false;
    }
    auto msg = parser.release();
    Request req = ToRequest(msg, ex.client_ip, ex.request_id);
    const bool keep_alive = msg.keep_alive();
    const bool slow = dispatcher_->Slow(req.method, req.target);
    Response res = co_await Dispatch(std::move(req), slow ? Lane::kSlow : Lane::kHandler);
    if (res.upgrade != Upgrade::kNone && res.handler) {
      co_await ServeUpgraded(stream, tcp_layer, msg, std::move(res), ex);
      co_return false;
    }
    co_return co_await Answer(stream, tcp_layer, std::move(res), keep_alive, msg.method_string(),
                              msg.target(), ex);
  }

  // A streamed route (Dispatcher::kStreamed): the handler runs on the stream
  // pool as soon as the header is in and reads the body through a
  // StreamedBody, so no more than its buffer is ever in memory.
  template <class Stream>
  awaitable<bool> ServeStreamed(Stream& stream, beast::tcp_stream& tcp_layer,
                                beast::flat_buffer& buffer,
                                bhttp::request_parser<bhttp::string_body>& header_parser,
                                const Exchange& ex) {
    auto content_length = header_parser.content_length();
    if (header_parser.chunked() || !content_length) {
      metrics_->RecordRejection("length_required");
      if (header_parser.chunked()) {
        // Read and drop a chunked body up to kRefusedDrainBytes first: a
        // client still sending it would lose the answer to a closed
        // connection.
        bhttp::request_parser<bhttp::buffer_body> rest(std::move(header_parser));
        rest.body_limit(Dispatcher::kRefusedDrainBytes);
        rest.eager(true);
        tcp_layer.expires_after(opts_.read_timeout);
        (void)co_await DropBody(stream, buffer, rest);
      }
      co_await WriteError(stream, tcp_layer, 411, "Content-Length required", ex.request_id,
                          ex.client_ip, ex.start);
      co_return false;
    }
    bhttp::request_parser<bhttp::buffer_body> parser(std::move(header_parser));
    parser.body_limit(*content_length);
    parser.eager(true);
    const auto& head = parser.get();
    const std::string method(head.method_string()), target(head.target());
    bool keep_alive = head.keep_alive();
    Request req = ToRequestHead(head.base(), ex.client_ip, ex.request_id);
    StreamedBody<Stream> body(stream, tcp_layer, buffer, parser, *content_length,
                              ExpectsContinue(head.base()), opts_.progress_timeout, io_stopped_,
                              metrics_);
    req.body_stream = &body;
    Response res = co_await Dispatch(std::move(req), Lane::kStream);
    if (!body.failure().ok()) {
      keep_alive = false;
    } else if (!co_await body.Drain(Dispatcher::kRefusedDrainBytes, opts_.read_timeout)) {
      keep_alive = false;
    }
    co_return co_await Answer(stream, tcp_layer, std::move(res), keep_alive, method, target, ex);
  }

  // The connection as a WebSocket or an event stream (Response::upgrade):
  // the handshake or header, then a reader (client frames to the handler,
  // one at a time on the handler pool) and a writer (the Outbox) until
  // either side ends it. Logged once, at the upgrade.
  template <class Stream>
  awaitable<void> ServeUpgraded(Stream& stream, beast::tcp_stream& tcp_layer,
                                bhttp::request<bhttp::string_body>& msg, Response res,
                                const Exchange& ex) {
    const std::string method(msg.method_string()), target(msg.target());
    if (res.upgrade == Upgrade::kWebSocket && !websocket::is_upgrade(msg)) {
      res.handler->OnClose();
      co_await WriteResponse(
          stream, tcp_layer,
          Problem(400, "a WebSocket upgrade request was expected", ex.request_id), ex.request_id,
          false, method, target, ex.client_ip, ex.start);
      co_return;
    }
    auto outbox =
        std::make_shared<Outbox>(co_await asio::this_coro::executor, opts_.send_queue_bytes);
    std::shared_ptr<MessageHandler> handler = std::move(res.handler);
    LogAccess(res.upgrade == Upgrade::kWebSocket ? 101 : 200, res.route, method, target, ex, 0);
    if (res.upgrade == Upgrade::kWebSocket) {
      websocket::stream<Stream&> ws(stream);
      co_await ServeWebSocket(ws, tcp_layer, msg, res, outbox, handler, ex);
    } else {
      co_await ServeEventStream(stream, tcp_layer, res, outbox, handler, ex);
    }
  }

  // Runs `handler` through one upgraded connection's life. `read` is the
  // reader coroutine; the writer runs beside it and the cut timer ends a
  // close that does not complete in close_timeout.
  template <class Reader, class Writer>
  awaitable<void> RunUpgraded(beast::tcp_stream& tcp_layer, std::shared_ptr<Outbox> outbox,
                              std::shared_ptr<MessageHandler> handler, Reader read, Writer write) {
    auto ex = co_await asio::this_coro::executor;
    {
      MutexLock lock(conns_mutex_);
      upgraded_.insert(outbox);
    }
    if (stopping_) outbox->Close(1001, "server stopping");
    handler->OnOpen(outbox);
    auto writer_done = std::make_shared<bool>(false);
    asio::steady_timer done(ex, asio::steady_timer::time_point::max());
    asio::co_spawn(ex, write(), [writer_done, &done](std::exception_ptr) {
      *writer_done = true;
      done.cancel();
    });
    co_await read();
    outbox->End();
    co_await asio::co_spawn(
        pool_.get_executor(),
        [&]() -> awaitable<void> {
          handler->OnClose();
          co_return;
        },
        use_awaitable);
    // The writer may be stuck on a client that reads nothing: cut it.
    auto cut = std::make_shared<asio::steady_timer>(ex);
    ArmCut(tcp_layer, cut, writer_done);
    while (!*writer_done) co_await done.async_wait(kTuple);
    cut->cancel();
    if (outbox->slow()) metrics_->RecordRejection("slow_consumer");
    MutexLock lock(conns_mutex_);
    upgraded_.erase(outbox);
  }

  // The socket is cut unless `*over` is set within close_timeout: after a
  // close was sent, or the reader ended, a client that reads nothing cannot
  // hold the connection open.
  void ArmCut(beast::tcp_stream& tcp_layer, std::shared_ptr<asio::steady_timer> cut,
              std::shared_ptr<bool> over) {
    cut->expires_after(opts_.close_timeout);
    cut->async_wait([&tcp_layer, over](boost::system::error_code ec) {
      if (ec || *over) return;
      boost::system::error_code ignored;
      tcp_layer.socket().close(ignored);
    });
  }

  template <class WsStream>
  awaitable<void> ServeWebSocket(WsStream& ws, beast::tcp_stream& tcp_layer,
                                 bhttp::request<bhttp::string_body>& msg, const Response& res,
                                 std::shared_ptr<Outbox> outbox,
                                 std::shared_ptr<MessageHandler> handler, const Exchange& ex) {
    tcp_layer.expires_never();  // the WebSocket keeps its own timeouts
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws.set_option(websocket::stream_base::decorator([&](websocket::response_type& r) {
      for (const auto& [name, value] : kSecurityHeaders) r.set(name, value);
      r.set("X-Request-Id", ex.request_id);
      for (const auto& header : res.headers) r.set(header.first, header.second);
    }));
    // permessage-deflate stays off: CPU on small machines, and compressing
    // secret-bearing messages invites length side channels (CRIME).
    ws.read_message_max(opts_.max_message_bytes);
    ws.auto_fragment(false);
    ws.text(true);
    auto [aec] = co_await ws.async_accept(msg, kTuple);
    if (aec) {
      handler->OnClose();  // never opened: the application forgets it
      co_return;
    }
    auto over = std::make_shared<bool>(false);
    auto cut = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    auto read = [&]() -> awaitable<void> {
      for (;;) {
        beast::flat_buffer buffer;
        auto [ec, n] = co_await ws.async_read(buffer, kTuple);
        if (ec) co_return;
        if (!ws.got_text()) {
          outbox->Close(1003, "text frames only");
          continue;
        }
        if (outbox->closing()) continue;  // read on only to take the close
        std::string text = beast::buffers_to_string(buffer.data());
        co_await asio::co_spawn(
            pool_.get_executor(),
            [&]() -> awaitable<void> {
              try {
                handler->OnMessage(std::move(text));
              } catch (const std::exception& e) {
                log::Error("message handler threw",
                           {{"request_id", ex.request_id}, {"cause", e.what()}});
                outbox->Close(1011, "internal error");
              }
              co_return;
            },
            use_awaitable);
      }
    };
    auto write = [&, outbox, over, cut]() -> awaitable<void> {
      for (;;) {
        Outbox::Work w = outbox->Take();
        if (w.end) break;
        for (const auto& m : w.messages) {
          auto [ec, n] = co_await ws.async_write(asio::buffer(*m), kTuple);
          outbox->Written(m->size());
          if (ec) {
            *over = true;
            co_return;
          }
        }
        if (w.close) {
          ArmCut(tcp_layer, cut, over);
          websocket::close_reason why(static_cast<std::uint16_t>(w.code));
          why.reason = w.reason;
          (void)co_await ws.async_close(why, kTuple);
          break;
        }
        co_await outbox->Wait();
      }
      *over = true;
    };
    co_await RunUpgraded(tcp_layer, outbox, handler, read, write);
    *over = true;
    cut->cancel();
  }

  // A chunked text/event-stream answer fed by the Outbox: every write takes
  // all that is queued (one TLS record instead of one per event). The client
  // sends nothing; a heartbeat comment finds one that left.
  template <class Stream>
  awaitable<void> ServeEventStream(Stream& stream, beast::tcp_stream& tcp_layer, const Response& r,
                                   std::shared_ptr<Outbox> outbox,
                                   std::shared_ptr<MessageHandler> handler, const Exchange& ex) {
    bhttp::response<bhttp::buffer_body> res{bhttp::status::ok, 11};
    Response head = r;
    head.content_type = "text/event-stream";
    PrepareHeader(res, head, ex.request_id, false);
    res.set("X-Accel-Buffering", "no");
    res.chunked(true);
    res.body().data = nullptr;
    res.body().more = true;
    bhttp::response_serializer<bhttp::buffer_body> sr{res};
    tcp_layer.expires_after(opts_.progress_timeout);
    auto [hec, hn] = co_await bhttp::async_write_header(stream, sr, kTuple);
    if (hec) {
      handler->OnClose();
      co_return;
    }
    auto ended = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                      asio::steady_timer::time_point::max());
    auto finished = std::make_shared<bool>(false);
    // The reader only waits for the writer to finish (an event stream reads
    // nothing from the client).
    auto read = [ended, finished]() -> awaitable<void> {
      while (!*finished) co_await ended->async_wait(kTuple);
    };
    auto write = [&, outbox, ended, finished]() -> awaitable<void> {
      for (;;) {
        Outbox::Work w = outbox->Take();
        if (w.end) break;
        std::string batch;
        size_t counted = 0;
        for (const auto& m : w.messages) {
          batch += *m;
          counted += m->size();
        }
        if (!batch.empty()) {
          res.body().data = batch.data();
          res.body().size = batch.size();
          res.body().more = true;
          tcp_layer.expires_after(opts_.progress_timeout);
          auto [ec, n] = co_await bhttp::async_write(stream, sr, kTuple);
          outbox->Written(counted);
          if (ec && ec != bhttp::error::need_buffer) break;
        }
        if (w.close) {
          res.body().data = nullptr;
          res.body().size = 0;
          res.body().more = false;
          tcp_layer.expires_after(opts_.close_timeout);
          (void)co_await bhttp::async_write(stream, sr, kTuple);
          break;
        }
        // Park until there is work or the heartbeat is due.
        asio::steady_timer beat(co_await asio::this_coro::executor, opts_.event_stream_heartbeat);
        beat.async_wait([outbox](boost::system::error_code ec) {
          if (!ec) (void)outbox->Send(std::make_shared<const std::string>(":\n\n"));
        });
        co_await outbox->Wait();
        beat.cancel();
      }
      *finished = true;
      ended->cancel();
    };
    co_await RunUpgraded(tcp_layer, outbox, handler, read, write);
    tcp_layer.expires_after(opts_.close_timeout);
  }

  // Sends `res` after its tarpit delay. True when the connection can go on.
  template <class Stream>
  awaitable<bool> Answer(Stream& stream, beast::tcp_stream& tcp_layer, Response res,
                         bool keep_alive, std::string_view method, std::string_view target,
                         const Exchange& ex) {
    if (res.delay_ms > 0 && !stopping_) {
      // A tarpit for refused clients: the answer waits on a timer, holding
      // no thread, so a flood of refused requests costs little CPU.
      asio::steady_timer t(co_await asio::this_coro::executor,
                           std::chrono::milliseconds(res.delay_ms));
      co_await t.async_wait(kTuple);
    }
    keep_alive = keep_alive && !stopping_;
    bool ok = co_await WriteResponse(stream, tcp_layer, res, ex.request_id, keep_alive, method,
                                     target, ex.client_ip, ex.start);
    co_return ok&& keep_alive;
  }

  awaitable<Response> Dispatch(Request req, Lane lane) {
    struct Pool {
      asio::thread_pool& threads;
      std::atomic<size_t>& queued;
      size_t capacity;
      const char* rejection;
    };
    Pool pool =
        lane == Lane::kSlow ? Pool{slow_pool_, slow_queued_, opts_.slow_threads + opts_.slow_queue,
                                   "password_pool_full"}
        : lane == Lane::kStream
            ? Pool{stream_pool_, stream_queued_, opts_.stream_threads + opts_.stream_queue,
                   "stream_pool_full"}
            : Pool{pool_, queued_, opts_.handler_threads + opts_.handler_queue, "overloaded"};
    if (pool.queued.fetch_add(1) >= pool.capacity) {
      --pool.queued;
      metrics_->RecordRejection(pool.rejection);
      Response busy = Problem(503, "server busy, retry later", req.request_id);
      busy.headers.emplace_back("Retry-After", "1");
      // A full password pool means a login flood: slow the flood down.
      if (lane == Lane::kSlow) busy.delay_ms = opts_.slow_reject_delay_ms;
      co_return busy;
    }
    Response res = co_await asio::co_spawn(
        pool.threads.get_executor(),
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
    --pool.queued;
    co_return res;
  }

  template <class Stream>
  awaitable<void> WriteError(Stream& stream, beast::tcp_stream& tcp_layer, int status,
                             std::string_view detail, const std::string& request_id,
                             const std::string& client_ip, Clock::time_point start) {
    Response res = Problem(status, detail, request_id);
    co_await WriteResponse(stream, tcp_layer, res, request_id, false, "-", "", client_ip, start);
  }

  // The status line and header fields of `r`: the standard security headers,
  // of which `r.headers` may replace some (a file answer's CSP and caching),
  // then its other headers.
  template <class Body>
  void PrepareHeader(bhttp::response<Body>& res, const Response& r, const std::string& request_id,
                     bool keep_alive) {
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
    for (const auto& header : r.headers) {
      const bool standard =
          std::any_of(std::begin(kSecurityHeaders), std::end(kSecurityHeaders),
                      [&](const auto& h) { return beast::iequals(h.first, header.first); });
      if (standard) {
        res.set(header.first, header.second);
      } else {
        res.insert(header.first, header.second);
      }
    }
    res.keep_alive(keep_alive);
  }

  // Writes `r.source` piece by piece: each piece is read on the handler pool
  // (no thread held while the client takes it) and must be taken within the
  // progress timeout. False when the answer could not be sent whole.
  template <class Stream>
  awaitable<bool> WriteStreamed(Stream& stream, beast::tcp_stream& tcp_layer, const Response& r,
                                const std::string& request_id, bool keep_alive) {
    bhttp::response<bhttp::buffer_body> res{static_cast<bhttp::status>(r.status), 11};
    PrepareHeader(res, r, request_id, keep_alive);
    res.content_length(r.source_size);
    res.body().data = nullptr;
    res.body().more = true;
    bhttp::response_serializer<bhttp::buffer_body> sr{res};
    tcp_layer.expires_after(opts_.progress_timeout);
    auto [hec, hn] = co_await bhttp::async_write_header(stream, sr, kTuple);
    if (hec) co_return false;
    constexpr size_t kPiece = 64 * 1024;
    std::vector<char> piece(static_cast<size_t>(std::min<uint64_t>(kPiece, r.source_size)));
    for (uint64_t left = r.source_size; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, left));
      Status read = co_await asio::co_spawn(
          pool_.get_executor(),
          [&]() -> awaitable<Status> {
            try {
              co_return r.source->Read(std::span<char>(piece.data(), n));
            } catch (const std::exception& e) {
              co_return Internal(e.what());
            }
          },
          use_awaitable);
      if (!read.ok()) {
        log::Error("streamed answer failed",
                   {{"request_id", request_id}, {"cause", read.message()}});
        co_return false;
      }
      left -= n;
      res.body().data = piece.data();
      res.body().size = n;
      res.body().more = left > 0;
      tcp_layer.expires_after(opts_.progress_timeout);
      auto [ec, w] = co_await bhttp::async_write(stream, sr, kTuple);
      if (ec && ec != bhttp::error::need_buffer) co_return false;
    }
    res.body().data = nullptr;
    res.body().more = false;
    auto [ec, w] = co_await bhttp::async_write(stream, sr, kTuple);
    co_return !ec || ec == bhttp::error::need_buffer;
  }

  template <class Stream>
  awaitable<bool> WriteResponse(Stream& stream, beast::tcp_stream& tcp_layer, const Response& r,
                                const std::string& request_id, bool keep_alive,
                                std::string_view method, std::string_view target,
                                const std::string& client_ip, Clock::time_point start) {
    bool ok;
    if (r.source) {
      ok = co_await WriteStreamed(stream, tcp_layer, r, request_id, keep_alive);
    } else {
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
      PrepareHeader(res, r, request_id, keep_alive);
      if (method == "HEAD") {
        // The length a GET would have; no body follows (RFC 9110 9.3.2), or
        // the client would read it as the next answer.
        res.content_length(r.body.size());
      } else {
        res.body() = r.body;
        res.prepare_payload();
      }
      tcp_layer.expires_after(opts_.read_timeout);
      auto [ec, n] = co_await bhttp::async_write(stream, res, kTuple);
      ok = !ec;
    }
    LogAccess(r.status, r.route, method, target, {request_id, client_ip, start},
              r.source ? r.source_size : r.body.size());
    co_return ok;
  }

  // The request's metric and access-log line (no bodies, no header values).
  void LogAccess(int status, const std::string& route, std::string_view method,
                 std::string_view target, const Exchange& ex, uint64_t bytes) {
    double secs = std::chrono::duration<double>(Clock::now() - ex.start).count();
    metrics_->RecordRequest(opts_.name, route, status, secs);
    if (!opts_.access_log) return;
    std::string_view path = target.substr(0, target.find('?'));
    log::Info("request", {{"listener", opts_.name},
                          {"request_id", ex.request_id},
                          {"method", std::string(method)},
                          {"path", path},
                          {"route", route},
                          {"status", status},
                          {"bytes", static_cast<long long>(bytes)},
                          {"duration_ms", secs * 1000.0},
                          {"client", ex.client_ip}});
  }

  const ServerOptions opts_;
  Dispatcher* const dispatcher_;
  Metrics* const metrics_;
  asio::io_context ioc_;
  asio::thread_pool pool_;
  asio::thread_pool slow_pool_;
  asio::thread_pool stream_pool_;
  asio::strand<asio::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;  // used only on accept_strand_
  std::vector<std::thread> threads_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> io_stopped_{false};
  std::atomic<size_t> open_{0};
  std::atomic<size_t> queued_{0};
  std::atomic<size_t> slow_queued_{0};
  std::atomic<size_t> stream_queued_{0};
  Mutex tls_mutex_;
  std::shared_ptr<ssl::context> tls_ GUARDED_BY(tls_mutex_);
  Mutex conns_mutex_;
  std::set<std::shared_ptr<Connection>> conns_ GUARDED_BY(conns_mutex_);
  std::unordered_map<std::string, size_t> per_client_ GUARDED_BY(conns_mutex_);
  std::set<std::shared_ptr<Outbox>> upgraded_ GUARDED_BY(conns_mutex_);
};

Server::Server(ServerOptions options, Dispatcher* dispatcher, Metrics* metrics)
    : impl_(std::make_unique<Impl>(std::move(options), dispatcher, metrics)) {}
Server::~Server() = default;
Result<unsigned short> Server::Start() { return impl_->Start(); }
Status Server::ReloadTls() { return impl_->ReloadTls(); }
void Server::Stop() { impl_->Stop(); }
size_t Server::open_connections() const { return impl_->open_connections(); }

}  // namespace silo::http
