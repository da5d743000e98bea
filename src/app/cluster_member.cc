#include "app/cluster_member.h"

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <set>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "replication/applier.h"
#include "replication/promotion.h"
#include "replication/protocol.h"
#include "replication/segment.h"
#include "storage/repl_vfs.h"

namespace silo::app {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr char kNodesPrefix[] = "/silo/nodes/";
constexpr char kStatusPrefix[] = "/silo/status/";
constexpr char kTenantsPrefix[] = "/silo/t/";
constexpr char kSlugsPrefix[] = "/silo/slugs/";

std::string PrimaryKey(const std::string& tenant_id) {
  return kTenantsPrefix + tenant_id + "/primary";
}

cluster::PeerTls TlsOf(const config::Cluster& c) {
  return {c.tls_cert_file, c.tls_key_file, c.tls_ca_file};
}

std::string StringField(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  const json::value* f = v.as_object().if_contains(key);
  return (f != nullptr && f->is_string()) ? std::string(f->as_string()) : "";
}

int64_t NumberField(const json::value& v, const char* key) {
  if (!v.is_object()) return 0;
  const json::value* f = v.as_object().if_contains(key);
  if (f == nullptr || !f->is_number()) return 0;
  boost::system::error_code ec;
  int64_t n = f->to_number<int64_t>(ec);
  return ec ? 0 : n;
}

json::value ParseOrNull(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return ec ? json::value() : v;
}

}  // namespace

Result<std::shared_ptr<ClusterMember>> ClusterMember::Create(ClusterOptions options) {
  if (!options.cluster.clustered()) return FailedPrecondition("not clustered");
  if (options.keyring == nullptr) return FailedPrecondition("no keyring");
  storage::repl::EnsureReplicationVfs();
  SILO_RETURN_IF_ERROR(MakeDirs(layout::ReplicasDir(options.data_dir), 0700));
  return std::shared_ptr<ClusterMember>(new ClusterMember(std::move(options)));
}

ClusterMember::ClusterMember(ClusterOptions options)
    : options_(std::move(options)),
      etcd_(std::make_unique<cluster::Etcd>(
          cluster::EtcdOptions{options_.cluster.etcd_endpoints, 1000, "", "", ""})),
      replicas_(std::make_unique<replication::Replicas>(layout::ReplicasDir(options_.data_dir))) {}

ClusterMember::~ClusterMember() { Stop(); }

Status ClusterMember::Start(const std::string& public_url) {
  const config::Cluster& c = options_.cluster;
  auto lease = cluster::NodeLease::Grant(*etcd_, c.lease_ttl_s);
  if (!lease.ok()) {
    return Unavailable("cannot get a node lease from etcd (SILO_ETCD_ENDPOINTS)")
        .WithCause(lease.status().message());
  }
  lease_ = std::move(lease).value();
  // The listener's handler runs until Stop() stops it, before this is gone.
  auto listener = cluster::PeerListener::Start(
      c.listen.ToString(), TlsOf(c), [this](const cluster::Message& m) { return Handle(m); });
  if (!listener.ok()) {
    lease_.reset();
    return listener.status();
  }
  listener_ = std::move(listener).value();
  address_ = c.listen.host + ":" + std::to_string(listener_->port());
  public_url_ = public_url;
  json::object me{{"cluster", address_}, {"url", public_url_}};
  auto announced =
      etcd_->CreateIfAbsent(kNodesPrefix + c.node_id, json::serialize(me), lease_->id());
  if (!announced.ok()) {
    listener_->Stop();
    lease_.reset();
    if (announced.status().code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("SILO_NODE_ID " + c.node_id + " is in use by a live node");
    }
    return Unavailable("cannot announce this node in etcd").WithCause(announced.status().message());
  }
  // The tenants already here keep their slugs (a node that joins with
  // tenants of its own, or a restart).
  for (const tenant::TenantInfo& t : options_.registry->List()) {
    if (Status s = ReserveSlug(t.slug, t.id); !s.ok()) {
      log::Error("cluster.slug_conflict",
                 {{"tenant", t.id}, {"slug", t.slug}, {"cause", s.ToString()}});
    }
  }
  {
    MutexLock lock(mu_);
    started_ = true;
  }
  log::Info("cluster.joined", {{"node", c.node_id},
                               {"cluster", address_},
                               {"replication", config::ReplicationModeName(c.replication)}});
  loop_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ClusterMember::Stop() {
  {
    MutexLock lock(mu_);
    if (!started_) return;
    started_ = false;
    stop_ = true;
    wake_.SignalAll();
  }
  if (loop_.joinable()) loop_.join();
  if (listener_) listener_->Stop();
  {
    MutexLock lock(mu_);
    peers_.clear();
  }
  // Revoked: the node's key and its tenants' primary keys go now, not after
  // the TTL. lease_ itself stays: commits made while the databases close
  // still ask it (the recorder's publish).
  lease_->StopRenewing();
  if (Status s = etcd_->Revoke(lease_->id()); !s.ok()) {
    log::Warn("cluster.lease_not_revoked", {{"cause", s.message()}});
  }
}

Status ClusterMember::ReserveSlug(const std::string& slug, const std::string& tenant_id) {
  const std::string key = kSlugsPrefix + slug;
  json::object value{{"id", tenant_id}};
  auto created = etcd_->CreateIfAbsent(key, json::serialize(value), 0);
  if (created.ok()) return Status::Ok();
  if (created.status().code() != StatusCode::kAlreadyExists) {
    return Unavailable("cannot reserve the slug in the cluster; retry")
        .WithCause(created.status().message());
  }
  auto held = etcd_->Get(key);
  if (held.ok() && held->has_value() &&
      StringField(ParseOrNull((*held)->value), "id") == tenant_id) {
    return Status::Ok();
  }
  return AlreadyExists("slug is taken by a tenant on another node of the cluster");
}

void ClusterMember::ReleaseSlug(const std::string& slug, const std::string& tenant_id) {
  const std::string key = kSlugsPrefix + slug;
  auto held = etcd_->Get(key);
  if (!held.ok() || !held->has_value() ||
      StringField(ParseOrNull((*held)->value), "id") != tenant_id) {
    return;  // not ours (or etcd down: the slug stays taken, said in the log)
  }
  if (Status s = etcd_->DeleteIf(key, (*held)->mod_revision); !s.ok()) {
    log::Warn("cluster.slug_not_released", {{"slug", slug}, {"cause", s.message()}});
  }
}

void ClusterMember::SetDatabases(std::weak_ptr<storage::TenantDatabases> databases) {
  MutexLock lock(mu_);
  databases_ = std::move(databases);
}

std::string ClusterMember::address() const { return address_; }

ClusterMember::Stats ClusterMember::stats() const {
  Stats st;
  st.lease_held = lease_ && lease_->Held();
  st.segments = segments_;
  st.bytes = bytes_;
  st.snapshots = snapshots_;
  st.promotions = promotions_;
  st.copies = replicas_->open_count();
  MutexLock lock(mu_);
  st.tenants_led = primaries_.size();
  for (const auto& [id, p] : primaries_) {
    st.term_max = std::max(st.term_max, p->term);
    if (!p->shipper) continue;
    const uint64_t published = p->shipper->published();
    for (const auto& f : p->shipper->Followers()) {
      if (std::string_view(f.state) != "streaming") {
        ++st.followers_behind;
      } else if (published > f.acked) {
        st.lag_segments = std::max(st.lag_segments, published - f.acked);
      }
    }
  }
  return st;
}

Status ClusterMember::Attach(const std::string& tenant_id, const std::string& path) {
  {
    MutexLock lock(mu_);
    if (!started_) return Unavailable("this node has not joined its cluster");
  }
  if (!lease_->Held()) return Unavailable("this node's cluster lease has lapsed");
  const config::Cluster& c = options_.cluster;
  json::object value{{"node", c.node_id}, {"url", public_url_}};
  const std::string key = PrimaryKey(tenant_id);
  auto term = etcd_->CreateIfAbsent(key, json::serialize(value), lease_->id());
  if (term.status().code() == StatusCode::kAlreadyExists) {
    // Ours still (the tenant was closed and opened again under this lease),
    // or another live node's.
    auto held = etcd_->Get(key);
    if (!held.ok()) return Unavailable("etcd did not answer").WithCause(held.status().message());
    if (held->has_value() && (*held)->lease == lease_->id()) {
      term = (*held)->mod_revision;
    } else {
      std::string node =
          held->has_value() ? StringField(ParseOrNull((*held)->value), "node") : "another node";
      return FailedPrecondition("the tenant's primary is node " + node);
    }
  }
  if (!term.ok()) return Unavailable("etcd did not answer").WithCause(term.status().message());

  auto primary = std::make_shared<Primary>();
  primary->path = path;
  primary->term = static_cast<uint64_t>(*term);
  if (c.replication != config::ReplicationMode::kOff) {
    std::vector<replication::FollowerLink> links;
    {
      MutexLock lock(mu_);
      for (const auto& [node, peer] : peers_) links.push_back({node, peer.link});
    }
    primary->lineage = crypto::RandomBytes(replication::kLineageSize);
    primary->shipper = std::make_shared<replication::Shipper>(
        tenant_id,
        replication::ShipperOptions{c.replication == config::ReplicationMode::kSync, c.ack_timeout,
                                    c.strict},
        std::move(links));
    // The file holds data (a template at least), so the chain starts from a
    // random head and every follower needs a snapshot first.
    primary->shipper->RequireSnapshot();
    replication::ChainHead head;
    head.hash = crypto::RandomBytes(replication::kHashSize);
    std::weak_ptr<ClusterMember> self = weak_from_this();
    primary->recorder = std::make_shared<replication::SegmentRecorder>(
        primary->lineage, primary->term, head,
        [self, shipper = primary->shipper](uint64_t seq, const std::string& segment) -> Status {
          // Self-fencing: past the lease deadline etcd may have given the
          // tenant to another node, so no commit may be answered here.
          auto me = self.lock();
          if (!me || !me->lease_->Held()) {
            return Unavailable("this node's cluster lease has lapsed");
          }
          me->segments_ += 1;
          me->bytes_ += segment.size();
          return shipper->Publish(seq, segment);
        });
    storage::repl::Attach(path, primary->recorder);
  }
  // A peer linked since the links above were taken: RefreshPeers adds a
  // peer and reads primaries_ in one hold of mu_, so either it sees this
  // primary or this sees the peer.
  std::vector<replication::FollowerLink> late;
  {
    MutexLock lock(mu_);
    if (primary->shipper) {
      std::set<std::string> known;
      for (const auto& f : primary->shipper->Followers()) known.insert(f.node);
      for (const auto& [node, peer] : peers_) {
        if (known.count(node) == 0) late.push_back({node, peer.link});
      }
    }
    primaries_[tenant_id] = primary;
    wake_.SignalAll();  // its followers need a snapshot
  }
  for (auto& link : late) primary->shipper->SetFollower(std::move(link));
  return Status::Ok();
}

// Detaches by path: a newer open of the same tenant made before this one's
// last connection closed would lose its recorder. TenantDatabases evicts
// only idle tenants and a restore waits for the close; what remains is a
// tenant suspended and resumed while a request still holds it (known gap).
void ClusterMember::Detach(const std::string& tenant_id, const std::string& path) {
  storage::repl::Detach(path);
  MutexLock lock(mu_);
  primaries_.erase(tenant_id);
}

cluster::Message ClusterMember::Handle(const cluster::Message& message) {
  return replicas_->Handle(message);
}

void ClusterMember::Loop() {
  auto next_status = std::chrono::steady_clock::now();
  for (;;) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    if (std::chrono::steady_clock::now() >= next_status) {
      RefreshPeers();
      PublishStatus();
      next_status = std::chrono::steady_clock::now() + 1s;
    }
    std::vector<std::pair<std::string, std::shared_ptr<Primary>>> waiting;
    {
      MutexLock lock(mu_);
      for (const auto& [id, p] : primaries_) {
        if (p->shipper && !p->shipper->NeedingSnapshot().empty()) waiting.emplace_back(id, p);
      }
    }
    for (const auto& [id, p] : waiting) Snapshot(id, p);
    CheckPrimaries();
    MutexLock lock(mu_);
    if (stop_) return;
    wake_.WaitUntil(mu_, std::chrono::steady_clock::now() + 250ms);
  }
}

void ClusterMember::RefreshPeers() {
  auto nodes = etcd_->List(kNodesPrefix);
  if (!nodes.ok()) {
    log::Warn("cluster.etcd_unavailable", {{"cause", nodes.status().message()}});
    return;
  }
  const std::string prefix = kNodesPrefix;
  // Nodes whose key is gone (lease expired or revoked) are no followers.
  std::set<std::string> announced;
  for (const cluster::KeyValue& kv : *nodes) announced.insert(kv.key.substr(prefix.size()));
  std::vector<std::string> gone;
  std::vector<std::shared_ptr<Primary>> led;
  {
    MutexLock lock(mu_);
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (announced.count(it->first) != 0) {
        ++it;
        continue;
      }
      gone.push_back(it->first);
      it = peers_.erase(it);
    }
    if (!gone.empty()) {
      for (const auto& [id, p] : primaries_) led.push_back(p);
    }
  }
  for (const std::string& node : gone) {
    log::Info("cluster.peer_left", {{"node", node}});
    for (const auto& p : led) {
      if (p->shipper) p->shipper->RemoveFollower(node);
    }
  }
  for (const cluster::KeyValue& kv : *nodes) {
    std::string node = kv.key.substr(prefix.size());
    if (node == options_.cluster.node_id) continue;
    std::string address = StringField(ParseOrNull(kv.value), "cluster");
    if (address.empty()) continue;
    {
      MutexLock lock(mu_);
      auto it = peers_.find(node);
      if (it != peers_.end() && it->second.address == address && !it->second.link->broken()) {
        continue;
      }
    }
    auto link = cluster::PeerClient::Connect(address, TlsOf(options_.cluster));
    if (!link.ok()) {
      log::Warn("cluster.peer_unreachable",
                {{"node", node}, {"address", address}, {"cause", link.status().message()}});
      continue;
    }
    std::shared_ptr<cluster::PeerClient> shared = std::move(link).value();
    std::vector<std::shared_ptr<Primary>> led;
    {
      MutexLock lock(mu_);
      peers_[node] = Peer{address, shared};
      for (const auto& [id, p] : primaries_) led.push_back(p);
    }
    log::Info("cluster.peer_linked", {{"node", node}, {"address", address}});
    for (const auto& p : led) {
      if (p->shipper) p->shipper->SetFollower({node, shared});
    }
  }
}

void ClusterMember::Snapshot(const std::string& tenant_id, const std::shared_ptr<Primary>& p) {
  std::shared_ptr<storage::TenantDatabases> databases;
  std::map<std::string, std::shared_ptr<cluster::PeerClient>> links;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
    for (const auto& [node, peer] : peers_) links[node] = peer.link;
  }
  if (!databases) return;
  // The tenant's files first: a copy is of use (promotion) only with them.
  auto meta = ReadFile(layout::TenantMetaFile(options_.data_dir, tenant_id));
  auto wrapped = options_.keyring->Wrapped(tenant_id);
  if (!meta.ok() || !wrapped.ok()) return;  // being deleted
  const std::string files = replication::EncodeTenantFiles({*meta, *wrapped});
  for (const std::string& node : p->shipper->NeedingSnapshot()) {
    auto it = links.find(node);
    if (it == links.end()) continue;
    auto answer = it->second->Call(
        cluster::Message{tenant_id, replication::kTenantFiles, ++next_message_, files}, 5s);
    if (!answer.ok() || answer->kind != replication::kAck) {
      log::Warn("replication.tenant_files_refused",
                {{"tenant", tenant_id},
                 {"node", node},
                 {"cause", answer.ok() ? answer->payload : answer.status().message()}});
    }
  }
  auto db = databases->Acquire(tenant_id);
  if (!db.ok()) return;
  // A TRUNCATE checkpoint empties the WAL, so the database file alone is
  // the tenant; file and chain head are taken under one hold of its changes.
  std::string bytes;
  size_t followers = 0;
  Status s = (*db)->Write([&](storage::Database& d) -> Status {
    SILO_RETURN_IF_ERROR(d.Checkpoint());
    return storage::repl::WithChangesHeld(p->path, [&]() -> Status {
      SILO_ASSIGN_OR_RETURN(bytes, ReadFile(p->path));
      followers = p->shipper->BeginSnapshot(p->lineage, p->term, p->recorder->head());
      return Status::Ok();
    });
  });
  db->reset();
  if (!s.ok()) {
    log::Warn("replication.snapshot_failed", {{"tenant", tenant_id}, {"cause", s.ToString()}});
    return;
  }
  if (followers == 0) return;
  s = p->shipper->SendSnapshot(bytes);
  ++snapshots_;
  log::Info("replication.snapshot_sent", {{"tenant", tenant_id},
                                          {"bytes", static_cast<long long>(bytes.size())},
                                          {"followers", static_cast<long long>(followers)},
                                          {"result", s.ok() ? "ok" : s.ToString()}});
}

void ClusterMember::PublishStatus() {
  json::array tenants;
  {
    MutexLock lock(mu_);
    for (const auto& [id, p] : primaries_) {
      json::array followers;
      uint64_t published = 0;
      if (p->shipper) {
        published = p->shipper->published();
        for (const auto& f : p->shipper->Followers()) {
          followers.push_back(json::object{
              {"node", f.node}, {"state", f.state}, {"sent", f.sent}, {"acked", f.acked}});
        }
      }
      tenants.push_back(json::object{
          {"id", id}, {"term", p->term}, {"seq", published}, {"followers", std::move(followers)}});
    }
  }
  json::object status{{"node", options_.cluster.node_id},
                      {"cluster", address_},
                      {"url", public_url_},
                      {"replication", config::ReplicationModeName(options_.cluster.replication)},
                      {"lease_held", lease_->Held()},
                      {"tenants", std::move(tenants)}};
  auto put =
      etcd_->Put(kStatusPrefix + options_.cluster.node_id, json::serialize(status), lease_->id());
  if (!put.ok()) log::Warn("cluster.status_not_written", {{"cause", put.status().message()}});
}

void ClusterMember::CheckPrimaries() {
  auto keys = etcd_->List(kTenantsPrefix);
  if (!keys.ok()) return;  // said by RefreshPeers
  const std::string& me = options_.cluster.node_id;
  std::set<std::string> led;
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> positions;
  std::map<std::string, cluster::KeyValue> mine;  // this node's posted positions
  for (const cluster::KeyValue& kv : *keys) {
    std::string rest = kv.key.substr(std::string(kTenantsPrefix).size());
    size_t slash = rest.find('/');
    if (slash == std::string::npos) continue;
    std::string id = rest.substr(0, slash);
    std::string tail = rest.substr(slash);
    if (tail == "/primary") {
      led.insert(id);
    } else if (tail.rfind("/pos/", 0) == 0) {
      std::string node = tail.substr(5);
      positions[id].emplace_back(node, NumberField(ParseOrNull(kv.value), "seq"));
      if (node == me) mine[id] = kv;
    }
  }
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout::ReplicasDir(options_.data_dir), ec)) {
    const std::string id = entry.path().filename().string();
    if (!entry.is_directory() || !replication::Replicas::ValidTenantId(id)) continue;
    if (led.count(id) != 0) {
      // Led (again): this node's election for it, if any, is over.
      elections_.erase(id);
      refused_.erase(id);
      if (auto it = mine.find(id); it != mine.end()) {
        (void)etcd_->DeleteIf(it->second.key, it->second.mod_revision);
      }
      continue;
    }
    if (refused_.count(id) != 0 || PathExists(layout::TenantDir(options_.data_dir, id))) continue;
    auto position = replicas_->Position(id);
    if (!position.ok() || position->seq == 0 || !replicas_->Files(id).ok()) continue;
    const auto now = std::chrono::steady_clock::now();
    if (mine.count(id) == 0) {
      json::object pos{{"seq", position->seq}};
      auto put = etcd_->Put(kTenantsPrefix + id + "/pos/" + me, json::serialize(pos), lease_->id());
      if (put.ok()) {
        elections_[id] = now;
        log::Info("replication.election",
                  {{"tenant", id}, {"seq", static_cast<long long>(position->seq)}});
      }
      continue;
    }
    auto started = elections_.try_emplace(id, now).first->second;
    // Every follower notices within a loop turn or two (250 ms each): wait
    // three turns for their positions before choosing.
    if (now - started < 750ms) continue;
    std::string best = me;
    int64_t best_seq = static_cast<int64_t>(position->seq);
    for (const auto& [node, seq] : positions[id]) {
      if (seq > best_seq || (seq == best_seq && node < best)) {
        best = node;
        best_seq = seq;
      }
    }
    if (best == me) Promote(id);
  }
}

bool ClusterMember::Promote(const std::string& tenant_id) {
  const std::string& me = options_.cluster.node_id;
  // A copy that cannot be promoted steps out of the election (its position
  // key goes), so that the next best follower takes the tenant; it is tried
  // again only once the tenant is led again (and its copy resynced).
  auto refuse = [&](const std::string& why) {
    log::Error("replication.promotion_refused", {{"tenant", tenant_id}, {"cause", why}});
    refused_.insert(tenant_id);
    (void)etcd_->Delete(kTenantsPrefix + tenant_id + "/pos/" + me);
    return false;
  };
  auto files = replicas_->Files(tenant_id);
  if (!files.ok()) return refuse(files.status().ToString());
  // A slug this node already gives another tenant (registries are per node).
  std::string slug = StringField(ParseOrNull(files->meta), "slug");
  if (auto other = options_.registry->Find(slug); other && other->id != tenant_id) {
    return refuse("the slug " + slug + " names another tenant on this node");
  }
  if (Status s = options_.keyring->Import(tenant_id, files->wrapped_key); !s.ok()) {
    return refuse(s.ToString());
  }
  auto dek = options_.keyring->GetKey(tenant_id);
  if (!dek.ok()) return refuse(dek.status().ToString());
  const std::string copy = replicas_->Dir(tenant_id);
  replicas_->Close(tenant_id);
  if (Status s = replication::CheckPromotable(
          copy, crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kDatabasePages));
      !s.ok()) {
    return refuse(s.ToString());
  }
  json::object value{{"node", me}, {"url", public_url_}};
  auto term = etcd_->CreateIfAbsent(PrimaryKey(tenant_id), json::serialize(value), lease_->id());
  if (!term.ok()) return false;  // another node took it first
  // The copy becomes the tenant's own directory, then the registry's.
  const std::string dir = layout::TenantDir(options_.data_dir, tenant_id);
  const std::string database = layout::TenantDatabaseFile(options_.data_dir, tenant_id);
  Status s = MakeDirs(dir, 0700);
  for (const auto& [from, to] :
       {std::pair{copy + "/" + replication::kReplicaDatabaseName, database},
        std::pair{copy + "/" + replication::kReplicaWalName, database + "-wal"}}) {
    if (s.ok() && PathExists(from) && std::rename(from.c_str(), to.c_str()) != 0) {
      s = Internal("cannot move the copy into place").WithCause(to);
    }
  }
  if (s.ok())
    s = WriteFileAtomic(layout::TenantMetaFile(options_.data_dir, tenant_id), files->meta);
  if (s.ok()) s = SyncDir(dir);
  if (s.ok()) s = RemoveTree(copy);
  if (s.ok()) s = options_.registry->Adopt(tenant_id).status();
  if (!s.ok()) {
    // The primary key is ours but the tenant is not served: give it up so
    // that another follower can try (its lease-bound key goes with ours).
    (void)etcd_->DeleteIf(PrimaryKey(tenant_id), *term);
    return refuse(s.ToString());
  }
  (void)etcd_->Delete(kTenantsPrefix + tenant_id + "/pos/" + me);
  elections_.erase(tenant_id);
  ++promotions_;
  log::Info("replication.promoted",
            {{"tenant", tenant_id}, {"slug", slug}, {"term", static_cast<long long>(*term)}});
  // Open it now: the attach finds the primary key under this lease, and the
  // other followers get a snapshot of the new chain.
  std::shared_ptr<storage::TenantDatabases> databases;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
  }
  if (databases) {
    if (auto db = databases->Acquire(tenant_id); !db.ok()) {
      log::Error("replication.promoted_tenant_not_opened",
                 {{"tenant", tenant_id}, {"cause", db.status().ToString()}});
    }
  }
  return true;
}

Result<std::string> ClusterStatus(const std::vector<std::string>& etcd_endpoints, bool as_json) {
  cluster::Etcd etcd(cluster::EtcdOptions{etcd_endpoints, 2000, "", "", ""});
  SILO_ASSIGN_OR_RETURN(auto nodes, etcd.List(kNodesPrefix));
  SILO_ASSIGN_OR_RETURN(auto statuses, etcd.List(kStatusPrefix));
  SILO_ASSIGN_OR_RETURN(auto keys, etcd.List(kTenantsPrefix));
  std::map<std::string, json::object> status_of;
  for (const auto& kv : statuses) {
    json::value v = ParseOrNull(kv.value);
    if (v.is_object()) status_of[kv.key.substr(std::string(kStatusPrefix).size())] = v.as_object();
  }
  json::array node_list;
  for (const auto& kv : nodes) {
    std::string id = kv.key.substr(std::string(kNodesPrefix).size());
    json::value v = ParseOrNull(kv.value);
    auto st = status_of.find(id);
    node_list.push_back(json::object{
        {"id", id},
        {"cluster", StringField(v, "cluster")},
        {"url", StringField(v, "url")},
        {"lease", kv.lease},
        {"replication", st == status_of.end() ? "" : StringField(st->second, "replication")}});
  }
  // Each tenant's primary (its key in etcd; the term is its revision), with
  // where its followers stand as that primary last reported.
  json::array tenant_list;
  for (const auto& kv : keys) {
    std::string rest = kv.key.substr(std::string(kTenantsPrefix).size());
    size_t slash = rest.find('/');
    if (slash == std::string::npos || rest.substr(slash) != "/primary") continue;
    std::string id = rest.substr(0, slash);
    std::string node = StringField(ParseOrNull(kv.value), "node");
    json::object t{{"id", id}, {"primary", node}, {"term", kv.mod_revision}};
    int64_t seq = 0;
    json::array followers;
    auto st = status_of.find(node);
    const json::value* led = st == status_of.end() ? nullptr : st->second.if_contains("tenants");
    if (led != nullptr && led->is_array()) {
      for (const json::value& entry : led->as_array()) {
        if (StringField(entry, "id") != id) continue;
        seq = NumberField(entry, "seq");
        const json::value* fs = entry.as_object().if_contains("followers");
        if (fs == nullptr || !fs->is_array()) continue;
        for (const json::value& f : fs->as_array()) {
          int64_t acked = NumberField(f, "acked");
          followers.push_back(json::object{{"node", StringField(f, "node")},
                                           {"state", StringField(f, "state")},
                                           {"acked", acked},
                                           {"lag", seq > acked ? seq - acked : 0}});
        }
      }
    }
    t["seq"] = seq;
    t["followers"] = std::move(followers);
    tenant_list.push_back(std::move(t));
  }
  json::object all{{"nodes", std::move(node_list)}, {"tenants", std::move(tenant_list)}};
  if (as_json) return json::serialize(all) + "\n";
  std::string out = "nodes\n";
  for (const json::value& n : all["nodes"].as_array()) {
    out += "  " + StringField(n, "id") + "  cluster " + StringField(n, "cluster") + "  url " +
           StringField(n, "url") + "  replication " + StringField(n, "replication") + "\n";
  }
  out += "tenants\n";
  for (const json::value& t : all["tenants"].as_array()) {
    const json::object& o = t.as_object();
    out += "  " + StringField(t, "id") + "  primary " + StringField(t, "primary") + "  term " +
           std::to_string(NumberField(t, "term")) + "  seq " +
           std::to_string(NumberField(t, "seq")) + "\n";
    for (const json::value& f : o.at("followers").as_array()) {
      out += "    follower " + StringField(f, "node") + "  " + StringField(f, "state") +
             "  acked " + std::to_string(NumberField(f, "acked")) + "  lag " +
             std::to_string(NumberField(f, "lag")) + "\n";
    }
  }
  return out;
}

}  // namespace silo::app
