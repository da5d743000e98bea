// Request and Response as the transport hands them to the application.
// Plain structs, no Beast types: only server.cc includes Beast and Asio, which
// keeps every other translation unit quick to compile.
#ifndef SILO_HTTP_MESSAGE_H_
#define SILO_HTTP_MESSAGE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace silo::http {

// A request body the handler reads as it arrives: streamed routes only (the
// dispatcher's BodyLimit said Dispatcher::kStreamed), whose body never sits
// whole in memory. Read blocks the calling handler thread until the bytes
// come; each call must complete within the server's progress timeout, so a
// slow but moving client survives and a stalled one is dropped. One reader.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // The declared Content-Length: a streamed route always has one (411
  // otherwise), and the body is exactly this long.
  virtual uint64_t length() const = 0;
  // Fills `out` with the next bytes of the body; fewer only at its end, 0
  // once all `length()` bytes were read. kDeadlineExceeded when `out` did not
  // fill within the progress timeout, kUnavailable when the client left or
  // the body ended early; after an error every call fails the same way.
  virtual Result<size_t> Read(std::span<char> out) = 0;
};

// A response body the server pulls piece by piece as the client takes it,
// on a handler thread, the thread released between pieces.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // Fills `out` completely with the next bytes (the server never asks for
  // more than the size the Response declared). An error ends the connection:
  // the client sees a body shorter than its Content-Length, never wrong bytes.
  virtual Status Read(std::span<char> out) = 0;
};

// The transport's side of an upgraded connection (a WebSocket, or a
// Server-Sent Events stream), as the application holds it. Thread-safe;
// never blocks.
class MessageChannel {
 public:
  virtual ~MessageChannel() = default;
  // Queues one message: a WebSocket text frame, or bytes of the event
  // stream. False when the connection is closing or closed, or when the
  // message would take the queue past its cap: the connection is then closed
  // as a slow consumer (WebSocket code 4008) and its queue dropped, so one
  // stalled client never holds more than the cap nor slows the others.
  virtual bool Send(std::shared_ptr<const std::string> message) = 0;
  // Sends what is queued, then a close frame with `code` and `reason`
  // (WebSocket), and ends the connection. Idempotent; the first code wins.
  virtual void Close(int code, std::string_view reason) = 0;
};

// The application's side of an upgraded connection. The server calls
// OnOpen once, then OnMessage for each client text frame, one at a time on a
// handler thread (the next frame is not read before it returns: a client
// cannot queue work faster than it is done), then OnClose once, after which
// the channel's Send is refused.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  virtual void OnOpen(std::shared_ptr<MessageChannel> channel) = 0;
  virtual void OnMessage(std::string text) = 0;
  virtual void OnClose() = 0;
};

// What an answer upgrades the connection to.
enum class Upgrade {
  kNone,
  kWebSocket,    // RFC 6455; the handshake answers the request
  kEventStream,  // 200 text/event-stream, chunked, read-only
};

struct Request {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // raw request-target
  std::string path;    // target up to '?', not decoded
  std::string query;   // after '?', not decoded
  // Header names lowercased; values as sent. Never logged wholesale.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                   // empty on streamed routes
  BodyStream* body_stream = nullptr;  // streamed routes only; owned by the server
  std::string client_ip;              // peer address of the TCP connection
  std::string request_id;             // assigned by the server, echoed as X-Request-Id

  // First header with this (lowercase) name.
  std::optional<std::string_view> Header(std::string_view lower_name) const;
  // The value of cookie `name` in the (first) Cookie header.
  std::optional<std::string_view> Cookie(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // A streamed body of `source_size` bytes instead of `body` (downloads).
  std::shared_ptr<BodySource> source;
  uint64_t source_size = 0;
  // Extra headers. One named like a standard security header (server.h)
  // replaces it: file answers set their own CSP and Cache-Control.
  std::vector<std::pair<std::string, std::string>> headers;
  // Route pattern for metrics and the access log ("unmatched" when none).
  std::string route = "unmatched";
  // Set with a handler: instead of this answer, the connection becomes a
  // WebSocket or an event stream served by `handler` until either side
  // closes it (`status` and `body` are then unused).
  Upgrade upgrade = Upgrade::kNone;
  std::shared_ptr<MessageHandler> handler;
  // The transport sends the answer no sooner than this (on a timer, holding
  // no thread): a tarpit for refused clients (429, a full password pool).
  int delay_ms = 0;
};

// Statuses' reason phrases ("Not Found").
std::string_view StatusText(int status);

// An RFC 9457 application/problem+json answer. `detail` must be safe to show
// the caller: no internals, paths or stack traces.
Response Problem(int status, std::string_view detail, std::string_view request_id);

// A JSON answer with `body` already serialized.
Response Json(int status, std::string body);

}  // namespace silo::http

#endif  // SILO_HTTP_MESSAGE_H_
