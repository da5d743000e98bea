// Development-only TLS material: a fresh P-256 key and a self-signed
// certificate for the given DNS names and IP addresses, valid 90 days.
// Production refuses to start without operator-supplied certificate files.
#ifndef SILO_CRYPTO_SELF_SIGNED_CERT_H_
#define SILO_CRYPTO_SELF_SIGNED_CERT_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace silo::crypto {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

Result<PemPair> GenerateSelfSignedCert(const std::vector<std::string>& dns_names,
                                       const std::vector<std::string>& ips);

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_SELF_SIGNED_CERT_H_
