#include "platform/event_shipper.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>

#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::platform {
namespace {

constexpr int kIoTimeoutMs = 5000;
constexpr int64_t kMaxBackoffMs = 30'000;

const char* const kAlertTypes[] = {
    "honeypot.hit",           "rate.throttled",
    "audit.verify_failed",    "backup.verify_failed",
    "backup.drill_failed",    "backup.restored",
    "access.refused",         "operator.auth_failed",
    "backup.restore_refused", "audit.rollback_detected",
};

// RFC 5424 PRINTUSASCII without SP, at most `max` characters ("-" if empty).
std::string Token(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c > 32 && c < 127) ? c : '_';
  return out.empty() ? "-" : out;
}

// An SD-PARAM value: '"', '\' and ']' escaped (RFC 5424 6.3.3).
std::string ParamValue(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\' || c == ']') out += '\\';
    out += (static_cast<unsigned char>(c) < 32) ? ' ' : c;
  }
  return out;
}

std::string HexOf(const unsigned char* p, size_t n) {
  return crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(p), n));
}

// A TCP connection with `timeout_ms` for connecting; -1 on failure.
int ConnectTcp(const std::string& host, const std::string& port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      rc = (poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0)
               ? 0
               : -1;
    }
    if (rc != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return -1;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

bool IsAlert(std::string_view type) {
  for (const char* t : kAlertTypes) {
    if (type == t) return true;
  }
  return false;
}

// One TLS connection to the syslog receiver, opened on first use and again
// after a failure. Used by the shipper's thread only.
class EventShipper::SyslogConnection {
 public:
  SyslogConnection(std::string host, std::string port, const std::string& ca_file)
      : host_(std::move(host)), port_(std::move(port)), ctx_(SSL_CTX_new(TLS_client_method())) {
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (ca_file.empty()) {
      SSL_CTX_set_default_verify_paths(ctx_);
    } else {
      SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
    }
  }
  ~SyslogConnection() {
    Close();
    SSL_CTX_free(ctx_);
  }

  // Writes one framed message; false (closed, to reopen next time) on any
  // failure, with the reason in `why`.
  bool Write(const std::string& framed, std::string* why) {
    // The receiver never sends: a readable socket means it closed (or
    // failed). Without this, the first write after it went away would
    // vanish into a dead connection.
    if (ssl_ != nullptr) {
      pollfd p{fd_, POLLIN | POLLRDHUP, 0};
      if (poll(&p, 1, 0) != 0) Close();
    }
    if (ssl_ == nullptr && !Open(why)) return false;
    size_t done = 0;
    while (done < framed.size()) {
      int n = SSL_write(ssl_, framed.data() + done, static_cast<int>(framed.size() - done));
      if (n <= 0) {
        *why = "write failed";
        Close();
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }

 private:
  bool Open(std::string* why) {
    fd_ = ConnectTcp(host_, port_, kIoTimeoutMs);
    if (fd_ < 0) {
      *why = "cannot connect";
      return false;
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, host_.c_str());
    // The receiver must be who the URL names: its DNS name or IP address.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str()) != 1) {
      X509_VERIFY_PARAM_set1_host(param, host_.c_str(), 0);
    }
    if (SSL_connect(ssl_) != 1) {
      long verify = SSL_get_verify_result(ssl_);
      *why = verify != X509_V_OK
                 ? std::string("certificate refused: ") + X509_verify_cert_error_string(verify)
                 : "TLS handshake failed";
      ERR_clear_error();
      Close();
      return false;
    }
    return true;
  }

  void Close() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    ssl_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  const std::string host_;
  const std::string port_;
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

Result<std::unique_ptr<EventShipper>> EventShipper::Start(ShipperOptions options) {
  std::string host, port;
  if (!options.syslog_url.empty()) {
    std::string_view url = options.syslog_url;
    if (!url.starts_with("tls://"))
      return InvalidArgument("SILO_SYSLOG_URL must be tls://host:port");
    url.remove_prefix(6);
    size_t colon = url.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == url.size()) {
      return InvalidArgument("SILO_SYSLOG_URL must be tls://host:port");
    }
    host = std::string(url.substr(0, colon));
    port = std::string(url.substr(colon + 1));
    if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  }
  if (!options.webhook_url.empty() && options.webhook_secret.empty()) {
    return InvalidArgument("SILO_ALERT_WEBHOOK needs SILO_ALERT_WEBHOOK_SECRET");
  }
  std::unique_ptr<EventShipper> s(new EventShipper(std::move(options)));
  if (!host.empty()) {
    s->syslog_ = std::make_unique<SyslogConnection>(host, port, s->options_.syslog_ca_file);
  }
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

EventShipper::EventShipper(ShipperOptions options) : options_(std::move(options)) {}

EventShipper::~EventShipper() { Stop(); }

void EventShipper::Ship(ShippedEvent event) {
  const bool to_syslog = syslog_ != nullptr;
  const bool to_webhook = !options_.webhook_url.empty() && IsAlert(event.type);
  if (!to_syslog && !to_webhook) return;
  int64_t dropped = 0;
  {
    MutexLock lock(mu_);
    if (queue_.size() >= options_.queue_limit) {
      dropped = ++dropped_;
    } else {
      queue_.push_back({std::move(event), !to_syslog, !to_webhook});
    }
  }
  if (dropped == 0) {
    cv_.Signal();
  } else if (dropped % 100 == 1) {
    log::Error("security event queue full: events dropped",
               {{"dropped_total", std::to_string(dropped)}});
  }
}

ShipperStats EventShipper::Stats() const {
  MutexLock lock(mu_);
  return {shipped_, alerted_, failures_, dropped_, static_cast<int64_t>(queue_.size())};
}

void EventShipper::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

std::string EventShipper::SyslogMessage(const ShippedEvent& e, const std::string& hostname) {
  // authpriv (10); warning (4) for alerts, notice (5) otherwise.
  const int pri = 10 * 8 + (IsAlert(e.type) ? 4 : 5);
  std::string sd = "[silo@32473 type=\"" + ParamValue(e.type) + "\"";
  if (!e.tenant.empty()) sd += " tenant=\"" + ParamValue(e.tenant) + "\"";
  if (!e.actor.empty()) sd += " actor=\"" + ParamValue(e.actor) + "\"";
  if (!e.client.empty()) sd += " client=\"" + ParamValue(e.client) + "\"";
  sd += "]";
  std::string msg = "<" + std::to_string(pri) + ">1 " + FormatRfc3339Micros(e.at_us) + " " +
                    Token(hostname, 255) + " silo " + std::to_string(getpid()) + " " +
                    Token(e.type, 32) + " " + sd;
  if (!e.detail.empty()) msg += " " + e.detail;
  return msg;
}

bool EventShipper::PostAlert(const ShippedEvent& e) {
  const std::string body =
      boost::json::serialize(boost::json::object{{"type", e.type},
                                                 {"at", FormatRfc3339Micros(e.at_us)},
                                                 {"tenant", e.tenant},
                                                 {"actor", e.actor},
                                                 {"client", e.client},
                                                 {"detail", e.detail}});
  const std::string timestamp = std::to_string(NowMicros() / 1'000'000);
  const std::string signed_text = timestamp + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), options_.webhook_secret.data(),
       static_cast<int>(options_.webhook_secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac,
       &mac_len);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return false;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, ("X-Silo-Timestamp: " + timestamp).c_str());
  headers = curl_slist_append(headers, ("X-Silo-Signature: sha256=" + HexOf(mac, mac_len)).c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(headers, curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options_.webhook_url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(kIoTimeoutMs));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(2 * kIoTimeoutMs));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (curl_easy_perform(c) != CURLE_OK) return false;
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return status >= 200 && status < 300;
}

bool EventShipper::Deliver(Pending& p) {
  if (!p.syslog_done) {
    const std::string msg = SyslogMessage(p.event, options_.hostname);
    std::string why;
    if (!syslog_->Write(std::to_string(msg.size()) + " " + msg, &why)) {
      ++failures_;
      log::Warn("security event not shipped to syslog; will retry", {{"cause", why}});
      return false;
    }
    p.syslog_done = true;
    ++shipped_;
  }
  if (!p.webhook_done) {
    if (!PostAlert(p.event)) {
      ++failures_;
      log::Warn("alert webhook not answered with 2xx; will retry", {{"type", p.event.type}});
      return false;
    }
    p.webhook_done = true;
    ++alerted_;
  }
  return true;
}

void EventShipper::Run() {
  int64_t backoff_ms = 0;
  while (true) {
    Pending next;
    {
      MutexLock lock(mu_);
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms);
      // After a failure, wait out the backoff (a stop ends it early).
      while (backoff_ms > 0 && !stop_ && cv_.WaitUntil(mu_, deadline)) {
      }
      while (queue_.empty() && !stop_) cv_.Wait(mu_);
      if (queue_.empty()) return;
      if (stop_ && backoff_ms > 0) {
        log::Error("security events not shipped at stop (a receiver is down)",
                   {{"count", std::to_string(queue_.size())}});
        return;
      }
      next = queue_.front();
    }
    const bool ok = Deliver(next);
    MutexLock lock(mu_);
    if (ok) {
      queue_.pop_front();
      backoff_ms = 0;
    } else {
      queue_.front() = std::move(next);  // what was delivered is not sent again
      backoff_ms = std::min(kMaxBackoffMs, std::max<int64_t>(250, backoff_ms * 2));
    }
  }
}

}  // namespace silo::platform
