// Config: everything Silo reads from its environment, with documented defaults.
//
// Environment only (no config files): see README "Configuration" for the table.
// Load() never fails fast: it gathers every problem so that an operator sees the
// whole list at once. Production and staging add the checks of
// ProductionProblems(). Thread-compatible: build once, then read only.
#ifndef SILO_CONFIG_CONFIG_H_
#define SILO_CONFIG_CONFIG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crypto/secret_key.h"

namespace silo::config {

enum class Environment { kDevelopment, kStaging, kProduction };
const char* EnvironmentName(Environment env);

struct HostPort {
  std::string host;         // literal IP address (v4 or v6, without brackets)
  unsigned short port = 0;  // 0: any free port (tests)
  std::string ToString() const;
};

// Limits on every input and lifetime at the edge (style rule 8).
struct Limits {
  size_t max_header_bytes = 16 * 1024;  // SILO_MAX_HEADER_BYTES; over: 431
  size_t max_body_bytes = 1024 * 1024;  // SILO_MAX_BODY_BYTES; routes may set less; over: 413
  std::chrono::milliseconds read_timeout{
      10'000};  // SILO_READ_TIMEOUT_MS: whole request must arrive
  std::chrono::milliseconds idle_timeout{
      30'000};  // SILO_IDLE_TIMEOUT_MS: keep-alive wait for next request
  std::chrono::milliseconds drain_timeout{
      10'000};                    // SILO_DRAIN_TIMEOUT_MS: SIGTERM grace for in-flight requests
  size_t max_connections = 1024;  // SILO_MAX_CONNECTIONS, per listener
  // SILO_MAX_CONNECTIONS_PER_CLIENT: per peer address and listener (a proxy
  // in front counts as one client: raise it there)
  size_t max_connections_per_client = 64;
  unsigned io_threads = 2;        // SILO_IO_THREADS: network threads
  unsigned handler_threads = 4;   // SILO_HANDLER_THREADS: request handlers run here
  size_t handler_queue = 512;     // SILO_HANDLER_QUEUE: waiting requests beyond this get 503
  size_t max_open_tenants = 256;  // SILO_MAX_OPEN_TENANTS: tenant databases kept open (LRU)
  // SILO_PROGRESS_TIMEOUT_MS: each 64 KiB of a streamed body (upload,
  // download) must move within this, or the connection is dropped
  std::chrono::milliseconds progress_timeout{30'000};
};

// Files (DESIGN: files/file_store.h).
struct Files {
  uint64_t max_file_bytes = uint64_t{5} << 30;  // SILO_MAX_FILE_BYTES: any file field's ceiling
  uint64_t tenant_quota_bytes = uint64_t{10} << 30;  // SILO_TENANT_FILE_QUOTA_BYTES; 0: none
  int upload_expire_hours = 24;                      // SILO_UPLOAD_EXPIRE_HOURS: unattached uploads
  size_t uploads_per_tenant = 4;                     // SILO_UPLOADS_PER_TENANT: at once
  size_t uploads_total = 32;                         // SILO_UPLOADS_TOTAL: at once, all tenants
};

// Realtime channels (realtime/hub.h). The public listener admits this many
// connections beyond SILO_MAX_CONNECTIONS.
struct Realtime {
  size_t max_connections = 5000;     // SILO_REALTIME_MAX_CONNECTIONS: all tenants
  size_t tenant_connections = 1000;  // SILO_REALTIME_TENANT_CONNECTIONS: one tenant's
  int connect_per_minute = 600;      // SILO_REALTIME_CONNECT_PER_MINUTE: upgrades per client
};

// Identity, sessions and abuse protection (DESIGN sections 6 and 7).
struct Security {
  int session_idle_minutes = 30;    // SILO_SESSION_IDLE_MINUTES
  int session_absolute_hours = 12;  // SILO_SESSION_ABSOLUTE_HOURS
  int reset_token_minutes = 10;     // SILO_RESET_TOKEN_MINUTES (at most 10 outside development)
  int step_up_minutes = 5;          // SILO_STEP_UP_MINUTES: how long a proof counts as fresh
  int api_per_minute = 1200;        // SILO_API_RATE_PER_MINUTE: per credential (token or user)
  int exports_per_hour = 10;        // SILO_EXPORTS_PER_HOUR: collection exports per credential
  uint64_t password_memory_kib = 19456;  // SILO_PASSWORD_MEMORY_KIB (Argon2id m; OWASP floor)
  uint64_t password_iterations = 2;      // SILO_PASSWORD_ITERATIONS (Argon2id t; floor 2)
  unsigned password_threads = 1;         // SILO_PASSWORD_THREADS: the password-hashing pool
  size_t password_queue = 32;            // SILO_PASSWORD_QUEUE: waiting beyond this get 503
  int login_per_minute = 10;             // SILO_LOGIN_RATE_PER_MINUTE: per client and per account
  int public_form_per_minute = 5;        // SILO_PUBLIC_FORM_RATE_PER_MINUTE: per client
  int token_max_days = 365;              // SILO_TOKEN_MAX_DAYS: API tokens expire within this
  // SILO_OPERATOR_ACCESS=allowed (default approval): tenants may be open to
  // the operator's tokens and exports without an approved access request;
  // new tenants start so (visible and audited in the tenant, which its owner
  // can close). For development and test platforms (docs/threat_model.md).
  bool operator_access_allowed = false;
  // SILO_HONEYPOT_PATHS: comma-separated paths; a request for one bans its
  // client for SILO_BAN_SECONDS.
  std::vector<std::string> honeypot_paths = {
      "/.env",      "/wp-login.php", "/.git/config",      "/phpmyadmin/",
      "/wp-admin/", "/xmlrpc.php",   "/.aws/credentials", "/server-status"};
  int ban_seconds = 3600;        // SILO_BAN_SECONDS
  std::string security_contact;  // SILO_SECURITY_CONTACT: security.txt Contact (URI)
  std::string security_policy;   // SILO_SECURITY_POLICY: security.txt Policy (https URI)
  std::string smtp_url;          // SILO_SMTP_URL: smtp:// or smtps:// of the mail relay
  std::string smtp_from = "silo@localhost";  // SILO_SMTP_FROM
  std::string smtp_ca_file;  // SILO_SMTP_CA_FILE: CAs for the relay (default: the system's)
  // Security events off the box (platform/event_shipper.h).
  std::string syslog_url;            // SILO_SYSLOG_URL: tls://host:port (RFC 5425)
  std::string syslog_ca_file;        // SILO_SYSLOG_CA_FILE (default: the system's CAs)
  std::string alert_webhook;         // SILO_ALERT_WEBHOOK: https:// (http:// in development)
  std::string alert_webhook_secret;  // SILO_ALERT_WEBHOOK_SECRET: the HMAC key; never logged
  std::string public_url;            // SILO_PUBLIC_URL: base of links in mail (never Host)
};

// Backups (issue: backups). Times are UTC.
struct Backups {
  // SILO_BACKUP_TARGET: a directory (default <data>/backups) or
  // s3://bucket/prefix, which needs the SILO_S3_* settings below.
  std::string target;
  std::string s3_endpoint;  // SILO_S3_ENDPOINT (default https://s3.<region>.amazonaws.com)
  std::string s3_region = "us-east-1";  // SILO_S3_REGION
  std::string s3_access_key_id;         // SILO_S3_ACCESS_KEY_ID
  std::string s3_secret_access_key;     // SILO_S3_SECRET_ACCESS_KEY; secret, never logged
  bool schedule = true;                 // SILO_BACKUP_SCHEDULE: "on" or "off"
  int daily_at_seconds = 2 * 3600;      // SILO_BACKUP_TIME: "HH:MM" or "HH:MM:SS"
  int weekly_day = 0;       // SILO_BACKUP_WEEKLY_DAY: sunday … saturday (weekly keep + drill)
  int daily_days = 30;      // SILO_BACKUP_DAILY_DAYS: keep every backup this long
  int weekly_days = 90;     // SILO_BACKUP_WEEKLY_DAYS: keep one a week this long
  int retries = 3;          // SILO_BACKUP_RETRIES: after a failed scheduled backup
  int retry_seconds = 300;  // SILO_BACKUP_RETRY_SECONDS: first delay, doubled each time
};

// Replication between nodes (issue 21; docs/architecture.md "Replication").
// A node is clustered when SILO_ETCD_ENDPOINTS is set; then SILO_NODE_ID,
// SILO_CLUSTER_LISTEN and the three SILO_CLUSTER_TLS_* files are required.
enum class ReplicationMode { kSync, kAsync, kOff };
const char* ReplicationModeName(ReplicationMode mode);

struct Cluster {
  std::string node_id;                      // SILO_NODE_ID: 1 to 64 of [a-z0-9-]
  std::vector<std::string> etcd_endpoints;  // SILO_ETCD_ENDPOINTS: comma-separated http://host:port
  int lease_ttl_s = 5;                      // SILO_LEASE_TTL_S: the node lease; self-fence after it
  HostPort listen;                          // SILO_CLUSTER_LISTEN: the node link (mutual TLS)
  std::string tls_cert_file;                // SILO_CLUSTER_TLS_CERT (PEM, signed by the CA below)
  std::string tls_key_file;                 // SILO_CLUSTER_TLS_KEY
  std::string tls_ca_file;                  // SILO_CLUSTER_TLS_CA: the only issuer a peer may have
  ReplicationMode replication = ReplicationMode::kSync;  // SILO_REPLICATION: sync, async, off
  std::chrono::milliseconds ack_timeout{2000};           // SILO_REPL_ACK_TIMEOUT_MS
  bool strict = false;  // SILO_REPL_STRICT=1: a commit no follower acknowledged fails (503)
  // SILO_KEYLESS=1: a node without a master key (an off-site copy): it keeps
  // sealed copies of the cluster's tenants, serves no HTTP and never leads
  // a tenant; its acknowledgement does not answer a sync commit.
  bool keyless = false;
  bool clustered() const { return !etcd_endpoints.empty(); }
};

struct Config {
  Environment env = Environment::kDevelopment;  // SILO_ENV
  std::string data_dir = "./silo-data";         // SILO_DATA_DIR
  HostPort listen{"127.0.0.1", 8443};           // SILO_LISTEN
  HostPort operator_listen{"127.0.0.1", 8444};  // SILO_OPERATOR_LISTEN (loopback only)
  // SILO_MASTER_KEY (base64 of 32 bytes) or SILO_MASTER_KEY_FILE (a file
  // holding the same base64 text). Empty when neither is set.
  std::optional<crypto::SecretKey> master_key;
  // SILO_SIGNING_KEY or SILO_SIGNING_KEY_FILE, the same form: the seed of the
  // platform's Ed25519 key, which signs checkpoints of the tenants' chains.
  std::optional<crypto::SecretKey> signing_key;
  // SILO_NEW_MASTER_KEY or SILO_NEW_MASTER_KEY_FILE, the same form: read only
  // by `silo keys rotate-master`, which re-wraps every tenant key under it.
  std::optional<crypto::SecretKey> new_master_key;
  // SILO_CHECKPOINT_MINUTES: how often every tenant's chain heads are signed
  // into a new checkpoint (besides each backup and restore).
  int checkpoint_minutes = 60;
  std::string operator_token;                // SILO_OPERATOR_TOKEN; secret, never logged
  std::string tls_cert_file;                 // SILO_TLS_CERT (PEM)
  std::string tls_key_file;                  // SILO_TLS_KEY (PEM)
  std::string base_domain;                   // SILO_BASE_DOMAIN; empty: path prefix /t/<slug>/ only
  std::vector<std::string> trusted_proxies;  // SILO_TRUSTED_PROXIES: comma-separated IPs
  // SILO_SYNCHRONOUS: "full" (default; a returned commit survives power
  // loss) or "normal" (WAL; a power cut may lose the last commits, never
  // corrupts). See docs/storage_format.md.
  bool synchronous_full = true;
  // SILO_AUDIT_RETENTION_MONTHS: audit entry bodies older than this are
  // purged (hashes stay). At least 24 outside development.
  int audit_retention_months = 24;
  Limits limits;
  Files files;
  Realtime realtime;
  Security security;
  Backups backups;
  Cluster cluster;
};

using GetEnv = std::function<const char*(const char*)>;

struct LoadResult {
  Config config;
  std::vector<std::string> problems;  // empty: fit to start
};

// Reads the environment through `getenv` (injectable for tests).
LoadResult Load(const GetEnv& getenv);

// The extra conditions for production and staging: secrets from the
// environment, a long operator token, TLS files present, a private data
// directory. Reads the file system (stat) but changes nothing.
std::vector<std::string> ProductionProblems(const Config& config);

// Parses "host:port" or "[v6]:port"; nullopt when malformed.
std::optional<HostPort> ParseHostPort(const std::string& text);
bool IsLoopback(const std::string& ip);

inline constexpr size_t kMinOperatorTokenBytes = 32;
inline constexpr int kMinAuditRetentionMonths = 24;
// The longest a password-reset code may live outside development (ASVS 2.7.2).
inline constexpr int kMaxResetTokenMinutes = 10;

}  // namespace silo::config

#endif  // SILO_CONFIG_CONFIG_H_
