#include "guard/client_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace silo::guard {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses an address into 16 bytes; returns the family (AF_INET/AF_INET6) or 0.
int ParseAddress(std::string_view text, unsigned char out[16]) {
  std::string s(Trim(text));
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  std::memset(out, 0, 16);
  if (inet_pton(AF_INET, s.c_str(), out) == 1) return AF_INET;
  if (inet_pton(AF_INET6, s.c_str(), out) == 1) return AF_INET6;
  return 0;
}

}  // namespace

Result<Network> Network::Parse(std::string_view text) {
  text = Trim(text);
  Network n;
  size_t slash = text.find('/');
  n.family_ = ParseAddress(text.substr(0, slash), n.bytes_);
  if (n.family_ == 0) return InvalidArgument("not an IP address or network: " + std::string(text));
  int max_bits = n.family_ == AF_INET ? 32 : 128;
  n.prefix_bits_ = max_bits;
  if (slash != std::string_view::npos) {
    std::string bits(text.substr(slash + 1));
    if (bits.empty() || bits.size() > 3 ||
        !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(bits) > max_bits) {
      return InvalidArgument("bad prefix length in " + std::string(text));
    }
    n.prefix_bits_ = std::stoi(bits);
  }
  return n;
}

bool Network::Contains(std::string_view address) const {
  unsigned char a[16];
  if (ParseAddress(address, a) != family_) return false;
  int bits = prefix_bits_;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (bytes_[i] & mask)) return false;
  }
  return true;
}

Result<TrustedProxies> TrustedProxies::Parse(std::string_view list) {
  TrustedProxies t;
  while (!Trim(list).empty()) {
    size_t comma = list.find(',');
    auto n = Network::Parse(list.substr(0, comma));
    if (!n.ok()) return n.status();
    t.networks_.push_back(*n);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return t;
}

bool TrustedProxies::Contains(std::string_view address) const {
  return std::any_of(networks_.begin(), networks_.end(),
                     [&](const Network& n) { return n.Contains(address); });
}

std::string TrustedProxies::ClientOf(std::string_view peer,
                                     std::optional<std::string_view> forwarded_for) const {
  if (!forwarded_for || !Contains(peer)) return std::string(peer);
  std::string_view rest = *forwarded_for;
  // Walk from the right: the nearest entries were added by our own proxies.
  while (!rest.empty()) {
    size_t comma = rest.rfind(',');
    std::string_view entry = Trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    unsigned char scratch[16];
    if (ParseAddress(entry, scratch) == 0) break;  // garbage: stop at the last proxy
    if (!Contains(entry)) return std::string(entry);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(0, comma);
  }
  return std::string(peer);
}

void BanList::Ban(const std::string& client, int64_t until_us, int64_t now_us) {
  MutexLock lock(mu_);
  if (until_.size() >= max_bans_ && !until_.count(client)) {
    std::erase_if(until_, [&](const auto& kv) { return kv.second <= now_us; });
    if (until_.size() >= max_bans_) {
      // Still full of live bans: drop the one ending soonest.
      auto soonest =
          std::min_element(until_.begin(), until_.end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      until_.erase(soonest);
    }
  }
  int64_t& u = until_[client];
  u = std::max(u, until_us);
}

bool BanList::Banned(const std::string& client, int64_t now_us) const {
  MutexLock lock(mu_);
  auto it = until_.find(client);
  return it != until_.end() && it->second > now_us;
}

size_t BanList::size() const {
  MutexLock lock(mu_);
  return until_.size();
}

}  // namespace silo::guard
