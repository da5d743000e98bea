#include "app/app.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>

#include "api/dispatchers.h"
#include "api/openapi.h"
#include "api/routes.h"
#include "api/services.h"
#include "app/backup_scheduler.h"
#include "app/checkpoint_scheduler.h"
#include "app/cluster_member.h"
#include "app/data_dir_lock.h"
#include "app/dev_secrets.h"
#include "app/mailer.h"
#include "app/tenant_schema.h"
#include "auth/identity.h"
#include "auth/password.h"
#include "backup/service.h"
#include "backup/target.h"
#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "files/file_store.h"
#include "guard/client_address.h"
#include "guard/once_per.h"
#include "guard/rate_limiter.h"
#include "http/metrics.h"
#include "http/server.h"
#include "platform/event_shipper.h"
#include "platform/security_log.h"
#include "realtime/hub.h"
#include "records/tenant_store.h"
#include "storage/repl_vfs.h"
#include "tenant/registry.h"
#include "tenant/rekey_files.h"

namespace silo::app {
namespace {

// How long a re-key on a cluster node waits for the followers' new copies
// before it answers (with how many it got).
constexpr std::chrono::seconds kAwaitCopies{60};

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
  // The public listener also holds the realtime connections.
  o.max_connections = c.limits.max_connections + (tls ? c.realtime.max_connections : 0);
  o.max_connections_per_client = c.limits.max_connections_per_client;
  o.io_threads = c.limits.io_threads;
  o.handler_threads = c.limits.handler_threads;
  o.handler_queue = c.limits.handler_queue;
  o.progress_timeout = c.limits.progress_timeout;
  // Every upload the files module admits has a thread waiting on its body.
  o.stream_threads = static_cast<unsigned>(c.files.uploads_total);
  o.slow_threads = c.security.password_threads;
  o.slow_queue = c.security.password_queue;
  return o;
}

// Audit retention: an hour after start and then daily, drops the bodies of
// audit entries older than the configured months in every active tenant (the
// chain and its hashes stay, so verification still passes), and collects
// expired uploads. Not at start: tenants open lazily, and a restart should
// not open them all.
class RetentionJob {
 public:
  // `keep_files_days`: how long a removed file's bytes stay (the backup
  // retention: every backup kept that long may list them).
  RetentionJob(api::Services& services, int months, int keep_files_days)
      : services_(services),
        months_(months),
        keep_files_days_(keep_files_days),
        thread_([this] { Run(); }) {}
  ~RetentionJob() { Stop(); }

  void Stop() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // An hour after the start, then every day, until stopped.
  void Run() {
    auto wait = std::chrono::hours(1);
    while (SleepFor(wait)) {
      PurgeAll();
      wait = std::chrono::hours(24);
    }
  }

  // False when stopped first.
  bool SleepFor(std::chrono::hours wait) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (!stop_ && cv_.WaitUntil(mu_, deadline)) {
    }
    return !stop_;
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
      CollectFiles(t);
    }
    if (purged > 0)
      log::Info("audit retention", {{"purged_bodies", static_cast<long long>(purged)}});
  }

  // Unattached uploads past SILO_UPLOAD_EXPIRE_HOURS, what a crash left
  // under files/ without a row a day later, and the bytes of files removed
  // longer ago than the backup retention.
  void CollectFiles(const tenant::TenantInfo& t) {
    auto files = services_.files->Open(t.id);
    if (!files.ok()) return;  // busy or gone; the next pass retries
    const int64_t now = NowMicros();
    auto purged =
        (*files)->PurgeTombstones(now, now - int64_t{keep_files_days_} * 86'400 * 1'000'000);
    if (!purged.ok()) {
      log::Error("file purge failed", {{"tenant", t.slug}, {"cause", purged.status().message()}});
    } else if (*purged > 0) {
      log::Info("files purged", {{"tenant", t.slug}, {"files", static_cast<long long>(*purged)}});
    }
    auto swept = (*files)->CollectExpired(now, 24LL * 3600 * 1'000'000);
    if (!swept.ok()) {
      log::Error("file collection failed",
                 {{"tenant", t.slug}, {"cause", swept.status().message()}});
    } else if (swept->pending_files + swept->uploads + swept->orphans > 0) {
      log::Info("files collected", {{"tenant", t.slug},
                                    {"pending_files", static_cast<long long>(swept->pending_files)},
                                    {"uploads", static_cast<long long>(swept->uploads)},
                                    {"orphans", static_cast<long long>(swept->orphans)}});
    }
  }

  api::Services& services_;
  const int months_;
  const int keep_files_days_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace

std::string RouteTable(RouteTableKind kind) {
  boost::json::array out;
  const api::Router router =
      kind == RouteTableKind::kOperator ? api::BuildOperatorRouter() : api::BuildTenantRouter();
  for (const auto& r : router.routes()) {
    boost::json::array query;
    for (auto q : r.query_captures) query.push_back(boost::json::string(q));
    out.push_back(
        boost::json::object{{"method", r.method},
                            {"pattern", r.pattern},
                            {"access", r.access.ToString()},
                            {"rate_limit", r.rate ? std::string(r.rate->name) : std::string()},
                            {"during_mfa_enrolment", r.during_mfa_enrolment},
                            {"body_limit", static_cast<int64_t>(r.body_limit)},
                            {"slow", r.slow},
                            {"streamed", r.streamed},
                            {"query", std::move(query)}});
  }
  return boost::json::serialize(out);
}

namespace {

// JSON with sorted keys, two spaces a level: stable and diffable.
void Pretty(const boost::json::value& v, int depth, std::string* out) {
  const std::string pad(2 * (depth + 1), ' ');
  const std::string end(2 * depth, ' ');
  if (v.is_object() && !v.as_object().empty()) {
    std::map<std::string_view, const boost::json::value*> sorted;
    for (const auto& kv : v.as_object()) sorted[kv.key()] = &kv.value();
    *out += "{\n";
    size_t i = 0;
    for (const auto& [k, child] : sorted) {
      *out += pad + boost::json::serialize(boost::json::string(k)) + ": ";
      Pretty(*child, depth + 1, out);
      *out += ++i < sorted.size() ? ",\n" : "\n";
    }
    *out += end + "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    *out += "[\n";
    size_t i = 0;
    for (const auto& child : v.as_array()) {
      *out += pad;
      Pretty(child, depth + 1, out);
      *out += ++i < v.as_array().size() ? ",\n" : "\n";
    }
    *out += end + "]";
  } else {
    *out += boost::json::serialize(v);
  }
}

}  // namespace

std::string OpenApiDocument(RouteTableKind kind) {
  boost::json::object doc =
      kind == RouteTableKind::kOperator
          ? api::OperatorOpenApi(api::BuildOperatorRouter())
          : api::PublicOpenApi(api::BuildPlatformRouter(), api::BuildTenantRouter(), "/t/{tenant}");
  std::string out;
  Pretty(doc, 0, &out);
  return out + "\n";
}

std::string ServerInfoPath(const std::string& data_dir) { return layout::ServerInfoFile(data_dir); }

// Everything an App owns, in the order it is built; destroyed in reverse, so
// nothing outlives what it uses (the servers and jobs go first).
struct App::Parts {
  config::Config config;
  std::unique_ptr<DataDirLock> lock;
  std::unique_ptr<crypto::Keyring> keyring;
  std::unique_ptr<tenant::TenantRegistry> registry;
  // Clustered only (SILO_ETCD_ENDPOINTS); before the databases, which call it.
  std::shared_ptr<ClusterMember> cluster;
  std::shared_ptr<storage::TenantDatabases> databases;
  std::unique_ptr<records::TenantStores> stores;
  // Before what reports to it (the security log, the identity stores).
  std::unique_ptr<platform::EventShipper> shipper;
  std::unique_ptr<auth::IdentityStores> identities;
  std::unique_ptr<files::FileStores> files;
  std::unique_ptr<realtime::Hubs> realtime;
  guard::TrustedProxies proxies;
  guard::RateLimiter limiter;
  guard::OncePer event_window{60LL * 1'000'000};
  guard::BanList bans;
  api::SecurityOptions security;
  std::unique_ptr<platform::SecurityLog> security_log;
  std::unique_ptr<backup::Service> backups;
  std::unique_ptr<checkpoint::Book> checkpoints;
  http::Metrics metrics;
  std::atomic<bool> ready{false};
  api::Services services;
  std::unique_ptr<api::PublicDispatcher> public_dispatcher;
  std::unique_ptr<api::OperatorDispatcher> operator_dispatcher;
  // From Start() on.
  std::unique_ptr<Mailer> mailer;
  std::unique_ptr<http::Server> public_server;
  std::unique_ptr<http::Server> operator_server;
  std::unique_ptr<RetentionJob> audit_retention;
  std::unique_ptr<BackupScheduler> backup_scheduler;
  std::unique_ptr<CheckpointScheduler> checkpoint_scheduler;
  bool started = false;
};

namespace {

// A tenant's sub-key for `purpose`, from its data key in the keyring.
std::function<Result<crypto::SecretKey>(const std::string&)> SubkeyFn(crypto::Keyring* ring,
                                                                      crypto::KeyPurpose purpose) {
  return [ring, purpose](const std::string& id) -> Result<crypto::SecretKey> {
    SILO_ASSIGN_OR_RETURN(auto dek, ring->GetKey(id));
    return crypto::DeriveSubkey(dek, purpose);
  };
}

platform::ShipperOptions ShipperOptionsOf(const config::Config& c) {
  platform::ShipperOptions o;
  o.syslog_url = c.security.syslog_url;
  o.syslog_ca_file = c.security.syslog_ca_file;
  o.webhook_url = c.security.alert_webhook;
  o.webhook_secret = c.security.alert_webhook_secret;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) o.hostname = host;
  return o;
}

api::SecurityOptions SecurityOf(const config::Config& c) {
  api::SecurityOptions s;
  s.password_memory_kib = c.security.password_memory_kib;
  s.password_iterations = c.security.password_iterations;
  s.login_per_minute = c.security.login_per_minute;
  s.public_form_per_minute = c.security.public_form_per_minute;
  s.realtime_connect_per_minute = c.realtime.connect_per_minute;
  s.token_max_days = c.security.token_max_days;
  s.operator_access_allowed = c.security.operator_access_allowed;
  s.honeypot_paths = c.security.honeypot_paths;
  s.ban_us = int64_t{c.security.ban_seconds} * 1'000'000;
  s.security_contact = c.security.security_contact;
  s.security_policy = c.security.security_policy;
  s.public_url = c.security.public_url;
  s.reset_token_minutes = c.security.reset_token_minutes;
  s.step_up_minutes = c.security.step_up_minutes;
  s.api_per_minute = c.security.api_per_minute;
  s.exports_per_hour = c.security.exports_per_hour;
  return s;
}

// Backups go to a directory or to S3-compatible storage (config checked the settings).

}  // namespace

Result<std::unique_ptr<backup::Target>> BackupTargetOf(const config::Config& c) {
  if (c.backups.target.rfind("s3://", 0) != 0) return backup::NewDirectoryTarget(c.backups.target);
  backup::S3Options s3;
  SILO_RETURN_IF_ERROR(backup::ParseS3Url(c.backups.target, s3));
  s3.endpoint = c.backups.s3_endpoint;
  s3.region = c.backups.s3_region;
  s3.access_key_id = c.backups.s3_access_key_id;
  s3.secret_access_key = c.backups.s3_secret_access_key;
  return backup::NewS3Target(std::move(s3));
}

App::App(std::unique_ptr<Parts> parts) : p_(std::move(parts)) {}

App::~App() { Stop(); }

// Narrated in order, as RestoreLocked is: each step opens what the next needs.
Result<std::unique_ptr<App>> App::Create(config::Config c) {
  auto p = std::make_unique<Parts>();
  // 1. The data directory: ours alone (the lock), with its secrets in development.
  if (c.env == config::Environment::kDevelopment) SILO_RETURN_IF_ERROR(MakeDirs(c.data_dir, 0700));
  SILO_ASSIGN_OR_RETURN(p->lock, DataDirLock::Acquire(c.data_dir));
  if (c.env == config::Environment::kDevelopment) SILO_RETURN_IF_ERROR(EnsureDevSecrets(c));
  SILO_RETURN_IF_ERROR(MakeDirs(layout::PlatformDir(c.data_dir), 0700));

  // 2. Keys and tenants. Each tenant's database key is the kDatabasePages
  // sub-key of its data key; secret fields are sealed with kSecretFields.
  if (!c.master_key) return FailedPrecondition("no master key");
  auto keyring = crypto::Keyring::Open(layout::KeyringFile(c.data_dir), std::move(*c.master_key));
  c.master_key.reset();
  SILO_ASSIGN_OR_RETURN(p->keyring, std::move(keyring));
  // A re-key a crash interrupted is finished or undone before anything
  // reads a tenant's files (the registry reads tenant.meta under the key).
  SILO_ASSIGN_OR_RETURN(auto recovered, tenant::RecoverRekeys(c.data_dir, *p->keyring));
  if (recovered.rolled_back + recovered.rolled_forward > 0) {
    log::Warn("tenant.rekey_recovered",
              {{"rolled_back", std::to_string(recovered.rolled_back)},
               {"rolled_forward", std::to_string(recovered.rolled_forward)}});
  }
  SILO_ASSIGN_OR_RETURN(p->registry, tenant::TenantRegistry::Open(c.data_dir, p->keyring.get()));
  storage::TenantDatabasesOptions database_options{
      .max_open_tenants = c.limits.max_open_tenants,
      .readers_per_tenant = 4,
      .open = {.synchronous = c.synchronous_full ? storage::Synchronous::kFull
                                                 : storage::Synchronous::kNormal}};
  // A cluster node opens its tenants through the replication shim, and
  // each open makes it the tenant's primary (app/cluster_member.h).
  if (c.cluster.clustered()) {
    SILO_ASSIGN_OR_RETURN(
        p->cluster, ClusterMember::Create(ClusterOptions{c.cluster, c.data_dir, p->keyring.get(),
                                                         p->registry.get()}));
    database_options.open.vfs = storage::repl::kReplicatedCipherVfs;
    std::weak_ptr<ClusterMember> member = p->cluster;
    p->registry->SetSlugReservations(tenant::SlugReservations{
        [member](const std::string& slug, const std::string& id) {
          auto m = member.lock();
          return m ? m->ReserveSlug(slug, id) : Unavailable("the node is stopping");
        },
        [member](const std::string& slug, const std::string& id) {
          if (auto m = member.lock()) m->ReleaseSlug(slug, id);
        }});
    database_options.attach = [member](const std::string& id, const std::string& path) {
      auto m = member.lock();
      return m ? m->Attach(id, path) : Unavailable("the node is stopping");
    };
    database_options.detach = [member](const std::string& id, const std::string& path) {
      if (auto m = member.lock()) m->Detach(id, path);
    };
  }
  p->databases = std::make_shared<storage::TenantDatabases>(
      SubkeyFn(p->keyring.get(), crypto::KeyPurpose::kDatabasePages),
      [dir = c.data_dir](const std::string& id) { return layout::TenantDatabaseFile(dir, id); },
      TenantSchema(), std::move(database_options));
  if (p->cluster) p->cluster->SetDatabases(p->databases);
  p->stores = records::NewSqliteTenantStores(p->databases);
  auth::Timeouts timeouts;
  timeouts.session_idle_us = int64_t{c.security.session_idle_minutes} * 60 * 1'000'000;
  timeouts.session_absolute_us = int64_t{c.security.session_absolute_hours} * 3600 * 1'000'000;
  timeouts.reset_token_us = int64_t{c.security.reset_token_minutes} * 60 * 1'000'000;
  p->identities = std::make_unique<auth::IdentityStores>(
      p->databases, SubkeyFn(p->keyring.get(), crypto::KeyPurpose::kSecretFields), timeouts);
  // Files are sealed under the kFiles sub-key, one key per blob below it.
  p->files = std::make_unique<files::FileStores>(
      p->databases, SubkeyFn(p->keyring.get(), crypto::KeyPurpose::kFiles), c.data_dir,
      files::FileOptions{c.files.max_file_bytes, c.files.tenant_quota_bytes,
                         int64_t{c.files.upload_expire_hours} * 3600 * 1'000'000,
                         c.files.uploads_per_tenant, c.files.uploads_total});
  p->files->SetKeyEpochFn(
      [ring = p->keyring.get()](const std::string& id) { return ring->Epoch(id); });
  if (p->cluster) {
    std::weak_ptr<ClusterMember> member = p->cluster;
    p->files->SetBlobReplication(files::FileStores::BlobReplication{
        [member](const std::string& tenant, const std::string& blob, bool from_part) {
          auto m = member.lock();
          return m ? m->ShipBlob(tenant, blob, from_part) : Unavailable("the node is stopping");
        },
        [member](const std::string& tenant, const std::string& blob) {
          if (auto m = member.lock()) m->RemoveBlob(tenant, blob);
        },
        [member](const std::string& tenant, const std::string& upload, uint64_t from) {
          if (auto m = member.lock()) m->ShipUploadPart(tenant, upload, from);
        },
        [member](const std::string& tenant, const std::string& upload) {
          if (auto m = member.lock()) m->RemoveUploadPart(tenant, upload);
        }});
  }
  realtime::Limits realtime_limits;
  realtime_limits.max_connections = c.realtime.max_connections;
  realtime_limits.max_tenant_connections = c.realtime.tenant_connections;
  p->realtime = std::make_unique<realtime::Hubs>(p->stores.get(), realtime_limits);

  // 3. Guards, logs and backups.
  std::string proxies;
  for (const auto& proxy : c.trusted_proxies) proxies += (proxies.empty() ? "" : ",") + proxy;
  SILO_ASSIGN_OR_RETURN(p->proxies, guard::TrustedProxies::Parse(proxies));
  p->security = SecurityOf(c);
  // Unknown e-mails are checked against this, so they cost what known ones do.
  SILO_ASSIGN_OR_RETURN(
      std::string dummy_hash,
      auth::HashPassword(crypto::RandomToken(24),
                         {p->security.password_memory_kib, p->security.password_iterations}));
  SILO_ASSIGN_OR_RETURN(p->security_log,
                        platform::SecurityLog::Open(layout::SecurityLogFile(c.data_dir)));
  // Security events off the box: the platform's and each tenant's identity
  // entries (ASVS 11.1.7, 16.4.2).
  SILO_ASSIGN_OR_RETURN(p->shipper, platform::EventShipper::Start(ShipperOptionsOf(c)));
  p->security_log->SetObserver([sh = p->shipper.get()](const platform::SecurityEvent& e) {
    sh->Ship({NowMicros(), e.type, "", e.actor, e.client, e.detail});
  });
  p->identities->SetObserver(
      [sh = p->shipper.get()](const std::string& tenant_id, const auth::AuditNotice& n) {
        sh->Ship({n.origin.now_us, n.type, tenant_id, n.origin.actor.kind + ":" + n.origin.actor.id,
                  n.origin.client, n.subject_kind + " " + n.subject_id});
      });
  SILO_ASSIGN_OR_RETURN(auto target, BackupTargetOf(c));
  p->backups = std::make_unique<backup::Service>(
      std::move(target), p->registry.get(), p->keyring.get(), p->databases, p->stores.get(),
      c.data_dir,
      backup::RetentionPolicy{c.backups.daily_days, c.backups.weekly_days, c.backups.weekly_day},
      auth::EndSessionsAndOneTimeTokens);
  p->backups->SetResealer(auth::ResealSecretFields);
  if (p->cluster) {
    std::weak_ptr<ClusterMember> member = p->cluster;
    p->backups->SetBeforeSwap([member](const std::string& tenant_id) -> Status {
      auto m = member.lock();
      return m ? m->EndChain(tenant_id) : Unavailable("the node is stopping");
    });
  }
  // Signed checkpoints of the tenants' chains, kept off their disks: in
  // platform/ and beside each backup (rollback detection).
  if (!c.signing_key) return FailedPrecondition("no signing key (SILO_SIGNING_KEY)");
  p->checkpoints = std::make_unique<checkpoint::Book>(layout::CheckpointsDir(c.data_dir),
                                                      std::move(*c.signing_key), p->databases);
  c.signing_key.reset();
  p->backups->SetCheckpointSigner([book = p->checkpoints.get()](
                                      const backup::Manifest& m) -> Result<std::string> {
    checkpoint::Checkpoint cp{
        m.tenant_id,   m.tenant_slug, {m.events.seq, m.events.hash}, {m.audit.seq, m.audit.hash},
        m.taken_at_us, "backup"};
    std::string text = book->Sign(cp);
    SILO_RETURN_IF_ERROR(book->Keep(cp, text));
    return text;
  });

  // 4. The services every handler sees, and the two dispatchers.
  api::Services& s = p->services;
  s.tenants = p->registry.get();
  s.stores = p->stores.get();
  s.security_log = p->security_log.get();
  s.shipper = p->shipper.get();
  s.metrics = &p->metrics;
  s.ready = &p->ready;
  s.identities = p->identities.get();
  s.limiter = &p->limiter;
  s.event_window = &p->event_window;
  s.bans = &p->bans;
  s.proxies = &p->proxies;
  s.security = &p->security;
  s.backups = p->backups.get();
  s.checkpoints = p->checkpoints.get();
  s.files = p->files.get();
  s.realtime = p->realtime.get();
  s.dummy_password_hash = std::move(dummy_hash);
  p->public_dispatcher =
      std::make_unique<api::PublicDispatcher>(s, c.base_domain, c.limits.max_body_bytes);
  p->operator_dispatcher = std::make_unique<api::OperatorDispatcher>(s, c.operator_token);
  // Deny by default: a route that does not declare its access never serves.
  auto unguarded = p->public_dispatcher->UnguardedRoutes();
  for (auto& r : p->operator_dispatcher->UnguardedRoutes()) unguarded.push_back(std::move(r));
  if (!unguarded.empty()) {
    std::string list;
    for (const auto& r : unguarded) list += (list.empty() ? "" : ", ") + r;
    return FailedPrecondition("routes without a declared access: " + list);
  }
  // Nor one the OpenAPI documents do not describe.
  if (auto defects = api::RouteDocumentationDefects(); !defects.empty()) {
    std::string list;
    for (const auto& d : defects) list += (list.empty() ? "" : ", ") + d;
    return FailedPrecondition("routes and their OpenAPI descriptions disagree: " + list);
  }
  p->config = std::move(c);
  return std::unique_ptr<App>(new App(std::move(p)));
}

Status App::Start() {
  Parts& p = *p_;
  const config::Config& c = p.config;
  p.mailer = std::make_unique<Mailer>(
      p.services,
      mail::Relay{c.security.smtp_url, c.env != config::Environment::kDevelopment,
                  c.security.smtp_ca_file},
      c.security.smtp_from);
  p.services.mail_queued = [m = p.mailer.get()](const std::string& id) { m->Queued(id); };
  if (p.cluster) {
    p.services.primary_elsewhere = [m = p.cluster.get()](const std::string& slug) {
      return m->PrimaryElsewhere(slug);
    };
    p.services.await_copies = [m = p.cluster.get(), dbs = p.databases](const std::string& id) {
      // Opened again (its new chain: a snapshot for every follower) and
      // kept open while the copies are made.
      auto db = dbs->Acquire(id);
      if (!db.ok()) return std::pair<int64_t, int64_t>{0, 0};
      return m->AwaitCopies(id, kAwaitCopies);
    };
  }
  p.public_server = std::make_unique<http::Server>(OptionsFor(c, "public", c.listen, true),
                                                   p.public_dispatcher.get(), &p.metrics);
  // The operator listener is plain HTTP on loopback only (config enforces
  // loopback): the token never leaves this host; every operator action on a
  // tenant's data lands in that tenant's audit log.
  p.operator_server = std::make_unique<http::Server>(
      OptionsFor(c, "operator", c.operator_listen, false), p.operator_dispatcher.get(), &p.metrics);
  p.metrics.AddGaugeSource([&p] {
    return std::vector<std::pair<std::string, double>>{
        {"silo_tenants", static_cast<double>(p.registry->size())},
        {"silo_open_tenants", static_cast<double>(p.stores->open_count())},
        {"silo_open_connections", static_cast<double>(p.public_server->open_connections())},
        {"silo_mail_sent_total", static_cast<double>(p.mailer->sent())},
        {"silo_mail_failed_total", static_cast<double>(p.mailer->failed())},
        {"silo_banned_clients", static_cast<double>(p.bans.size())},
    };
  });
  p.metrics.AddGaugeSource([sh = p.shipper.get()] {
    const platform::ShipperStats n = sh->Stats();
    return std::vector<std::pair<std::string, double>>{
        {"silo_security_events_shipped_total", static_cast<double>(n.shipped)},
        {"silo_security_alerts_sent_total", static_cast<double>(n.alerted)},
        {"silo_security_event_failures_total", static_cast<double>(n.failures)},
        {"silo_security_events_dropped_total", static_cast<double>(n.dropped)},
        {"silo_security_events_queued", static_cast<double>(n.queued)},
    };
  });
  p.metrics.AddGaugeSource([r = p.realtime.get()] {
    const realtime::Counters& n = r->counters();
    return std::vector<std::pair<std::string, double>>{
        {"silo_realtime_connections", static_cast<double>(n.connections.load())},
        {"silo_realtime_deliveries_total", static_cast<double>(n.deliveries.load())},
        {"silo_realtime_dropped_slow_total", static_cast<double>(n.dropped_slow.load())},
        {"silo_realtime_denied_total", static_cast<double>(n.denied.load())},
    };
  });
  if (p.cluster) {
    p.metrics.AddGaugeSource([m = p.cluster.get()] {
      const ClusterMember::Stats st = m->stats();
      return std::vector<std::pair<std::string, double>>{
          {"silo_cluster_lease_held", st.lease_held ? 1.0 : 0.0},
          {"silo_repl_tenants_led", static_cast<double>(st.tenants_led)},
          {"silo_repl_copies", static_cast<double>(st.copies)},
          {"silo_repl_recent_bytes", static_cast<double>(st.recent_bytes)},
          {"silo_repl_retained_bytes", static_cast<double>(st.retained_bytes)},
          {"silo_repl_lag_segments", static_cast<double>(st.lag_segments)},
          {"silo_repl_followers_behind", static_cast<double>(st.followers_behind)},
          {"silo_repl_term_max", static_cast<double>(st.term_max)},
          {"silo_repl_segments_total", static_cast<double>(st.segments)},
          {"silo_repl_bytes_total", static_cast<double>(st.bytes)},
          {"silo_repl_snapshots_total", static_cast<double>(st.snapshots)},
          {"silo_repl_snapshot_bytes_total", static_cast<double>(st.snapshot_bytes)},
          {"silo_repl_promotions_total", static_cast<double>(st.promotions)},
          {"silo_cluster_loop_turns_total", static_cast<double>(st.loop_turns)},
      };
    });
    p.metrics.AddHistogram("silo_repl_ack_seconds",
                           "Seconds from a segment's send to a follower's acknowledgement that it "
                           "is durable there (replica lag).",
                           p.cluster->ack_seconds());
  }
  p.metrics.AddGaugeSource([b = p.backups.get()] {
    backup::Stats st = b->stats();
    return std::vector<std::pair<std::string, double>>{
        {"silo_backups_total", static_cast<double>(st.backups_ok)},
        {"silo_backup_failures_total", static_cast<double>(st.backups_failed)},
        {"silo_backup_last_success_timestamp_seconds",
         static_cast<double>(st.last_success_us) / 1e6},
        {"silo_backup_last_seconds", st.last_backup_seconds},
        {"silo_backup_last_bytes", static_cast<double>(st.last_backup_bytes)},
        {"silo_backups_pruned_total", static_cast<double>(st.pruned)},
        {"silo_restores_total", static_cast<double>(st.restores_ok)},
        {"silo_restore_failures_total", static_cast<double>(st.restores_failed)},
        {"silo_restore_drills_total", static_cast<double>(st.drills_ok)},
        {"silo_restore_drill_failures_total", static_cast<double>(st.drills_failed)},
        {"silo_restore_drill_last_seconds", st.last_drill_seconds},
    };
  });
  p.started = true;  // from here Stop() has servers to stop
  SILO_ASSIGN_OR_RETURN(uint16_t public_port, p.public_server->Start());
  SILO_ASSIGN_OR_RETURN(uint16_t operator_port, p.operator_server->Start());
  config::HostPort pub{c.listen.host, public_port};
  config::HostPort op{c.operator_listen.host, operator_port};
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
  if (p.cluster) {
    SILO_RETURN_IF_ERROR(p.cluster->Start(
        c.security.public_url.empty() ? "https://" + pub.ToString() : c.security.public_url));
  }
  p.ready = true;
  log::Info("silo serving", {{"env", config::EnvironmentName(c.env)},
                             {"listen", "https://" + pub.ToString()},
                             {"operator_listen", "http://" + op.ToString()},
                             {"tenants", static_cast<long long>(p.registry->size())},
                             {"backup_target", p.backups->target_description()}});
  p.audit_retention = std::make_unique<RetentionJob>(
      p.services, c.audit_retention_months, std::max(c.backups.daily_days, c.backups.weekly_days));
  if (c.backups.schedule) {
    p.backup_scheduler =
        std::make_unique<BackupScheduler>(*p.backups, *p.registry, *p.security_log, c.backups);
  }
  p.checkpoint_scheduler = std::make_unique<CheckpointScheduler>(
      *p.checkpoints, *p.registry, *p.security_log, int64_t{c.checkpoint_minutes} * 60'000'000,
      [m = p.cluster.get()](const tenant::TenantInfo& t) {
        // On a cluster, opening a tenant takes it on: only one this node
        // already leads and has open is checked here (the others are their
        // primaries' to check; backups and requests still checkpoint them).
        return m == nullptr || m->LeadsOpen(t.id);
      });
  return Status::Ok();
}

void App::Run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return;
    if (Status s = p_->public_server->ReloadTls(); s.ok()) {
      log::Info("TLS certificate reloaded");
    } else {
      log::Error("TLS reload failed; keeping the old certificate", {{"cause", s.ToString()}});
    }
  }
}

void App::Stop() {
  Parts& p = *p_;
  if (!p.started) return;
  p.started = false;
  log::Info("shutting down: draining in-flight requests");
  p.ready = false;
  if (p.audit_retention) p.audit_retention->Stop();
  if (p.backup_scheduler) p.backup_scheduler->Stop();
  if (p.checkpoint_scheduler) p.checkpoint_scheduler->Stop();
  if (p.mailer) p.mailer->Stop();
  p.public_server->Stop();
  p.operator_server->Stop();
  if (p.cluster) p.cluster->Stop();
  ::unlink(ServerInfoPath(p.config.data_dir).c_str());
  log::Info("stopped");
}

api::PublicDispatcher& App::public_dispatcher() { return *p_->public_dispatcher; }
api::OperatorDispatcher& App::operator_dispatcher() { return *p_->operator_dispatcher; }
api::Services& App::services() { return p_->services; }

namespace {

// A server keeps a descriptor or three per SQLite connection (up to five
// per open tenant) and per follower copy: the soft limit of open files goes
// up to the hard one (often 1,024 against 524,288), as a server should ask.
void RaiseOpenFilesLimit() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    const rlim_t was = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = was;
  }
  log::Info("open_files_limit", {{"limit", static_cast<long long>(limit.rlim_cur)}});
}

// SILO_KEYLESS=1: no keyring, no tenants of its own, no HTTP; the cluster
// member alone, keeping copies (app/cluster_member.h), until SIGTERM or
// SIGINT.
int ServeKeyless(const config::Config& c) {
  if (c.env == config::Environment::kDevelopment) {
    if (Status s = MakeDirs(c.data_dir, 0700); !s.ok()) return Refuse(s);
  }
  auto lock = DataDirLock::Acquire(c.data_dir);
  if (!lock.ok()) return Refuse(lock.status());
  auto member = ClusterMember::Create(ClusterOptions{c.cluster, c.data_dir, nullptr, nullptr});
  if (!member.ok()) return Refuse(member.status());
  if (Status s = (*member)->Start(""); !s.ok()) return Refuse(s);
  log::Warn("cluster.keyless_node",
            {{"node", c.cluster.node_id},
             {"detail", "no master key: this node keeps sealed copies and never leads a tenant"}});
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (int sig = 0; sig != SIGTERM && sig != SIGINT;) {
    if (sigwait(&set, &sig) != 0) sig = 0;
  }
  log::Info("shutting down");
  (*member)->Stop();
  return 0;
}

}  // namespace

int Serve(const config::GetEnv& getenv) {
  config::LoadResult loaded = config::Load(getenv);
  if (!loaded.problems.empty()) {
    std::fprintf(stderr, "silo: refusing to start (%s):\n",
                 config::EnvironmentName(loaded.config.env));
    for (const auto& p : loaded.problems) std::fprintf(stderr, "  - %s\n", p.c_str());
    return 1;
  }
  RaiseOpenFilesLimit();
  if (loaded.config.cluster.keyless) return ServeKeyless(loaded.config);
  auto app = App::Create(std::move(loaded.config));
  if (!app.ok()) return Refuse(app.status());
  if (Status s = (*app)->Start(); !s.ok()) {
    (*app)->Stop();
    return Refuse(s);
  }
  (*app)->Run();
  (*app)->Stop();
  return 0;
}
}  // namespace silo::app
