#include "platform/security_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <ctime>
#include <fstream>
#include <functional>

#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::platform {
namespace {

namespace json = boost::json;
const std::string kZeroHash(64, '0');

std::string Now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Walks the file; returns the last seq and head hash, or the first bad line.
// `visit`, when given, sees each line once its hash held.
Status Scan(const std::string& path, uint64_t* seq, std::string* head,
            const std::function<Status(const json::object&)>& visit = nullptr) {
  *seq = 0;
  *head = kZeroHash;
  std::ifstream in(path);
  if (!in) return Status::Ok();  // no log yet
  std::string line;
  uint64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object())
      return DataLoss("security log line " + std::to_string(lineno) + " is not JSON");
    json::object o = v.as_object();
    const json::value* hash = o.if_contains("hash");
    const json::value* prev = o.if_contains("prev");
    const json::value* s = o.if_contains("seq");
    if (hash == nullptr || !hash->is_string() || prev == nullptr || !prev->is_string() ||
        s == nullptr || !s->is_int64()) {
      return DataLoss("security log line " + std::to_string(lineno) + " lacks chain fields");
    }
    std::string claimed(hash->as_string());
    o.erase("hash");
    std::string body = json::serialize(o);
    if (std::string(prev->as_string()) != *head ||
        static_cast<uint64_t>(s->as_int64()) != *seq + 1 ||
        crypto::Sha256Hex(*head + body) != claimed) {
      return DataLoss("security log chain broken at line " + std::to_string(lineno));
    }
    *head = claimed;
    *seq += 1;
    if (visit) SILO_RETURN_IF_ERROR(visit(o));
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<SecurityLog>> SecurityLog::Open(const std::string& path) {
  uint64_t seq = 0;
  std::string head;
  Status s = Scan(path, &seq, &head);
  if (!s.ok()) return s;
  return std::unique_ptr<SecurityLog>(new SecurityLog(path, seq, head));
}

Status SecurityLog::Verify(const std::string& path) {
  uint64_t seq = 0;
  std::string head;
  return Scan(path, &seq, &head);
}

Result<std::vector<LoggedEvent>> SecurityLog::Read(int64_t from_us, int64_t to_us) {
  // Under the lock no line is half written, and the chain read must end
  // where this log's last append left it: lines cut off the end are caught
  // too, which the chain alone cannot show.
  MutexLock lock(mutex_);
  std::vector<LoggedEvent> out;
  uint64_t seq = 0;
  std::string head;
  SILO_RETURN_IF_ERROR(Scan(path_, &seq, &head, [&](const json::object& o) -> Status {
    auto str = [&](std::string_view k) {
      const json::value* f = o.if_contains(k);
      return f != nullptr && f->is_string() ? std::string(f->as_string()) : std::string();
    };
    auto at = ParseRfc3339(str("ts"));
    if (!at.ok()) return DataLoss("a security log line has no time");
    if (*at >= from_us && *at <= to_us) {
      out.push_back({*at, {str("type"), str("actor"), str("client"), str("detail")}});
    }
    return Status::Ok();
  }));
  if (seq != seq_ || head != head_) {
    return DataLoss("the security log ends before its last entry (lines were cut off)");
  }
  return out;
}

void SecurityLog::AppendOrLog(const SecurityEvent& event, std::string_view request_id) {
  if (Status s = Append(event); !s.ok()) {
    log::Error("security log append failed",
               {{"type", event.type}, {"request_id", request_id}, {"cause", s.ToString()}});
  }
}

Status SecurityLog::Append(const SecurityEvent& e) {
  MutexLock lock(mutex_);
  json::object o;
  o["seq"] = static_cast<int64_t>(seq_ + 1);
  o["ts"] = Now();
  o["type"] = e.type;
  o["actor"] = e.actor;
  o["client"] = e.client;
  o["detail"] = e.detail;
  o["prev"] = head_;
  std::string body = json::serialize(o);
  std::string hash = crypto::Sha256Hex(head_ + body);
  o["hash"] = hash;
  std::string line = json::serialize(o) + "\n";
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Internal("cannot open security log");
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok) return Internal("cannot write security log");
  ++seq_;
  head_ = hash;
  if (observer_) observer_(e);
  return Status::Ok();
}

}  // namespace silo::platform
