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

#include "http/message.h"

namespace silo::http {

// Moves the body out of `msg`. Header names are lowercased; the target is
// split at the first '?' into path and query, neither decoded.
inline Request ToRequest(boost::beast::http::request<boost::beast::http::string_body>& msg,
                         const std::string& client_ip, const std::string& request_id) {
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  for (const auto& field : msg) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    req.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  req.client_ip = client_ip;
  req.request_id = request_id;
  return req;
}

}  // namespace silo::http

#endif  // SILO_HTTP_TO_REQUEST_H_
