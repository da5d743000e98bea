// Which address a request comes from, and which clients are banned.
//
// Forwarded-for headers are believed only when the TCP peer is one of the
// configured trusted proxies (SILO_TRUSTED_PROXIES): then the client is the
// right-most X-Forwarded-For entry that is not itself a trusted proxy. From
// anyone else the header is ignored, so a client cannot pick its own
// rate-limit bucket or audited address.
#ifndef SILO_GUARD_CLIENT_ADDRESS_H_
#define SILO_GUARD_CLIENT_ADDRESS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace silo::guard {

// An IPv4 or IPv6 network ("10.0.0.0/8", "::1", "192.0.2.7").
class Network {
 public:
  static Result<Network> Parse(std::string_view text);
  bool Contains(std::string_view address) const;

 private:
  unsigned char bytes_[16] = {};
  int family_ = 0;
  int prefix_bits_ = 0;
};

class TrustedProxies {
 public:
  TrustedProxies() = default;
  // Comma-separated networks; InvalidArgument naming a bad entry.
  static Result<TrustedProxies> Parse(std::string_view list);
  bool Contains(std::string_view address) const;
  // The client address of a request from `peer` carrying `forwarded_for`
  // (the X-Forwarded-For value, if any).
  std::string ClientOf(std::string_view peer, std::optional<std::string_view> forwarded_for) const;

 private:
  std::vector<Network> networks_;
};

// Clients banned until a time (honeypot hits). Bounded: at most `max_bans`
// entries; expired ones are dropped first. Thread-safe; injected clock.
class BanList {
 public:
  explicit BanList(size_t max_bans = 100'000) : max_bans_(max_bans) {}
  void Ban(const std::string& client, int64_t until_us, int64_t now_us);
  bool Banned(const std::string& client, int64_t now_us) const;
  size_t size() const;

 private:
  const size_t max_bans_;
  mutable Mutex mu_;
  std::unordered_map<std::string, int64_t> until_ GUARDED_BY(mu_);
};

}  // namespace silo::guard

#endif  // SILO_GUARD_CLIENT_ADDRESS_H_
