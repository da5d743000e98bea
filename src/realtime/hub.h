// Realtime channels (issue 19; docs/formats.md "Realtime protocol"): each
// tenant's connections, subscriptions, presence and tickets live in that
// tenant's Hub, reached only through Hubs with the tenant id the dispatcher
// bound (no function takes a channel name without a tenant: scoping by
// construction, not by prefix).
//
// Record channels are fed from the tenant's event log after commit: a
// request that may have written calls AfterWrite, which runs one delivery
// round under the hub's lock before the request is answered. A round reads
// the events after the hub's cursor, then the audit entries after its
// cursor; an audit entry that can reduce access (kRevokingAuditTypes)
// re-resolves every connection's rights first (ending subscriptions no
// longer allowed, closing connections whose credentials ended), so no event
// is delivered under rights revoked by a transaction that committed before
// the round began. Each event goes to each subscriber that may read the
// record under its record rules (records/rules.h), with its field rules
// applied, and that matches the subscription's filter.
//
// Connections hold no thread: the transport (http::MessageChannel) queues
// what is sent, and closes a slow consumer itself.
#ifndef SILO_REALTIME_HUB_H_
#define SILO_REALTIME_HUB_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "events/event_log.h"
#include "http/message.h"
#include "records/rules.h"
#include "records/tenant_store.h"

namespace silo::realtime {

// Who a connection acts for, as its credentials say now.
struct Principal {
  events::Actor actor;                   // {"user", id} or {"token", id}
  std::vector<std::string> permissions;  // effective
  bool mfa_enrolment_pending = false;
  records::RulesProvider rules;  // the record rules its grants give
  std::string user_id;           // "" for an operator's token
  // When the credentials end unless renewed (a session's idle or absolute
  // limit, a token's expiry): the connection re-checks them then.
  int64_t ends_at_us = INT64_MAX;
};

// Re-reads a connection's credentials (without counting as the session's
// use): Unauthenticated when they ended.
using Reauthenticate = std::function<Result<Principal>(int64_t now_us)>;

struct Limits {
  size_t max_connections = 5000;            // all tenants (SILO_REALTIME_MAX_CONNECTIONS)
  size_t max_tenant_connections = 1000;     // one tenant's
  size_t max_channels = 100;                // one connection's subscriptions
  size_t max_tenant_channels = 10'000;      // channels in use at once in one tenant
  int connection_messages_per_second = 50;  // client frames, a burst of twice as many
  int tenant_publishes_per_second = 1000;   // broadcasts of one tenant, clients and servers
  int max_replay = 1000;                    // events a resume may replay; beyond, `reset`
  int denials_audited_per_minute = 10;      // per connection
};

// Process-wide counters (no per-tenant labels: ten thousand tenants would
// make ten thousand series).
struct Counters {
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> deliveries{0};
  std::atomic<int64_t> dropped_slow{0};
  std::atomic<int64_t> denied{0};
};

// The audit entry types after which every connection's rights are
// re-resolved, and those that start a new epoch of the event log.
extern const std::vector<std::string_view> kRevokingAuditTypes;
extern const std::vector<std::string_view> kEpochAuditTypes;

struct ConnectionSpec {
  Principal principal;
  Reauthenticate reauthenticate;
  std::string client;      // for audit entries
  std::string request_id;  // of the upgrade
  // An event stream (SSE): read-only, its one subscription made by the
  // caller (SubscribeStream), frames in the text/event-stream format.
  bool event_stream = false;
};

class Hub;

class Hubs {
 public:
  Hubs(records::TenantStores* stores, Limits limits);
  ~Hubs();
  Hubs(const Hubs&) = delete;
  Hubs& operator=(const Hubs&) = delete;

  // A new connection of the tenant, for the transport to serve.
  // ResourceExhausted over the global or the tenant's connection limit.
  Result<std::shared_ptr<http::MessageHandler>> Connect(const std::string& tenant_id,
                                                        ConnectionSpec spec);
  // For an event stream's handler (Connect with event_stream): subscribes
  // it to `channel` as a subscribe frame would, resuming after `after` in
  // `epoch` when given. The error's message is safe to show.
  Status SubscribeStream(const std::string& tenant_id, http::MessageHandler& stream,
                         std::string_view channel, std::string_view filter,
                         std::optional<int64_t> after, std::optional<std::string> epoch);

  // A request of the tenant may have committed: deliver what it wrote, and
  // re-resolve rights if it changed them. Returns when every event is queued
  // on its connections. Cheap when the tenant has no connection.
  void AfterWrite(const std::string& tenant_id);
  // A server's message to the broadcast channel `channel` names (its name
  // without "broadcast:"), or, for "user:<id>", to that user's user:self
  // subscribers. ResourceExhausted over the tenant's publish rate. Returns
  // how many connections it was queued on.
  Result<int64_t> Publish(const std::string& tenant_id, std::string_view channel,
                          std::string_view event, const boost::json::value& payload);
  // Closes every connection of the tenant (suspended, deleted) with `code`.
  void CloseTenant(const std::string& tenant_id, int code, std::string_view reason);

  // A single-use ticket (30 s) standing for `reauthenticate`'s credentials;
  // kept only as its hash, in the tenant's hub.
  std::string IssueTicket(const std::string& tenant_id, Reauthenticate reauthenticate,
                          int64_t now_us);
  // The credentials of a live ticket, which is then spent; Unauthenticated
  // otherwise (unknown, spent, expired, or another tenant's).
  Result<Reauthenticate> RedeemTicket(const std::string& tenant_id, std::string_view ticket,
                                      int64_t now_us);

  // Re-checks the connections whose credentials reached their end time, and
  // drops expired tickets. Called by the sweeper thread every 200 ms; public
  // for tests, which pass their own time.
  void Sweep(int64_t now_us);

  const Counters& counters() const { return counters_; }
  size_t connections() const { return static_cast<size_t>(counters_.connections.load()); }

 private:
  std::shared_ptr<Hub> HubOf(const std::string& tenant_id, bool create);
  void SweeperLoop();

  records::TenantStores* const stores_;
  const Limits limits_;
  Counters counters_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Hub>> hubs_ GUARDED_BY(mu_);
  Mutex sweep_mu_;
  CondVar sweep_cv_;
  bool stopping_ GUARDED_BY(sweep_mu_) = false;
  std::thread sweeper_;
};

}  // namespace silo::realtime

#endif  // SILO_REALTIME_HUB_H_
