// OperatorClient: the CLI's way to a running server's operator API.
//
// Finds the server as follows: the address from <data>/platform/server.json
// (written by a running `silo serve`), else SILO_OPERATOR_LISTEN, else the
// default; the token from SILO_OPERATOR_TOKEN, else (development)
// <data>/dev/operator.token. The token is sent only to loopback addresses.
#ifndef SILO_CLI_OPERATOR_CLIENT_H_
#define SILO_CLI_OPERATOR_CLIENT_H_

#include <string>

#include "base/status.h"
#include "config/config.h"

namespace silo::cli {

struct HttpAnswer {
  long status = 0;
  std::string body;
};

class OperatorClient {
 public:
  static Result<OperatorClient> FromEnvironment(const config::GetEnv& getenv);
  // Unavailable when the server cannot be reached.
  // `timeout_seconds` bounds the whole exchange (backups of large tenants take minutes).
  Result<HttpAnswer> Call(const std::string& method, const std::string& path,
                          const std::string& json_body = "", long timeout_seconds = 60) const;
  const std::string& address() const { return address_; }

 private:
  OperatorClient(std::string address, std::string token)
      : address_(std::move(address)), token_(std::move(token)) {}
  std::string address_;  // host:port
  std::string token_;    // secret
};

}  // namespace silo::cli

#endif  // SILO_CLI_OPERATOR_CLIENT_H_
