// How a parsed Beast request becomes an http::Request: the one conversion the
// server uses, shared with the request fuzz target so that it fuzzes exactly
// what the server hands the application. Includes Beast: only server.cc and
// tests/fuzz include this header.
#ifndef SILO_HTTP_TO_REQUEST_H_
#define SILO_HTTP_TO_REQUEST_H_

#include <algorithm>
#include <boost/beast/http.hpp>
#include <cctype>
#include <string>
#include <string_view>

#include "http/message.h"

namespace silo::http {

// The request line and header fields of `head`, without a body. Header
// names are lowercased; the target is split at the first '?' into path and
// query, neither decoded.
template <class Fields>
Request ToRequestHead(const boost::beast::http::header<true, Fields>& head,
                      const std::string& client_ip, const std::string& request_id) {
  Request req;
  req.method = std::string(head.method_string());
  req.target = std::string(head.target());
  size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  for (const auto& field : head) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    req.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  req.client_ip = client_ip;
  req.request_id = request_id;
  return req;
}

// The same with the body, moved out of `msg`.
inline Request ToRequest(boost::beast::http::request<boost::beast::http::string_body>& msg,
                         const std::string& client_ip, const std::string& request_id) {
  Request req = ToRequestHead(msg.base(), client_ip, request_id);
  req.body = std::move(msg.body());
  return req;
}

// Why a request's framing cannot be trusted, or "" when it can (RFC 9112
// sections 6.1-6.3). Two parties that disagree on where a body ends are the
// whole of request smuggling, so anything ambiguous is refused, not guessed:
// a Transfer-Encoding other than exactly one "chunked", Transfer-Encoding in
// HTTP/1.0 or together with Content-Length, more than one Content-Length or
// one that is not all digits, and an HTTP/1.1 request without exactly one
// Host. The server answers 400 and closes the connection.
template <class Fields>
std::string FramingProblem(const boost::beast::http::request_header<Fields>& h) {
  namespace bhttp = boost::beast::http;
  int te = 0, cl = 0, host = 0;
  std::string te_value;
  for (const auto& f : h) {
    if (f.name() == bhttp::field::transfer_encoding) {
      ++te;
      te_value = std::string(f.value());
    } else if (f.name() == bhttp::field::content_length) {
      ++cl;
      std::string_view v = f.value();
      if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos) {
        return "malformed Content-Length";
      }
    } else if (f.name() == bhttp::field::host) {
      ++host;
    }
  }
  if (te > 1) return "more than one Transfer-Encoding header";
  if (te == 1) {
    std::string v;
    for (char c : te_value) v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (v != "chunked") return "unsupported Transfer-Encoding (only chunked)";
    if (h.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request";
    if (cl > 0) return "both Transfer-Encoding and Content-Length";
  }
  if (cl > 1) return "more than one Content-Length header";
  if (host > 1) return "more than one Host header";
  if (h.version() >= 11 && host == 0) return "HTTP/1.1 request without Host";
  return "";
}

}  // namespace silo::http

#endif  // SILO_HTTP_TO_REQUEST_H_
