#include "cache/tenant_cache.h"

#include <cstring>

namespace silo::cache {

std::string TenantCache::KeyOf(const void* ns, std::string_view key) {
  std::string out(sizeof ns, '\0');
  std::memcpy(out.data(), &ns, sizeof ns);
  out.append(key);
  return out;
}

uint64_t TenantCache::generation() const {
  MutexLock lock(mu_);
  return generation_;
}

std::shared_ptr<const void> TenantCache::GetErased(const void* ns, std::string_view key) {
  const std::string k = KeyOf(ns, key);
  MutexLock lock(mu_);
  auto it = index_.find(k);
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void TenantCache::PutErased(const void* ns, std::string_view key, uint64_t generation,
                            std::shared_ptr<const void> value, size_t bytes) {
  // What an entry costs beyond the value: the key twice, list and map nodes.
  bytes += 2 * (key.size() + sizeof ns) + 128;
  if (value == nullptr || bytes > options_.max_value_bytes || bytes > options_.max_bytes) return;
  std::string k = KeyOf(ns, key);
  std::shared_ptr<const void> dropped;  // freed after the lock
  MutexLock lock(mu_);
  if (generation != generation_) return;  // derived before a write: stale already
  if (auto it = index_.find(k); it != index_.end()) {
    stats_.bytes -= it->second->bytes;
    dropped = std::move(it->second->value);
    lru_.erase(it->second);
    index_.erase(it);
  }
  while (!lru_.empty() && stats_.bytes + bytes > options_.max_bytes) {
    Entry& last = lru_.back();
    stats_.bytes -= last.bytes;
    ++stats_.evictions;
    index_.erase(last.key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{k, std::move(value), bytes});
  index_.emplace(std::move(k), lru_.begin());
  stats_.bytes += bytes;
}

void TenantCache::Invalidate() {
  std::list<Entry> dropped;  // freed after the lock
  MutexLock lock(mu_);
  ++generation_;
  dropped.swap(lru_);
  index_.clear();
  stats_.bytes = 0;
}

CacheStats TenantCache::stats() const {
  MutexLock lock(mu_);
  CacheStats s = stats_;
  s.entries = index_.size();
  return s;
}

}  // namespace silo::cache
