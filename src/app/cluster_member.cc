#include "app/cluster_member.h"

#include <atomic>
#include <boost/json.hpp>
#include <set>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
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

// Link message ids start at random (Shipper does the same), so ids of this
// member's calls never meet those of a shipper on the same link.
uint64_t RandomStart() {
  uint64_t start = 0;
  for (char c : crypto::RandomBytes(8)) start = (start << 8) | static_cast<uint8_t>(c);
  return start >> 1;
}
std::atomic<uint64_t> next_message{RandomStart()};

}  // namespace

Result<std::shared_ptr<ClusterMember>> ClusterMember::Create(ClusterOptions options) {
  if (!options.cluster.clustered()) return FailedPrecondition("not clustered");
  if (options.keyring == nullptr) return FailedPrecondition("no keyring");
  storage::repl::EnsureReplicationVfs();
  SILO_RETURN_IF_ERROR(MakeDirs(options.data_dir + "/replicas", 0700));
  return std::shared_ptr<ClusterMember>(new ClusterMember(std::move(options)));
}

ClusterMember::ClusterMember(ClusterOptions options)
    : options_(std::move(options)),
      etcd_(std::make_unique<cluster::Etcd>(
          cluster::EtcdOptions{options_.cluster.etcd_endpoints, 1000, "", "", ""})),
      replicas_(std::make_unique<replication::Replicas>(options_.data_dir + "/replicas")) {}

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

void ClusterMember::SetDatabases(std::weak_ptr<storage::TenantDatabases> databases) {
  MutexLock lock(mu_);
  databases_ = std::move(databases);
}

std::string ClusterMember::address() const { return address_; }

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
          return shipper->Publish(seq, segment);
        });
    storage::repl::Attach(path, primary->recorder);
  }
  MutexLock lock(mu_);
  primaries_[tenant_id] = std::move(primary);
  wake_.SignalAll();  // its followers need a snapshot
  return Status::Ok();
}

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
        cluster::Message{tenant_id, replication::kTenantFiles, ++next_message, files}, 5s);
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
