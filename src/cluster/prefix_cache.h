// What etcd holds under one prefix, read again each turn for what changed
// only: a node's view of every tenant's keys without listing them all four
// times a second (with 5,000 tenants that list was 4.5 MB and 274 ms of
// etcd's CPU; the changes since the last turn take 30 ms, and 0.3 KB when
// nothing changed: bench/results/cluster_2026-12-04.md).
//
// Each Refresh is one linearizable range of the keys changed since the last
// one; the view it leaves is etcd's at that read's revision, exactly as a
// full list then would be. etcd does not say which keys went away, but it
// counts the prefix's keys: every key that is there either changed (and
// came back) or is as the view holds it, so the view holds exactly etcd's
// keys when the counts agree, and only then. When they do not (a key was
// deleted: a lease expired, an election ended), Refresh lists it all again.
// Before that range, one lookup of etcd's revision: when nothing at all
// changed since the last read (an idle cluster), the view is etcd's still,
// and etcd reads no key of the prefix.
//
// Not thread-safe: one caller (the node's cluster loop).
#ifndef SILO_CLUSTER_PREFIX_CACHE_H_
#define SILO_CLUSTER_PREFIX_CACHE_H_

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "cluster/etcd.h"

namespace silo::cluster {

class PrefixCache {
 public:
  PrefixCache(Etcd& etcd, std::string prefix) : etcd_(etcd), prefix_(std::move(prefix)) {}

  // Brings the view up to what etcd holds now. An error when etcd does not
  // answer; the next Refresh then asks for what changed since the last one
  // that succeeded (or lists it all, when a deletion was being found).
  Status Refresh();
  // Every key under the prefix by key, as of the last Refresh; read it only
  // after one that succeeded. (Kept, not copied: each turn reads it all.)
  const std::map<std::string, KeyValue>& view() const { return view_; }

  // Full lists made so far (the first, and one after each deletion seen).
  int64_t full_lists() const { return full_lists_; }
  // Ranges of the keys changed since a revision made so far (none in a
  // Refresh that found etcd's revision as the view's).
  int64_t ranges() const { return ranges_; }
  // The revision the view is etcd's at (0 before the first Refresh).
  int64_t revision() const { return revision_; }

 private:
  Status ListAll();

  Etcd& etcd_;
  const std::string prefix_;
  std::map<std::string, KeyValue> view_;
  int64_t revision_ = 0;  // the view is etcd's at this revision; 0: none yet
  int64_t full_lists_ = 0;
  int64_t ranges_ = 0;
};

}  // namespace silo::cluster

#endif  // SILO_CLUSTER_PREFIX_CACHE_H_
