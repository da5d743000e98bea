#include "cluster/prefix_cache.h"

#include <utility>

namespace silo::cluster {

Status PrefixCache::ListAll() {
  SILO_ASSIGN_OR_RETURN(Etcd::Range range, etcd_.ListRange(prefix_));
  view_.clear();
  for (KeyValue& kv : range.kvs) {
    std::string key = kv.key;
    view_.emplace(std::move(key), std::move(kv));
  }
  revision_ = range.revision;
  ++full_lists_;
  return Status::Ok();
}

Status PrefixCache::Refresh() {
  if (revision_ == 0) return ListAll();
  // Nothing changed anywhere since the last read: the view is etcd's now,
  // for the price of one key's lookup (a range, however few keys changed,
  // makes etcd read every key of the prefix).
  SILO_ASSIGN_OR_RETURN(const int64_t now, etcd_.Revision());
  if (now == revision_) return Status::Ok();
  ++ranges_;
  SILO_ASSIGN_OR_RETURN(Etcd::Range changed, etcd_.ListRange(prefix_, revision_ + 1));
  for (KeyValue& kv : changed.kvs) {
    std::string key = kv.key;
    view_.insert_or_assign(std::move(key), std::move(kv));
  }
  revision_ = changed.revision;
  // The view holds every key etcd holds (a key not changed since the last
  // read is as it was then); a surplus is what was deleted meanwhile.
  if (static_cast<int64_t>(view_.size()) == changed.count) return Status::Ok();
  revision_ = 0;  // a failed list leaves no view to build on
  return ListAll();
}

}  // namespace silo::cluster
