// The outbox sender: a thread that sends the mail tenants put in their
// outboxes (password resets) through SMTP, and retries failures with a
// growing delay (1, 2, 4 … minutes, at most an hour; given up after 10
// tries). Bodies are erased once sent. Without SILO_SMTP_URL the mail stays
// queued and one warning is logged. Outside development the relay must speak
// TLS (mail::Relay::require_tls): a refusal is a failure like any other, so
// the mail stays queued with the reason as its last error.
#ifndef SILO_APP_MAILER_H_
#define SILO_APP_MAILER_H_

#include <optional>
#include <set>
#include <string>
#include <thread>

#include "api/services.h"
#include "base/mutex.h"
#include "mail/smtp.h"

namespace silo::app {

class Mailer {
 public:
  Mailer(api::Services& services, mail::Relay relay, std::string from);
  ~Mailer() { Stop(); }
  // Wakes the sender for this tenant. Thread-safe; never blocks on I/O.
  void Queued(const std::string& tenant_id);
  void Stop();
  int64_t sent() const { return sent_; }
  int64_t failed() const { return failed_; }

 private:
  void Run();
  // The tenants to drain next: those queued, after waiting up to the rescan
  // interval for one (empty when none came); nullopt once stopped.
  std::optional<std::set<std::string>> NextBatch() EXCLUDES(mu_);
  // Sends what is due in one tenant; true when mail is left for later.
  bool Drain(const std::string& tenant_id);

  api::Services& services_;
  const mail::Relay relay_;  // its url is secret when it carries credentials: never logged
  const std::string from_;
  Mutex mu_;
  CondVar cv_;
  std::set<std::string> pending_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> failed_{0};
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace silo::app

#endif  // SILO_APP_MAILER_H_
