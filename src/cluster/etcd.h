// A small etcd v3 client over etcd's JSON gateway (`/v3/...`, HTTP/1.1 via
// libcurl): the leases, compare-and-swap transactions and reads a cluster
// needs for primaries and fencing terms (notes: replication.md section 4).
// Consensus is etcd's; this only asks it.
//
// Every call is one blocking request, tried against each endpoint in turn
// until one answers (a connection that fails moves to the next; an answer,
// even an error, ends the call). Thread-safe: no state but the options.
#ifndef SILO_CLUSTER_ETCD_H_
#define SILO_CLUSTER_ETCD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace silo::cluster {

struct EtcdOptions {
  // "http://127.0.0.1:2379" or "https://..."; tried in order.
  std::vector<std::string> endpoints;
  int timeout_ms = 1000;  // per request and endpoint
  // For https endpoints: the CA that signed them, and this node's client
  // certificate and key when etcd asks for one.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;  // a primary key's term
  int64_t lease = 0;
};

class Etcd {
 public:
  explicit Etcd(EtcdOptions options);

  // A new lease of `ttl_s` seconds: its id.
  Result<int64_t> GrantLease(int ttl_s);
  // Renews a lease: the seconds it now has. NotFound when it expired (or
  // was revoked): whatever hung on it is gone.
  Result<int64_t> KeepAlive(int64_t lease);
  // Ends a lease now; its keys are deleted. A lease already gone is OK.
  Status Revoke(int64_t lease);

  // Creates `key` = `value` attached to `lease` (0: none) if no such key
  // exists, in one transaction: the revision that created it (a term that
  // no earlier holder had). AlreadyExists (naming nobody) if it exists.
  Result<int64_t> CreateIfAbsent(const std::string& key, const std::string& value, int64_t lease);
  // Sets `key` only while its mod_revision is `revision`: the new revision.
  // VersionMismatch when it changed or is gone.
  Result<int64_t> PutIf(const std::string& key, const std::string& value, int64_t revision,
                        int64_t lease);
  // Sets `key` whatever it holds (what a node says of itself: its address,
  // its status), attached to `lease` (0: none): the new revision.
  Result<int64_t> Put(const std::string& key, const std::string& value, int64_t lease);
  // Deletes `key` only while its mod_revision is `revision`. VersionMismatch
  // when it changed or is gone.
  Status DeleteIf(const std::string& key, int64_t revision);
  // Deletes `key` whatever it holds; a key that is not there is OK.
  Status Delete(const std::string& key);
  Result<std::optional<KeyValue>> Get(const std::string& key);
  // Every key starting with `prefix`, in key order. `min_mod_revision` (> 0):
  // only keys changed at or after that revision; `keys_only`: values left
  // empty (less to send when only the keys matter).
  Result<std::vector<KeyValue>> List(const std::string& prefix, int64_t min_mod_revision = 0,
                                     bool keys_only = false);
  // List's keys with the revision they were read at and how many keys the
  // prefix holds in all (those `min_mod_revision` left out too).
  struct Range {
    int64_t revision = 0;
    int64_t count = 0;
    std::vector<KeyValue> kvs;
  };
  Result<Range> ListRange(const std::string& prefix, int64_t min_mod_revision = 0,
                          bool keys_only = false);
  // etcd's revision now (a linearizable read of one key, counted, not
  // sent): it grows with every change to any key, deletions by an expired
  // lease too, so a view read at this revision is still etcd's.
  Result<int64_t> Revision();

 private:
  // POSTs `body` to `path` on the first endpoint that answers: the answer's
  // JSON text. Unavailable when none answers or one answers non-200.
  Result<std::string> Call(const std::string& path, const std::string& body) const;

  EtcdOptions options_;
};

}  // namespace silo::cluster

#endif  // SILO_CLUSTER_ETCD_H_
