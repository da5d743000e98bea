#include "config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "crypto/crypto.h"

namespace silo::config {
namespace {

std::string Get(const GetEnv& getenv, const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// Parses a positive integer variable into `out`; records a problem otherwise.
template <typename T>
void ReadNumber(const GetEnv& getenv, const char* name, T min, T max, T* out,
                std::vector<std::string>* problems) {
  std::string v = Get(getenv, name);
  if (v.empty()) return;
  unsigned long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < static_cast<unsigned long long>(min) ||
      n > static_cast<unsigned long long>(max)) {
    problems->push_back(std::string(name) + " must be a whole number from " + std::to_string(min) +
                        " to " + std::to_string(max));
    return;
  }
  *out = static_cast<T>(n);
}

void ReadMillis(const GetEnv& getenv, const char* name, std::chrono::milliseconds* out,
                std::vector<std::string>* problems) {
  long long ms = out->count();
  ReadNumber<long long>(getenv, name, 1, 3'600'000, &ms, problems);
  *out = std::chrono::milliseconds(ms);
}

// A 32-byte key as base64 in `name` or in the file `name`_FILE (one of the
// two); nothing when neither is set. `what` names it in problems.
void ReadKey(const GetEnv& getenv, const std::string& name, const char* what,
             std::optional<crypto::SecretKey>* out, std::vector<std::string>* problems) {
  std::string inline_key = Get(getenv, name.c_str());
  std::string key_file = Get(getenv, (name + "_FILE").c_str());
  if (!inline_key.empty() && !key_file.empty()) {
    problems->push_back("set only one of " + name + " and " + name + "_FILE");
    return;
  }
  std::string text = inline_key;
  if (!key_file.empty()) {
    auto contents = ReadFile(key_file);
    if (!contents.ok()) {
      problems->push_back(name + "_FILE cannot be read");
      return;
    }
    text = Trim(*contents);
    crypto::WipeString(*contents);
  }
  if (text.empty()) return;
  auto raw = crypto::Base64Decode(text);
  crypto::WipeString(text);
  if (!raw.ok() || raw->size() != crypto::SecretKey::kSize) {
    problems->push_back(std::string(what) + " must be base64 of exactly 32 bytes");
    if (raw.ok()) crypto::WipeString(*raw);
    return;
  }
  auto key = crypto::SecretKey::FromBytes(*raw);
  crypto::WipeString(*raw);
  out->emplace(std::move(*key));
}

// A comma-separated list: items trimmed, empty items dropped.
std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t from = 0;
  while (from <= list.size()) {
    size_t comma = list.find(',', from);
    if (std::string item = Trim(list.substr(from, comma - from)); !item.empty()) {
      out.push_back(std::move(item));
    }
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  return out;
}

}  // namespace

const char* EnvironmentName(Environment env) {
  switch (env) {
    case Environment::kDevelopment: return "development";
    case Environment::kStaging: return "staging";
    case Environment::kProduction: return "production";
  }
  return "unknown";
}

std::string HostPort::ToString() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<HostPort> ParseHostPort(const std::string& text) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (!IsIp(host)) return std::nullopt;
  unsigned int n = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || n > 65535) {
    return std::nullopt;
  }
  return HostPort{host, static_cast<unsigned short>(n)};
}

bool IsLoopback(const std::string& ip) {
  in_addr v4;
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return ip == "::1";
}

namespace {

// The environment, where Silo listens and stores, its keys, TLS and proxies.
void ReadServer(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Config& c = *config;
  std::string env = Get(getenv, "SILO_ENV");
  if (env.empty() || env == "development") {
    c.env = Environment::kDevelopment;
  } else if (env == "staging") {
    c.env = Environment::kStaging;
  } else if (env == "production") {
    c.env = Environment::kProduction;
  } else {
    problems->push_back("SILO_ENV must be development, staging or production");
  }

  if (std::string d = Get(getenv, "SILO_DATA_DIR"); !d.empty()) c.data_dir = d;

  if (std::string l = Get(getenv, "SILO_LISTEN"); !l.empty()) {
    auto hp = ParseHostPort(l);
    if (hp)
      c.listen = *hp;
    else
      problems->push_back("SILO_LISTEN must be <ip>:<port>");
  }
  if (std::string l = Get(getenv, "SILO_OPERATOR_LISTEN"); !l.empty()) {
    auto hp = ParseHostPort(l);
    if (hp)
      c.operator_listen = *hp;
    else
      problems->push_back("SILO_OPERATOR_LISTEN must be <ip>:<port>");
  }
  // Why: the operator API manages every tenant; exposing it beyond this host
  // would put the whole platform one stolen token away from the internet.
  if (!IsLoopback(c.operator_listen.host)) {
    problems->push_back("SILO_OPERATOR_LISTEN must be a loopback address");
  }

  ReadKey(getenv, "SILO_MASTER_KEY", "the master key", &c.master_key, problems);
  ReadKey(getenv, "SILO_SIGNING_KEY", "the signing key", &c.signing_key, problems);
  ReadKey(getenv, "SILO_NEW_MASTER_KEY", "the new master key", &c.new_master_key, problems);
  ReadNumber<int>(getenv, "SILO_CHECKPOINT_MINUTES", 1, 24 * 60, &c.checkpoint_minutes, problems);
  c.operator_token = Get(getenv, "SILO_OPERATOR_TOKEN");
  c.tls_cert_file = Get(getenv, "SILO_TLS_CERT");
  c.tls_key_file = Get(getenv, "SILO_TLS_KEY");
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    problems->push_back("set both SILO_TLS_CERT and SILO_TLS_KEY, or neither");
  }

  c.base_domain = Get(getenv, "SILO_BASE_DOMAIN");
  std::transform(c.base_domain.begin(), c.base_domain.end(), c.base_domain.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  if (!c.base_domain.empty() &&
      (c.base_domain.front() == '.' || c.base_domain.back() == '.' ||
       c.base_domain.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") !=
           std::string::npos)) {
    problems->push_back("SILO_BASE_DOMAIN must be a domain name like example.com");
  }

  for (const std::string& item : SplitList(Get(getenv, "SILO_TRUSTED_PROXIES"))) {
    if (IsIp(item))
      c.trusted_proxies.push_back(item);
    else
      problems->push_back("SILO_TRUSTED_PROXIES: not an IP address: " + item);
  }

  if (std::string sync = Get(getenv, "SILO_SYNCHRONOUS"); !sync.empty()) {
    if (sync == "full") {
      c.synchronous_full = true;
    } else if (sync == "normal") {
      c.synchronous_full = false;
    } else {
      problems->push_back("SILO_SYNCHRONOUS must be full or normal");
    }
  }
  ReadNumber<int>(getenv, "SILO_AUDIT_RETENTION_MONTHS", 1, 1200, &c.audit_retention_months,
                  problems);
}

// SILO_BACKUP_* and SILO_S3_*: where backups go, when, and how long they stay.
void ReadBackups(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Config& c = *config;
  Backups& b = c.backups;
  b.target = Get(getenv, "SILO_BACKUP_TARGET");
  if (b.target.empty()) b.target = layout::DefaultBackupDir(c.data_dir);
  if (std::string r = Get(getenv, "SILO_S3_REGION"); !r.empty()) b.s3_region = r;
  b.s3_endpoint = Get(getenv, "SILO_S3_ENDPOINT");
  if (b.s3_endpoint.empty()) b.s3_endpoint = "https://s3." + b.s3_region + ".amazonaws.com";
  b.s3_access_key_id = Get(getenv, "SILO_S3_ACCESS_KEY_ID");
  b.s3_secret_access_key = Get(getenv, "SILO_S3_SECRET_ACCESS_KEY");
  if (b.target.rfind("s3://", 0) == 0) {
    if (b.s3_access_key_id.empty() || b.s3_secret_access_key.empty()) {
      problems->push_back(
          "SILO_BACKUP_TARGET=s3://… needs SILO_S3_ACCESS_KEY_ID and SILO_S3_SECRET_ACCESS_KEY");
    }
    if (b.s3_endpoint.rfind("https://", 0) != 0 && b.s3_endpoint.rfind("http://", 0) != 0) {
      problems->push_back("SILO_S3_ENDPOINT must start with https:// or http://");
    }
  } else if (b.target.find("://") != std::string::npos) {
    problems->push_back("SILO_BACKUP_TARGET must be a directory or s3://bucket/prefix");
  }
  if (std::string v = Get(getenv, "SILO_BACKUP_SCHEDULE"); !v.empty()) {
    if (v == "on" || v == "off") {
      b.schedule = v == "on";
    } else {
      problems->push_back("SILO_BACKUP_SCHEDULE must be on or off");
    }
  }
  if (std::string v = Get(getenv, "SILO_BACKUP_TIME"); !v.empty()) {
    int h = -1, m = -1, sec = 0;
    char tail = 0;
    int n = std::sscanf(v.c_str(), "%2d:%2d:%2d%c", &h, &m, &sec, &tail);
    if ((n == 2 || n == 3) && h >= 0 && h < 24 && m >= 0 && m < 60 && sec >= 0 && sec < 60) {
      b.daily_at_seconds = h * 3600 + m * 60 + sec;
    } else {
      problems->push_back("SILO_BACKUP_TIME must be HH:MM or HH:MM:SS (UTC)");
    }
  }
  if (std::string v = Get(getenv, "SILO_BACKUP_WEEKLY_DAY"); !v.empty()) {
    static const char* kDays[] = {"sunday",   "monday", "tuesday", "wednesday",
                                  "thursday", "friday", "saturday"};
    int found = -1;
    for (int i = 0; i < 7; ++i) {
      if (v == kDays[i]) found = i;
    }
    if (found < 0) {
      problems->push_back("SILO_BACKUP_WEEKLY_DAY must be a weekday in English, lower case");
    } else {
      b.weekly_day = found;
    }
  }
  ReadNumber<int>(getenv, "SILO_BACKUP_DAILY_DAYS", 1, 3650, &b.daily_days, problems);
  ReadNumber<int>(getenv, "SILO_BACKUP_WEEKLY_DAYS", 1, 3650, &b.weekly_days, problems);
  ReadNumber<int>(getenv, "SILO_BACKUP_RETRIES", 0, 10, &b.retries, problems);
  ReadNumber<int>(getenv, "SILO_BACKUP_RETRY_SECONDS", 1, 86400, &b.retry_seconds, problems);
}

// Sessions, password hashing, rate limits, honeypots, security.txt and mail.
void ReadSecurity(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Config& c = *config;
  Security& sec = c.security;
  ReadNumber<int>(getenv, "SILO_SESSION_IDLE_MINUTES", 1, 24 * 60, &sec.session_idle_minutes,
                  problems);
  ReadNumber<int>(getenv, "SILO_SESSION_ABSOLUTE_HOURS", 1, 24 * 30, &sec.session_absolute_hours,
                  problems);
  ReadNumber<int>(getenv, "SILO_RESET_TOKEN_MINUTES", 1, 24 * 60, &sec.reset_token_minutes,
                  problems);
  ReadNumber<int>(getenv, "SILO_STEP_UP_MINUTES", 1, 60, &sec.step_up_minutes, problems);
  ReadNumber<int>(getenv, "SILO_API_RATE_PER_MINUTE", 6, 1'000'000, &sec.api_per_minute, problems);
  ReadNumber<int>(getenv, "SILO_EXPORTS_PER_HOUR", 1, 10'000, &sec.exports_per_hour, problems);
  ReadNumber<uint64_t>(getenv, "SILO_PASSWORD_MEMORY_KIB", 19456, 4 * 1024 * 1024,
                       &sec.password_memory_kib, problems);
  ReadNumber<uint64_t>(getenv, "SILO_PASSWORD_ITERATIONS", 2, 100, &sec.password_iterations,
                       problems);
  ReadNumber<unsigned>(getenv, "SILO_PASSWORD_THREADS", 1, 64, &sec.password_threads, problems);
  ReadNumber<size_t>(getenv, "SILO_PASSWORD_QUEUE", 0, 100'000, &sec.password_queue, problems);
  ReadNumber<int>(getenv, "SILO_LOGIN_RATE_PER_MINUTE", 1, 1'000'000, &sec.login_per_minute,
                  problems);
  ReadNumber<int>(getenv, "SILO_PUBLIC_FORM_RATE_PER_MINUTE", 1, 1'000'000,
                  &sec.public_form_per_minute, problems);
  ReadNumber<int>(getenv, "SILO_BAN_SECONDS", 1, 30 * 24 * 3600, &sec.ban_seconds, problems);
  ReadNumber<int>(getenv, "SILO_TOKEN_MAX_DAYS", 1, 10 * 366, &sec.token_max_days, problems);
  if (std::string access = Get(getenv, "SILO_OPERATOR_ACCESS"); !access.empty()) {
    if (access == "approval") {
      sec.operator_access_allowed = false;
    } else if (access == "allowed") {
      sec.operator_access_allowed = true;
    } else {
      problems->push_back("SILO_OPERATOR_ACCESS must be approval or allowed");
    }
  }
  if (const char* paths = getenv("SILO_HONEYPOT_PATHS"); paths != nullptr) {
    sec.honeypot_paths.clear();  // set but empty: no honeypot paths at all
    for (std::string& item : SplitList(paths)) {
      if (item[0] != '/') problems->push_back("SILO_HONEYPOT_PATHS: must start with /: " + item);
      sec.honeypot_paths.push_back(std::move(item));
    }
  }
  sec.security_contact = Get(getenv, "SILO_SECURITY_CONTACT");
  if (!sec.security_contact.empty() && sec.security_contact.rfind("mailto:", 0) != 0 &&
      sec.security_contact.rfind("https://", 0) != 0 &&
      sec.security_contact.rfind("tel:", 0) != 0) {
    problems->push_back("SILO_SECURITY_CONTACT must be a mailto:, tel: or https:// URI");
  }
  sec.security_policy = Get(getenv, "SILO_SECURITY_POLICY");
  if (!sec.security_policy.empty() && sec.security_policy.rfind("https://", 0) != 0) {
    problems->push_back("SILO_SECURITY_POLICY must be an https:// URI");
  }
  sec.smtp_url = Get(getenv, "SILO_SMTP_URL");
  if (!sec.smtp_url.empty() && sec.smtp_url.rfind("smtp://", 0) != 0 &&
      sec.smtp_url.rfind("smtps://", 0) != 0) {
    problems->push_back("SILO_SMTP_URL must start with smtp:// or smtps://");
  }
  if (std::string from = Get(getenv, "SILO_SMTP_FROM"); !from.empty()) sec.smtp_from = from;
  sec.smtp_ca_file = Get(getenv, "SILO_SMTP_CA_FILE");
  sec.syslog_url = Get(getenv, "SILO_SYSLOG_URL");
  if (!sec.syslog_url.empty() && sec.syslog_url.rfind("tls://", 0) != 0) {
    problems->push_back("SILO_SYSLOG_URL must be tls://host:port (syslog over TLS, RFC 5425)");
  }
  sec.syslog_ca_file = Get(getenv, "SILO_SYSLOG_CA_FILE");
  sec.alert_webhook = Get(getenv, "SILO_ALERT_WEBHOOK");
  sec.alert_webhook_secret = Get(getenv, "SILO_ALERT_WEBHOOK_SECRET");
  if (!sec.alert_webhook.empty() && sec.alert_webhook.rfind("https://", 0) != 0 &&
      sec.alert_webhook.rfind("http://", 0) != 0) {
    problems->push_back("SILO_ALERT_WEBHOOK must be an https:// URL");
  }
  if (!sec.alert_webhook.empty() && sec.alert_webhook_secret.size() < 32) {
    problems->push_back("SILO_ALERT_WEBHOOK needs SILO_ALERT_WEBHOOK_SECRET of at least 32 bytes");
  }
  sec.public_url = Get(getenv, "SILO_PUBLIC_URL");
  if (!sec.public_url.empty() && sec.public_url.rfind("https://", 0) != 0) {
    problems->push_back("SILO_PUBLIC_URL must start with https://");
  }
}

// The transport's limits: headers, bodies, time-outs, connections, threads.
void ReadLimits(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Config& c = *config;
  Limits& l = c.limits;
  ReadNumber<size_t>(getenv, "SILO_MAX_HEADER_BYTES", 1024, 1 << 20, &l.max_header_bytes, problems);
  ReadNumber<size_t>(getenv, "SILO_MAX_BODY_BYTES", 1024, 1 << 30, &l.max_body_bytes, problems);
  ReadMillis(getenv, "SILO_READ_TIMEOUT_MS", &l.read_timeout, problems);
  ReadMillis(getenv, "SILO_IDLE_TIMEOUT_MS", &l.idle_timeout, problems);
  ReadMillis(getenv, "SILO_DRAIN_TIMEOUT_MS", &l.drain_timeout, problems);
  ReadNumber<size_t>(getenv, "SILO_MAX_CONNECTIONS", 1, 1'000'000, &l.max_connections, problems);
  ReadNumber<size_t>(getenv, "SILO_MAX_CONNECTIONS_PER_CLIENT", 1, 1'000'000,
                     &l.max_connections_per_client, problems);
  ReadNumber<unsigned>(getenv, "SILO_IO_THREADS", 1, 64, &l.io_threads, problems);
  ReadNumber<unsigned>(getenv, "SILO_HANDLER_THREADS", 1, 256, &l.handler_threads, problems);
  ReadNumber<size_t>(getenv, "SILO_HANDLER_QUEUE", 1, 1'000'000, &l.handler_queue, problems);
  ReadNumber<size_t>(getenv, "SILO_MAX_OPEN_TENANTS", 1, 100'000, &l.max_open_tenants, problems);
  ReadMillis(getenv, "SILO_PROGRESS_TIMEOUT_MS", &l.progress_timeout, problems);
}

// Files: sizes, the tenant quota, how long an unattached upload lives, and
// how many uploads run at once.
void ReadFiles(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Files& f = config->files;
  constexpr uint64_t kTiB = uint64_t{1} << 40;
  ReadNumber<uint64_t>(getenv, "SILO_MAX_FILE_BYTES", 1, kTiB, &f.max_file_bytes, problems);
  ReadNumber<uint64_t>(getenv, "SILO_TENANT_FILE_QUOTA_BYTES", 0, 1024 * kTiB,
                       &f.tenant_quota_bytes, problems);
  ReadNumber<int>(getenv, "SILO_UPLOAD_EXPIRE_HOURS", 1, 24 * 365, &f.upload_expire_hours,
                  problems);
  ReadNumber<size_t>(getenv, "SILO_UPLOADS_PER_TENANT", 1, 1024, &f.uploads_per_tenant, problems);
  ReadNumber<size_t>(getenv, "SILO_UPLOADS_TOTAL", 1, 4096, &f.uploads_total, problems);
}

// Realtime: how many connections, all tenants and one tenant.
void ReadRealtime(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Realtime& r = config->realtime;
  ReadNumber<size_t>(getenv, "SILO_REALTIME_MAX_CONNECTIONS", 0, 1'000'000, &r.max_connections,
                     problems);
  ReadNumber<size_t>(getenv, "SILO_REALTIME_TENANT_CONNECTIONS", 0, 1'000'000,
                     &r.tenant_connections, problems);
  ReadNumber<int>(getenv, "SILO_REALTIME_CONNECT_PER_MINUTE", 1, 1'000'000, &r.connect_per_minute,
                  problems);
}

// SILO_NODE_ID, SILO_ETCD_ENDPOINTS, SILO_CLUSTER_*, SILO_REPL*: whether
// and how this node replicates its tenants.
void ReadCluster(const GetEnv& getenv, Config* config, std::vector<std::string>* problems) {
  Cluster& k = config->cluster;
  for (const std::string& e : SplitList(Get(getenv, "SILO_ETCD_ENDPOINTS"))) {
    if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
      problems->push_back("SILO_ETCD_ENDPOINTS: not an http:// or https:// URL: " + e);
    } else {
      k.etcd_endpoints.push_back(e);
    }
  }
  ReadNumber<int>(getenv, "SILO_LEASE_TTL_S", 1, 600, &k.lease_ttl_s, problems);
  ReadMillis(getenv, "SILO_REPL_ACK_TIMEOUT_MS", &k.ack_timeout, problems);
  if (std::string mode = Get(getenv, "SILO_REPLICATION"); !mode.empty()) {
    if (mode == "sync") {
      k.replication = ReplicationMode::kSync;
    } else if (mode == "async") {
      k.replication = ReplicationMode::kAsync;
    } else if (mode == "off") {
      k.replication = ReplicationMode::kOff;
    } else {
      problems->push_back("SILO_REPLICATION must be sync, async or off");
    }
  }
  if (std::string strict = Get(getenv, "SILO_REPL_STRICT"); !strict.empty()) {
    if (strict == "1" || strict == "0") {
      k.strict = strict == "1";
    } else {
      problems->push_back("SILO_REPL_STRICT must be 0 or 1");
    }
  }
  if (std::string keyless = Get(getenv, "SILO_KEYLESS"); !keyless.empty()) {
    if (keyless == "1" || keyless == "0") {
      k.keyless = keyless == "1";
    } else {
      problems->push_back("SILO_KEYLESS must be 0 or 1");
    }
  }
  if (k.keyless && config->master_key) {
    problems->push_back(
        "SILO_KEYLESS=1 takes no master key: unset SILO_MASTER_KEY and SILO_MASTER_KEY_FILE");
  }
  k.node_id = Get(getenv, "SILO_NODE_ID");
  k.tls_cert_file = Get(getenv, "SILO_CLUSTER_TLS_CERT");
  k.tls_key_file = Get(getenv, "SILO_CLUSTER_TLS_KEY");
  k.tls_ca_file = Get(getenv, "SILO_CLUSTER_TLS_CA");
  std::string listen = Get(getenv, "SILO_CLUSTER_LISTEN");
  if (!listen.empty()) {
    if (auto hp = ParseHostPort(listen)) {
      k.listen = *hp;
    } else {
      problems->push_back("SILO_CLUSTER_LISTEN must be <ip>:<port>");
    }
  }
  if (!k.clustered()) {
    if (!k.node_id.empty() || !listen.empty() || k.keyless) {
      problems->push_back(
          "SILO_NODE_ID, SILO_CLUSTER_LISTEN and SILO_KEYLESS need SILO_ETCD_ENDPOINTS");
    }
    return;
  }
  // Why: the id names the node in etcd and in each follower's directory
  // names; the same rule as a tenant id keeps it a plain path component.
  if (k.node_id.empty() || k.node_id.size() > 64 ||
      k.node_id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    problems->push_back("SILO_NODE_ID must be 1 to 64 of a-z, 0-9 and - when clustered");
  }
  if (listen.empty()) problems->push_back("SILO_CLUSTER_LISTEN is required when clustered");
  if (k.tls_cert_file.empty() || k.tls_key_file.empty() || k.tls_ca_file.empty()) {
    problems->push_back(
        "SILO_CLUSTER_TLS_CERT, SILO_CLUSTER_TLS_KEY and SILO_CLUSTER_TLS_CA are required when "
        "clustered");
  }
}

}  // namespace

const char* ReplicationModeName(ReplicationMode mode) {
  switch (mode) {
    case ReplicationMode::kSync: return "sync";
    case ReplicationMode::kAsync: return "async";
    case ReplicationMode::kOff: return "off";
  }
  return "?";
}

LoadResult Load(const GetEnv& getenv) {
  LoadResult r;
  ReadServer(getenv, &r.config, &r.problems);
  ReadBackups(getenv, &r.config, &r.problems);
  ReadSecurity(getenv, &r.config, &r.problems);
  ReadLimits(getenv, &r.config, &r.problems);
  ReadFiles(getenv, &r.config, &r.problems);
  ReadRealtime(getenv, &r.config, &r.problems);
  ReadCluster(getenv, &r.config, &r.problems);
  if (r.config.env != Environment::kDevelopment) {
    auto more = ProductionProblems(r.config);
    r.problems.insert(r.problems.end(), more.begin(), more.end());
  }
  return r;
}

std::vector<std::string> ProductionProblems(const Config& c) {
  std::vector<std::string> problems;
  // ASVS 2.7.2: a reset code outlives its mail by minutes, not hours.
  if (c.security.reset_token_minutes > kMaxResetTokenMinutes) {
    problems.push_back("SILO_RESET_TOKEN_MINUTES must be at most 10 outside development");
  }
  if (c.audit_retention_months < kMinAuditRetentionMonths) {
    problems.push_back("SILO_AUDIT_RETENTION_MONTHS must be at least 24 outside development");
  }
  if (c.backups.target.rfind("s3://", 0) == 0 && c.backups.s3_endpoint.rfind("https://", 0) != 0) {
    problems.push_back("SILO_S3_ENDPOINT must be https:// outside development");
  }
  if (c.security.alert_webhook.rfind("http://", 0) == 0) {
    problems.push_back("SILO_ALERT_WEBHOOK must be https:// outside development");
  }
  // A keyless node has no key by design and serves no HTTP (no operator
  // token, no certificate to check).
  if (!c.cluster.keyless) {
    if (!c.master_key) {
      problems.push_back("SILO_MASTER_KEY or SILO_MASTER_KEY_FILE is required outside development");
    }
    if (!c.signing_key) {
      problems.push_back(
          "SILO_SIGNING_KEY or SILO_SIGNING_KEY_FILE is required outside development (checkpoints"
          " against rollback are signed with it)");
    }
    if (c.operator_token.empty()) {
      problems.push_back("SILO_OPERATOR_TOKEN is required outside development");
    } else if (c.operator_token.size() < kMinOperatorTokenBytes) {
      problems.push_back("SILO_OPERATOR_TOKEN must be at least 32 bytes long");
    }
    if (c.tls_cert_file.empty() || c.tls_key_file.empty()) {
      problems.push_back("SILO_TLS_CERT and SILO_TLS_KEY are required outside development");
    } else {
      if (!PathExists(c.tls_cert_file)) problems.push_back("SILO_TLS_CERT: file not found");
      if (!PathExists(c.tls_key_file)) problems.push_back("SILO_TLS_KEY: file not found");
    }
  }
  struct stat st;
  if (::stat(c.data_dir.c_str(), &st) != 0) {
    problems.push_back("SILO_DATA_DIR does not exist: create it with mode 0700");
  } else if ((st.st_mode & S_IRWXO) != 0) {
    problems.push_back("SILO_DATA_DIR is accessible by other users: chmod o-rwx");
  }
  return problems;
}

}  // namespace silo::config
