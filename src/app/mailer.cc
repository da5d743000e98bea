#include "app/mailer.h"

#include "auth/identity.h"
#include "base/log.h"
#include "base/time_util.h"
#include "mail/smtp.h"
#include "platform/security_log.h"
#include "tenant/registry.h"

namespace silo::app {
namespace {
constexpr int kMaxAttempts = 10;
constexpr auto kRescan = std::chrono::seconds(30);
}  // namespace

Mailer::Mailer(api::Services& services, mail::Relay relay, std::string from)
    : services_(services),
      relay_(std::move(relay)),
      from_(std::move(from)),
      thread_([this] { Run(); }) {
  if (relay_.url.empty()) {
    log::Info("SILO_SMTP_URL is not set: mail (password resets) stays in the tenants' outboxes");
  }
}

void Mailer::Queued(const std::string& tenant_id) {
  {
    MutexLock lock(mu_);
    pending_.insert(tenant_id);
  }
  cv_.SignalAll();
}

void Mailer::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::set<std::string>> Mailer::NextBatch() {
  MutexLock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + kRescan;
  while (!stop_ && pending_.empty() && cv_.WaitUntil(mu_, deadline)) {
  }
  if (stop_) return std::nullopt;
  std::set<std::string> work;
  work.swap(pending_);
  return work;
}

void Mailer::Run() {
  std::set<std::string> retry;  // tenants with mail left for later
  while (auto work = NextBatch()) {
    work->insert(retry.begin(), retry.end());
    retry.clear();
    if (relay_.url.empty()) continue;
    for (const auto& id : *work) {
      if (Drain(id)) retry.insert(id);
    }
  }
}

bool Mailer::Drain(const std::string& tenant_id) {
  auto identity = services_.identities->Open(tenant_id);
  if (!identity.ok()) return true;
  const int64_t now = NowMicros();
  auto due = (*identity)->DueMail(now, 50);
  if (!due.ok()) return true;
  bool left = false;
  for (const auto& m : *due) {
    Status sent = mail::Send(relay_, {from_, m.recipient, m.subject, m.body});
    if (sent.ok()) {
      (void)(*identity)->MarkMailSent(m.id, now);
      ++sent_;
      continue;
    }
    ++failed_;
    log::Error("mail not sent; will retry", {{"tenant", tenant_id}, {"cause", sent.message()}});
    if (m.attempts + 1 >= kMaxAttempts) {
      (void)(*identity)->MarkMailFailed(m.id, sent.message(), INT64_MAX);
      services_.security_log->AppendOrLog({"mail.given_up", "system", "", tenant_id});
    } else {
      int64_t delay = std::min<int64_t>(60LL << m.attempts, 3600) * 1'000'000;
      (void)(*identity)->MarkMailFailed(m.id, sent.message(), now + delay);
      left = true;
    }
  }
  return left || due->size() == 50;
}

}  // namespace silo::app
