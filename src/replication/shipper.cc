#include "replication/shipper.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>

#include "base/log.h"
#include "replication/protocol.h"

namespace silo::replication {

// kGone: removed (its node left the cluster); kept in place so that indices
// held by answers in flight stay valid, and revived by SetFollower.
enum class FollowerState { kStreaming, kNeedsSnapshot, kSnapshotting, kGone };

struct Shipper::Shared {
  struct Follower {
    FollowerLink link;
    FollowerState state = FollowerState::kStreaming;
    uint64_t sent = 0;                                     // the last segment sent
    uint64_t acked = 0;                                    // the highest segment acknowledged
    std::deque<std::pair<uint64_t, std::string>> backlog;  // while kSnapshotting
    size_t backlog_bytes = 0;
  };

  std::mutex mu;
  std::condition_variable acked_cv;
  std::vector<Follower> followers;
  std::string snapshot_lineage;
  uint64_t snapshot_term = 0;
  ChainHead snapshot_head;
  // Link message ids: a random start, so a new Shipper on an old link never
  // reuses an id still in flight.
  std::atomic<uint64_t> next_message{0};

  // A follower that failed or cannot continue the chain waits for a snapshot.
  void NeedsSnapshot(Follower& f) {
    f.state = FollowerState::kNeedsSnapshot;
    f.backlog.clear();
    f.backlog_bytes = 0;
  }

  void OnAnswer(size_t i, uint64_t seq, const Result<cluster::Message>& answer,
                const std::string& tenant) {
    std::lock_guard lock(mu);
    Follower& f = followers[i];
    if (answer.ok() && answer->kind == kAck) {
      auto ack = DecodeAck(answer->payload);
      if (ack.ok()) f.acked = std::max(f.acked, ack->first);
    } else if (f.state == FollowerState::kStreaming) {
      log::Warn("replication.follower_behind",
                {{"tenant", tenant},
                 {"node", f.link.node},
                 {"seq", static_cast<long long>(seq)},
                 {"reason", answer.ok() ? answer->payload : answer.status().ToString()}});
      NeedsSnapshot(f);
    }
    acked_cv.notify_all();
  }
};

Shipper::Shipper(std::string tenant, ShipperOptions options, std::vector<FollowerLink> followers)
    : tenant_(std::move(tenant)), options_(options), shared_(std::make_shared<Shared>()) {
  shared_->next_message = cluster::RandomFirstSeq();
  for (auto& link : followers) {
    Shared::Follower f;
    f.link = std::move(link);
    shared_->followers.push_back(std::move(f));
  }
}

Shipper::~Shipper() {
  // The links go here, on the destroying thread. An answer callback running
  // meanwhile holds `shared_` for a moment; were it the last owner of a
  // link, the link would be destroyed on its own reader thread, which
  // cannot join itself (cluster/peer_link.h).
  std::vector<std::shared_ptr<cluster::PeerClient>> links;
  {
    std::lock_guard lock(shared_->mu);
    for (Shared::Follower& f : shared_->followers) links.push_back(std::move(f.link.link));
  }
}

void Shipper::SendSegment(size_t i, uint64_t seq, const std::string& encoded) {
  std::shared_ptr<cluster::PeerClient> link;
  {
    std::lock_guard lock(shared_->mu);
    shared_->followers[i].sent = seq;
    link = shared_->followers[i].link.link;
  }
  // Answers of a Shipper that is gone are dropped.
  std::weak_ptr<Shared> weak = shared_;
  std::string tenant = tenant_;
  Status sent =
      link->Send(cluster::Message{tenant_, kSegment, ++shared_->next_message, encoded},
                 options_.ack_timeout, [weak, i, seq, tenant](Result<cluster::Message> answer) {
                   if (auto shared = weak.lock()) shared->OnAnswer(i, seq, answer, tenant);
                 });
  if (!sent.ok()) shared_->OnAnswer(i, seq, sent, tenant_);
}

Status Shipper::Publish(uint64_t seq, const std::string& encoded) {
  std::lock_guard send(send_mu_);
  published_ = seq;
  std::vector<size_t> targets;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kStreaming) {
        targets.push_back(i);
      } else if (f.state == FollowerState::kSnapshotting) {
        f.backlog.emplace_back(seq, encoded);
        f.backlog_bytes += encoded.size();
        if (f.backlog_bytes > kBacklogBytes) shared_->NeedsSnapshot(f);
      }
    }
  }
  for (size_t i : targets) SendSegment(i, seq, encoded);
  if (!options_.sync || shared_->followers.empty()) return Status::Ok();

  // Sync: one durable copy besides ours before the commit is answered.
  std::unique_lock lock(shared_->mu);
  auto acked = [&] {
    bool waiting_on_someone = false;
    for (size_t i : targets) {
      const Shared::Follower& f = shared_->followers[i];
      if (f.acked >= seq) return true;
      if (f.state == FollowerState::kStreaming) waiting_on_someone = true;
    }
    return !waiting_on_someone;
  };
  shared_->acked_cv.wait_for(lock, options_.ack_timeout, acked);
  for (size_t i : targets) {
    if (shared_->followers[i].acked >= seq) return Status::Ok();
  }
  if (targets.empty() && !options_.strict)
    return Status::Ok();  // none follows yet: said when it stopped
  log::Warn("replication.no_follower_acknowledged",
            {{"tenant", tenant_}, {"seq", static_cast<long long>(seq)}});
  if (options_.strict) {
    return Unavailable("no follower acknowledged the commit in time");
  }
  return Status::Ok();
}

void Shipper::SetFollower(FollowerLink link) {
  std::lock_guard send(send_mu_);  // not while a segment goes out on the old link
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.link.node != link.node) continue;
    f.link = std::move(link);
    shared_->NeedsSnapshot(f);
    return;
  }
  Shared::Follower f;
  f.link = std::move(link);
  f.state = FollowerState::kNeedsSnapshot;
  shared_->followers.push_back(std::move(f));
}

void Shipper::RemoveFollower(const std::string& node) {
  std::lock_guard send(send_mu_);
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.link.node != node) continue;
    shared_->NeedsSnapshot(f);
    f.state = FollowerState::kGone;
    f.link.link.reset();
  }
  shared_->acked_cv.notify_all();  // a sync commit waiting on it waits no more
}

void Shipper::RequireSnapshot() {
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.state != FollowerState::kGone) shared_->NeedsSnapshot(f);
  }
}

size_t Shipper::BeginSnapshot(const std::string& lineage, uint64_t term, const ChainHead& head) {
  std::lock_guard lock(shared_->mu);
  shared_->snapshot_lineage = lineage;
  shared_->snapshot_term = term;
  shared_->snapshot_head = head;
  size_t n = 0;
  for (Shared::Follower& f : shared_->followers) {
    if (f.state != FollowerState::kNeedsSnapshot) continue;
    f.state = FollowerState::kSnapshotting;
    f.backlog.clear();
    f.backlog_bytes = 0;
    ++n;
  }
  return n;
}

Status Shipper::SendSnapshot(const std::string& database) {
  std::vector<size_t> targets;
  SnapshotChunk chunk;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      if (shared_->followers[i].state == FollowerState::kSnapshotting) targets.push_back(i);
    }
    chunk.lineage = shared_->snapshot_lineage;
    chunk.term = shared_->snapshot_term;
    chunk.seq = shared_->snapshot_head.seq;
    chunk.hash = shared_->snapshot_head.hash;
  }
  chunk.total = database.size();
  Status result;
  for (size_t i : targets) {
    std::shared_ptr<cluster::PeerClient> link;
    {
      std::lock_guard lock(shared_->mu);
      link = shared_->followers[i].link.link;
    }
    Status s;
    uint64_t offset = 0;
    do {
      chunk.offset = offset;
      chunk.bytes = database.substr(offset, kSnapshotChunkBytes);
      auto answer = link->Call(cluster::Message{tenant_, kSnapshotChunk, ++shared_->next_message,
                                                EncodeSnapshotChunk(chunk)},
                               options_.ack_timeout * 5);
      if (!answer.ok()) {
        s = answer.status();
      } else if (answer->kind != kAck) {
        s = Unavailable("the follower refused the snapshot").WithCause(answer->payload);
      }
      offset += chunk.bytes.size();
    } while (s.ok() && offset < database.size());
    if (!s.ok()) {
      std::lock_guard lock(shared_->mu);
      shared_->NeedsSnapshot(shared_->followers[i]);
      result = s;
      continue;
    }
    // The copy stands at the snapshot's head: the backlog follows, ahead of
    // any newer segment (Publish waits for send_mu_).
    std::lock_guard send(send_mu_);
    std::deque<std::pair<uint64_t, std::string>> backlog;
    {
      std::lock_guard lock(shared_->mu);
      Shared::Follower& f = shared_->followers[i];
      if (f.state != FollowerState::kSnapshotting) continue;  // the backlog overflowed
      backlog.swap(f.backlog);
      f.backlog_bytes = 0;
      f.state = FollowerState::kStreaming;
      f.acked = std::max(f.acked, chunk.seq);
    }
    for (auto& [seq, encoded] : backlog) SendSegment(i, seq, encoded);
  }
  return result;
}

std::vector<std::string> Shipper::SyncSet() const {
  std::lock_guard lock(shared_->mu);
  std::vector<std::string> out;
  for (const auto& f : shared_->followers) {
    if (f.state == FollowerState::kStreaming && f.acked >= f.sent) out.push_back(f.link.node);
  }
  return out;
}

std::vector<std::string> Shipper::NeedingSnapshot() const {
  std::lock_guard lock(shared_->mu);
  std::vector<std::string> out;
  for (const auto& f : shared_->followers) {
    if (f.state == FollowerState::kNeedsSnapshot) out.push_back(f.link.node);
  }
  return out;
}

std::vector<uint64_t> Shipper::AckedSeqs() const {
  std::lock_guard lock(shared_->mu);
  std::vector<uint64_t> out;
  for (const auto& f : shared_->followers) {
    if (f.state != FollowerState::kGone) out.push_back(f.acked);
  }
  return out;
}

std::vector<Shipper::FollowerStatus> Shipper::Followers() const {
  std::lock_guard lock(shared_->mu);
  std::vector<FollowerStatus> out;
  for (const auto& f : shared_->followers) {
    const char* state = f.state == FollowerState::kStreaming       ? "streaming"
                        : f.state == FollowerState::kNeedsSnapshot ? "needs_snapshot"
                                                                   : "snapshotting";
    out.push_back({f.link.node, state, f.sent, f.acked});
  }
  return out;
}

}  // namespace silo::replication
