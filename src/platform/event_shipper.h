// EventShipper: sends security events off the box (ASVS 11.1.7, 16.4.2), so
// that a record of them lives where the server's owner cannot quietly edit
// it:
//   - every event as an RFC 5424 syslog message over TLS (RFC 5425: octet
//     counting on one long-lived connection) to SILO_SYSLOG_URL
//     (tls://host:port), the receiver's certificate checked against the
//     system's CAs or SILO_SYSLOG_CA_FILE and its name or address;
//   - the events an operator must see at once (kAlertTypes) as a JSON POST
//     to SILO_ALERT_WEBHOOK, signed with HMAC-SHA256 under
//     SILO_ALERT_WEBHOOK_SECRET: X-Silo-Signature: sha256=<hex of
//     HMAC(secret, X-Silo-Timestamp + "." + body)>.
//
// Ship() never blocks a request: events go to a bounded queue that one
// thread drains. A receiver that is down keeps its events queued (retried
// with a growing delay, at most 30 s); when the queue is full the newest
// event is dropped, counted, and a log line says so (once per 100 drops),
// so nothing is lost silently. Thread-safe.
#ifndef SILO_PLATFORM_EVENT_SHIPPER_H_
#define SILO_PLATFORM_EVENT_SHIPPER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"

namespace silo::platform {

struct ShippedEvent {
  int64_t at_us = 0;
  std::string type;    // "auth.token_refused", "honeypot.hit", ...
  std::string tenant;  // the tenant's slug or id; empty for the platform
  std::string actor;
  std::string client;
  std::string detail;  // no secrets (the callers' contract)
};

// The event types that also go to the alert webhook: honeypot bans,
// throttled clients and accounts (lockouts), failed chain or backup
// verification, operator attempts at tenant data, restores, operator
// authentication failures.
bool IsAlert(std::string_view type);

struct ShipperOptions {
  std::string syslog_url;      // tls://host:port; empty: no syslog
  std::string syslog_ca_file;  // empty: the system's CAs
  std::string webhook_url;     // empty: no webhook
  std::string webhook_secret;  // required with webhook_url
  std::string ca_file;         // for the webhook's https; empty: the system's CAs
  std::string hostname;        // the HOSTNAME field of syslog messages
  size_t queue_limit = 10'000;
};

struct ShipperStats {
  int64_t shipped = 0;   // syslog messages written
  int64_t alerted = 0;   // webhook POSTs answered 2xx
  int64_t failures = 0;  // connection or delivery failures (each retried)
  int64_t dropped = 0;   // events lost to a full queue
  int64_t queued = 0;
};

class EventShipper {
 public:
  // InvalidArgument for a malformed URL or a webhook without its secret.
  static Result<std::unique_ptr<EventShipper>> Start(ShipperOptions options);
  ~EventShipper();
  EventShipper(const EventShipper&) = delete;
  EventShipper& operator=(const EventShipper&) = delete;

  void Ship(ShippedEvent event) EXCLUDES(mu_);
  ShipperStats Stats() const EXCLUDES(mu_);
  // Delivers what is queued while the receivers answer, then stops the
  // thread; what a failing receiver leaves queued is counted in the log.
  void Stop() EXCLUDES(mu_);

  // One RFC 5424 message (without the RFC 5425 length prefix).
  static std::string SyslogMessage(const ShippedEvent& e, const std::string& hostname);

 private:
  struct Pending {
    ShippedEvent event;
    bool syslog_done;
    bool webhook_done;
  };
  class SyslogConnection;

  explicit EventShipper(ShipperOptions options);
  void Run();
  bool Deliver(Pending& p);
  bool PostAlert(const ShippedEvent& e);

  const ShipperOptions options_;
  std::unique_ptr<SyslogConnection> syslog_;  // the thread's only
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Pending> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<int64_t> shipped_{0}, alerted_{0}, failures_{0}, dropped_{0};
  std::thread thread_;
};

}  // namespace silo::platform

#endif  // SILO_PLATFORM_EVENT_SHIPPER_H_
