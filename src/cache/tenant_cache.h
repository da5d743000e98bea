// One tenant's in-memory cache of values derived from its database (issue
// 19, "tenant-scoped caches"; docs/architecture.md "Caches").
//
// A TenantCache belongs to one open tenant database (storage::TenantDatabase
// owns it and hands it to its connections), so code reaches it only through
// the tenant it is working on: no function takes a tenant id, and no key is
// ever compared with another tenant's (the cross-tenant permission-cache leak
// of spatie/laravel-permission#2964 needs a shared store to happen in).
//
// Invalidation is by generation, not by enumerating what changed: every
// write transaction of the tenant ends by calling Invalidate(), which drops
// every entry and advances the generation. A restore or rebuild replaces the
// open database (and with it the cache); suspend and delete close it. So a
// value derived from the database is served only until the next write, and
// a role edit can never be the change a cache forgot.
//
// Reading a value that is not cached:
//   const uint64_t g = cache.generation();   // before reading the database
//   ... derive `value` from the database ...
//   cache.Put(kNamespace, key, g, value, bytes);
// Put drops the value when a write came in between (the generation moved),
// so a value read before a write never outlives it.
//
// Bounded: at most Options::max_bytes (the callers' estimate of each value's
// size), least recently used first out; a value over max_value_bytes is not
// kept. Values are plain process memory, never written anywhere.
//
// Thread-safe.
#ifndef SILO_CACHE_TENANT_CACHE_H_
#define SILO_CACHE_TENANT_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/mutex.h"

namespace silo::cache {

// The values of one use, all of type T. Declare each at namespace scope;
// its address, not its name, tells namespaces apart (two uses cannot
// collide by choosing the same name, and a key of one use never returns a
// value of another type).
template <class T>
struct Namespace {
  const char* name;  // for reading, not for keying
};

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;  // entries dropped for room (not by Invalidate)
  size_t entries = 0;
  size_t bytes = 0;
};

class TenantCache {
 public:
  struct Options {
    size_t max_bytes = size_t{1} << 20;          // per tenant
    size_t max_value_bytes = size_t{256} << 10;  // larger values are not kept
  };

  TenantCache() : TenantCache(Options{}) {}
  explicit TenantCache(Options options) : options_(options) {}
  TenantCache(const TenantCache&) = delete;
  TenantCache& operator=(const TenantCache&) = delete;

  // Read before reading what a value is derived from; pass it to Put.
  uint64_t generation() const;

  // The value cached under (ns, key), or null.
  template <class T>
  std::shared_ptr<const T> Get(const Namespace<T>& ns, std::string_view key) {
    return std::static_pointer_cast<const T>(GetErased(&ns, key));
  }

  // Keeps `value` (about `bytes` large) under (ns, key) unless the
  // generation is no longer `generation`.
  template <class T>
  void Put(const Namespace<T>& ns, std::string_view key, uint64_t generation,
           std::shared_ptr<const T> value, size_t bytes) {
    PutErased(&ns, key, generation, std::move(value), bytes);
  }

  // Drops every entry and advances the generation (see the file comment).
  void Invalidate();

  CacheStats stats() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const void> value;
    size_t bytes;
  };
  static std::string KeyOf(const void* ns, std::string_view key);
  std::shared_ptr<const void> GetErased(const void* ns, std::string_view key);
  void PutErased(const void* ns, std::string_view key, uint64_t generation,
                 std::shared_ptr<const void> value, size_t bytes);

  const Options options_;
  mutable Mutex mu_;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
  std::list<Entry> lru_ GUARDED_BY(mu_);  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_ GUARDED_BY(mu_);
  CacheStats stats_ GUARDED_BY(mu_);
};

}  // namespace silo::cache

#endif  // SILO_CACHE_TENANT_CACHE_H_
