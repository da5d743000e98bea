#include "replication/shipper.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>

#include "base/data_layout.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "replication/disk_internal.h"
#include "replication/protocol.h"
#include "replication/segment.h"

namespace silo::replication {

namespace {

// The pages of `chunk` (a span of a snapshot's file) whose sums are not
// those of the same pages of a copy's file (`sums`), as runs of adjacent
// pages.
SnapshotPages ChangedPages(const SnapshotChunk& chunk, const PageSums& sums) {
  SnapshotPages p{.lineage = chunk.lineage,
                  .term = chunk.term,
                  .seq = chunk.seq,
                  .hash = chunk.hash,
                  .offset = chunk.offset,
                  .span = chunk.bytes.size(),
                  .total = chunk.total};
  const std::string_view bytes = chunk.bytes;
  const std::string_view theirs = sums.sums;
  for (size_t at = 0; at < bytes.size(); at += kPageSize) {
    const std::string_view page = bytes.substr(at, kPageSize);
    const uint64_t offset = chunk.offset + at;
    const uint64_t sum_at = offset / kPageSize * kPageSumBytes;
    if (sum_at < theirs.size() && PageSum(page) == theirs.substr(sum_at, kPageSumBytes)) continue;
    if (!p.runs.empty() && p.runs.back().offset + p.runs.back().bytes.size() == offset) {
      p.runs.back().bytes.append(page);
    } else {
      p.runs.push_back(PageRun{offset, std::string(page)});
    }
  }
  return p;
}

// Reads all of `out` from `fd` at `offset` (a snapshot's or a blob's piece
// to ship).
Status ReadAt(int fd, uint64_t offset, std::string& out) {
  Status s = internal::PreadAll(fd, out, static_cast<int64_t>(offset));
  if (!s.ok()) return Internal("cannot read a file to ship").WithCause(s.ToString());
  return s;
}

}  // namespace

// kAsking: to be asked where it stands (Resume). kGone: removed (its node
// left the cluster); kept in place so that indices held by answers in
// flight stay valid, and revived by SetFollower.
enum class FollowerState { kStreaming, kAsking, kNeedsSnapshot, kSnapshotting, kGone };

struct Shipper::Shared {
  struct Follower {
    FollowerLink link;
    FollowerState state = FollowerState::kStreaming;
    uint64_t sent = 0;   // the last segment sent
    uint64_t acked = 0;  // the highest segment acknowledged
    // Since when it has had segments outstanding without acknowledging any
    // (epoch: none outstanding). A segment's answer has no deadline (a
    // stopped follower answers when it runs again): this tells a stall.
    std::chrono::steady_clock::time_point behind_since{};
    std::deque<std::pair<uint64_t, std::string>> backlog;  // while kSnapshotting
    size_t backlog_bytes = 0;
    // A blob did not reach it: Resume sends it to a snapshot, whose blob
    // list clears this.
    bool files_missing = false;
    // It may hold blobs removed here (it was away, or a removal did not
    // reach it): ReconcileBlobs asks it. `removal_misses` counts the times
    // it became so, so that a reconcile does not clear a newer miss.
    bool removals_unsure = true;
    uint64_t removal_misses = 0;
    // Its last snapshot sent as pages failed (the pages did not make this
    // file there, or the link broke): the next one goes whole (only the
    // next: once it took one, pages again).
    bool whole_snapshot = false;
  };

  std::mutex mu;
  std::condition_variable acked_cv;
  std::vector<Follower> followers;
  std::string snapshot_lineage;
  uint64_t snapshot_term = 0;
  ChainHead snapshot_head;
  // ShipBlob calls under way: a follower given a new link meanwhile may
  // miss the blob on the old one.
  int blob_ships = 0;
  // Link message ids: a random start, so a new Shipper on an old link never
  // reuses an id still in flight.
  std::atomic<uint64_t> next_message{0};

  void RemovalMissed(Follower& f) {
    f.removals_unsure = true;
    ++f.removal_misses;
  }
  // A follower that cannot continue the chain waits for a snapshot.
  void NeedsSnapshot(Follower& f) {
    f.state = FollowerState::kNeedsSnapshot;
    f.backlog.clear();
    f.backlog_bytes = 0;
  }
  // One whose position is unknown (a new link, a missed answer) is asked.
  void Ask(Follower& f) {
    NeedsSnapshot(f);
    f.state = FollowerState::kAsking;
  }

  // `sent_at`: when the segment went out (epoch: not a streamed segment,
  // not measured).
  void OnAnswer(size_t i, uint64_t seq, const Result<cluster::Message>& answer,
                const std::string& tenant, std::chrono::steady_clock::time_point sent_at = {},
                Histogram* ack_seconds = nullptr) {
    if (ack_seconds && sent_at != std::chrono::steady_clock::time_point{} && answer.ok() &&
        answer->kind == kAck) {
      ack_seconds->Record(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - sent_at).count());
    }
    std::lock_guard lock(mu);
    Follower& f = followers[i];
    if (answer.ok() && answer->kind == kAck) {
      auto ack = DecodeAck(answer->payload);
      if (ack.ok()) f.acked = std::max(f.acked, ack->first);
      f.behind_since = f.acked >= f.sent ? std::chrono::steady_clock::time_point{}
                                         : std::chrono::steady_clock::now();
    } else if (f.state == FollowerState::kStreaming) {
      log::Warn("replication.follower_behind",
                {{"tenant", tenant},
                 {"node", f.link.node},
                 {"seq", static_cast<long long>(seq)},
                 {"reason", answer.ok() ? answer->payload : answer.status().ToString()}});
      Ask(f);
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
  std::lock_guard send(send_mu_);
  ForgetRetained();
}

void Shipper::SendSegment(size_t i, uint64_t seq, const std::string& encoded) {
  std::shared_ptr<cluster::PeerClient> link;
  {
    std::lock_guard lock(shared_->mu);
    Shared::Follower& f = shared_->followers[i];
    if (f.acked >= f.sent) f.behind_since = std::chrono::steady_clock::now();
    f.sent = seq;
    link = f.link.link;
  }
  // Answers of a Shipper that is gone are dropped.
  std::weak_ptr<Shared> weak = shared_;
  std::string tenant = tenant_;
  std::shared_ptr<Histogram> lag = options_.ack_seconds;
  const auto sent_at = std::chrono::steady_clock::now();
  Status sent = link->Send(cluster::MessageRef{tenant_, kSegment, ++shared_->next_message, encoded},
                           options_.ack_timeout,
                           [weak, i, seq, tenant, lag, sent_at](Result<cluster::Message> answer) {
                             if (auto shared = weak.lock())
                               shared->OnAnswer(i, seq, answer, tenant, sent_at, lag.get());
                           });
  if (!sent.ok()) shared_->OnAnswer(i, seq, sent, tenant_);
}

Status Shipper::Publish(uint64_t seq, const std::string& encoded) {
  return AwaitAck(Send(seq, encoded));
}

Shipper::Sent Shipper::Send(uint64_t seq, const std::string& encoded) {
  std::lock_guard send(send_mu_);
  published_ = seq;
  if (!retained_.empty() && retained_.back().first + 1 != seq) {
    ForgetRetained();  // not the next one (a new chain): what was kept does not lead here
  }
  retained_.emplace_back(seq, encoded);
  AddRetained(encoded.size());
  // A promoted copy's segments (ContinueFrom) go only once retain_bytes of
  // this chain's follow them: the promotion's own checkpoint may be MiBs.
  while (retained_.size() > 1 && retained_bytes_ - seeded_bytes_ > options_.retain_bytes) {
    DropOldestRetained();
  }
  // Past the node's budget, the newest alone: it still resumes a follower
  // that missed only it.
  if (options_.budget && options_.budget->held.load() > options_.budget->total) {
    while (retained_.size() > 1) DropOldestRetained();
  }
  Sent sent{seq, {}};
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kStreaming) {
        sent.targets.push_back(i);
      } else if (f.state == FollowerState::kSnapshotting) {
        f.backlog.emplace_back(seq, encoded);
        f.backlog_bytes += encoded.size();
        if (f.backlog_bytes > kBacklogBytes) shared_->NeedsSnapshot(f);
      }
    }
  }
  for (size_t i : sent.targets) SendSegment(i, seq, encoded);
  return sent;
}

Status Shipper::AwaitAck(const Sent& sent) {
  const uint64_t seq = sent.seq;
  std::vector<size_t> targets = sent.targets;
  {
    std::lock_guard lock(shared_->mu);
    if (!options_.sync || shared_->followers.empty()) return Status::Ok();
  }
  // Sync: a durable copy besides ours on a member of the sync set (on any
  // promotable follower while the set is empty or none of its members
  // streams) before the commit is answered. Copies are prefixes of the
  // chain, so a member that holds this commit holds every one answered
  // before it.
  std::unique_lock lock(shared_->mu);
  std::erase_if(targets, [&](size_t i) { return !shared_->followers[i].link.promotable; });
  auto counts = [&](const Shared::Follower& f) {
    return sync_set_.empty() || std::binary_search(sync_set_.begin(), sync_set_.end(), f.link.node);
  };
  // While no member streams (the set's members left, or it never held the
  // followers that caught up since: MaintainSyncSet), any promotable
  // follower the segment went to will do: it becomes the set below. Not
  // waiting for it would answer the commit with no copy at all (strict:
  // refuse it) while a follower was about to hold it.
  auto done = [&] {
    bool member_streams = false;
    for (size_t i : targets) {
      const Shared::Follower& f = shared_->followers[i];
      if (!counts(f)) continue;
      if (f.acked >= seq) return true;
      member_streams = member_streams || f.state == FollowerState::kStreaming;
    }
    if (member_streams) return false;
    bool streams = false;
    for (size_t i : targets) {
      const Shared::Follower& f = shared_->followers[i];
      if (f.acked >= seq) return true;
      streams = streams || f.state == FollowerState::kStreaming;
    }
    return !streams;
  };
  shared_->acked_cv.wait_for(lock, options_.ack_timeout, done);
  lock.unlock();

  // Decided in seq order: a later segment's decision (made by a wait that
  // overtook this one) left a set with a member holding that segment, and
  // so this one; deciding again from this one's holders could put back a
  // follower that lacks the later commit, which was answered.
  std::lock_guard decide(sync_mu_);
  if (decided_ >= seq) return Status::Ok();
  bool held = false;
  std::vector<std::string> holders;  // promotable followers that hold it
  lock.lock();
  for (const Shared::Follower& f : shared_->followers) {
    if (!f.link.promotable || f.state == FollowerState::kGone || f.acked < seq) continue;
    held = held || counts(f);
    holders.push_back(f.link.node);
  }
  std::sort(holders.begin(), holders.end());
  const bool set_empty = sync_set_.empty();
  lock.unlock();
  if (held && !set_empty) {
    decided_ = seq;
    return Status::Ok();
  }
  // No member holds it (or there are none yet): the followers that do
  // become the set, or, when none does and the commit is answered all the
  // same (not strict), the set empties. Recorded before the answer.
  if (holders.empty() && options_.strict) {
    log::Warn("replication.no_follower_acknowledged",
              {{"tenant", tenant_}, {"seq", static_cast<long long>(seq)}});
    return Unavailable("no follower acknowledged the commit in time");
  }
  if (holders != sync_set_) {
    SILO_RETURN_IF_ERROR(RecordSyncSet(holders));
  }
  decided_ = seq;
  if (holders.empty() && !targets.empty()) {
    log::Warn("replication.no_follower_acknowledged",
              {{"tenant", tenant_}, {"seq", static_cast<long long>(seq)}});
  }
  return Status::Ok();
}

Status Shipper::RecordSyncSet(std::vector<std::string> nodes) {
  if (retired_ && !nodes.empty()) return Status::Ok();  // stays empty
  if (options_.record_sync_set) {
    if (Status s = options_.record_sync_set(nodes); !s.ok()) {
      return Unavailable("the sync set could not be recorded; retry").WithCause(s.ToString());
    }
  }
  log::Info("replication.sync_set", {{"tenant", tenant_},
                                     {"seq", static_cast<long long>(published_)},
                                     {"members", static_cast<long long>(nodes.size())}});
  std::lock_guard lock(shared_->mu);
  sync_set_ = std::move(nodes);
  return Status::Ok();
}

void Shipper::SetFollower(FollowerLink link) {
  std::shared_ptr<cluster::PeerClient> old;  // let go of after the locks (RemoveFollower)
  std::lock_guard send(send_mu_);            // not while a segment goes out on the old link
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.link.node != link.node) continue;
    old = std::move(f.link.link);
    f.link = std::move(link);
    shared_->Ask(f);
    shared_->RemovalMissed(f);  // removals made while it was away went nowhere
    if (shared_->blob_ships > 0) f.files_missing = true;
    return;
  }
  Shared::Follower f;
  f.link = std::move(link);
  shared_->Ask(f);
  shared_->followers.push_back(std::move(f));
}

size_t Shipper::ResumeIndex(const std::pair<uint64_t, std::string>& at) const {
  // The retained segments after the copy's position, if they continue its
  // chain: the one after it links to its hash (or, when it holds the
  // newest, the newest is its hash).
  if (!retained_.empty() && at.first + 1 >= retained_.front().first && at.first <= published_) {
    const size_t next = static_cast<size_t>(at.first + 1 - retained_.front().first);
    if (next < retained_.size()) {
      auto segment = DecodeSegment(retained_[next].second);
      if (segment.ok() && segment->header.prev_hash == at.second) return next;
    } else if (auto newest = DecodeSegment(retained_.back().second);
               newest.ok() && newest->hash == at.second) {
      return retained_.size();
    }
  } else if (retained_.empty() && empty_head_.seq != 0 && at.first == empty_head_.seq &&
             at.second == empty_head_.hash) {
    return 0;  // holds where the chain went on from, or the newest, and nothing followed
  }
  return retained_.size() + 1;
}

void Shipper::DropOldestRetained() {
  const size_t dropped = retained_.front().second.size();
  retained_bytes_ -= dropped;
  if (options_.budget) options_.budget->held -= dropped;
  seeded_bytes_ -= std::min(seeded_bytes_, dropped);  // the seeded ones are the oldest
  retained_.pop_front();
}

void Shipper::AddRetained(size_t bytes) {
  retained_bytes_ += bytes;
  if (options_.budget) options_.budget->held += bytes;
}

void Shipper::ForgetRetained() {
  if (options_.budget) options_.budget->held -= retained_bytes_;
  retained_.clear();
  retained_bytes_ = 0;
  seeded_bytes_ = 0;
}

size_t Shipper::Resume() {
  struct Asked {
    size_t i;
    std::string node;
    std::shared_ptr<cluster::PeerClient> link;
  };
  std::vector<Asked> asking;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      const Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kAsking && f.link.link) {
        asking.push_back({i, f.link.node, f.link.link});
      }
    }
  }
  size_t resumed = 0;
  for (auto& [i, node, link] : asking) {
    auto answer = link->Call(
        cluster::Message{tenant_, kProbe, ++shared_->next_message, ""},
        std::min<std::chrono::milliseconds>(options_.ack_timeout, std::chrono::seconds(1)));
    if (!answer.ok()) continue;  // asked again next time
    std::optional<std::pair<uint64_t, std::string>> at;
    if (answer->kind == kAck) {
      if (auto ack = DecodeAck(answer->payload); ack.ok()) at = *ack;
    }
    // Behind where the chain went on from (ContinueFrom) and resumable from
    // the promoted copy's segments: the old primary sent those, with blobs
    // this follower may have missed (it then got no later segment, so it
    // stands before the commit naming one). Its blobs first, as for a
    // snapshot; a blob shipped from now on reaches it or marks it
    // (files_missing). One that is not resumable gets them with its
    // snapshot instead.
    bool blobs_first;
    {
      std::lock_guard send(send_mu_);
      blobs_first = at && at->first < base_.seq && ResumeIndex(*at) <= retained_.size();
    }
    if (blobs_first) {
      if (Status s = SyncBlobs(i, link); !s.ok()) {
        log::Warn("replication.follower_blobs_not_synced",
                  {{"tenant", tenant_}, {"node", node}, {"cause", s.ToString()}});
        std::lock_guard lock(shared_->mu);
        Shared::Follower& f = shared_->followers[i];
        if (f.state == FollowerState::kAsking && f.link.link == link) shared_->NeedsSnapshot(f);
        continue;
      }
    }
    std::lock_guard send(send_mu_);
    const size_t from = at ? ResumeIndex(*at) : retained_.size() + 1;
    {
      std::lock_guard lock(shared_->mu);
      Shared::Follower& f = shared_->followers[i];
      if (f.state != FollowerState::kAsking || f.link.link != link) continue;  // changed meanwhile
      if (from > retained_.size() || f.files_missing) {
        shared_->NeedsSnapshot(f);
        continue;
      }
      f.state = FollowerState::kStreaming;
      f.acked = at->first;
      f.sent = at->first;
    }
    log::Info("replication.follower_resumed",
              {{"tenant", tenant_},
               {"node", node},
               {"from", static_cast<long long>(at->first)},
               {"segments", static_cast<long long>(retained_.size() - from)}});
    for (size_t k = from; k < retained_.size(); ++k) {
      SendSegment(i, retained_[k].first, retained_[k].second);
    }
    ++resumed;
  }
  return resumed;
}

void Shipper::RemoveFollower(const std::string& node) {
  // Let go of after the locks: the last reference's destructor joins the
  // link's reader thread, which may be in an answer callback waiting for
  // shared_->mu (a follower that stopped answering, then left).
  std::vector<std::shared_ptr<cluster::PeerClient>> dropped;
  std::lock_guard send(send_mu_);
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.link.node != node) continue;
    shared_->NeedsSnapshot(f);
    f.state = FollowerState::kGone;
    dropped.push_back(std::move(f.link.link));
  }
  shared_->acked_cv.notify_all();  // a sync commit waiting on it waits no more
}

void Shipper::TrimRetained() {
  std::lock_guard send(send_mu_);
  if (retained_.empty()) return;
  // Only its position (checked: it was sent as it is kept) is needed to
  // resume a follower that holds it.
  auto newest = DecodeSegment(retained_.back().second);
  empty_head_ = newest.ok() ? ChainHead{newest->header.seq, newest->hash} : ChainHead{};
  ForgetRetained();
}

std::vector<std::string> Shipper::Retained() {
  std::lock_guard send(send_mu_);
  std::vector<std::string> copies;
  copies.reserve(retained_.size());
  for (const auto& [seq, encoded] : retained_) copies.push_back(encoded);
  return copies;
}

size_t Shipper::RetainedBytes() {
  std::lock_guard send(send_mu_);
  return retained_bytes_;
}

void Shipper::RequireSnapshot() {
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.state != FollowerState::kGone) shared_->NeedsSnapshot(f);
  }
}

void Shipper::ContinueFrom(const ChainHead& head, std::vector<std::string> recent) {
  std::lock_guard send(send_mu_);
  base_ = head;
  empty_head_ = head;
  published_ = head.seq;
  // Retained only as a whole chain ending at `head`: a follower resumed
  // from them must end up holding exactly this copy's files.
  std::deque<std::pair<uint64_t, std::string>> chain;
  std::string last_hash;
  for (std::string& encoded : recent) {
    auto segment = DecodeSegment(encoded);
    if (!segment.ok() || (!chain.empty() && (segment->header.seq != chain.back().first + 1 ||
                                             segment->header.prev_hash != last_hash))) {
      chain.clear();
      break;
    }
    last_hash = segment->hash;
    chain.emplace_back(segment->header.seq, std::move(encoded));
  }
  if (!recent.empty() &&
      (chain.empty() || chain.back().first != head.seq || last_hash != head.hash)) {
    log::Warn("replication.recent_segments_dropped",
              {{"tenant", tenant_}, {"seq", static_cast<long long>(head.seq)}});
    chain.clear();
  }
  ForgetRetained();
  retained_ = std::move(chain);
  for (const auto& [seq, encoded] : retained_) AddRetained(encoded.size());
  seeded_bytes_ = retained_bytes_;
  while (retained_.size() > 1 && retained_bytes_ > options_.retain_bytes) DropOldestRetained();
  std::lock_guard lock(shared_->mu);
  for (Shared::Follower& f : shared_->followers) {
    if (f.state != FollowerState::kGone) shared_->Ask(f);
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

Status Shipper::SendSnapshot(const std::string& path) {
  // A snapshot that cannot be read sends nothing; its followers (marked by
  // BeginSnapshot) need one again rather than wait on a backlog.
  auto unreadable = [&](Status why) {
    std::lock_guard lock(shared_->mu);
    for (auto& f : shared_->followers) {
      if (f.state == FollowerState::kSnapshotting) shared_->NeedsSnapshot(f);
    }
    return why;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return unreadable(Internal("cannot open the snapshot").WithCause(std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return unreadable(Internal("cannot stat the snapshot"));
  const uint64_t total = static_cast<uint64_t>(st.st_size);
  // The chunk at `offset` (the last one may be short).
  auto read_chunk = [&](uint64_t offset, std::string& out) -> Status {
    out.resize(static_cast<size_t>(std::min<uint64_t>(kSnapshotChunkBytes, total - offset)));
    return ReadAt(fd, offset, out);
  };
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
  chunk.total = total;
  Status result;
  for (size_t i : targets) {
    std::shared_ptr<cluster::PeerClient> link;
    std::string node;
    {
      std::lock_guard lock(shared_->mu);
      link = shared_->followers[i].link.link;
      node = shared_->followers[i].link.node;
    }
    // Its blobs first, so that the copy never holds a commit naming a
    // blob it lacks; a blob shipped from here on reaches it or marks it.
    bool whole = false;
    {
      std::lock_guard lock(shared_->mu);
      shared_->followers[i].files_missing = false;
      whole = shared_->followers[i].whole_snapshot;
    }
    Status s = SyncBlobs(i, link);
    // A copy that holds a database (one that left the chain) is sent only
    // the pages that differ from its own.
    std::optional<PageSums> sums;
    if (s.ok() && !whole) sums = AskPageSums(link);
    const bool as_pages = sums && !sums->sums.empty();
    crypto::Sha256Stream digest;
    uint64_t offset = 0, sent = 0;
    if (s.ok()) do {
        chunk.offset = offset;
        if (s = read_chunk(offset, chunk.bytes); !s.ok()) break;
        cluster::Message m{tenant_, kSnapshotChunk, ++shared_->next_message, {}};
        if (as_pages) {
          digest.Update(chunk.bytes);
          SnapshotPages pages = ChangedPages(chunk, *sums);
          if (offset + chunk.bytes.size() == total) {
            pages.file_sha256 = crypto::HexDecode(digest.FinishHex()).value();
          }
          for (const PageRun& run : pages.runs) sent += run.bytes.size();
          m.kind = kSnapshotPages;
          m.payload = EncodeSnapshotPages(pages);
        } else {
          sent += chunk.bytes.size();
          m.payload = EncodeSnapshotChunk(chunk);
        }
        auto answer = link->Call(m, options_.ack_timeout * 5);
        if (!answer.ok()) {
          s = answer.status();
        } else if (answer->kind != kAck) {
          s = Unavailable("the follower refused the snapshot").WithCause(answer->payload);
        }
        offset += chunk.bytes.size();
      } while (s.ok() && offset < total);
    snapshot_bytes_sent_ += sent;
    if (!s.ok()) {
      std::lock_guard lock(shared_->mu);
      shared_->NeedsSnapshot(shared_->followers[i]);
      shared_->followers[i].files_missing = true;  // its blobs may be short too
      shared_->followers[i].whole_snapshot = as_pages;
      result = s;
      continue;
    }
    log::Info("replication.snapshot_to_follower", {{"tenant", tenant_},
                                                   {"node", node},
                                                   {"as", as_pages ? "pages" : "whole"},
                                                   {"bytes", static_cast<long long>(total)},
                                                   {"sent", static_cast<long long>(sent)}});
    // The copy stands at the snapshot's head: the backlog follows, ahead of
    // any newer segment (Publish waits for send_mu_).
    std::lock_guard send(send_mu_);
    std::deque<std::pair<uint64_t, std::string>> backlog;
    {
      std::lock_guard lock(shared_->mu);
      Shared::Follower& f = shared_->followers[i];
      f.whole_snapshot = false;  // it took one: the next may go as pages again
      // The backlog overflowed, or a blob missed it (MissedBlob).
      if (f.state != FollowerState::kSnapshotting) continue;
      backlog.swap(f.backlog);
      f.backlog_bytes = 0;
      f.state = FollowerState::kStreaming;
      f.acked = std::max(f.acked, chunk.seq);
    }
    for (auto& [seq, encoded] : backlog) SendSegment(i, seq, encoded);
  }
  return result;
}

std::optional<PageSums> Shipper::AskPageSums(const std::shared_ptr<cluster::PeerClient>& link) {
  // A node built before page sums answers that it does not know the kind.
  auto answer = link->Call(cluster::Message{tenant_, kPageSums, ++shared_->next_message, {}},
                           options_.ack_timeout * 5);
  if (!answer.ok() || answer->kind != kPageSumList) return std::nullopt;
  auto sums = DecodePageSums(answer->payload);
  if (!sums.ok()) return std::nullopt;
  return *std::move(sums);
}

std::vector<size_t> Shipper::SendBlob(const std::vector<size_t>& targets, const std::string& id,
                                      Status* unreadable) {
  return SendFile(targets, kBlobChunk, layout::BlobFileIn(options_.files_dir, id), id, 0,
                  unreadable, nullptr);
}

std::vector<size_t> Shipper::SendFile(const std::vector<size_t>& targets, MessageKind kind,
                                      const std::string& path, const std::string& id, uint64_t from,
                                      Status* unreadable, std::vector<size_t>* short_copies) {
  if (targets.empty()) return {};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return {};  // removed meanwhile: so is its row
    *unreadable = Internal("cannot open a blob to ship").WithCause(std::strerror(errno));
    return targets;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *unreadable = Internal("cannot stat a blob to ship");
    return targets;
  }
  // What the answers (on the links' threads) report; outlives this call,
  // since an answer may come after the wait gave up on it.
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    size_t outstanding = 0;       // pieces sent and not answered, in all
    std::vector<size_t> waiting;  // the same, per target
    std::vector<bool> failed;
    std::vector<bool> short_copy;  // answered kNeedSnapshot
  };
  auto answers = std::make_shared<Answers>();
  answers->failed.assign(targets.size(), false);
  answers->short_copy.assign(targets.size(), false);
  answers->waiting.assign(targets.size(), 0);
  std::vector<std::shared_ptr<cluster::PeerClient>> links;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i : targets) links.push_back(shared_->followers[i].link.link);
  }
  const uint64_t total = static_cast<uint64_t>(st.st_size);
  BlobChunk chunk{id, std::min(from, total), total, {}};
  do {
    chunk.bytes.resize(
        static_cast<size_t>(std::min<uint64_t>(kBlobChunkBytes, total - chunk.offset)));
    if (Status s = ReadAt(fd, chunk.offset, chunk.bytes); !s.ok()) {
      *unreadable = s;
      std::lock_guard lock(answers->mu);
      answers->failed.assign(targets.size(), true);
      break;
    }
    const std::string payload = EncodeBlobChunk(chunk);
    for (size_t j = 0; j < targets.size(); ++j) {
      {
        std::lock_guard lock(answers->mu);
        if (answers->failed[j] || !links[j]) {
          answers->failed[j] = true;
          continue;
        }
        ++answers->outstanding;
        ++answers->waiting[j];
      }
      // The link's window paces the pieces: at most kWindowBytes of this
      // tenant in flight to a follower.
      Status sent =
          links[j]->Send(cluster::Message{tenant_, kind, ++shared_->next_message, payload},
                         options_.ack_timeout, [answers, j](Result<cluster::Message> answer) {
                           std::lock_guard lock(answers->mu);
                           if (!answer.ok() || answer->kind != kAck) answers->failed[j] = true;
                           if (answer.ok() && answer->kind == kNeedSnapshot) {
                             answers->short_copy[j] = true;
                           }
                           --answers->outstanding;
                           --answers->waiting[j];
                           answers->cv.notify_all();
                         });
      if (!sent.ok()) {
        std::lock_guard lock(answers->mu);
        answers->failed[j] = true;
        --answers->outstanding;
        --answers->waiting[j];
      }
    }
    chunk.offset += chunk.bytes.size();
  } while (chunk.offset < total);
  // Waits for the targets still in the running: one already given up (a
  // refused piece, a window that stayed shut) is not waited for again, its
  // pieces in flight notwithstanding (a link's answers have no deadline).
  std::unique_lock lock(answers->mu);
  answers->cv.wait_for(lock, options_.ack_timeout, [&] {
    for (size_t j = 0; j < targets.size(); ++j) {
      if (!answers->failed[j] && answers->waiting[j] > 0) return false;
    }
    return true;
  });
  std::vector<size_t> failed;
  for (size_t j = 0; j < targets.size(); ++j) {
    // Unanswered by now counts as not taken (a late answer changes nothing).
    if (answers->failed[j] || answers->waiting[j] > 0) failed.push_back(targets[j]);
    if (short_copies != nullptr && answers->short_copy[j]) short_copies->push_back(targets[j]);
  }
  return failed;
}

void Shipper::MissedBlob(size_t i, const std::string& id, const std::string& why) {
  std::lock_guard lock(shared_->mu);
  Shared::Follower& f = shared_->followers[i];
  f.files_missing = true;
  if (f.state == FollowerState::kGone) return;
  log::Warn("replication.blob_not_shipped",
            {{"tenant", tenant_}, {"node", f.link.node}, {"blob", id}, {"reason", why}});
  shared_->NeedsSnapshot(f);
  shared_->acked_cv.notify_all();  // a sync commit waiting on it waits no more
}

Status Shipper::ShipBlob(const std::string& id, bool from_part) {
  if (options_.files_dir.empty()) return Status::Ok();
  std::vector<size_t> targets;
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->blob_ships;
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kGone || !f.link.link) {
        f.files_missing = true;  // away: a snapshot when it is back
      } else if (f.state == FollowerState::kNeedsSnapshot) {
        // Its snapshot gives it every blob it lacks, this one included (in
        // place before this call). Not sent now: a follower that stopped
        // answering would hold this upload up for the ack timeout again,
        // its link's window still full of the last blob's pieces.
        f.files_missing = true;
      } else {
        targets.push_back(i);
      }
    }
  }
  Status unreadable;
  std::vector<size_t> failed;
  if (from_part) targets = BlobFromParts(targets, id, &failed);
  std::vector<size_t> missed = SendBlob(targets, id, &unreadable);
  failed.insert(failed.end(), missed.begin(), missed.end());
  for (size_t i : failed) {
    MissedBlob(i, id, unreadable.ok() ? "not acknowledged" : unreadable.ToString());
  }
  std::lock_guard lock(shared_->mu);
  --shared_->blob_ships;
  return unreadable;
}

std::vector<size_t> Shipper::BlobFromParts(const std::vector<size_t>& targets,
                                           const std::string& id, std::vector<size_t>* failed) {
  if (targets.empty()) return {};
  const std::string path = layout::BlobFileIn(options_.files_dir, id);
  auto digest = crypto::DigestFile(path);
  if (!digest.ok()) return targets;  // SendBlob tells why
  const std::string payload = EncodeBlobFromPart(
      {id, static_cast<uint64_t>(digest->size), crypto::HexDecode(digest->sha256).value()});
  enum Answer { kWaiting, kTaken, kWhole, kFailed };
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Answer> of;
  };
  auto answers = std::make_shared<Answers>();
  answers->of.assign(targets.size(), kWaiting);
  std::vector<std::shared_ptr<cluster::PeerClient>> links;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i : targets) links.push_back(shared_->followers[i].link.link);
  }
  for (size_t j = 0; j < targets.size(); ++j) {
    auto answered = [answers, j](Result<cluster::Message> answer) {
      std::lock_guard lock(answers->mu);
      answers->of[j] = !answer.ok()                    ? kFailed
                       : answer->kind == kAck          ? kTaken
                       : answer->kind == kNeedSnapshot ? kWhole
                                                       : kFailed;
      answers->cv.notify_all();
    };
    Status sent = links[j] ? links[j]->Send(cluster::Message{tenant_, kBlobFromPart,
                                                             ++shared_->next_message, payload},
                                            options_.ack_timeout, answered)
                           : Unavailable("no link");
    if (!sent.ok()) answered(sent);
  }
  std::unique_lock lock(answers->mu);
  answers->cv.wait_for(lock, options_.ack_timeout, [&] {
    return std::find(answers->of.begin(), answers->of.end(), kWaiting) == answers->of.end();
  });
  std::vector<size_t> whole;
  for (size_t j = 0; j < targets.size(); ++j) {
    if (answers->of[j] == kWhole) whole.push_back(targets[j]);
    // Unanswered by now counts as not taken (a late answer changes nothing).
    if (answers->of[j] == kWaiting || answers->of[j] == kFailed) failed->push_back(targets[j]);
  }
  return whole;
}

Status Shipper::ShipUploadPart(const std::string& id, uint64_t from) {
  if (options_.files_dir.empty()) return Status::Ok();
  std::vector<size_t> targets;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      const Shared::Follower& f = shared_->followers[i];
      if (f.state != FollowerState::kGone && f.state != FollowerState::kNeedsSnapshot &&
          f.link.link) {
        targets.push_back(i);
      }
    }
  }
  const std::string path = layout::UploadFileIn(options_.files_dir, id);
  Status unreadable;
  std::vector<size_t> short_copies;
  std::vector<size_t> failed =
      SendFile(targets, kUploadPart, path, id, from, &unreadable, &short_copies);
  if (from > 0 && !short_copies.empty() && unreadable.ok()) {
    // Copies that missed an earlier request's bytes (away then, or given
    // up on): the part whole.
    std::vector<size_t> again =
        SendFile(short_copies, kUploadPart, path, id, 0, &unreadable, nullptr);
    std::erase_if(failed, [&](size_t i) {
      return std::find(short_copies.begin(), short_copies.end(), i) != short_copies.end() &&
             std::find(again.begin(), again.end(), i) == again.end();
    });
  }
  for (size_t i : failed) {
    std::string node;
    {
      std::lock_guard lock(shared_->mu);
      node = shared_->followers[i].link.node;
    }
    log::Warn("replication.upload_part_not_shipped",
              {{"tenant", tenant_},
               {"node", node},
               {"upload", id},
               {"reason", unreadable.ok() ? "not acknowledged" : unreadable.ToString()}});
  }
  return unreadable;
}

void Shipper::RemoveUploadPart(const std::string& id, uint64_t term) {
  if (options_.files_dir.empty()) return;
  std::vector<std::shared_ptr<cluster::PeerClient>> links;
  {
    std::lock_guard lock(shared_->mu);
    for (const Shared::Follower& f : shared_->followers) {
      if (f.state != FollowerState::kGone && f.link.link) links.push_back(f.link.link);
    }
  }
  const std::string payload = EncodeBlobRemove({term, id});
  for (const auto& link : links) {
    // Not waited for: a copy that misses it keeps a part no row names,
    // which a promoted copy's file collection removes.
    (void)link->Send(cluster::Message{tenant_, kUploadRemove, ++shared_->next_message, payload},
                     std::chrono::milliseconds(100), [](Result<cluster::Message>) {});
  }
}

void Shipper::RemoveBlob(const std::string& id, uint64_t term) {
  if (options_.files_dir.empty()) return;
  std::vector<std::pair<size_t, std::shared_ptr<cluster::PeerClient>>> links;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kGone) continue;
      if (f.link.link) {
        links.emplace_back(i, f.link.link);
      } else {
        shared_->RemovalMissed(f);
      }
    }
  }
  const std::string payload = EncodeBlobRemove({term, id});
  std::weak_ptr<Shared> weak = shared_;
  for (const auto& [i, link] : links) {
    // Not acknowledged (a broken link, a refusal, no answer in time): the
    // next ReconcileBlobs asks that follower what it holds.
    auto missed = [weak, i = i](Result<cluster::Message> answer) {
      if (answer.ok() && answer->kind == kAck) return;
      if (auto shared = weak.lock()) {
        std::lock_guard lock(shared->mu);
        shared->RemovalMissed(shared->followers[i]);
      }
    };
    Status sent =
        link->Send(cluster::Message{tenant_, kBlobRemove, ++shared_->next_message, payload},
                   std::chrono::milliseconds(100), missed);
    if (!sent.ok()) missed(sent);
  }
}

size_t Shipper::ReconcileBlobs(uint64_t term) {
  if (options_.files_dir.empty()) return 0;
  struct Unsure {
    size_t i;
    std::string node;
    std::shared_ptr<cluster::PeerClient> link;
    uint64_t misses;
  };
  std::vector<Unsure> unsure;
  {
    std::lock_guard lock(shared_->mu);
    for (size_t i = 0; i < shared_->followers.size(); ++i) {
      const Shared::Follower& f = shared_->followers[i];
      if (f.state == FollowerState::kStreaming && f.removals_unsure && f.link.link) {
        unsure.push_back({i, f.link.node, f.link.link, f.removal_misses});
      }
    }
  }
  size_t total = 0;
  for (const Unsure& u : unsure) {
    auto removed = RemoveExtraBlobs(u.link, term);
    if (!removed.ok()) {
      log::Warn("replication.blob_reconcile_failed",
                {{"tenant", tenant_}, {"node", u.node}, {"cause", removed.status().ToString()}});
      continue;  // asked again next time
    }
    total += *removed;
    if (*removed > 0) {
      log::Info(
          "replication.orphan_blobs_removed",
          {{"tenant", tenant_}, {"node", u.node}, {"blobs", static_cast<long long>(*removed)}});
    }
    std::lock_guard lock(shared_->mu);
    Shared::Follower& f = shared_->followers[u.i];
    if (f.link.link == u.link && f.removal_misses == u.misses) f.removals_unsure = false;
  }
  return total;
}

Result<size_t> Shipper::RemoveExtraBlobs(const std::shared_ptr<cluster::PeerClient>& link,
                                         uint64_t term) {
  std::string cursor;
  size_t removed = 0;
  for (;;) {
    auto answer = link->Call(cluster::Message{tenant_, kBlobHeld, ++shared_->next_message,
                                              cursor.empty() ? "" : EncodeBlobIds({cursor})},
                             options_.ack_timeout);
    if (!answer.ok()) return answer.status();
    if (answer->kind != kBlobHeldIds) {
      return Unavailable("the follower did not list its blobs").WithCause(answer->payload);
    }
    SILO_ASSIGN_OR_RETURN(std::vector<std::string> ids, DecodeBlobIds(answer->payload));
    for (const std::string& id : ids) {
      // In order, after the cursor: else a follower could keep this asking.
      if (id <= cursor) return Unavailable("the follower listed its blobs out of order");
      cursor = id;
      struct stat st {};
      if (::stat(layout::BlobFileIn(options_.files_dir, id).c_str(), &st) == 0) continue;
      if (errno != ENOENT)
        return Internal("cannot look for a blob").WithCause(std::strerror(errno));
      auto gone = link->Call(cluster::Message{tenant_, kBlobRemove, ++shared_->next_message,
                                              EncodeBlobRemove({term, id})},
                             options_.ack_timeout);
      if (!gone.ok()) return gone.status();
      if (gone->kind != kAck) {
        return Unavailable("the follower refused a blob removal").WithCause(gone->payload);
      }
      ++removed;
    }
    if (ids.size() < kMaxBlobListEntries) return removed;
  }
}

Status Shipper::SyncBlobs(size_t i, const std::shared_ptr<cluster::PeerClient>& link) {
  if (options_.files_dir.empty()) return Status::Ok();
  namespace fs = std::filesystem;
  std::vector<BlobEntry> entries;
  std::error_code ec;
  const fs::path root = options_.files_dir + "/b";
  if (!fs::exists(root, ec)) return Status::Ok();  // no file was ever stored
  // Sends one list (at most kMaxBlobListEntries) and the blobs it wants.
  auto flush = [&]() -> Status {
    auto answer = link->Call(
        cluster::Message{tenant_, kBlobList, ++shared_->next_message, EncodeBlobList(entries)},
        options_.ack_timeout * 5);
    entries.clear();
    if (!answer.ok()) return answer.status();
    if (answer->kind != kBlobWant) {
      return Unavailable("the follower refused the blob list").WithCause(answer->payload);
    }
    SILO_ASSIGN_OR_RETURN(std::vector<std::string> wanted, DecodeBlobIds(answer->payload));
    for (const std::string& id : wanted) {
      Status unreadable;
      if (!SendBlob({i}, id, &unreadable).empty()) {
        return Unavailable("a blob did not reach the follower")
            .WithCause(unreadable.ok() ? id : unreadable.ToString());
      }
    }
    return Status::Ok();
  };
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& path = it->path();
    if (path.extension() != ".sf" || !layout::ValidBlobId(path.stem().string())) continue;
    const auto size = fs::file_size(path, ec);
    if (ec) {
      ec.clear();  // removed meanwhile
      continue;
    }
    auto epoch = BlobKeyEpoch(path.string());
    if (!epoch.ok()) continue;  // removed meanwhile, or unreadable: SendBlob would say
    entries.push_back({path.stem().string(), static_cast<uint64_t>(size), *epoch});
    if (entries.size() == kMaxBlobListEntries) SILO_RETURN_IF_ERROR(flush());
  }
  if (ec) return Internal("cannot list the tenant's blobs").WithCause(ec.message());
  return entries.empty() ? Status::Ok() : flush();
}

std::vector<std::string> Shipper::SyncSet() const {
  std::lock_guard lock(shared_->mu);
  return sync_set_;
}

Status Shipper::Retire() {
  std::lock_guard decide(sync_mu_);
  if (options_.sync) SILO_RETURN_IF_ERROR(RecordSyncSet({}));
  retired_ = true;
  return Status::Ok();
}

Status Shipper::MaintainSyncSet() {
  if (!options_.sync) return Status::Ok();
  std::lock_guard send(send_mu_);    // nothing published meanwhile
  std::lock_guard decide(sync_mu_);  // no commit answered meanwhile
  if (retired_) return Status::Ok();
  std::vector<std::string> next;
  {
    std::lock_guard lock(shared_->mu);
    // Members that stopped streaming (a refused segment, a broken link,
    // gone) or that acknowledged nothing for the ack timeout while segments
    // were outstanding leave, as long as those that stay hold everything
    // published: an election waits for every member, so one that is away
    // would hold the tenant up.
    const auto now = std::chrono::steady_clock::now();
    uint64_t kept_acked = 0;
    for (const auto& f : shared_->followers) {
      const bool stalled = f.acked < f.sent &&
                           f.behind_since != std::chrono::steady_clock::time_point{} &&
                           now - f.behind_since > options_.ack_timeout;
      if (f.state == FollowerState::kStreaming && !stalled &&
          std::binary_search(sync_set_.begin(), sync_set_.end(), f.link.node)) {
        next.push_back(f.link.node);
        kept_acked = std::max(kept_acked, f.acked);
      }
    }
    if (next.empty() || kept_acked < published_) next = sync_set_;
    // Promotable followers that hold everything published join.
    for (const auto& f : shared_->followers) {
      if (f.link.promotable && f.state == FollowerState::kStreaming && f.acked >= published_ &&
          std::find(next.begin(), next.end(), f.link.node) == next.end()) {
        next.push_back(f.link.node);
      }
    }
  }
  std::sort(next.begin(), next.end());
  if (next == sync_set_) return Status::Ok();
  return RecordSyncSet(std::move(next));
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
    const char* state = "";
    switch (f.state) {
      case FollowerState::kStreaming: state = "streaming"; break;
      case FollowerState::kAsking: state = "asking"; break;
      case FollowerState::kNeedsSnapshot: state = "needs_snapshot"; break;
      case FollowerState::kSnapshotting: state = "snapshotting"; break;
      case FollowerState::kGone: continue;  // left the cluster
    }
    out.push_back({f.link.node, state, f.sent, f.acked});
  }
  return out;
}

}  // namespace silo::replication
