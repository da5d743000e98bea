// Certificates for tests of node links: a throwaway cluster CA and node
// certificates it signs, made with the openssl command-line tool (Debian's
// openssl, installed by scripts/bootstrap.sh) in a directory the test owns.
#ifndef SILO_CLUSTER_TEST_CERTS_H_
#define SILO_CLUSTER_TEST_CERTS_H_

#include <stdlib.h>

#include <string>

#include "cluster/peer_link.h"

namespace silo::cluster::testing {

// Makes `<dir>/<ca>.pem` and `<dir>/<ca>.key`, a CA valid for two days.
inline bool MakeCa(const std::string& dir, const std::string& ca) {
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir + "/" +
      ca + ".key -out " + dir + "/" + ca + ".pem -days 2 -subj /CN=" + ca + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// A certificate named `name` for `san` (127.0.0.1 unless said), signed by
// `ca`: the PeerTls that presents it and trusts `ca`.
inline PeerTls MakeNode(const std::string& dir, const std::string& ca, const std::string& name,
                        const std::string& san = "IP:127.0.0.1") {
  std::string base = dir + "/" + name;
  std::string cmd = "printf 'subjectAltName=" + san + "\\nbasicConstraints=CA:FALSE\\n' > " + base +
                    ".ext && " +
                    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
                    base + ".key -out " + base + ".csr -subj /CN=" + name + " >/dev/null 2>&1 && " +
                    "openssl x509 -req -in " + base + ".csr -CA " + dir + "/" + ca +
                    ".pem -CAkey " + dir + "/" + ca + ".key -CAcreateserial -days 2 -extfile " +
                    base + ".ext -out " + base + ".pem >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) return PeerTls{};
  return PeerTls{base + ".pem", base + ".key", dir + "/" + ca + ".pem"};
}

}  // namespace silo::cluster::testing

#endif  // SILO_CLUSTER_TEST_CERTS_H_
