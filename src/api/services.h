// The narrow set of services handlers may use. Not a god object: each field is
// a reference to one service, owned by app::App, which outlives every handler.
#ifndef SILO_API_SERVICES_H_
#define SILO_API_SERVICES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace silo::http {
class Metrics;
}
namespace silo::tenant {
class TenantRegistry;
}
namespace silo::platform {
class EventShipper;
class SecurityLog;
}  // namespace silo::platform
namespace silo::records {
class TenantStores;
}
namespace silo::auth {
class IdentityStores;
}
namespace silo::guard {
class RateLimiter;
class OncePer;
class BanList;
class TrustedProxies;
}  // namespace silo::guard

namespace silo::backup {
class Service;
}
namespace silo::files {
class FileStores;
}
namespace silo::realtime {
class Hubs;
}
namespace silo::checkpoint {
class Book;
}

namespace silo::api {

// What the identity and abuse-protection handlers are configured with.
struct SecurityOptions {
  uint64_t password_memory_kib = 19456;
  uint64_t password_iterations = 2;
  int login_per_minute = 10;
  int public_form_per_minute = 5;
  int realtime_connect_per_minute = 600;  // upgrades per client address
  int token_max_days = 365;               // an API token's expiry is at most this far ahead
  std::vector<std::string> honeypot_paths;
  int64_t ban_us = 3600LL * 1'000'000;
  std::string security_contact;  // empty: no security.txt
  std::string security_policy;
  std::string public_url;        // base of links in mail
  int reset_token_minutes = 10;  // how long a reset code works (the mail says it)
  int step_up_minutes = 5;       // how long a step-up (or a sign-in) counts as fresh
  int api_per_minute = 1200;     // authenticated calls per credential
  int exports_per_hour = 10;     // collection exports per credential
  // SILO_OPERATOR_ACCESS=allowed: tenants may let the operator in without
  // an approved access request (and new ones start so).
  bool operator_access_allowed = false;
};

struct Services {
  tenant::TenantRegistry* tenants = nullptr;
  records::TenantStores* stores = nullptr;  // each tenant's encrypted database
  platform::SecurityLog* security_log = nullptr;
  platform::EventShipper* shipper = nullptr;  // security events off the box
  http::Metrics* metrics = nullptr;
  const std::atomic<bool>* ready = nullptr;  // false until started, and while draining
  auth::IdentityStores* identities = nullptr;
  guard::RateLimiter* limiter = nullptr;
  // Security events that repeat (a refused credential, a throttled client)
  // pass through this: once per minute per client and kind.
  guard::OncePer* event_window = nullptr;
  guard::BanList* bans = nullptr;
  const guard::TrustedProxies* proxies = nullptr;
  const SecurityOptions* security = nullptr;
  backup::Service* backups = nullptr;
  // Signed checkpoints of the tenants' chains (rollback detection).
  checkpoint::Book* checkpoints = nullptr;
  files::FileStores* files = nullptr;  // each tenant's sealed files
  realtime::Hubs* realtime = nullptr;  // each tenant's realtime connections
  // An Argon2id hash of a random password at the configured cost: checked
  // against when the e-mail is unknown, so that both cost the same time.
  std::string dummy_password_hash;
  // Called after a request put mail in a tenant's outbox (wakes the mailer).
  std::function<void(const std::string& tenant_id)> mail_queued;
  // On a cluster node (issue 21): the public URL of the node that leads the
  // tenant with this slug when that is another node (a request for it is
  // answered 307 there), "" when the slug is the cluster's but no node
  // leads it this moment (503, retry: a failover or handover under way),
  // else nullopt. Empty on a single node.
  std::function<std::optional<std::string>(const std::string& slug)> primary_elsewhere;
  // On a cluster node: after a re-key or a restore in place, opens the
  // tenant again (a new replication chain) and waits a while for every
  // follower's copy of it;
  // returns how many followers there are and how many hold it. Empty on a
  // single node.
  std::function<std::pair<int64_t, int64_t>(const std::string& tenant_id)> await_copies;
  // After anything that may have queued mail (a reset, or a security notice
  // to the user: identity_internal.h NotifyUser). Cheap; may be spurious.
  void MailQueued(const std::string& tenant_id) const {
    if (mail_queued) mail_queued(tenant_id);
  }
};

}  // namespace silo::api

#endif  // SILO_API_SERVICES_H_
