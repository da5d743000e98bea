// SecurityLog: the platform's append-only, hash-chained record of security
// events that belong to no tenant (operator actions, operator auth failures;
// later honeypot hits and bans). <data>/platform/security.log, mode 0600.
//
// One JSON object per line:
//   {"seq":N,"ts":"<RFC 3339 UTC>","type":"...","actor":"...","client":"...",
//    "detail":"...","prev":"<hex>","hash":"<hex>"}
// hash = SHA-256(prev || body) where body is the line serialised without the
// "hash" field; the first entry's prev is 64 zeros. Editing, removing or
// reordering a line breaks every hash after it (Verify names the first).
// Thread-safe.
#ifndef SILO_PLATFORM_SECURITY_LOG_H_
#define SILO_PLATFORM_SECURITY_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace silo::platform {

struct SecurityEvent {
  std::string type;    // e.g. "tenant.created", "operator.auth_failed"
  std::string actor;   // "operator" or "anonymous"
  std::string client;  // peer IP
  std::string detail;  // short, no secrets
};

// One line of the log as read back.
struct LoggedEvent {
  int64_t at_us = 0;  // "ts", whole seconds
  SecurityEvent event;
};

class SecurityLog {
 public:
  // Opens (or creates) the log and verifies the chain to find its head.
  static Result<std::unique_ptr<SecurityLog>> Open(const std::string& path);
  Status Append(const SecurityEvent& event);
  // Append for callers that must go on whatever happens (a request is still
  // answered): a failure becomes an error line in the process log with the
  // event's type, `request_id` and the cause, so a lost security event is
  // never silent.
  void AppendOrLog(const SecurityEvent& event, std::string_view request_id = {});
  // Ok, or DataLoss naming the first line (1-based) whose hash does not hold.
  static Status Verify(const std::string& path);
  // The events stamped within [from_us, to_us], in order (an incident's
  // timeline), read in one pass that checks the chain. DataLoss when the
  // chain does not hold or the file ends before the last event this log
  // wrote (an edited log is not evidence). Holds off appends meanwhile.
  Result<std::vector<LoggedEvent>> Read(int64_t from_us, int64_t to_us) EXCLUDES(mutex_);
  // Before the log is shared (not thread-safe): told of each event once it
  // is written, under the log's lock (must not block: event_shipper.h).
  void SetObserver(std::function<void(const SecurityEvent&)> observer) {
    observer_ = std::move(observer);
  }

 private:
  SecurityLog(std::string path, uint64_t seq, std::string head)
      : path_(std::move(path)), seq_(seq), head_(std::move(head)) {}
  const std::string path_;
  std::function<void(const SecurityEvent&)> observer_;
  Mutex mutex_;
  uint64_t seq_ GUARDED_BY(mutex_);      // last sequence number written
  std::string head_ GUARDED_BY(mutex_);  // hash of the last line
};

}  // namespace silo::platform

#endif  // SILO_PLATFORM_SECURITY_LOG_H_
