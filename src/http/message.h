// Request and Response as the transport hands them to the application.
// Plain structs, no Beast types: only server.cc includes Beast and Asio, which
// keeps every other translation unit quick to compile.
#ifndef SILO_HTTP_MESSAGE_H_
#define SILO_HTTP_MESSAGE_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace silo::http {

struct Request {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // raw request-target
  std::string path;    // target up to '?', not decoded
  std::string query;   // after '?', not decoded
  // Header names lowercased; values as sent. Never logged wholesale.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string client_ip;   // peer address of the TCP connection
  std::string request_id;  // assigned by the server, echoed as X-Request-Id

  // First header with this (lowercase) name.
  std::optional<std::string_view> Header(std::string_view lower_name) const;
  // The value of cookie `name` in the (first) Cookie header.
  std::optional<std::string_view> Cookie(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  // Route pattern for metrics and the access log ("unmatched" when none).
  std::string route = "unmatched";
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
