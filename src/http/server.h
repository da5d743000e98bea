// Server: HTTP/1.1 over TLS (or plain TCP for the loopback operator listener)
// on Boost.Beast + Asio C++20 coroutines.
//
// Lifecycle: construct, Start() (binds; returns the bound port), then Stop()
// from any thread. Stop() stops accepting, closes idle keep-alive connections,
// waits up to `drain_timeout` for in-flight requests to be answered, then
// cancels what is left and joins every thread.
//
// Every connection runs on its own strand; every network wait has a deadline
// (handshake and request: read_timeout; between keep-alive requests:
// idle_timeout; each piece of a streamed body: progress_timeout). Requests whose framing is
// ambiguous (to_request.h, FramingProblem) get 400 and the connection is closed. Handlers run on a
// separate bounded pool, never on a network thread; when `handler_queue` requests already wait, the
// answer is 503. Requests the dispatcher calls Slow() run on a second, smaller pool; streamed
// requests (uploads, whose handler holds its thread while the body arrives)
// on a third, sized for the uploads the application admits at once.
// Every response gets the standard security headers and X-Request-Id, and one
// JSON access-log line (method, path without query, status, bytes, time,
// client, request id; no bodies, no header values).
// An answer with Response::upgrade turns the connection into a WebSocket or
// an event stream (message.h MessageChannel and MessageHandler), served until
// either side closes it; Stop() closes those with 1001.
#ifndef SILO_HTTP_SERVER_H_
#define SILO_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "http/message.h"

namespace silo::http {

class Metrics;

// What the application gives the transport. Implementations must be
// thread-safe: both methods are called concurrently.
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Largest body accepted for this request, decided from the request line
  // before the body is read (a larger Content-Length is refused with 413
  // without reading it). kNoRoute when no route takes this method and path:
  // the request is then handled without its body (the answer is a 404 or a
  // 405 whatever the body) and the connection closed after the answer.
  static constexpr size_t kNoRoute = static_cast<size_t>(-1);
  // A body the server reads and drops for such a request, so that the
  // connection can go on; a larger (or chunked) one ends the connection.
  static constexpr size_t kUnroutedDrainBytes = 64 * 1024;
  // A streamed route: the request needs a Content-Length (411 otherwise);
  // the handler gets the header at once and reads the body through
  // Request::body_stream, deciding its own limits (413 is its answer). A body
  // it leaves unread is drained up to kRefusedDrainBytes, else the
  // connection ends with the answer.
  static constexpr size_t kStreamed = static_cast<size_t>(-2);
  // Why this much: most clients send the whole body before they read the
  // answer, and a connection closed under them loses the answer (a refused
  // upload would read as a network error). Beyond it the connection ends.
  static constexpr size_t kRefusedDrainBytes = 8 * 1024 * 1024;
  virtual size_t BodyLimit(std::string_view method, std::string_view target) const = 0;
  // Answers one request; runs on the handler pool. May throw: the server then
  // answers 500 without details.
  virtual Response Handle(const Request& request) = 0;
  // Whether this request runs on the slow pool (password hashing) instead of
  // the handler pool, so that a flood of such requests cannot starve the
  // others. Decided from the request line.
  virtual bool Slow(std::string_view method, std::string_view target) const { return false; }
};

struct ServerOptions {
  std::string name;  // "public" or "operator": metrics label and log field
  std::string host;
  unsigned short port = 0;
  bool tls = true;
  std::string tls_cert_file;  // PEM chain; with tls
  std::string tls_key_file;   // PEM key; with tls
  size_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{30'000};
  std::chrono::milliseconds drain_timeout{10'000};
  // A streamed body's progress deadline: every BodyStream::Read (one chunk,
  // 64 KiB for files) and every piece of a streamed answer must complete in
  // this time, or the connection is dropped.
  std::chrono::milliseconds progress_timeout{30'000};
  size_t max_connections = 1024;
  // Open connections from one peer address; beyond it that address's new
  // connections are closed at accept while others are still served.
  size_t max_connections_per_client = 64;
  unsigned io_threads = 2;
  unsigned handler_threads = 4;
  size_t handler_queue = 512;
  // The slow pool: its threads run at a lower CPU priority (nice
  // `slow_nice`); when `slow_queue` requests already wait, the answer is 503.
  unsigned slow_threads = 1;
  size_t slow_queue = 32;
  int slow_nice = 19;
  int slow_reject_delay_ms = 1000;  // the 503 of a full slow pool waits this long
  // The streaming pool; when `stream_queue` streamed requests already wait,
  // the answer is 503.
  unsigned stream_threads = 32;
  size_t stream_queue = 0;
  bool access_log = true;
  // Upgraded connections (http::Upgrade): the largest client message (a
  // larger one closes the connection with 1009), and the bytes one
  // connection may have queued and unsent before it is closed as a slow
  // consumer (4008).
  size_t max_message_bytes = 64 * 1024;
  size_t send_queue_bytes = 1024 * 1024;
  // After Close, the connection is cut if the close has not completed in
  // this time (a client that stopped reading cannot take a close frame).
  std::chrono::milliseconds close_timeout{1'000};
  // An event stream's comment line when nothing else was sent for this long
  // (keeps proxies from timing it out; finds a client that left).
  std::chrono::milliseconds event_stream_heartbeat{15'000};
};

class Server {
 public:
  // `dispatcher` and `metrics` are not owned and must outlive the Server.
  Server(ServerOptions options, Dispatcher* dispatcher, Metrics* metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads TLS material, binds, starts the threads. Returns the bound port.
  Result<unsigned short> Start();
  // Re-reads the certificate and key; new connections use them, open ones
  // keep theirs. On failure the old material stays in use.
  Status ReloadTls();
  // Graceful, then forced shutdown (see above). Idempotent. Blocks.
  void Stop();
  size_t open_connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace silo::http

#endif  // SILO_HTTP_SERVER_H_
