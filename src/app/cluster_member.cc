#include "app/cluster_member.h"

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "events/event_log.h"
#include "replication/applier.h"
#include "replication/live_head.h"
#include "replication/promotion.h"
#include "replication/protocol.h"
#include "replication/segment.h"
#include "storage/database.h"
#include "storage/repl_vfs.h"

namespace silo::app {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr char kNodesPrefix[] = "/silo/nodes/";
constexpr char kStatusPrefix[] = "/silo/status/";
constexpr char kTenantsPrefix[] = "/silo/t/";
constexpr char kSlugsPrefix[] = "/silo/slugs/";
constexpr char kGonePrefix[] = "/silo/gone/";

constexpr char kKeylessRefusal[] =
    "this node has no master key (SILO_KEYLESS=1): it keeps a sealed copy and cannot take the "
    "tenant over";
constexpr char kOwnDirectoryRefusal[] =
    "this node still holds the tenant's own directory (tenants/<id>), where a promotion would "
    "move its copy: it cannot take the tenant over until that directory is moved away";

std::string PrimaryKey(const std::string& tenant_id) {
  return kTenantsPrefix + tenant_id + "/primary";
}

// The sync set of a tenant's current term (replication::ShipperOptions::
// record_sync_set): the followers an election may choose from.
std::string SyncKey(const std::string& tenant_id) { return kTenantsPrefix + tenant_id + "/sync"; }

// The tenant's current replication chain: {"term","lineage"} (the lineage
// in hex), and {"from","from_hash"} when a promoted copy took the lineage
// on from its position, on no lease, written by each primary before its
// chain answers a commit (ClusterMember::RecordChain). A copy of another
// lineage (of a chain a restart, re-key or restore in place ended, which
// may lack everything since) is never elected, however far it went; nor is
// one that went past where the current primary took the chain on (OnChain).
std::string ChainKey(const std::string& tenant_id) { return kTenantsPrefix + tenant_id + "/chain"; }

// Whether a copy (lineage and last segment's hash in hex, its term and
// seq) holds a prefix of the chain `c` records. A copy of another lineage
// does not. One that took a segment (or a snapshot) of the current term
// holds the current primary's chain. One of an earlier term does only
// when it stands exactly where the current primary took the lineage on
// (from, from_hash): past it (an async follower ahead of the promoted
// copy, or a deposed primary) it holds segments no current copy holds,
// and behind it on a chain taken on twice it cannot tell which history it
// holds. Its segment numbers compare with the current copies' only then.
struct Chain {
  std::string lineage;  // hex; "-" when ended (EndChain), "" when not said
  int64_t term = 0;
  int64_t from = 0;       // 0: a new lineage (no copy of it predates its term)
  std::string from_hash;  // hex
};

bool OnChain(const Chain& c, const std::string& lineage, int64_t term, int64_t seq,
             const std::string& hash) {
  if (c.lineage.empty()) return true;  // recorded by a node that did not say
  if (c.lineage != lineage) return false;
  if (term >= c.term) return true;
  return c.from != 0 && seq == c.from && hash == c.from_hash;
}

// The latest term under which any node led the tenant: {"term","node"}, on
// no lease (it must outlive every node). See ClusterMember::CheckNotBehind.
std::string TermKey(const std::string& tenant_id) { return kTenantsPrefix + tenant_id + "/term"; }
// Beside a tenant's database: the term this node last led it under.
constexpr char kTermFile[] = "primary.term";
// Beside a tenant's database, written when the node stops with the tenant
// closed (ClusterMember::Stop) and removed by the next open (Attach): the
// position of the tenant's chain its files stand at and what tenant.db was
// then (ClusterMember::ChainHeadFile). A restarted node goes on from there
// while the files are still that: as the tenant's primary, its chain goes
// on (followers at that position stream on), or, when another node took
// the tenant over meanwhile, they are its copy (KeepAsCopy).
constexpr char kChainHeadFile[] = "chain.head";
// Beside chain.head, written just before it and removed with it: the
// segments that ended at that position, as the primary's shipper kept them
// (replication::SegmentRecords), for the chain to go on from with them.
constexpr char kChainRecentFile[] = "chain.recent";

std::string SyncSetValue(int64_t term, const std::vector<std::string>& nodes) {
  json::array list;
  for (const std::string& n : nodes) list.push_back(json::value(n));
  return json::serialize(json::object{{"term", term}, {"nodes", std::move(list)}});
}

cluster::PeerTls TlsOf(const config::Cluster& c) {
  return {c.tls_cert_file, c.tls_key_file, c.tls_ca_file};
}

std::string StringField(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  const json::value* f = v.as_object().if_contains(key);
  return (f != nullptr && f->is_string()) ? std::string(f->as_string()) : "";
}

bool BoolField(const json::value& v, const char* key) {
  if (!v.is_object()) return false;
  const json::value* f = v.as_object().if_contains(key);
  return f != nullptr && f->is_bool() && f->as_bool();
}

int64_t NumberField(const json::value& v, const char* key) {
  if (!v.is_object()) return 0;
  const json::value* f = v.as_object().if_contains(key);
  if (f == nullptr || !f->is_number()) return 0;
  boost::system::error_code ec;
  int64_t n = f->to_number<int64_t>(ec);
  return ec ? 0 : n;
}

// "/silo/t/<id><tail>" split into the tenant id and the tail ("/primary",
// "/sync", "/pos/<node>", "/handover"); nullopt for any other key.
struct TenantKey {
  std::string id;
  std::string tail;
};
std::optional<TenantKey> SplitTenantKey(const std::string& key) {
  const std::string prefix = kTenantsPrefix;
  if (key.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t slash = key.find('/', prefix.size());
  if (slash == std::string::npos) return std::nullopt;
  return TenantKey{key.substr(prefix.size(), slash - prefix.size()), key.substr(slash)};
}

// The strings of a JSON array (none when it is not one).
std::vector<std::string> StringsOf(const json::value& array) {
  std::vector<std::string> out;
  if (!array.is_array()) return out;
  for (const json::value& n : array.as_array()) {
    if (n.is_string()) out.emplace_back(n.as_string());
  }
  return out;
}

// The members of a sync set value {"term","nodes"} (SyncSetValue).
std::vector<std::string> SyncMembers(const json::value& v) {
  const json::value* nodes = v.is_object() ? v.as_object().if_contains("nodes") : nullptr;
  return nodes == nullptr ? std::vector<std::string>{} : StringsOf(*nodes);
}

// The chain a "/chain" value records (ChainKey); an ended one (EndChain)
// has lineage "-", which no copy's is.
Chain ChainOf(const json::value& v) {
  return {BoolField(v, "ended") ? "-" : StringField(v, "lineage"), NumberField(v, "term"),
          NumberField(v, "from"), StringField(v, "from_hash")};
}

template <class Names>
std::string JoinNames(const Names& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out.empty() ? "(none)" : out;
}

json::value ParseOrNull(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return ec ? json::value() : v;
}

// Moves a promoted copy's blobs and upload parts (`from`:
// replicas/<id>/files) to the tenant's files directory `to`, leaving out
// pieces of blobs still arriving (.partial). Renames within one file system: the bytes do not move.
Status MoveReplicaFiles(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(from, ec)) return Status::Ok();  // no blob was ever shipped
  std::set<std::string> dirs;
  for (auto it = fs::recursive_directory_iterator(from, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    // Blobs (.sf) and resumable uploads' parts (.part), whose upload rows
    // the copy holds: their clients resume from what is here.
    if (!it->is_regular_file() ||
        (it->path().extension() != ".sf" && it->path().extension() != ".part")) {
      continue;
    }
    const std::string target = to + "/" + fs::relative(it->path(), from, ec).string();
    if (ec) break;
    const std::string dir = fs::path(target).parent_path().string();
    SILO_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    if (std::rename(it->path().c_str(), target.c_str()) != 0) {
      return Internal("cannot move the copy's files into place").WithCause(target);
    }
    dirs.insert(dir);
  }
  if (ec) return Internal("cannot list the copy's files").WithCause(ec.message());
  for (const std::string& dir : dirs) SILO_RETURN_IF_ERROR(SyncDir(dir));
  return Status::Ok();
}

// The tenant's own audit log says that `node` took it over, under `term`,
// its copy at segment `seq`: written into the copy (its files in place,
// nothing serving it yet) through `vfs`, the replicated cipher VFS when
// the copy's chain goes on, so the followers get it with the chain (or a
// snapshot). `forced`, when not null: the members of the sync set an
// operator's --accept-loss replaced (ForceElection).
Status AuditPromotion(const std::string& database, const crypto::SecretKey& dek,
                      const std::string& node, uint64_t term, uint64_t seq, const std::string& vfs,
                      const json::value* forced) {
  SILO_ASSIGN_OR_RETURN(auto db,
                        storage::Database::Open(
                            database, crypto::DeriveSubkey(dek, crypto::KeyPurpose::kDatabasePages),
                            {.create = false, .vfs = vfs}));
  SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(*db));
  const events::Origin origin{
      .actor = {"system", "replication"}, .request_id = "", .client = "", .now_us = NowMicros()};
  json::object detail{{"term", static_cast<int64_t>(term)}, {"seq", static_cast<int64_t>(seq)}};
  // An operator's --accept-loss: the sync set it replaced, whose members
  // may have held acknowledged writes this copy lacks.
  if (forced != nullptr) detail["forced_over_sync_set"] = *forced;
  SILO_RETURN_IF_ERROR(events::AppendAudit(*db, origin, "replication.promoted", "node", node,
                                           events::DetailChanges(std::move(detail))));
  return tx.Commit();
}

}  // namespace

Result<std::shared_ptr<ClusterMember>> ClusterMember::Create(ClusterOptions options) {
  if (!options.cluster.clustered()) return FailedPrecondition("not clustered");
  if ((options.keyring == nullptr || options.registry == nullptr) && !options.cluster.keyless) {
    return FailedPrecondition("no keyring");
  }
  storage::repl::EnsureReplicationVfs();
  SILO_RETURN_IF_ERROR(MakeDirs(layout::ReplicasDir(options.data_dir), 0700));
  return std::shared_ptr<ClusterMember>(new ClusterMember(std::move(options)));
}

ClusterMember::ClusterMember(ClusterOptions options)
    : options_(std::move(options)),
      etcd_(std::make_unique<cluster::Etcd>(
          cluster::EtcdOptions{options_.cluster.etcd_endpoints, 1000, "", "", ""})),
      tenant_keys_(*etcd_, kTenantsPrefix),
      replicas_(std::make_unique<replication::Replicas>(layout::ReplicasDir(options_.data_dir))) {}

ClusterMember::~ClusterMember() { Stop(); }

Status ClusterMember::Start(const std::string& public_url) {
  const config::Cluster& c = options_.cluster;
  auto lease = cluster::NodeLease::Grant(*etcd_, c.lease_ttl_s);
  if (!lease.ok()) {
    return Unavailable("cannot get a node lease from etcd (SILO_ETCD_ENDPOINTS)")
        .WithCause(lease.status().message());
  }
  std::shared_ptr<cluster::NodeLease> held = std::move(lease).value();
  {
    MutexLock lock(mu_);
    lease_ = held;
  }
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout::ReplicasDir(options_.data_dir), ec)) {
    if (entry.path().filename().string().rfind(".snapshot-", 0) == 0) {
      (void)RemoveTree(entry.path().string());
    }
  }
  // A copy of a tenant served here is no copy: a handover that stopped
  // half-way (KeepAsCopy) left one sharing the tenant's own files, which
  // change as it is served; any other is stale. Gone before any peer asks.
  for (const tenant::TenantInfo& t :
       options_.registry ? options_.registry->List() : std::vector<tenant::TenantInfo>{}) {
    if (!PathExists(replicas_->Dir(t.id))) continue;
    Status s = replicas_->Drop(t.id);
    log::Info("replication.copy_dropped",
              {{"tenant", t.id}, {"why", "led here"}, {"result", s.ok() ? "ok" : s.ToString()}});
  }
  // The listener's handler runs until Stop() stops it, before this is gone.
  auto listener = cluster::PeerListener::StartForRuns(
      c.listen.ToString(), TlsOf(c),
      [this](const std::vector<cluster::Message>& run) { return Handle(run); });
  if (!listener.ok()) {
    MutexLock lock(mu_);
    lease_.reset();
    return listener.status();
  }
  listener_ = std::move(listener).value();
  address_ = c.listen.host + ":" + std::to_string(listener_->port());
  public_url_ = public_url;
  // Before any peer can know of this node (it finds it by the
  // announcement): its copies' bases are in place before a snapshot comes.
  DemoteLedElsewhere();
  auto announced = etcd_->CreateIfAbsent(kNodesPrefix + c.node_id, Announcement(), held->id());
  if (!announced.ok()) {
    listener_->Stop();
    held.reset();
    {
      MutexLock lock(mu_);
      lease_.reset();
    }
    if (announced.status().code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("SILO_NODE_ID " + c.node_id + " is in use by a live node");
    }
    return Unavailable("cannot announce this node in etcd").WithCause(announced.status().message());
  }
  // The tenants already here keep their slugs (a node that joins with
  // tenants of its own, or a restart).
  for (const tenant::TenantInfo& t :
       options_.registry ? options_.registry->List() : std::vector<tenant::TenantInfo>{}) {
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

void ClusterMember::RecordChainHeads() {
  std::shared_ptr<storage::TenantDatabases> databases;
  std::vector<std::string> open;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
    for (const auto& [id, p] : primaries_) open.push_back(id);
  }
  // Closed while the links and the lease still hold: the close's
  // checkpoint and the WAL's removal reach the followers (in sync mode, one
  // of the sync set at least, which the election then takes), so that a
  // follower taking over stands where these files do.
  if (databases) {
    for (const std::string& id : open) {
      (void)databases->Exclusive(id, "the node is stopping", 5s, [] { return Status::Ok(); });
    }
  }
  std::map<std::string, Closed> closed;
  {
    MutexLock lock(mu_);
    closed = closed_;
  }
  // Async mode awaits no acknowledgement: the followers that stream get up
  // to the ack timeout to take what was sent (a follower at the recorded
  // head streams on from this node or from whichever takes over).
  const auto deadline = std::chrono::steady_clock::now() + options_.cluster.ack_timeout;
  for (const auto& [id, c] : closed) {
    if (!c.primary->shipper) continue;
    for (;;) {
      const uint64_t published = c.primary->shipper->published();
      bool behind = false;
      for (const auto& f : c.primary->shipper->Followers()) {
        behind = behind || (std::string_view(f.state) == "streaming" && f.acked < published);
      }
      if (!behind || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  size_t recorded = 0;
  size_t recent_bytes = 0;
  for (const auto& [id, c] : closed) {
    if (!c.primary->recorder || c.wal.exists || IdentityOf(c.primary->path) != c.database) continue;
    const replication::ChainHead head = c.primary->recorder->head();
    // The segments kept (Detach keeps them whole while the node stops),
    // for a follower behind this position. Only of use when they end
    // there; not recorded (a snapshot for such a follower) past the bound.
    std::vector<std::string> kept = c.primary->shipper->Retained();
    size_t bytes = 0;
    for (const std::string& segment : kept) bytes += segment.size();
    if (kept.size() > 1 && replication::PeekSegmentSeq(kept.back()) == head.seq &&
        recent_bytes + bytes <= kRecentKeptBytes) {
      std::string records;
      records.reserve(bytes + 4 * kept.size());
      for (const std::string& segment : kept) replication::AppendSegmentRecord(records, segment);
      if (Status s = WriteFileAtomic(ChainRecentFile(c.primary->path), records); !s.ok()) {
        log::Warn("replication.recent_segments_not_kept",
                  {{"tenant", id}, {"cause", s.ToString()}});
      } else {
        recent_bytes += bytes;
      }
    }
    json::object value{{"lineage", crypto::HexEncode(c.primary->lineage)},
                       {"term", static_cast<int64_t>(c.primary->term)},
                       {"seq", static_cast<int64_t>(head.seq)},
                       {"hash", crypto::HexEncode(head.hash)},
                       {"device", static_cast<int64_t>(c.database.device)},
                       {"inode", static_cast<int64_t>(c.database.inode)},
                       {"size", static_cast<int64_t>(c.database.size)},
                       {"modified_ns", c.database.modified_ns}};
    const std::string file = ChainHeadFile(c.primary->path);
    if (Status s = WriteFileAtomic(file, json::serialize(value)); !s.ok()) {
      log::Warn("replication.chain_head_not_recorded", {{"tenant", id}, {"cause", s.ToString()}});
      continue;
    }
    ++recorded;
  }
  if (recorded > 0) {
    log::Info("replication.chain_heads_recorded", {{"tenants", static_cast<long long>(recorded)}});
  }
}

std::string ClusterMember::ChainHeadFile(const std::string& database) {
  return std::filesystem::path(database).parent_path().string() + "/" + kChainHeadFile;
}

std::string ClusterMember::ChainRecentFile(const std::string& database) {
  return std::filesystem::path(database).parent_path().string() + "/" + kChainRecentFile;
}

Result<std::vector<std::string>> ClusterMember::TakeRecordedRecent(const std::string& database) {
  const std::string file = ChainRecentFile(database);
  std::vector<std::string> segments;
  if (auto bytes = ReadFile(file); bytes.ok()) {
    for (std::string_view record : replication::SegmentRecords(*bytes)) {
      segments.emplace_back(record);
    }
  }
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove the recorded segments").WithCause(file);
  }
  return segments;
}

std::optional<replication::ReplicaPosition> ClusterMember::RecordedChainHead(
    const std::string& database) {
  auto text = ReadFile(ChainHeadFile(database));
  // A process that died recorded none: where it kept its files, if they
  // are still that.
  if (!text.ok()) return replication::LiveHead::Read(database);
  const json::value v = ParseOrNull(*text);
  const FileIdentity now = IdentityOf(database);
  const FileIdentity then{true, static_cast<uint64_t>(NumberField(v, "device")),
                          static_cast<uint64_t>(NumberField(v, "inode")),
                          static_cast<uint64_t>(NumberField(v, "size")),
                          NumberField(v, "modified_ns")};
  // Changed since (opened, restored, touched), or a WAL beside it: not
  // that position's files.
  if (now != then || IdentityOf(database + "-wal").exists)
    return replication::LiveHead::Read(database);
  auto lineage = crypto::HexDecode(StringField(v, "lineage"));
  auto hash = crypto::HexDecode(StringField(v, "hash"));
  if (!lineage.ok() || lineage->size() != replication::kLineageSize || !hash.ok() ||
      hash->size() != replication::kHashSize || NumberField(v, "seq") <= 0) {
    return std::nullopt;
  }
  return replication::ReplicaPosition{.lineage = *lineage,
                                      .term = static_cast<uint64_t>(NumberField(v, "term")),
                                      .seq = static_cast<uint64_t>(NumberField(v, "seq")),
                                      .hash = *hash,
                                      .wal_commit_frame = 0};
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
  JoinHandOvers(/*all=*/true);
  RecordChainHeads();
  if (listener_) listener_->Stop();
  {
    MutexLock lock(mu_);
    peers_.clear();
    closed_.clear();
  }
  // Revoked: the node's key and its tenants' primary keys go now, not after
  // the TTL. The lease object itself stays: commits made while the
  // databases close still ask it (the recorder's publish).
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  lease->StopRenewing();
  if (Status s = etcd_->Revoke(lease->id()); !s.ok()) {
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
  // The followers' copies and keys go too: marked before the slug is
  // released, so a slug free again always has its old tenant marked.
  json::object gone{{"at_us", NowMicros()}};
  if (auto put = etcd_->Put(kGonePrefix + tenant_id, json::serialize(gone), 0); !put.ok()) {
    log::Warn("cluster.tenant_gone_not_marked",
              {{"tenant", tenant_id}, {"cause", put.status().message()}});
  }
  if (Status s = etcd_->DeleteIf(key, (*held)->mod_revision); !s.ok()) {
    log::Warn("cluster.slug_not_released", {{"slug", slug}, {"cause", s.message()}});
  }
  // The tenant is gone: its primary key (which outlives the tenant's close
  // on this node's lease) and sync set with it. Marked gone first, so no
  // follower elects it meanwhile.
  (void)etcd_->Delete(PrimaryKey(tenant_id));
  (void)etcd_->Delete(SyncKey(tenant_id));
  (void)etcd_->Delete(ChainKey(tenant_id));
  (void)etcd_->Delete(TermKey(tenant_id));
  MutexLock lock(mu_);
  closed_.erase(tenant_id);
}

void ClusterMember::DropDeletedCopies() {
  const auto now = std::chrono::steady_clock::now();
  const bool full = now >= gone_full_at_;
  auto gone = etcd_->List(kGonePrefix, full ? 0 : gone_next_revision_, /*keys_only=*/true);
  if (!gone.ok()) return;  // said by RefreshPeers
  if (full) gone_full_at_ = now + std::chrono::minutes(1);
  for (const cluster::KeyValue& kv : *gone) {
    gone_next_revision_ = std::max(gone_next_revision_, kv.mod_revision + 1);
  }
  std::set<std::string> mine;
  if (options_.registry != nullptr) {
    for (const auto& t : options_.registry->List()) mine.insert(t.id);
  }
  const std::string prefix = kGonePrefix;
  for (const cluster::KeyValue& kv : *gone) {
    const std::string id = kv.key.substr(prefix.size());
    if (!replication::Replicas::ValidTenantId(id) || mine.count(id) > 0) continue;
    ForgetDeleted(id);
  }
}

void ClusterMember::ForgetDeleted(const std::string& tenant_id) {
  if (PathExists(replicas_->Dir(tenant_id))) {
    Status s = replicas_->Drop(tenant_id);
    log::Info("replication.copy_dropped",
              {{"tenant", tenant_id}, {"result", s.ok() ? "ok" : s.ToString()}});
  }
  if (options_.keyring != nullptr && options_.keyring->DestroyKey(tenant_id).ok()) {
    log::Info("cluster.deleted_tenant_key_destroyed", {{"tenant", tenant_id}});
  }
  if (elections_.erase(tenant_id) > 0) {
    (void)etcd_->Delete(kTenantsPrefix + tenant_id + "/pos/" + options_.cluster.node_id);
  }
  refused_.erase(tenant_id);
  unelectable_.erase(tenant_id);
}

void ClusterMember::SetDatabases(std::weak_ptr<storage::TenantDatabases> databases) {
  MutexLock lock(mu_);
  databases_ = std::move(databases);
}

std::string ClusterMember::address() const { return address_; }

std::string ClusterMember::Announcement() const {
  return json::serialize(json::object{
      {"cluster", address_}, {"url", public_url_}, {"keyless", options_.cluster.keyless}});
}

std::optional<std::string> ClusterMember::PrimaryElsewhere(const std::string& slug) const {
  MutexLock lock(mu_);
  auto it = elsewhere_.find(slug);
  if (it == elsewhere_.end()) return std::nullopt;
  return it->second;
}

bool ClusterMember::LeadsOpen(const std::string& tenant_id) const {
  MutexLock lock(mu_);
  return primaries_.count(tenant_id) != 0;
}

std::shared_ptr<cluster::NodeLease> ClusterMember::Lease() const {
  MutexLock lock(mu_);
  return lease_;
}

std::vector<double> ClusterMember::AckBounds() {
  return {0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
          0.02,    0.03,   0.05,  0.075, 0.1,   0.25,  0.5,    1.0,  2.5};
}

ClusterMember::Stats ClusterMember::stats() const {
  Stats st;
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  st.lease_held = lease && lease->Held();
  st.segments = segments_;
  st.bytes = bytes_;
  st.snapshots = snapshots_;
  st.snapshot_bytes = snapshot_bytes_;
  st.promotions = promotions_;
  st.loop_turns = loop_turns_;
  st.copies = replicas_->open_count();
  st.recent_bytes = replicas_->recent_bytes();
  st.retained_bytes = retained_->held.load();
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
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  if (!lease->Held()) return Unavailable("this node's cluster lease has lapsed");
  const config::Cluster& c = options_.cluster;
  json::object value{{"node", c.node_id}, {"url", public_url_}};
  const std::string dir = std::filesystem::path(path).parent_path().string();
  SILO_ASSIGN_OR_RETURN(const int64_t last_term, CheckNotBehind(tenant_id, dir));
  const std::string key = PrimaryKey(tenant_id);
  auto term = etcd_->CreateIfAbsent(key, json::serialize(value), lease->id());
  if (term.status().code() == StatusCode::kAlreadyExists) {
    // Ours still (the tenant was closed and opened again under this lease),
    // or another live node's.
    auto held = etcd_->Get(key);
    if (!held.ok()) return Unavailable("etcd did not answer").WithCause(held.status().message());
    if (held->has_value() && (*held)->lease == lease->id()) {
      term = (*held)->mod_revision;
    } else {
      std::string node =
          held->has_value() ? StringField(ParseOrNull((*held)->value), "node") : "another node";
      return FailedPrecondition("the tenant's primary is node " + node);
    }
  }
  if (!term.ok()) return Unavailable("etcd did not answer").WithCause(term.status().message());
  if (*term != last_term) SILO_RETURN_IF_ERROR(RecordTerm(tenant_id, dir, *term));

  // Closed here under this lease and term, over the files as they were
  // closed: the chain goes on (the shipper's followers were kept linked by
  // RefreshPeers meanwhile).
  std::shared_ptr<Primary> reopened;
  {
    MutexLock lock(mu_);
    auto it = closed_.find(tenant_id);
    if (it != closed_.end()) {
      const Closed& c = it->second;
      if (c.primary->lease == lease && c.primary->term == static_cast<uint64_t>(*term) &&
          c.primary->path == path && IdentityOf(path) == c.database &&
          IdentityOf(path + "-wal") == c.wal) {
        reopened = c.primary;
      }
      closed_.erase(it);
    }
    if (reopened) {
      KeepLiveHead(tenant_id, *reopened);
      storage::repl::Attach(path, reopened->recorder);
      primaries_[tenant_id] = reopened;
      wake_.SignalAll();
    }
  }
  if (reopened) {
    log::Info(
        "replication.chain_continued",
        {{"tenant", tenant_id}, {"seq", static_cast<long long>(reopened->recorder->head().seq)}});
    return Status::Ok();
  }

  // Stopped with the files at a position of the chain this node led last
  // (CheckNotBehind: no other node led it since): the chain goes on from
  // there under the new term. Read once: the open that follows changes
  // the files.
  const std::optional<replication::ReplicaPosition> stopped_at = RecordedChainHead(path);
  SILO_ASSIGN_OR_RETURN(std::vector<std::string> recent, TakeRecordedRecent(path));
  if (::unlink(ChainHeadFile(path).c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove the recorded chain head").WithCause(ChainHeadFile(path));
  }
  const size_t recent_count = stopped_at ? recent.size() : 0;
  std::shared_ptr<Primary> primary = StartChain(
      tenant_id, path, static_cast<uint64_t>(*term), lease, stopped_at ? &*stopped_at : nullptr,
      stopped_at ? std::move(recent) : std::vector<std::string>());
  const replication::ChainHead taken_from{stopped_at ? stopped_at->seq : 0,
                                          stopped_at ? stopped_at->hash : std::string()};
  SILO_RETURN_IF_ERROR(RecordChain(tenant_id, static_cast<uint64_t>(*term), primary->lineage,
                                   stopped_at && primary->recorder ? &taken_from : nullptr));
  if (stopped_at && primary->recorder) {
    log::Info("replication.chain_continued",
              {{"tenant", tenant_id},
               {"seq", static_cast<long long>(stopped_at->seq)},
               {"after", "a restart"},
               {"kept_segments", static_cast<long long>(recent_count)}});
  }
  if (primary->recorder) {
    KeepLiveHead(tenant_id, *primary);
    storage::repl::Attach(path, primary->recorder);
  }
  std::vector<replication::FollowerLink> late;
  {
    MutexLock lock(mu_);
    late = LatePeers(*primary);
    primaries_[tenant_id] = primary;
    wake_.SignalAll();  // its followers need a snapshot
  }
  for (auto& link : late) primary->shipper->SetFollower(std::move(link));
  return Status::Ok();
}

std::shared_ptr<ClusterMember::Primary> ClusterMember::StartChain(
    const std::string& tenant_id, const std::string& path, uint64_t term,
    std::shared_ptr<cluster::NodeLease> lease, const replication::ReplicaPosition* from,
    std::vector<std::string> recent) {
  const config::Cluster& c = options_.cluster;
  auto primary = std::make_shared<Primary>();
  primary->path = path;
  primary->term = term;
  primary->lease = lease;
  if (c.replication == config::ReplicationMode::kOff) return primary;
  std::vector<replication::FollowerLink> links;
  {
    MutexLock lock(mu_);
    for (const auto& [node, peer] : peers_) links.push_back({node, peer.link, peer.promotable});
  }
  primary->lineage = from ? from->lineage : crypto::RandomBytes(replication::kLineageSize);
  const bool sync = c.replication == config::ReplicationMode::kSync;
  replication::ShipperOptions shipping{
      .sync = sync,
      .ack_timeout = c.ack_timeout,
      .strict = c.strict,
      .files_dir = layout::TenantFilesDir(options_.data_dir, tenant_id),
      .ack_seconds = ack_seconds_};
  shipping.budget = retained_;
  // Sync mode: the followers that may be elected are recorded in etcd
  // (/silo/t/<id>/sync, on no lease: it must outlive this node), starting
  // empty under this term (RecordChain). Async mode elects among all
  // followers.
  const std::string sync_key = SyncKey(tenant_id);
  if (sync) {
    shipping.record_sync_set = [self = weak_from_this(), sync_key,
                                t = term](const std::vector<std::string>& nodes) -> Status {
      auto me = self.lock();
      if (!me) return Unavailable("the node is stopping");
      return me->etcd_->Put(sync_key, SyncSetValue(t, nodes), 0).status();
    };
  }
  primary->shipper =
      std::make_shared<replication::Shipper>(tenant_id, std::move(shipping), std::move(links));
  replication::ChainHead head;
  if (from) {
    // A promoted copy's chain goes on: a follower that holds the same
    // position, or one the copy's recent segments lead there from, streams
    // on; any other takes a snapshot.
    head.seq = from->seq;
    head.hash = from->hash;
    primary->shipper->ContinueFrom(head, std::move(recent));
  } else {
    // The file holds data (a template at least), so the chain starts from a
    // random head and every follower needs a snapshot first.
    primary->shipper->RequireSnapshot();
    head.hash = crypto::RandomBytes(replication::kHashSize);
  }
  std::weak_ptr<ClusterMember> self = weak_from_this();
  primary->recorder = std::make_shared<replication::SegmentRecorder>(
      primary->lineage, primary->term, head,
      [self, lease, strict = c.strict, shipper = primary->shipper,
       unanswered = primary->unanswered](uint64_t seq, const std::string& segment) -> Status {
        // Self-fencing: past the lease deadline etcd may have given the
        // tenant to another node, so no commit may be answered here.
        auto me = self.lock();
        if (!me || !lease->Held()) {
          return Unavailable("this node's cluster lease has lapsed");
        }
        me->segments_ += 1;
        me->bytes_ += segment.size();
        if (unanswered->load()) {
          shipper->Send(seq, segment);
          return Status::Ok();
        }
        // Sync, not strict: awaited once the writer has let go of the
        // tenant's write lock, so the next commit goes on meanwhile; the
        // lease is checked again then (no commit is answered past its
        // deadline). Strict waits in the sync, so a write it fails is not
        // committed here either.
        auto* waits = storage::repl::CommitWaits::Current();
        if (!waits || !shipper->sync() || strict) return shipper->Publish(seq, segment);
        waits->Add([shipper, lease, sent = shipper->Send(seq, segment)]() -> Status {
          SILO_RETURN_IF_ERROR(shipper->AwaitAck(sent));
          if (!lease->Held()) return Unavailable("this node's cluster lease has lapsed");
          return Status::Ok();
        });
        return Status::Ok();
      });
  // Where the WAL's commit frame stands (LiveHead): that of the position
  // the chain goes on from, none without a WAL; unknown otherwise.
  std::optional<uint32_t> frame;
  if (from != nullptr) {
    frame = from->wal_commit_frame;
  } else if (const FileIdentity wal = IdentityOf(path + "-wal"); !wal.exists || wal.size == 0) {
    frame = 0;
  }
  primary->recorder->SetCommitFrame(frame);
  return primary;
}

void ClusterMember::KeepLiveHead(const std::string& tenant_id, const Primary& primary) {
  if (!primary.recorder || primary.recorder->keeps_live_head()) return;
  auto live = replication::LiveHead::Open(primary.path);
  if (!live.ok()) {
    // Only a restart after a crash of this process needs it: a snapshot
    // then, as without it.
    log::Warn("replication.live_head_not_kept",
              {{"tenant", tenant_id}, {"cause", live.status().ToString()}});
    return;
  }
  primary.recorder->KeepLiveHead(std::move(live).value());
}

Status ClusterMember::RecordChain(const std::string& tenant_id, uint64_t term,
                                  const std::string& lineage, const replication::ChainHead* from) {
  const config::Cluster& c = options_.cluster;
  if (c.replication == config::ReplicationMode::kOff) return Status::Ok();
  json::object chain{{"term", static_cast<int64_t>(term)}, {"lineage", crypto::HexEncode(lineage)}};
  if (from != nullptr) {
    chain["from"] = static_cast<int64_t>(from->seq);
    chain["from_hash"] = crypto::HexEncode(from->hash);
  }
  Status recorded = etcd_->Put(ChainKey(tenant_id), json::serialize(chain), 0).status();
  if (recorded.ok()) {
    const std::string sync_key = SyncKey(tenant_id);
    recorded = c.replication == config::ReplicationMode::kSync
                   ? etcd_->Put(sync_key, SyncSetValue(term, {}), 0).status()
                   : etcd_->Delete(sync_key);
  }
  if (!recorded.ok()) return Unavailable("etcd did not answer").WithCause(recorded.message());
  return Status::Ok();
}

std::vector<replication::FollowerLink> ClusterMember::LatePeers(const Primary& primary) {
  // A peer linked since StartChain took the links: RefreshPeers adds a
  // peer and reads primaries_ and closed_ in one hold of mu_, so either it
  // sees this primary or this sees the peer.
  std::vector<replication::FollowerLink> late;
  if (!primary.shipper) return late;
  std::set<std::string> known;
  for (const auto& f : primary.shipper->Followers()) known.insert(f.node);
  for (const auto& [node, peer] : peers_) {
    if (known.count(node) == 0) late.push_back({node, peer.link, peer.promotable});
  }
  return late;
}

Result<int64_t> ClusterMember::CheckNotBehind(const std::string& tenant_id,
                                              const std::string& dir) {
  auto latest = etcd_->Get(TermKey(tenant_id));
  if (!latest.ok()) return Unavailable("etcd did not answer").WithCause(latest.status().message());
  if (!latest->has_value()) return 0;  // never led under a recorded term (or before this check)
  const json::value v = ParseOrNull((*latest)->value);
  const int64_t last = NumberField(v, "term");
  int64_t mine = 0;
  if (auto text = ReadFile(dir + "/" + kTermFile); text.ok()) {
    mine = std::strtoll(text->c_str(), nullptr, 10);
  }
  if (last > mine) {
    log::Error("replication.copy_behind", {{"tenant", tenant_id},
                                           {"led_by", StringField(v, "node")},
                                           {"term", static_cast<long long>(last)},
                                           {"this_copy_term", static_cast<long long>(mine)}});
    return Unavailable("node " + StringField(v, "node") +
                       " led this tenant after this node (term " + std::to_string(last) +
                       "): this node's copy may lack writes acknowledged there, so it does not "
                       "lead the tenant; a follower of that term takes it over");
  }
  return last;
}

Status ClusterMember::RecordTerm(const std::string& tenant_id, const std::string& dir,
                                 int64_t term) {
  // Here first: a crash between the two leaves this copy's term ahead of
  // etcd's, which lets it lead again, never the other way round.
  SILO_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kTermFile, std::to_string(term)));
  json::object value{{"term", term}, {"node", options_.cluster.node_id}};
  auto put = etcd_->Put(TermKey(tenant_id), json::serialize(value), 0);
  if (!put.ok()) return Unavailable("etcd did not answer").WithCause(put.status().message());
  return Status::Ok();
}

std::shared_ptr<ClusterMember::Primary> ClusterMember::OpenPrimary(const std::string& tenant_id) {
  MutexLock lock(mu_);
  auto it = primaries_.find(tenant_id);
  return it == primaries_.end() ? nullptr : it->second;
}

Status ClusterMember::ShipBlob(const std::string& tenant_id, const std::string& blob_id,
                               bool from_part) {
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  if (!primary || !primary->shipper) return Status::Ok();
  return primary->shipper->ShipBlob(blob_id, from_part);
}

void ClusterMember::RemoveBlob(const std::string& tenant_id, const std::string& blob_id) {
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  if (primary && primary->shipper) primary->shipper->RemoveBlob(blob_id, primary->term);
}

Status ClusterMember::EndChain(const std::string& tenant_id) {
  // No chain, no copies: nothing to end (a closed tenant leaves no entry).
  if (options_.cluster.replication == config::ReplicationMode::kOff) return Status::Ok();
  std::shared_ptr<Primary> primary;
  {
    MutexLock lock(mu_);
    if (auto it = primaries_.find(tenant_id); it != primaries_.end()) primary = it->second;
    if (auto it = closed_.find(tenant_id); it != closed_.end()) {
      if (!primary) primary = it->second.primary;
      closed_.erase(it);  // its next open starts a new chain
    }
  }
  if (!primary) {
    return FailedPrecondition("this node does not hold the tenant's replication chain; retry");
  }
  if (!primary->shipper) return Status::Ok();
  SILO_RETURN_IF_ERROR(primary->shipper->Retire());
  // Async mode keeps no sync set to empty: the chain key names no lineage
  // until the next open records its new chain, so that no copy is elected
  // meanwhile (an ended chain's copies hold the files the swap replaces).
  json::object ended{{"term", static_cast<int64_t>(primary->term)}, {"ended", true}};
  auto put = etcd_->Put(ChainKey(tenant_id), json::serialize(ended), 0);
  if (!put.ok()) return Unavailable("etcd did not answer").WithCause(put.status().message());
  return Status::Ok();
}

std::pair<int64_t, int64_t> ClusterMember::AwaitCopies(const std::string& tenant_id,
                                                       std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::shared_ptr<Primary> primary;
    {
      MutexLock lock(mu_);
      if (auto it = primaries_.find(tenant_id); it != primaries_.end()) primary = it->second;
    }
    if (!primary || !primary->shipper) return {0, 0};
    const auto followers = primary->shipper->Followers();
    const uint64_t published = primary->shipper->published();
    int64_t done = 0;
    for (const auto& f : followers) {
      if (std::string_view(f.state) == "streaming" && f.acked >= published) ++done;
    }
    const auto total = static_cast<int64_t>(followers.size());
    // In sync mode those that may be elected join its set now, not at the
    // next loop turn: until they do, no copy may take the tenant over.
    if (done == total && primary->shipper->MaintainSyncSet().ok()) return {total, done};
    if (std::chrono::steady_clock::now() >= deadline) return {total, done};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void ClusterMember::ShipUploadPart(const std::string& tenant_id, const std::string& upload_id,
                                   uint64_t from) {
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  if (!primary || !primary->shipper) return;
  if (Status s = primary->shipper->ShipUploadPart(upload_id, from); !s.ok()) {
    log::Warn("replication.upload_part_unreadable",
              {{"tenant", tenant_id}, {"cause", s.ToString()}});
  }
}

void ClusterMember::RemoveUploadPart(const std::string& tenant_id, const std::string& upload_id) {
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  if (primary && primary->shipper) primary->shipper->RemoveUploadPart(upload_id, primary->term);
}

// Detaches by path: a newer open of the same tenant made before this one's
// last connection closed would lose its recorder. There is none:
// TenantDatabases opens a tenant again only once its last open's detach
// ran (an evicted one's close is waited for; one taken out of the cache
// under a holder, by a suspend, a delete or an Exclusive that gave up, is
// refused until the holder lets go).
void ClusterMember::Detach(const std::string& tenant_id, const std::string& path) {
  storage::repl::Detach(path);
  MutexLock lock(mu_);
  auto it = primaries_.find(tenant_id);
  if (it == primaries_.end()) return;
  std::shared_ptr<Primary> primary = std::move(it->second);
  primaries_.erase(it);
  // Every change the close made (its checkpoint, the WAL's removal) was
  // published: the chain's head is the files as they are now.
  if (!primary->shipper || primary->path != path) return;
  closed_[tenant_id] = Closed{primary, IdentityOf(path), IdentityOf(path + "-wal"), ++closes_};
  if (closed_.size() > kMaxClosed) {  // the one closed longest ago goes
    closed_.erase(std::min_element(
        closed_.begin(), closed_.end(),
        [](const auto& a, const auto& b) { return a.second.closed_at < b.second.closed_at; }));
  }
  // Kept whole while the node stops: RecordChainHeads records them.
  if (!stop_) TrimClosed();
}

void ClusterMember::TrimClosed() {
  std::vector<const Closed*> newest_first;
  newest_first.reserve(closed_.size());
  for (const auto& [id, c] : closed_) newest_first.push_back(&c);
  std::sort(newest_first.begin(), newest_first.end(),
            [](const Closed* a, const Closed* b) { return a->closed_at > b->closed_at; });
  size_t kept = 0;
  for (const Closed* c : newest_first) {
    const size_t bytes = c->primary->shipper->RetainedBytes();
    if (kept + bytes > kClosedRetainedBytes) {
      c->primary->shipper->TrimRetained();
      kept += c->primary->shipper->RetainedBytes();
    } else {
      kept += bytes;
    }
  }
}

std::vector<cluster::Message> ClusterMember::Handle(const std::vector<cluster::Message>& run) {
  return replicas_->HandleRun(run);
}

void ClusterMember::Loop() {
  auto next_status = std::chrono::steady_clock::now();
  for (;;) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    if (Lease()->Lost() && !Rejoin()) {
      // Nothing else can be done without a lease: try again shortly.
      MutexLock lock(mu_);
      if (stop_) return;
      wake_.WaitUntil(mu_, std::chrono::steady_clock::now() + 250ms);
      continue;
    }
    ReopenFenced();
    if (std::chrono::steady_clock::now() >= next_status) {
      RefreshPeers();
      RefreshSlugs();
      DropDeletedCopies();
      PublishStatus();
      // Copies no primary wrote to for a minute give their descriptors
      // back; the next segment reopens one.
      if (size_t closed = replicas_->CloseIdle(60s); closed > 0) {
        log::Info("replication.idle_copies_closed", {{"copies", static_cast<long long>(closed)}});
      }
      next_status = std::chrono::steady_clock::now() + 1s;
    }
    // Followers on a new link (a restart, a broken connection) or out of
    // step are asked where they stand and resume from the segments kept;
    // those that cannot take a snapshot.
    std::vector<std::pair<std::string, std::shared_ptr<Primary>>> led;
    std::vector<std::pair<std::string, std::shared_ptr<Primary>>> closed;
    {
      MutexLock lock(mu_);
      // Not one being handed over: HandOver holds it closed and decides.
      for (const auto& [id, p] : primaries_) {
        if (p->shipper && p->lease->Held() && handing_over_.count(id) == 0) led.emplace_back(id, p);
      }
      // Closed ones too: a follower back on a new link resumes at the
      // chain's head now (a handover waits for it), not at the next open.
      for (const auto& [id, c] : closed_) {
        if (c.primary->lease->Held() && handing_over_.count(id) == 0) {
          closed.emplace_back(id, c.primary);
        }
      }
    }
    // A follower that caught up joins the sync set while the tenant is
    // closed too (else only the members of its last open could take it),
    // and one that may hold blobs removed here loses them.
    for (const auto* primaries : {&closed, &led}) {
      for (const auto& [id, p] : *primaries) {
        p->shipper->Resume();
        if (Status s = p->shipper->MaintainSyncSet(); !s.ok()) {
          log::Warn("replication.sync_set_not_grown", {{"tenant", id}, {"cause", s.ToString()}});
        }
        p->shipper->ReconcileBlobs(p->term);
      }
    }
    std::vector<std::pair<std::string, std::shared_ptr<Primary>>> waiting;
    for (const auto& [id, p] : led) {
      if (!p->shipper->NeedingSnapshot().empty()) waiting.emplace_back(id, p);
    }
    for (const auto& [id, p] : waiting) Snapshot(id, p);
    // A closed one whose follower needs a snapshot is opened for it (its
    // chain goes on; a snapshot is cut through its writer).
    for (const auto& [id, p] : closed) {
      if (!p->shipper->NeedingSnapshot().empty()) SnapshotClosed(id);
    }
    JoinHandOvers(/*all=*/false);
    CheckPrimaries();
    ++loop_turns_;
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
      for (const auto& [id, c] : closed_) led.push_back(c.primary);
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
    json::value value = ParseOrNull(kv.value);
    std::string address = StringField(value, "cluster");
    const bool promotable = !BoolField(value, "keyless");
    if (address.empty()) continue;
    {
      MutexLock lock(mu_);
      auto it = peers_.find(node);
      // The same incarnation (lease) at the same address, linked: nothing to
      // do. A node that rejoined under a new lease is linked anew (and
      // resnapshotted), even if this node never saw it gone.
      if (it != peers_.end() && it->second.address == address && it->second.lease == kv.lease &&
          !it->second.link->broken()) {
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
      peers_[node] = Peer{address, kv.lease, promotable, shared};
      for (const auto& [id, p] : primaries_) led.push_back(p);
      for (const auto& [id, c] : closed_) led.push_back(c.primary);
    }
    log::Info("cluster.peer_linked", {{"node", node}, {"address", address}});
    for (const auto& p : led) {
      if (p->shipper) p->shipper->SetFollower({node, shared, promotable});
    }
  }
}

std::string ClusterMember::SnapshotScratch(const std::string& tenant_id) const {
  return layout::ReplicasDir(options_.data_dir) + "/.snapshot-" + tenant_id;
}

void ClusterMember::Snapshot(const std::string& tenant_id, const std::shared_ptr<Primary>& p) {
  // A tenant fenced by a lease that ran out (this node may have been
  // deposed) sends nothing; followers refuse a lower term's snapshot anyway.
  if (!p->lease->Held()) return;
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
  // The file is copied (sealed bytes, by the kernel) rather than read into
  // memory, which would hold the whole tenant; the copy is sent a chunk at
  // a time once writes go on.
  RemoveOnExit copy(SnapshotScratch(tenant_id));
  int64_t bytes = 0;
  size_t followers = 0;
  Status s = (*db)->Write([&](storage::Database& d) -> Status {
    SILO_RETURN_IF_ERROR(d.Checkpoint());
    return storage::repl::WithChangesHeld(p->path, [&]() -> Status {
      std::error_code ec;
      std::filesystem::copy_file(p->path, copy.path(),
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) return Internal("cannot copy the database for a snapshot").WithCause(ec.message());
      const auto size = std::filesystem::file_size(copy.path(), ec);
      if (ec) return Internal("cannot read the snapshot's size").WithCause(ec.message());
      bytes = static_cast<int64_t>(size);
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
  const uint64_t sent_before = p->shipper->snapshot_bytes_sent();
  s = p->shipper->SendSnapshot(copy.path());
  const uint64_t sent = p->shipper->snapshot_bytes_sent() - sent_before;
  ++snapshots_;
  snapshot_bytes_ += sent;
  log::Info("replication.snapshot_sent", {{"tenant", tenant_id},
                                          {"bytes", static_cast<long long>(bytes)},
                                          {"followers", static_cast<long long>(followers)},
                                          {"sent", static_cast<long long>(sent)},
                                          {"result", s.ok() ? "ok" : s.ToString()}});
}

void ClusterMember::SnapshotClosed(const std::string& tenant_id) {
  std::shared_ptr<storage::TenantDatabases> databases;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
  }
  if (!databases) return;
  auto db = databases->Acquire(tenant_id);  // attaches it again
  if (!db.ok()) return;
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  if (primary && primary->shipper) Snapshot(tenant_id, primary);
}

void ClusterMember::RefreshSlugs() {
  // Nothing changed in etcd between the last read of the slugs and the
  // loop's last read of the tenant keys: the slugs are still etcd's.
  if (slugs_revision_ != 0 && tenant_keys_.revision() == slugs_revision_) return;
  auto slugs = etcd_->ListRange(kSlugsPrefix);
  if (!slugs.ok()) return;  // said by RefreshPeers
  slugs_revision_ = slugs->revision;
  slugs_.clear();
  for (const cluster::KeyValue& kv : slugs->kvs) {
    slugs_[StringField(ParseOrNull(kv.value), "id")] =
        kv.key.substr(std::string(kSlugsPrefix).size());
  }
}

void ClusterMember::PublishStatus() {
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  json::array tenants;
  {
    MutexLock lock(mu_);
    // Open ones, and closed ones this node still leads (their chain waits).
    std::map<std::string, std::shared_ptr<Primary>> led = primaries_;
    for (const auto& [id, c] : closed_) led.emplace(id, c.primary);
    for (const auto& [id, p] : led) {
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
                      {"lease_held", lease->Held()},
                      {"tenants", std::move(tenants)}};
  // Written only when it says something new (or every 30 s): each write
  // moves etcd's revision, which every node's next read then follows.
  std::string value = json::serialize(status);
  const auto now = std::chrono::steady_clock::now();
  if (value == status_written_ && lease->id() == status_lease_ && now < status_rewrite_at_) return;
  auto put = etcd_->Put(kStatusPrefix + options_.cluster.node_id, value, lease->id());
  if (!put.ok()) {
    log::Warn("cluster.status_not_written", {{"cause", put.status().message()}});
    return;
  }
  status_written_ = std::move(value);
  status_lease_ = lease->id();
  status_rewrite_at_ = now + 30s;
}

void ClusterMember::CheckPrimaries() {
  // What changed since the last turn (a full list only after a deletion):
  // the same view as listing them all now.
  if (!tenant_keys_.Refresh().ok()) return;  // said by RefreshPeers
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  const std::string& me = options_.cluster.node_id;
  struct Led {
    std::string node;
    int64_t term = 0;
    std::string url;
  };
  std::map<std::string, Led> led;  // tenant id -> its primary
  struct Position {
    std::string node;
    int64_t seq = 0;
    std::string lineage;   // hex; "" from a node that does not say
    int64_t term = 0;      // of the copy's last segment (or snapshot); 0 when not said
    std::string hash;      // hex, of the copy's last segment; "" when not said
    bool refused = false;  // its copy failed the check: heard, but no candidate
  };
  std::map<std::string, std::vector<Position>> positions;
  std::map<std::string, cluster::KeyValue> mine;  // this node's posted positions
  std::map<std::string, Handover> handovers;
  std::map<std::string, std::set<std::string>> sync_sets;  // tenant id -> who may be elected
  std::map<std::string, Chain> chains;                     // tenant id -> its current chain
  bool unknown_slug = false;
  for (const auto& [key, kv] : tenant_keys_.view()) {
    auto split = SplitTenantKey(key);
    if (!split) continue;
    const std::string& id = split->id;
    const std::string& tail = split->tail;
    if (tail == "/primary") {
      json::value v = ParseOrNull(kv.value);
      led[id] = {StringField(v, "node"), kv.mod_revision, StringField(v, "url")};
      unknown_slug = unknown_slug || slugs_.count(id) == 0;
    } else if (tail.rfind("/pos/", 0) == 0) {
      std::string node = tail.substr(5);
      json::value v = ParseOrNull(kv.value);
      positions[id].push_back({node, NumberField(v, "seq"), StringField(v, "lineage"),
                               NumberField(v, "term"), StringField(v, "hash"),
                               BoolField(v, "refused")});
      if (node == me) mine[id] = kv;
    } else if (tail == "/sync") {
      std::vector<std::string> members = SyncMembers(ParseOrNull(kv.value));
      sync_sets[id] = std::set<std::string>(members.begin(), members.end());
    } else if (tail == "/chain") {
      chains[id] = ChainOf(ParseOrNull(kv.value));
    } else if (tail == "/handover") {
      json::value v = ParseOrNull(kv.value);
      handovers[id] = {StringField(v, "to"),
                       StringField(v, "from"),
                       NumberField(v, "term"),
                       NumberField(v, "seq"),
                       kv.lease,
                       kv.mod_revision};
    }
  }
  // Where requests for tenants led elsewhere go (a tenant created a moment
  // ago is known here as soon as its primary key is).
  if (unknown_slug) RefreshSlugs();
  std::map<std::string, std::string> elsewhere;  // slug -> its primary's URL
  for (const auto& [id, l] : led) {
    auto slug = slugs_.find(id);
    // Only a URL a Location header can carry (etcd is trusted, but a header
    // is not the place to find out otherwise).
    const bool printable =
        !l.url.empty() && std::all_of(l.url.begin(), l.url.end(),
                                      [](unsigned char ch) { return ch > 0x20 && ch < 0x7f; });
    if (l.node != me && slug != slugs_.end() && printable) elsewhere[slug->second] = l.url;
  }
  // A tenant of the cluster that no node leads this moment (a failover or
  // a handover under way, or one not opened since its node started), and
  // that is not this node's own: "" (503, retry).
  for (const auto& [id, slug] : slugs_) {
    if (led.count(id) == 0 && !(options_.registry && options_.registry->Find(slug))) {
      elsewhere.emplace(slug, "");
    }
  }
  {
    MutexLock lock(mu_);
    elsewhere_ = std::move(elsewhere);
  }
  // A switchover asked of this node as the primary (once per request;
  // after elsewhere_ is set: it points the tenant at its new primary).
  for (const auto& [id, h] : handovers) {
    auto it = led.find(id);
    if (h.seq != 0 || h.from != me || it == led.end() || it->second.node != me ||
        it->second.term != h.term || !handovers_tried_.insert(h.revision).second) {
      continue;
    }
    StartHandOver(id, h);
  }
  // A copy of the tenant's current chain (any copy while no chain is
  // recorded: a tenant led by a node that did not record one).
  auto of_chain = [&chains](const std::string& id, const Position& p) {
    auto c = chains.find(id);
    return c == chains.end() || OnChain(c->second, p.lineage, p.term, p.seq, p.hash);
  };
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout::ReplicasDir(options_.data_dir), ec)) {
    const std::string id = entry.path().filename().string();
    if (!entry.is_directory() || !replication::Replicas::ValidTenantId(id)) continue;
    if (led.count(id) != 0) {
      // Led (again): this node's election for it, if any, is over.
      elections_.erase(id);
      refused_.erase(id);
      unelectable_.erase(id);
      if (auto it = mine.find(id); it != mine.end()) {
        (void)etcd_->DeleteIf(it->second.key, it->second.mod_revision);
      }
      continue;
    }
    if (refused_.count(id) != 0) continue;
    if (PathExists(layout::TenantDir(options_.data_dir, id))) {
      // The tenant's own directory is still here beside the copy (a deposed
      // primary's that could not be moved away): a promotion would move the
      // copy onto it. Silent, this node would hold up an election that
      // waits for every sync set member, for good.
      RefuseCandidacy(id, kOwnDirectoryRefusal);
      continue;
    }
    if (options_.cluster.keyless) {
      // Never a candidate: says so once per tenant left without a primary.
      log::Error("replication.promotion_refused", {{"tenant", id}, {"cause", kKeylessRefusal}});
      refused_.insert(id);
      continue;
    }
    auto position = replicas_->Position(id);
    if (!position.ok() || position->seq == 0 || !replicas_->Files(id).ok()) continue;
    const std::string lineage = crypto::HexEncode(position->lineage);
    const std::string hash = crypto::HexEncode(position->hash);
    const Position here{me, static_cast<int64_t>(position->seq), lineage,
                        static_cast<int64_t>(position->term), hash};
    if (auto h = handovers.find(id); h != handovers.end()) {
      // A switchover: only its target takes the tenant, and only with
      // every segment the primary published; the others wait (until the
      // key goes with the command's lease, then they elect as usual).
      if (h->second.to != me || h->second.seq == 0) continue;
      if (static_cast<int64_t>(position->seq) != h->second.seq || !of_chain(id, here)) {
        log::Error("replication.handover_refused",
                   {{"tenant", id},
                    {"cause", "this copy is at segment " + std::to_string(position->seq) +
                                  (of_chain(id, here) ? "" : " off the current chain") +
                                  ", the primary published " + std::to_string(h->second.seq)}});
        continue;
      }
      Promote(id);
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (mine.count(id) == 0) {
      json::object pos{
          {"seq", position->seq}, {"lineage", lineage}, {"term", position->term}, {"hash", hash}};
      auto put = etcd_->Put(kTenantsPrefix + id + "/pos/" + me, json::serialize(pos), lease->id());
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
    // In sync mode the most advanced member of the tenant's sync set holds
    // every answered commit: the election waits until every member has
    // posted (one that refused counts as heard), then takes the most
    // advanced that did not refuse. An empty set elects nobody (what was
    // answered is on the primary alone, or its followers have not caught up
    // with a new term). Without a set (async mode), the most advanced. In
    // both, only a copy of the tenant's current chain: one of a chain that
    // ended (its primary restarted, re-keyed or restored the tenant in
    // place) may lack everything since, and its segment numbers count
    // another lineage's, so "most advanced" means nothing across the two.
    auto sync = sync_sets.find(id);
    const bool restricted = sync != sync_sets.end();
    auto eligible = [&](const std::string& node) {
      return !restricted || sync->second.count(node) != 0;
    };
    std::set<std::string> heard;
    std::string best;
    int64_t best_seq = -1;
    for (const Position& p : positions[id]) {
      heard.insert(p.node);
      if (p.refused || !eligible(p.node) || !of_chain(id, p)) continue;
      if (p.seq > best_seq || (p.seq == best_seq && p.node < best)) {
        best = p.node;
        best_seq = p.seq;
      }
    }
    if (restricted &&
        !std::includes(heard.begin(), heard.end(), sync->second.begin(), sync->second.end())) {
      best.clear();  // a member has not been heard: it may hold more
    }
    auto chain = chains.find(id);
    if (!of_chain(id, here) && chain->second.lineage != lineage && unelectable_.insert(id).second) {
      log::Warn("replication.copy_of_ended_chain",
                {{"tenant", id},
                 {"detail",
                  "this copy is of a chain the tenant's primary ended (a restart, a re-key or a "
                  "restore in place) and may lack everything since: it waits for a copy of the "
                  "current chain or for the primary"}});
    } else if (!of_chain(id, here) && unelectable_.insert(id).second) {
      log::Warn("replication.copy_off_chain",
                {{"tenant", id},
                 {"seq", static_cast<long long>(position->seq)},
                 {"term", static_cast<long long>(position->term)},
                 {"taken_on_from", static_cast<long long>(chain->second.from)},
                 {"detail",
                  "this copy holds segments of an earlier term than the tenant's current primary "
                  "and is not at the segment that primary took the chain on from: what it holds "
                  "past that is in no current copy, and it may lack everything since; it waits "
                  "for a copy of the current chain or for the primary"}});
    } else if (!eligible(me) && unelectable_.insert(id).second) {
      log::Warn("replication.not_in_sync_set",
                {{"tenant", id},
                 {"sync_set", JoinNames(sync->second)},
                 {"detail", "this copy may lack acknowledged writes: it waits for a member"}});
    }
    if (best != me) continue;
    // A tenant deleted on its primary leaves no primary key either: its
    // followers must not elect it back (asked once, just before taking it).
    auto gone = etcd_->Get(kGonePrefix + id);
    if (!gone.ok()) continue;
    if (gone->has_value()) {
      ForgetDeleted(id);
      continue;
    }
    Promote(id);
  }
  // A tenant of this node's own that nobody leads or elects: led here again.
  std::set<std::string> busy;
  for (const auto& [id, l] : led) busy.insert(id);
  for (const auto& [id, h] : handovers) busy.insert(id);
  for (const auto& [id, list] : positions) {
    for (const Position& p : list) {
      if (p.node != me && !p.refused && of_chain(id, p)) busy.insert(id);
    }
  }
  ClaimUnled(busy);
  // A tenant served here that another node leads now: this node was
  // deposed (cut off past its lease) or restarted after a takeover.
  for (const tenant::TenantInfo& t :
       options_.registry ? options_.registry->List() : std::vector<tenant::TenantInfo>{}) {
    auto it = led.find(t.id);
    // (One being handed over gives itself up when its target leads.)
    if (it != led.end() && it->second.node != me && !HandingOver(t.id)) {
      Demote(t.id, it->second.node, it->second.term);
    }
  }
}

void ClusterMember::DemoteLedElsewhere() {
  if (options_.registry == nullptr || !tenant_keys_.Refresh().ok()) return;  // the loop will
  const std::string& me = options_.cluster.node_id;
  std::map<std::string, std::pair<std::string, int64_t>> led;  // tenant id -> node, term
  for (const auto& [key, kv] : tenant_keys_.view()) {
    auto split = SplitTenantKey(key);
    if (split && split->tail == "/primary") {
      led[split->id] = {StringField(ParseOrNull(kv.value), "node"), kv.mod_revision};
    }
  }
  for (const tenant::TenantInfo& t : options_.registry->List()) {
    auto it = led.find(t.id);
    if (it != led.end() && it->second.first != me) {
      Demote(t.id, it->second.first, it->second.second);
    }
  }
}

void ClusterMember::ClaimUnled(const std::set<std::string>& busy) {
  if (options_.registry == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, std::chrono::steady_clock::time_point> unled;
  std::vector<std::string> due;
  for (const tenant::TenantInfo& t : options_.registry->List()) {
    // Not a suspended one: a restore fills it in before it resumes.
    if (busy.count(t.id) != 0 || t.state != tenant::TenantState::kActive) continue;
    auto it = claim_at_.find(t.id);
    const auto at = it != claim_at_.end() ? it->second : now + 2s;
    unled[t.id] = at;
    if (now >= at) due.push_back(t.id);
  }
  claim_at_ = std::move(unled);
  // A few each turn (an open costs milliseconds; the loop has other work).
  constexpr size_t kClaimsPerTurn = 16;
  for (size_t i = 0; i < due.size() && i < kClaimsPerTurn; ++i) {
    if (!Claim(due[i])) claim_at_[due[i]] = now + 30s;
  }
}

bool ClusterMember::Claim(const std::string& tenant_id) {
  std::shared_ptr<storage::TenantDatabases> databases;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
  }
  if (!databases || !Lease()->Held()) return false;
  // Being deleted (marked gone before its keys go): not again.
  auto gone = etcd_->Get(kGonePrefix + tenant_id);
  if (!gone.ok() || gone->has_value()) return false;
  // Opened as a request would open it: Attach checks the term (a copy
  // behind a later primary's is refused, logged there) and creates the
  // primary key; its followers take a snapshot of the new chain, and it
  // stays led here when it closes (Closed).
  auto opened = databases->Acquire(tenant_id);
  if (!opened.ok()) {
    log::Warn("replication.claim_failed",
              {{"tenant", tenant_id}, {"cause", opened.status().ToString()}});
    return false;
  }
  std::shared_ptr<Primary> primary = OpenPrimary(tenant_id);
  log::Info(
      "replication.claimed",
      {{"tenant", tenant_id}, {"term", primary ? static_cast<long long>(primary->term) : 0LL}});
  return true;
}

void ClusterMember::StartHandOver(const std::string& tenant_id, const Handover& h) {
  if (handover_threads_.count(tenant_id) != 0) {
    handovers_tried_.erase(h.revision);  // the one before is not done: next turn
    return;
  }
  auto slug = slugs_.find(tenant_id);
  {
    MutexLock lock(mu_);
    handing_over_.insert(tenant_id);
  }
  log::Info("replication.handing_over", {{"tenant", tenant_id}, {"to", h.to}});
  auto done = std::make_shared<std::atomic<bool>>(false);
  // Joined by the loop once done, or by Stop (after the loop), before this
  // object goes.
  std::thread thread(
      [this, tenant_id, h, slug = slug == slugs_.end() ? std::string() : slug->second, done] {
        HandOver(tenant_id, h, slug);
        {
          MutexLock lock(mu_);
          handing_over_.erase(tenant_id);
        }
        done->store(true);
      });
  handover_threads_[tenant_id] = {std::move(thread), std::move(done)};
}

void ClusterMember::JoinHandOvers(bool all) {
  for (auto it = handover_threads_.begin(); it != handover_threads_.end();) {
    if (!all && !it->second.done->load()) {
      ++it;
      continue;
    }
    it->second.thread.join();
    it = handover_threads_.erase(it);
  }
}

bool ClusterMember::HandingOver(const std::string& tenant_id) const {
  MutexLock lock(mu_);
  return handing_over_.count(tenant_id) != 0;
}

void ClusterMember::HandOver(const std::string& tenant_id, const Handover& h,
                             const std::string& slug) {
  std::shared_ptr<storage::TenantDatabases> databases;
  std::shared_ptr<Primary> primary;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
    auto it = primaries_.find(tenant_id);
    if (it != primaries_.end()) primary = it->second;
    // Closed here (idle): its shipper still knows where the followers stand.
    if (auto c = closed_.find(tenant_id); !primary && c != closed_.end())
      primary = c->second.primary;
  }
  if (!databases || !primary) return;
  auto refuse = [&](const std::string& why) {
    log::Error("replication.handover_failed",
               {{"tenant", tenant_id}, {"to", h.to}, {"cause", why}});
  };
  if (!primary->shipper) return refuse("replication is off on this node");
  std::shared_ptr<replication::Shipper> shipper = primary->shipper;
  const std::string kept = layout::DeposedTenantDir(options_.data_dir, tenant_id, h.term);
  std::string target_url;
  bool as_copy = false;
  // Closed and held closed: no write can start (503, retry), and the last
  // one's segments (the close's checkpoint too) are published.
  const std::string why = "the tenant is being handed over";  // told meanwhile
  Status s = databases->Exclusive(tenant_id, why, 5s, [&]() -> Status {
    const uint64_t published = shipper->published();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      bool there = false;
      for (const auto& f : shipper->Followers()) {
        there = there || (f.node == h.to && std::string_view(f.state) == "streaming" &&
                          f.acked >= published);
      }
      if (there) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        return Unavailable("node " + h.to + " did not acknowledge every segment within 5 s");
      }
      std::this_thread::sleep_for(20ms);
    }
    // The files here are the chain's state at `published` too: kept as
    // this node's copy before the target can ask where it stands, undone
    // should the handover not happen.
    as_copy = KeepAsCopy(tenant_id, *primary, published);
    json::object value{
        {"to", h.to}, {"from", h.from}, {"term", h.term}, {"seq", static_cast<int64_t>(published)}};
    SILO_RETURN_IF_ERROR(etcd_
                             ->PutIf(kTenantsPrefix + tenant_id + "/handover",
                                     json::serialize(value), h.revision, h.lease)
                             .status());
    SILO_RETURN_IF_ERROR(etcd_->DeleteIf(PrimaryKey(tenant_id), h.term));
    // Held closed until the target leads (requests meanwhile get 503, then
    // 307 to it), and given up either way: its primary key is gone.
    for (auto until = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(50ms)) {
      auto now_led = etcd_->Get(PrimaryKey(tenant_id));
      if (now_led.ok() && now_led->has_value()) {
        json::value v = ParseOrNull((*now_led)->value);
        if (StringField(v, "node") == h.to) target_url = StringField(v, "url");
        break;
      }
    }
    if (!target_url.empty() && !slug.empty()) {
      MutexLock lock(mu_);
      elsewhere_[slug] = target_url;
    }
    return options_.registry->Relinquish(tenant_id, kept);
  });
  if (!s.ok()) {
    // Served here still (or given up by Demote later): the copy shares its
    // files, which may change now.
    if (as_copy) (void)replicas_->Drop(tenant_id);
    return refuse(s.ToString());
  }
  {
    MutexLock lock(mu_);
    closed_.erase(tenant_id);  // led elsewhere now: its chain is not this node's
  }
  // The copy holds the files now (links): the set-aside directory would
  // only name the same bytes, changing as the copy follows.
  if (as_copy) {
    if (Status r = RemoveTree(kept); !r.ok()) {
      log::Warn("replication.deposed_dir_not_removed",
                {{"tenant", tenant_id}, {"cause", r.ToString()}});
    }
  }
  log::Info("replication.handed_over",
            {{"tenant", tenant_id},
             {"to", h.to},
             {"taken", target_url.empty() ? "not yet" : "yes"},
             {"kept", as_copy ? std::string("as this node's copy") : kept}});
}

bool ClusterMember::KeepAsCopy(const std::string& tenant_id, const Primary& primary,
                               uint64_t published) {
  if (!primary.recorder) return false;
  // Held closed: the close's delete of the WAL was the last change, and a
  // publish point, so nothing is buffered past the head.
  const replication::ChainHead head = primary.recorder->head();
  if (head.seq != published) return false;
  return KeepAsCopy(tenant_id, replication::ReplicaPosition{.lineage = primary.lineage,
                                                            .term = primary.term,
                                                            .seq = head.seq,
                                                            .hash = head.hash,
                                                            .wal_commit_frame = 0});
}

bool ClusterMember::KeepAsCopy(const std::string& tenant_id,
                               const replication::ReplicaPosition& at) {
  if (options_.keyring == nullptr) return false;
  auto meta = ReadFile(layout::TenantMetaFile(options_.data_dir, tenant_id));
  auto wrapped = options_.keyring->Wrapped(tenant_id);
  Status s = !meta.ok() ? meta.status() : wrapped.status();
  if (s.ok()) {
    s = replicas_->AdoptLed(tenant_id, layout::TenantDatabaseFile(options_.data_dir, tenant_id),
                            layout::TenantFilesDir(options_.data_dir, tenant_id),
                            replication::EncodeTenantFiles({*meta, *wrapped}), at);
  }
  if (!s.ok()) {
    // It takes a snapshot of the target's chain instead.
    log::Warn("replication.copy_not_kept", {{"tenant", tenant_id}, {"cause", s.ToString()}});
  }
  return s.ok();
}

void ClusterMember::Demote(const std::string& tenant_id, const std::string& node, int64_t term) {
  std::shared_ptr<storage::TenantDatabases> databases;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
  }
  if (!databases) return;
  const std::string kept = layout::DeposedTenantDir(options_.data_dir, tenant_id, term);
  // Closed first and held closed while it moves: its requests finish (a
  // write among them is refused by the fence), later ones find no tenant.
  // Files this node stopped with, unchanged since (a restart after a
  // takeover), stand at a known position of the chain: its copy, which
  // streams on if the new primary took the chain on from there (a snapshot
  // replaces it otherwise, and it is no candidate meanwhile: OnChain).
  bool as_copy = false;
  const std::string why = "the tenant is moving to another node";  // told meanwhile
  Status s = databases->Exclusive(tenant_id, why, 5s, [&]() -> Status {
    const std::string database = layout::TenantDatabaseFile(options_.data_dir, tenant_id);
    if (auto at = RecordedChainHead(database)) as_copy = KeepAsCopy(tenant_id, *at);
    Status r = options_.registry->Relinquish(tenant_id, kept);
    if (!r.ok() && as_copy) (void)replicas_->Drop(tenant_id);
    return r;
  });
  if (!s.ok()) {
    log::Warn("replication.demotion_delayed", {{"tenant", tenant_id}, {"cause", s.ToString()}});
    return;  // tried again next turn
  }
  if (!as_copy) {
    // Of no position anyone can name, but most of its pages are likely the
    // new primary's still: the base of the snapshot that replaces it
    // (sent as the pages that differ), and its blobs are not sent again.
    if (Status r =
            replicas_->SeedFrom(tenant_id, layout::DatabaseFileIn(kept), layout::FilesDirIn(kept));
        !r.ok()) {
      log::Warn("replication.copy_not_seeded", {{"tenant", tenant_id}, {"cause", r.ToString()}});
    }
  } else if (Status r = RemoveTree(kept); !r.ok()) {
    log::Warn("replication.deposed_dir_not_removed",
              {{"tenant", tenant_id}, {"cause", r.ToString()}});
  }
  {
    MutexLock lock(mu_);
    closed_.erase(tenant_id);
  }
  log::Warn("replication.deposed", {{"tenant", tenant_id},
                                    {"primary", node},
                                    {"term", static_cast<long long>(term)},
                                    {"kept", as_copy ? std::string("as this node's copy") : kept}});
}

bool ClusterMember::Rejoin() {
  const config::Cluster& c = options_.cluster;
  auto granted = cluster::NodeLease::Grant(*etcd_, c.lease_ttl_s);
  if (!granted.ok()) return false;
  std::shared_ptr<cluster::NodeLease> lease = std::move(granted).value();
  auto announced = etcd_->CreateIfAbsent(kNodesPrefix + c.node_id, Announcement(), lease->id());
  if (!announced.ok()) {
    // The old announcement went with the old lease: a live key is another
    // process that took this node id meanwhile.
    log::Error("cluster.rejoin_refused", {{"cause", announced.status().ToString()}});
    return false;  // the new lease is revoked as it goes
  }
  size_t fenced = 0;
  {
    MutexLock lock(mu_);
    lease_ = lease;
    fenced = primaries_.size();
  }
  log::Warn("cluster.rejoined", {{"node", c.node_id},
                                 {"lease", static_cast<long long>(lease->id())},
                                 {"tenants_to_reopen", static_cast<long long>(fenced)}});
  return true;
}

void ClusterMember::ReopenFenced() {
  std::shared_ptr<storage::TenantDatabases> databases;
  std::vector<std::string> fenced;
  {
    MutexLock lock(mu_);
    databases = databases_.lock();
    for (const auto& [id, p] : primaries_) {
      if (p->lease != lease_ && handing_over_.count(id) == 0) fenced.push_back(id);
    }
    // Closed under the old lease: their next open starts a new chain.
    for (auto it = closed_.begin(); it != closed_.end();) {
      it = it->second.primary->lease != lease_ ? closed_.erase(it) : std::next(it);
    }
  }
  if (!databases) return;
  for (const std::string& id : fenced) {
    // Its close detaches it (primaries_ loses it); the next Acquire
    // attaches it under the current lease, or finds another node leads it.
    Status s = databases->Exclusive(id, "the tenant is reopening under a new lease", 5s,
                                    [] { return Status::Ok(); });
    if (!s.ok()) log::Warn("cluster.reopen_delayed", {{"tenant", id}, {"cause", s.ToString()}});
  }
}

void ClusterMember::RefuseCandidacy(const std::string& tenant_id, const std::string& why) {
  log::Error("replication.promotion_refused", {{"tenant", tenant_id}, {"cause", why}});
  refused_.insert(tenant_id);
  // Heard, but no candidate (the others wait for every sync set member).
  auto position = replicas_->Position(tenant_id);
  json::object pos{{"seq", position.ok() ? static_cast<int64_t>(position->seq) : 0},
                   {"refused", true}};
  (void)etcd_->Put(kTenantsPrefix + tenant_id + "/pos/" + options_.cluster.node_id,
                   json::serialize(pos), Lease()->id());
}

bool ClusterMember::Promote(const std::string& tenant_id) {
  const std::string& me = options_.cluster.node_id;
  // A copy that cannot be promoted steps out of the election (its position
  // key goes), so that the next best follower takes the tenant; it is tried
  // again only once the tenant is led again (and its copy resynced).
  auto refuse = [&](const std::string& why) {
    RefuseCandidacy(tenant_id, why);
    return false;
  };
  if (options_.keyring == nullptr) return refuse(kKeylessRefusal);
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
  auto position = replicas_->Position(tenant_id);
  if (!position.ok()) return refuse(position.status().ToString());
  // Closed with its journal recorded, the files are the position's state:
  // the chain goes on from there, and a follower holding the same
  // position, or one the segments this copy applied last lead there from,
  // streams on with no snapshot. A journal left (its record
  // failed) would be rolled forward by the check below, outside the
  // chain: then a new chain starts, as over any other file.
  std::vector<std::string> recent = replicas_->Close(tenant_id);
  auto recorded = replication::Applier::RecordedPosition(copy);
  const bool settled = recorded.ok() && recorded->lineage == position->lineage &&
                       recorded->seq == position->seq && recorded->hash == position->hash;
  std::shared_ptr<cluster::NodeLease> lease = Lease();
  json::object value{{"node", me}, {"url", public_url_}};
  auto term = etcd_->CreateIfAbsent(PrimaryKey(tenant_id), json::serialize(value), lease->id());
  if (!term.ok()) return false;  // another node took it first
  // The chain the election read (the loop's view of this turn: no primary
  // has written it since), which a refusal puts back once this copy's is
  // recorded: a new lineage no other copy holds would elect nobody.
  // With it the sync set RecordChain replaces (empty under this term): put
  // back too, or the other followers, members of the old one, would wait
  // for a member of an empty set.
  auto before = [&](const std::string& key) -> std::optional<std::string> {
    auto it = tenant_keys_.view().find(key);
    if (it == tenant_keys_.view().end()) return std::nullopt;
    return it->second.value;
  };
  const std::optional<std::string> chain_before = before(ChainKey(tenant_id));
  const std::optional<std::string> sync_before = before(SyncKey(tenant_id));
  // A set an operator forced (ForceElection): the members it replaced.
  json::value forced;
  if (sync_before) {
    json::value v = ParseOrNull(*sync_before);
    if (BoolField(v, "forced")) {
      const json::value* replaced = v.as_object().if_contains("replaced");
      forced = replaced != nullptr ? *replaced : json::array{};
    }
  }
  bool chain_recorded = false;
  const std::string dir = layout::TenantDir(options_.data_dir, tenant_id);
  bool made_dir = false;
  // The primary key is ours but the tenant is not served: a refusal gives
  // it up so that another follower can try (its lease-bound key goes with
  // ours), and empties the copy, which the check may have changed (SQLite
  // opens it): it takes a snapshot of the next primary's chain. The
  // tenant's own directory, if this promotion made it, goes too, with what
  // was moved into it: left, this node would step aside in every election
  // for the tenant (kOwnDirectoryRefusal) until an operator removed it.
  auto give_up = [&](const std::string& why) {
    if (chain_recorded) {
      for (const auto& [key, value] : {std::pair{ChainKey(tenant_id), chain_before},
                                       std::pair{SyncKey(tenant_id), sync_before}}) {
        (void)(value ? etcd_->Put(key, *value, 0).status() : etcd_->Delete(key));
      }
    }
    (void)etcd_->DeleteIf(PrimaryKey(tenant_id), *term);
    if (made_dir && PathExists(dir)) {
      if (Status r = RemoveTree(dir); !r.ok()) {
        log::Error("replication.promotion_not_undone",
                   {{"tenant", tenant_id}, {"cause", r.ToString()}});
      }
    }
    if (Status r = replicas_->Reset(tenant_id); !r.ok()) {
      log::Error("replication.copy_not_emptied", {{"tenant", tenant_id}, {"cause", r.ToString()}});
    }
    return refuse(why);
  };
  const std::string database = layout::TenantDatabaseFile(options_.data_dir, tenant_id);
  std::shared_ptr<Primary> primary = StartChain(
      tenant_id, database, static_cast<uint64_t>(*term), lease, settled ? &*position : nullptr,
      settled ? std::move(recent) : std::vector<std::string>());
  // The copy's files come with their commit frame, settled or not.
  if (primary->recorder) primary->recorder->SetCommitFrame(position->wal_commit_frame);
  // What the promotion writes (the check's checkpoint, the audit entry)
  // goes into the chain, sent but awaited by nothing: no request is
  // answered by it.
  primary->unanswered->store(true);
  auto in_chain = [&](const std::string& path, const std::function<Status()>& fn) {
    if (!primary->recorder) return fn();
    storage::repl::Attach(path, primary->recorder);
    Status s = fn();
    storage::repl::Detach(path);
    return s;
  };
  const std::string vfs =
      primary->recorder ? storage::repl::kReplicatedCipherVfs : storage::kCipherVfsName;
  if (Status s =
          in_chain(copy + "/" + replication::kReplicaDatabaseName,
                   [&] {
                     return replication::CheckPromotable(
                         copy, crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kDatabasePages), vfs);
                   });
      !s.ok()) {
    return give_up(s.ToString());
  }
  // Only now: a set recorded by a copy that is then refused would leave the
  // tenant with an empty set under its term, which elects nobody.
  chain_recorded = true;  // (or part of it: put back on a refusal either way)
  const replication::ChainHead taken_from{position->seq, position->hash};
  if (Status s = RecordChain(tenant_id, static_cast<uint64_t>(*term), primary->lineage,
                             settled ? &taken_from : nullptr);
      !s.ok()) {
    return give_up(s.ToString());
  }
  // The copy becomes the tenant's own directory, then the registry's. The
  // directory is new (a node that holds it beside its copy is no
  // candidate), so a refusal may remove it: never one this promotion did
  // not make.
  if (PathExists(dir)) return give_up(kOwnDirectoryRefusal);
  made_dir = true;
  Status s = MakeDirs(dir, 0700);
  for (const auto& [from, to] :
       {std::pair{copy + "/" + replication::kReplicaDatabaseName, database},
        std::pair{copy + "/" + replication::kReplicaWalName, database + "-wal"}}) {
    if (s.ok() && PathExists(from) && std::rename(from.c_str(), to.c_str()) != 0) {
      s = Internal("cannot move the copy into place").WithCause(to);
    }
  }
  // The blobs come too; a piece of one still arriving is no blob.
  if (s.ok())
    s = MoveReplicaFiles(copy + "/files", layout::TenantFilesDir(options_.data_dir, tenant_id));
  if (s.ok())
    s = WriteFileAtomic(layout::TenantMetaFile(options_.data_dir, tenant_id), files->meta);
  // The copy is the one led under this term now (CheckNotBehind).
  if (s.ok()) s = RecordTerm(tenant_id, dir, *term);
  if (s.ok()) s = SyncDir(dir);
  if (s.ok()) s = RemoveTree(copy);
  if (s.ok()) {
    s = in_chain(database, [&] {
      return AuditPromotion(database, *dek, me, *term, position->seq, vfs,
                            forced.is_null() ? nullptr : &forced);
    });
  }
  if (s.ok()) s = options_.registry->Adopt(tenant_id).status();
  if (!s.ok()) return give_up(s.ToString());
  primary->unanswered->store(false);
  // Kept as closed here, over the files as the promotion left them: the
  // open below (Attach) continues the chain.
  std::vector<replication::FollowerLink> late;
  if (primary->shipper) {
    MutexLock lock(mu_);
    late = LatePeers(*primary);
    closed_[tenant_id] =
        Closed{primary, IdentityOf(database), IdentityOf(database + "-wal"), ++closes_};
  }
  for (auto& link : late) primary->shipper->SetFollower(std::move(link));
  (void)etcd_->Delete(kTenantsPrefix + tenant_id + "/pos/" + me);
  elections_.erase(tenant_id);
  ++promotions_;
  {
    // Served here from now on: not "no node leads it" (503) until the next
    // loop turn recomputes elsewhere_ (a request in between was refused).
    MutexLock lock(mu_);
    elsewhere_.erase(slug);
  }
  log::Info("replication.promoted",
            {{"tenant", tenant_id}, {"slug", slug}, {"term", static_cast<long long>(*term)}});
  if (!forced.is_null()) {
    log::Warn("replication.promoted_accepting_loss",
              {{"tenant", tenant_id},
               {"replaced_sync_set", json::serialize(forced)},
               {"detail",
                "an operator forced this election (--accept-loss): writes that only the "
                "replaced set's other members held are lost"}});
  }
  // Open it now: the attach finds the primary key under this lease and the
  // chain kept closed above, and goes on with it; the other followers
  // stream on from where they are, or take a snapshot.
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
        {"keyless", BoolField(v, "keyless")},
        {"lease", kv.lease},
        {"replication", st == status_of.end() ? "" : StringField(st->second, "replication")}});
  }
  // Each tenant's primary (its key in etcd; the term is its revision), with
  // where its followers stand as that primary last reported, and its sync
  // set (null when none is kept: async mode).
  std::map<std::string, std::vector<std::string>> sync_of;
  for (const auto& kv : keys) {
    auto split = SplitTenantKey(kv.key);
    if (split && split->tail == "/sync") sync_of[split->id] = SyncMembers(ParseOrNull(kv.value));
  }
  json::array tenant_list;
  for (const auto& kv : keys) {
    auto split = SplitTenantKey(kv.key);
    if (!split || split->tail != "/primary") continue;
    const std::string& id = split->id;
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
    auto sync = sync_of.find(id);
    if (sync == sync_of.end()) {
      t["sync"] = nullptr;
    } else {
      json::array members;
      for (const std::string& n : sync->second) members.emplace_back(n);
      t["sync"] = std::move(members);
    }
    tenant_list.push_back(std::move(t));
  }
  json::object all{{"nodes", std::move(node_list)}, {"tenants", std::move(tenant_list)}};
  if (as_json) return json::serialize(all) + "\n";
  std::string out = "nodes\n";
  for (const json::value& n : all["nodes"].as_array()) {
    out += "  " + StringField(n, "id") + "  cluster " + StringField(n, "cluster") + "  url " +
           StringField(n, "url") + "  replication " + StringField(n, "replication") +
           (BoolField(n, "keyless") ? "  keyless" : "") + "\n";
  }
  out += "tenants\n";
  for (const json::value& t : all["tenants"].as_array()) {
    const json::object& o = t.as_object();
    out += "  " + StringField(t, "id") + "  primary " + StringField(t, "primary") + "  term " +
           std::to_string(NumberField(t, "term")) + "  seq " +
           std::to_string(NumberField(t, "seq"));
    if (o.at("sync").is_array()) out += "  sync " + JoinNames(StringsOf(o.at("sync")));
    out += "\n";
    for (const json::value& f : o.at("followers").as_array()) {
      out += "    follower " + StringField(f, "node") + "  " + StringField(f, "state") +
             "  acked " + std::to_string(NumberField(f, "acked")) + "  lag " +
             std::to_string(NumberField(f, "lag")) + "\n";
    }
  }
  return out;
}

namespace {

// What the promote commands check first: the tenant `slug` names in the
// cluster (its id) and that `node` is live and holds the master key (it
// could lead a tenant). NotFound, FailedPrecondition (keyless),
// Unavailable (etcd).
Result<std::string> TenantToLead(cluster::Etcd& etcd, const std::string& slug,
                                 const std::string& node) {
  SILO_ASSIGN_OR_RETURN(auto reserved, etcd.Get(kSlugsPrefix + slug));
  if (!reserved.has_value()) return NotFound("no tenant " + slug + " in the cluster");
  const std::string id = StringField(ParseOrNull(reserved->value), "id");
  if (!replication::Replicas::ValidTenantId(id)) return NotFound("no tenant " + slug);
  SILO_ASSIGN_OR_RETURN(auto announced, etcd.Get(kNodesPrefix + node));
  if (!announced.has_value()) return NotFound("no live node " + node + " in the cluster");
  if (BoolField(ParseOrNull(announced->value), "keyless")) {
    return FailedPrecondition("node " + node +
                              " has no master key (SILO_KEYLESS=1): it cannot lead " + slug);
  }
  return id;
}

}  // namespace

Result<std::string> PromoteTenant(const std::vector<std::string>& etcd_endpoints,
                                  const std::string& slug, const std::string& node) {
  cluster::Etcd etcd(cluster::EtcdOptions{etcd_endpoints, 2000, "", "", ""});
  SILO_ASSIGN_OR_RETURN(const std::string id, TenantToLead(etcd, slug, node));
  SILO_ASSIGN_OR_RETURN(auto primary, etcd.Get(PrimaryKey(id)));
  if (!primary.has_value()) {
    return FailedPrecondition(
        "no node leads " + slug +
        " now (it is not open anywhere, or a failover is under way; one that waits for sync "
        "set members lost for good goes on with --accept-loss: see docs/cluster_runbook.md)");
  }
  const std::string from = StringField(ParseOrNull(primary->value), "node");
  if (from == node)
    return node + " leads " + slug + " already (term " + std::to_string(primary->mod_revision) +
           ")\n";
  // The target must stream the tenant now, as its primary last reported.
  SILO_ASSIGN_OR_RETURN(auto status, etcd.Get(kStatusPrefix + from));
  std::string state = "not a follower";
  if (status.has_value()) {
    json::value st = ParseOrNull(status->value);
    const json::value* led = st.is_object() ? st.as_object().if_contains("tenants") : nullptr;
    for (const json::value& t :
         led != nullptr && led->is_array() ? led->as_array() : json::array{}) {
      if (StringField(t, "id") != id) continue;
      for (const json::value& f : t.as_object().at("followers").as_array()) {
        if (StringField(f, "node") == node) state = StringField(f, "state");
      }
    }
  }
  if (state != "streaming") {
    return FailedPrecondition("node " + node + " does not follow " + slug + " now (" + state + ")");
  }
  // The request lives on a lease of this command's: if anything below
  // fails, it goes, and the tenant is elected as after a failure.
  SILO_ASSIGN_OR_RETURN(int64_t lease, etcd.GrantLease(30));
  json::object request{{"to", node}, {"from", from}, {"term", primary->mod_revision}};
  auto created =
      etcd.CreateIfAbsent(kTenantsPrefix + id + "/handover", json::serialize(request), lease);
  if (!created.ok()) {
    (void)etcd.Revoke(lease);
    if (created.status().code() == StatusCode::kAlreadyExists) {
      return FailedPrecondition("a handover of " + slug + " is under way");
    }
    return created.status();
  }
  Result<std::string> outcome =
      DeadlineExceeded("the handover of " + slug + " did not complete in 30 s (" + from +
                       " says why in its log: replication.handover_failed)");
  for (auto until = std::chrono::steady_clock::now() + 30s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
    auto now_led = etcd.Get(PrimaryKey(id));
    if (!now_led.ok() || !now_led->has_value()) continue;
    if (StringField(ParseOrNull((*now_led)->value), "node") == node) {
      outcome = node + " leads " + slug + " now (term " + std::to_string((*now_led)->mod_revision) +
                "; was " + from + ")\n";
      break;
    }
  }
  (void)etcd.Revoke(lease);  // the request goes
  return outcome;
}

Result<std::string> ForceElection(const std::vector<std::string>& etcd_endpoints,
                                  const std::string& slug, const std::string& node) {
  cluster::Etcd etcd(cluster::EtcdOptions{etcd_endpoints, 2000, "", "", ""});
  SILO_ASSIGN_OR_RETURN(const std::string id, TenantToLead(etcd, slug, node));
  SILO_ASSIGN_OR_RETURN(auto primary, etcd.Get(PrimaryKey(id)));
  if (primary.has_value()) {
    return FailedPrecondition(StringField(ParseOrNull(primary->value), "node") + " leads " + slug +
                              ": --accept-loss is only for a tenant no node leads (hand " +
                              "it over without it, which loses nothing)");
  }
  SILO_ASSIGN_OR_RETURN(auto set, etcd.Get(SyncKey(id)));
  if (!set.has_value()) {
    return FailedPrecondition("the election of " + slug +
                              " waits for no sync set (async mode): the most advanced follower "
                              "takes it over by itself");
  }
  SILO_ASSIGN_OR_RETURN(auto posted, etcd.Get(kTenantsPrefix + id + "/pos/" + node));
  if (!posted.has_value()) {
    return FailedPrecondition("node " + node + " offers no copy of " + slug +
                              " (it posted no position: it does not follow the tenant, or has not "
                              "noticed that no node leads it yet)");
  }
  const json::value offered = ParseOrNull(posted->value);
  if (BoolField(offered, "refused")) {
    return FailedPrecondition("node " + node + " refused to take " + slug +
                              " over (its log says why: replication.promotion_refused)");
  }
  // The node's election takes only a copy of the current chain; forced
  // onto one that is not, the set would name a node that never takes the
  // tenant over, and the copies that could would be out of it.
  SILO_ASSIGN_OR_RETURN(auto chain_kv, etcd.Get(ChainKey(id)));
  if (chain_kv.has_value()) {
    const Chain chain = ChainOf(ParseOrNull(chain_kv->value));
    if (!OnChain(chain, StringField(offered, "lineage"), NumberField(offered, "term"),
                 NumberField(offered, "seq"), StringField(offered, "hash"))) {
      return FailedPrecondition(
          "node " + node + "'s copy of " + slug + " is not of the tenant's current chain (" +
          (chain.lineage == "-" ? std::string("that chain ended: a restart, re-key or restore "
                                              "in place")
                                : "it is of another lineage, or went past where the current "
                                  "primary took the chain on") +
          "): it may lack every write since and cannot take the tenant over; name a node whose "
          "copy is");
    }
  }
  // The set replaced by `node` alone, under the same term, on no lease
  // (as RecordChain's); only if no node changed it meanwhile.
  const json::value was = ParseOrNull(set->value);
  const std::vector<std::string> members = SyncMembers(was);
  json::array replaced;
  for (const std::string& m : members) replaced.push_back(json::value(m));
  json::object forced{{"term", NumberField(was, "term")},
                      {"nodes", json::array{json::value(node)}},
                      {"forced", true},
                      {"replaced", replaced}};
  auto put = etcd.PutIf(SyncKey(id), json::serialize(forced), set->mod_revision, 0);
  if (!put.ok()) {
    if (put.status().code() == StatusCode::kVersionMismatch) {
      return FailedPrecondition("the sync set of " + slug + " changed meanwhile: run it again");
    }
    return put.status();
  }
  for (auto until = std::chrono::steady_clock::now() + 30s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
    auto now_led = etcd.Get(PrimaryKey(id));
    if (!now_led.ok() || !now_led->has_value()) continue;
    const std::string leader = StringField(ParseOrNull((*now_led)->value), "node");
    if (leader != node) {
      return FailedPrecondition(leader + " took " + slug + " over instead (term " +
                                std::to_string((*now_led)->mod_revision) + ")");
    }
    return node + " leads " + slug + " now (term " + std::to_string((*now_led)->mod_revision) +
           "); the sync set it replaced was [" + JoinNames(members) +
           "]: writes that only its other members held are lost\n";
  }
  return DeadlineExceeded("node " + node + " did not take " + slug +
                          " over in 30 s (its log says why: replication.promotion_refused, "
                          "replication.copy_off_chain)");
}

}  // namespace silo::app
