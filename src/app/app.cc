#include "app/app.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "api/dispatchers.h"
#include "api/routes.h"
#include "api/services.h"
#include "app/backup_scheduler.h"
#include "app/data_dir_lock.h"
#include "app/dev_secrets.h"
#include "app/mailer.h"
#include "app/tenant_schema.h"
#include "auth/identity.h"
#include "auth/password.h"
#include "backup/service.h"
#include "backup/target.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "guard/client_address.h"
#include "guard/rate_limiter.h"
#include "http/metrics.h"
#include "http/server.h"
#include "platform/security_log.h"
#include "records/tenant_store.h"
#include "tenant/registry.h"

namespace silo::app {
namespace {

int Refuse(const std::string& why) {
  std::fprintf(stderr, "silo: refusing to start: %s\n", why.c_str());
  return 1;
}

// The public message on stderr; its private cause (a path, errno's text) in a
// log line, which goes only to the operator's log (status.h).
int Refuse(const Status& why) {
  if (!why.cause().empty()) log::Error("refusing to start", {{"cause", why.ToString()}});
  return Refuse(why.message());
}

http::ServerOptions OptionsFor(const config::Config& c, const std::string& name,
                               const config::HostPort& at, bool tls) {
  http::ServerOptions o;
  o.name = name;
  o.host = at.host;
  o.port = at.port;
  o.tls = tls;
  o.tls_cert_file = c.tls_cert_file;
  o.tls_key_file = c.tls_key_file;
  o.max_header_bytes = c.limits.max_header_bytes;
  o.read_timeout = c.limits.read_timeout;
  o.idle_timeout = c.limits.idle_timeout;
  o.drain_timeout = c.limits.drain_timeout;
  o.max_connections = c.limits.max_connections;
  o.max_connections_per_client = c.limits.max_connections_per_client;
  o.io_threads = c.limits.io_threads;
  o.handler_threads = c.limits.handler_threads;
  o.handler_queue = c.limits.handler_queue;
  o.slow_threads = c.security.password_threads;
  o.slow_queue = c.security.password_queue;
  return o;
}

// Audit retention: an hour after start and then daily, drops the bodies of
// audit entries older than the configured months in every active tenant (the
// chain and its hashes stay, so verification still passes). Not at start:
// tenants open lazily, and a restart should not open them all.
class RetentionJob {
 public:
  RetentionJob(api::Services& services, int months)
      : services_(services), months_(months), thread_([this] { Run(); }) {}
  ~RetentionJob() { Stop(); }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    auto wait = std::chrono::hours(1);
    while (!cv_.wait_for(lock, wait, [this] { return stop_; })) {
      lock.unlock();
      PurgeAll();
      lock.lock();
      wait = std::chrono::hours(24);
    }
  }

  void PurgeAll() {
    // A month here is 31 days: retention errs on keeping longer.
    const int64_t cutoff = NowMicros() - int64_t{months_} * 31 * 86'400 * 1'000'000;
    int64_t purged = 0;
    for (const auto& t : services_.tenants->List()) {
      if (t.state != tenant::TenantState::kActive) continue;
      auto store = services_.stores->Open(t.id);
      if (!store.ok()) continue;  // busy or gone; the next pass retries
      auto n = (*store)->PurgeAudit(cutoff);
      if (!n.ok()) {
        log::Error("audit retention failed", {{"tenant", t.slug}, {"cause", n.status().message()}});
      } else {
        purged += *n;
      }
    }
    if (purged > 0)
      log::Info("audit retention", {{"purged_bodies", static_cast<long long>(purged)}});
  }

  api::Services& services_;
  const int months_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace

std::string RouteTable(RouteTableKind kind) {
  api::Services none;
  boost::json::array out;
  const api::Router router = kind == RouteTableKind::kOperator ? api::BuildOperatorRouter(none)
                                                               : api::BuildTenantRouter(none);
  for (const auto& r : router.routes()) {
    out.push_back(boost::json::object{{"method", r.method},
                                      {"pattern", r.pattern},
                                      {"access", r.access.ToString()},
                                      {"rate_limit", r.rate_label},
                                      {"body_limit", static_cast<int64_t>(r.body_limit)},
                                      {"slow", r.slow}});
  }
  return boost::json::serialize(out);
}

std::string ServerInfoPath(const std::string& data_dir) {
  return data_dir + "/platform/server.json";
}

int Serve(const config::GetEnv& getenv) {
  config::LoadResult loaded = config::Load(getenv);
  if (!loaded.problems.empty()) {
    std::fprintf(stderr, "silo: refusing to start (%s):\n",
                 config::EnvironmentName(loaded.config.env));
    for (const auto& p : loaded.problems) std::fprintf(stderr, "  - %s\n", p.c_str());
    return 1;
  }
  config::Config c = std::move(loaded.config);

  if (c.env == config::Environment::kDevelopment) {
    if (Status s = MakeDirs(c.data_dir, 0700); !s.ok()) return Refuse(s);
  }
  auto lock = DataDirLock::Acquire(c.data_dir);
  if (!lock.ok()) return Refuse(lock.status());
  if (c.env == config::Environment::kDevelopment) {
    if (Status s = EnsureDevSecrets(c); !s.ok()) return Refuse(s);
  }
  if (Status s = MakeDirs(c.data_dir + "/platform", 0700); !s.ok()) return Refuse(s);

  auto keyring = crypto::Keyring::Open(c.data_dir + "/platform/keyring", std::move(*c.master_key));
  c.master_key.reset();
  if (!keyring.ok()) return Refuse(keyring.status());
  auto registry = tenant::TenantRegistry::Open(c.data_dir, keyring->get());
  if (!registry.ok()) return Refuse(registry.status());
  // Each tenant's database key is the kDatabasePages sub-key of its data key;
  // secret fields (TOTP secrets) are sealed with its kSecretFields sub-key.
  crypto::Keyring* ring = keyring->get();
  auto subkey = [ring](crypto::KeyPurpose purpose) {
    return [ring, purpose](const std::string& id) -> Result<crypto::SecretKey> {
      auto dek = ring->GetKey(id);
      if (!dek.ok()) return dek.status();
      return crypto::DeriveSubkey(*dek, purpose);
    };
  };
  auto databases = std::make_shared<storage::TenantDatabases>(
      subkey(crypto::KeyPurpose::kDatabasePages),
      [dir = c.data_dir](const std::string& id) { return dir + "/tenants/" + id + "/tenant.db"; },
      TenantSchema(),
      storage::TenantDatabasesOptions{
          .max_open_tenants = c.limits.max_open_tenants,
          .readers_per_tenant = 4,
          .open = {.synchronous = c.synchronous_full ? storage::Synchronous::kFull
                                                     : storage::Synchronous::kNormal}});
  auto stores = records::NewSqliteTenantStores(databases);
  auth::Timeouts timeouts;
  timeouts.session_idle_us = int64_t{c.security.session_idle_minutes} * 60 * 1'000'000;
  timeouts.session_absolute_us = int64_t{c.security.session_absolute_hours} * 3600 * 1'000'000;
  auth::IdentityStores identities(databases, subkey(crypto::KeyPurpose::kSecretFields), timeouts);
  auto proxies = guard::TrustedProxies::Parse([&] {
    std::string list;
    for (const auto& p : c.trusted_proxies) list += (list.empty() ? "" : ",") + p;
    return list;
  }());
  if (!proxies.ok()) return Refuse(proxies.status());
  guard::RateLimiter limiter;
  guard::BanList bans;
  api::SecurityOptions security;
  security.password_memory_kib = c.security.password_memory_kib;
  security.password_iterations = c.security.password_iterations;
  security.login_per_minute = c.security.login_per_minute;
  security.public_form_per_minute = c.security.public_form_per_minute;
  security.token_max_days = c.security.token_max_days;
  security.honeypot_paths = c.security.honeypot_paths;
  security.ban_us = int64_t{c.security.ban_seconds} * 1'000'000;
  security.security_contact = c.security.security_contact;
  security.security_policy = c.security.security_policy;
  security.public_url = c.security.public_url;
  // Unknown e-mails are checked against this, so they cost what known ones do.
  auto dummy_hash = auth::HashPassword(
      crypto::RandomToken(24), {security.password_memory_kib, security.password_iterations});
  if (!dummy_hash.ok()) return Refuse(dummy_hash.status());
  auto security_log = platform::SecurityLog::Open(c.data_dir + "/platform/security.log");
  if (!security_log.ok()) return Refuse(security_log.status());

  // Backups go to a directory or to S3-compatible storage (config checked the settings).
  std::unique_ptr<backup::Target> backup_target;
  if (c.backups.target.rfind("s3://", 0) == 0) {
    backup::S3Options s3;
    if (Status s = backup::ParseS3Url(c.backups.target, s3); !s.ok()) return Refuse(s);
    s3.endpoint = c.backups.s3_endpoint;
    s3.region = c.backups.s3_region;
    s3.access_key_id = c.backups.s3_access_key_id;
    s3.secret_access_key = c.backups.s3_secret_access_key;
    backup_target = backup::NewS3Target(std::move(s3));
  } else {
    backup_target = backup::NewDirectoryTarget(c.backups.target);
  }
  backup::RetentionPolicy retention{c.backups.daily_days, c.backups.weekly_days,
                                    c.backups.weekly_day};
  backup::Service backups(std::move(backup_target), registry->get(), keyring->get(), databases,
                          stores.get(), c.data_dir, retention, auth::EndSessionsAndOneTimeTokens);

  http::Metrics metrics;
  std::atomic<bool> ready{false};
  api::Services services;
  services.tenants = registry->get();
  services.stores = stores.get();
  services.security_log = security_log->get();
  services.metrics = &metrics;
  services.ready = &ready;
  services.identities = &identities;
  services.limiter = &limiter;
  services.bans = &bans;
  services.proxies = &*proxies;
  services.security = &security;
  services.backups = &backups;
  services.dummy_password_hash = *dummy_hash;
  Mailer mailer(services, c.security.smtp_url, c.security.smtp_from);
  services.mail_queued = [&mailer](const std::string& id) { mailer.Queued(id); };

  api::PublicDispatcher public_dispatcher(services, c.base_domain, c.limits.max_body_bytes);
  api::OperatorDispatcher operator_dispatcher(services, c.operator_token);
  // Deny by default: a route that does not declare its access never serves.
  {
    auto unguarded = public_dispatcher.UnguardedRoutes();
    for (auto& r : operator_dispatcher.UnguardedRoutes()) unguarded.push_back(std::move(r));
    if (!unguarded.empty()) {
      std::string list;
      for (const auto& r : unguarded) list += (list.empty() ? "" : ", ") + r;
      return Refuse("routes without a declared access: " + list);
    }
  }
  http::Server public_server(OptionsFor(c, "public", c.listen, true), &public_dispatcher, &metrics);
  // The operator listener is plain HTTP on loopback only (config enforces
  // loopback): the token and any export never leave this host; every
  // operator action on a tenant's data lands in that tenant's audit log.
  http::Server operator_server(OptionsFor(c, "operator", c.operator_listen, false),
                               &operator_dispatcher, &metrics);
  metrics.AddGaugeSource([&] {
    return std::vector<std::pair<std::string, double>>{
        {"silo_tenants", static_cast<double>(services.tenants->size())},
        {"silo_open_tenants", static_cast<double>(services.stores->open_count())},
        {"silo_open_connections", static_cast<double>(public_server.open_connections())},
        {"silo_mail_sent_total", static_cast<double>(mailer.sent())},
        {"silo_mail_failed_total", static_cast<double>(mailer.failed())},
        {"silo_banned_clients", static_cast<double>(bans.size())},
    };
  });
  metrics.AddGaugeSource([&backups] {
    backup::Stats b = backups.stats();
    return std::vector<std::pair<std::string, double>>{
        {"silo_backups_total", static_cast<double>(b.backups_ok)},
        {"silo_backup_failures_total", static_cast<double>(b.backups_failed)},
        {"silo_backup_last_success_timestamp_seconds",
         static_cast<double>(b.last_success_us) / 1e6},
        {"silo_backup_last_seconds", b.last_backup_seconds},
        {"silo_backup_last_bytes", static_cast<double>(b.last_backup_bytes)},
        {"silo_backups_pruned_total", static_cast<double>(b.pruned)},
        {"silo_restores_total", static_cast<double>(b.restores_ok)},
        {"silo_restore_failures_total", static_cast<double>(b.restores_failed)},
        {"silo_restore_drills_total", static_cast<double>(b.drills_ok)},
        {"silo_restore_drill_failures_total", static_cast<double>(b.drills_failed)},
        {"silo_restore_drill_last_seconds", b.last_drill_seconds},
    };
  });

  auto public_port = public_server.Start();
  if (!public_port.ok()) return Refuse(public_port.status());
  auto operator_port = operator_server.Start();
  if (!operator_port.ok()) {
    public_server.Stop();
    return Refuse(operator_port.status());
  }
  config::HostPort pub{c.listen.host, *public_port};
  config::HostPort op{c.operator_listen.host, *operator_port};
  boost::json::object info;
  info["listen"] = pub.ToString();
  info["operator_listen"] = op.ToString();
  info["pid"] = static_cast<int64_t>(::getpid());
  // server.json tells the CLI and scripts where to connect; without it the
  // server still serves, so a failure is logged, not fatal.
  if (Status s =
          WriteFileAtomic(ServerInfoPath(c.data_dir), boost::json::serialize(info) + "\n", 0600);
      !s.ok()) {
    log::Error("cannot write server.json", {{"cause", s.ToString()}});
  }
  ready = true;
  log::Info("silo serving", {{"env", config::EnvironmentName(c.env)},
                             {"listen", "https://" + pub.ToString()},
                             {"operator_listen", "http://" + op.ToString()},
                             {"tenants", static_cast<long long>(services.tenants->size())},
                             {"backup_target", backups.target_description()}});

  RetentionJob audit_retention(services, c.audit_retention_months);
  std::optional<BackupScheduler> backup_scheduler;
  if (c.backups.schedule) backup_scheduler.emplace(backups, **registry, **security_log, c.backups);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      Status s = public_server.ReloadTls();
      if (s.ok())
        log::Info("TLS certificate reloaded");
      else
        log::Error("TLS reload failed; keeping the old certificate", {{"cause", s.message()}});
      continue;
    }
    break;
  }
  log::Info("shutting down: draining in-flight requests");
  ready = false;
  audit_retention.Stop();
  if (backup_scheduler) backup_scheduler->Stop();
  mailer.Stop();
  public_server.Stop();
  operator_server.Stop();
  ::unlink(ServerInfoPath(c.data_dir).c_str());
  log::Info("stopped");
  return 0;
}

}  // namespace silo::app
