// A primary's segments shipped over real mutual-TLS node links to two
// followers' keyless copies: snapshots while writes go on, sync and strict
// acknowledgement.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/status_matchers.h"
#include "cluster/peer_link.h"
#include "cluster/test_certs.h"
#include "crypto/crypto.h"
#include "replication/follower.h"
#include "replication/promotion.h"
#include "replication/protocol.h"
#include "replication/recorder.h"
#include "replication/shipper.h"
#include "storage/database.h"
#include "storage/repl_vfs.h"

namespace silo::replication {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr char kTenant[] = "t0acme";
constexpr char kNeedle[] = "SHIP-NEEDLE-plaintext-77";

// One follower node: its copies and its listener.
struct FollowerNode {
  std::unique_ptr<Replicas> replicas;
  std::unique_ptr<cluster::PeerListener> listener;
  std::atomic<bool> stuck{false};
  std::promise<void> unstick;
  std::shared_future<void> unstuck = unstick.get_future().share();
  // When set, what it answers to kPageSums instead of the truth.
  std::mutex mu;
  std::string forged_sums;
};

// A sealed blob as the primary's disk holds it (random bytes: the shipper
// never reads inside one).
std::string PutBlob(const std::string& files_dir, const std::string& id, size_t size) {
  std::string bytes = crypto::RandomBytes(size);
  EXPECT_OK(MakeDirs(layout::BlobDirIn(files_dir, id)));
  EXPECT_OK(WriteFileAtomic(layout::BlobFileIn(files_dir, id), bytes, 0600));
  return bytes;
}

class ShippingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-ship-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ASSERT_TRUE(cluster::testing::MakeCa(dir_, "ca"));
    primary_tls_ = cluster::testing::MakeNode(dir_, "ca", "node-1");
    ASSERT_FALSE(primary_tls_.cert_file.empty());
    ASSERT_OK(MakeDirs(dir_ + "/primary"));
    primary_ = dir_ + "/primary/tenant.db";
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
    for (int i = 0; i < 2; ++i) {
      auto node = std::make_unique<FollowerNode>();
      std::string name = "node-" + std::to_string(i + 2);
      node->replicas = std::make_unique<Replicas>(dir_ + "/" + name + "/replicas");
      cluster::PeerTls tls = cluster::testing::MakeNode(dir_, "ca", name);
      FollowerNode* raw = node.get();
      // As a node's: a run of segments queued behind a stuck one is made
      // durable together.
      auto listener = cluster::PeerListener::StartForRuns(
          "127.0.0.1:0", tls, [raw](const std::vector<cluster::Message>& run) {
            if (raw->stuck) raw->unstuck.wait();
            std::vector<cluster::Message> answers = raw->replicas->HandleRun(run);
            std::lock_guard lock(raw->mu);
            for (cluster::Message& a : answers) {
              if (a.kind == kPageSumList && !raw->forged_sums.empty()) a.payload = raw->forged_sums;
            }
            return answers;
          });
      ASSERT_OK(listener);
      node->listener = std::move(listener).value();
      followers_.push_back(std::move(node));
    }
  }
  void TearDown() override {
    storage::repl::Detach(primary_);
    for (auto& f : followers_) {
      if (f->stuck.exchange(false)) f->unstick.set_value();
      f->listener->Stop();
    }
    fs::remove_all(dir_);
  }

  std::vector<FollowerLink> Links() {
    std::vector<FollowerLink> links;
    for (size_t i = 0; i < followers_.size(); ++i) {
      if (auto link = NewLink(i); link.link) links.push_back(std::move(link));
    }
    return links;
  }
  // A new connection to follower `i` ("node-<i + 2>").
  FollowerLink NewLink(size_t i) {
    auto client = cluster::PeerClient::Connect(
        "127.0.0.1:" + std::to_string(followers_[i]->listener->port()), primary_tls_);
    EXPECT_OK(client);
    if (!client.ok()) return {};
    return {"node-" + std::to_string(i + 2), std::move(client).value()};
  }
  std::string StateOf(const Shipper& shipper, const std::string& node) {
    for (const auto& f : shipper.Followers()) {
      if (f.node == node) return f.state;
    }
    return "absent";
  }

  // Opens the primary through the replication shim, its segments going to
  // `shipper`.
  // A primary that already holds data starts its chain from a random hash,
  // not zeros: an empty follower cannot take it without a snapshot.
  std::unique_ptr<storage::Database> OpenPrimary(Shipper& shipper) {
    ChainHead head;
    if (fs::exists(primary_)) head.hash = crypto::RandomBytes(kHashSize);
    recorder_ = std::make_shared<SegmentRecorder>(
        lineage_, 1, head,
        [&shipper](uint64_t seq, const std::string& s) { return shipper.Publish(seq, s); });
    storage::repl::Attach(primary_, recorder_);
    auto db =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    EXPECT_OK(db);
    if (!db.ok()) return nullptr;
    EXPECT_OK(
        (*db)->Exec("PRAGMA wal_autocheckpoint=16; CREATE TABLE IF NOT EXISTS t("
                    "id INTEGER PRIMARY KEY, body TEXT)"));
    return std::move(db).value();
  }

  // A snapshot for the followers that need one: a TRUNCATE checkpoint, then
  // the file and the chain head under one hold of the tenant's changes.
  // Returns the copy of the file for SendSnapshot. (Its own connection:
  // the tenant's writer may be busy.)
  std::string CutSnapshot(Shipper& shipper, size_t followers = 2) {
    auto db =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    EXPECT_OK(db);
    if (!db.ok()) return "";
    EXPECT_OK((*db)->Checkpoint());
    const std::string copy = primary_ + ".snapshot";
    EXPECT_OK(storage::repl::WithChangesHeld(primary_, [&] {
      SILO_ASSIGN_OR_RETURN(std::string bytes, ReadFile(primary_));
      SILO_RETURN_IF_ERROR(WriteFileAtomic(copy, bytes, 0600));
      EXPECT_EQ(shipper.BeginSnapshot(lineage_, 1, recorder_->head()), followers);
      return Status::Ok();
    }));
    return copy;
  }

  Status Insert(storage::Database& db, int id) {
    auto stmt = db.Prepare("INSERT INTO t(id, body) VALUES(?, ?)");
    if (!stmt.ok()) return stmt.status();
    return stmt->Bind(1, int64_t{id}).Bind(2, std::string(kNeedle) + std::string(500, 'y')).Run();
  }

  // Makes the primary's database, with row 1, before any replication; with
  // `pad_bytes` of random bytes besides (a file of several snapshot chunks).
  void CreateUnreplicated(int64_t pad_bytes = 0) {
    auto db = storage::Database::Open(primary_, *key_);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)"));
    ASSERT_OK(Insert(**db, 1));
    if (pad_bytes > 0) {
      ASSERT_OK((*db)->Exec("CREATE TABLE pad(b BLOB); INSERT INTO pad VALUES(randomblob(" +
                            std::to_string(pad_bytes) + "))"));
    }
  }

  // Sync mode, an ack timeout of 300 ms, each sync set recorded goes to
  // `recorded` (refused, as with etcd down, while `etcd_up` is false).
  static ShipperOptions RecordingSyncSets(std::vector<std::vector<std::string>>& recorded,
                                          bool& etcd_up) {
    ShipperOptions options{.sync = true, .ack_timeout = 300ms};
    options.record_sync_set = [&recorded,
                               &etcd_up](const std::vector<std::string>& nodes) -> Status {
      if (!etcd_up) return Unavailable("etcd down");
      recorded.push_back(nodes);
      return Status::Ok();
    };
    return options;
  }

  // Waits until every follower acknowledged the chain head.
  void WaitForFollowers(Shipper& shipper) {
    for (int wait = 0; wait < 4000; ++wait) {
      auto acked = shipper.AckedSeqs();
      if (std::all_of(acked.begin(), acked.end(),
                      [&](uint64_t seq) { return seq >= recorder_->head().seq; })) {
        return;
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "the followers did not catch up in 20 s";
  }

  // Takes over the copy `promoted` holds at `position`, as
  // ClusterMember::Promote does: its chain goes on under term 2 through
  // `next`, the promotion check's writes in it, then rows `first`..`last`
  // are inserted there. Returns the copy's database path.
  // With `bytes`, adds up the size of each segment of the new chain.
  std::string WriteOnPromotedCopy(Shipper& next, Replicas& promoted,
                                  const ReplicaPosition& position, int first, int last,
                                  size_t* bytes = nullptr) {
    recorder_ = std::make_shared<SegmentRecorder>(
        position.lineage, 2, ChainHead{position.seq, position.hash},
        [&next, bytes](uint64_t seq, const std::string& s) {
          if (bytes) *bytes += s.size();
          return next.Publish(seq, s);
        });
    const std::string copy = promoted.Dir(kTenant) + "/" + kReplicaDatabaseName;
    storage::repl::Attach(copy, recorder_);
    EXPECT_OK(CheckPromotable(promoted.Dir(kTenant), *key_, storage::repl::kReplicatedCipherVfs));
    auto db = storage::Database::Open(
        copy, *key_, {.create = false, .vfs = storage::repl::kReplicatedCipherVfs});
    EXPECT_OK(db);
    if (db.ok()) {
      for (int id = first; id <= last; ++id) EXPECT_OK(Insert(**db, id));
    }
    return copy;  // closed: checkpointed, its WAL gone, all of it recorded
  }

  // The primary commits rows 1..20 with both followers, then (with `blob`,
  // stores a blob first) rows 21..40 with node-3 away, and is lost; node-2's
  // copy is closed for promotion (with `idle`, closed while idle first,
  // opened again and closed while idle again). Where the copy stands, the
  // segments it applied last, and where node-3 stands.
  struct Lost {
    ReplicaPosition position;
    std::vector<std::string> recent;
    uint64_t behind = 0;
  };
  Lost LoseThePrimaryWithNode3Away(bool blob, bool idle = false) {
    {
      Shipper shipper(kTenant, ShipperOptions{.files_dir = dir_ + "/primary/files"}, Links());
      auto db = OpenPrimary(shipper);
      if (!db) return {};
      for (int id = 1; id <= 20; ++id) EXPECT_OK(Insert(*db, id));
      WaitForFollowers(shipper);
      shipper.RemoveFollower("node-3");  // away for what follows
      if (blob) {
        PutBlob(dir_ + "/primary/files", std::string(32, 'c'), 3000);
        EXPECT_OK(shipper.ShipBlob(std::string(32, 'c')));
      }
      for (int id = 21; id <= 40; ++id) EXPECT_OK(Insert(*db, id));
      WaitForFollowers(shipper);
      storage::repl::Detach(primary_);  // the primary dies
    }
    Lost lost;
    auto position = followers_[0]->replicas->Position(kTenant);
    EXPECT_OK(position);
    if (position.ok()) lost.position = *position;
    lost.behind = FollowerSeq(1);
    EXPECT_LT(lost.behind + 10, lost.position.seq);
    if (idle) {
      Replicas& replicas = *followers_[0]->replicas;
      EXPECT_EQ(replicas.CloseIdle(0ms), 1u);
      EXPECT_OK(replicas.Position(kTenant));  // opened again
      EXPECT_EQ(replicas.CloseIdle(0ms), 1u);
    }
    lost.recent = followers_[0]->replicas->Close(kTenant);
    return lost;
  }

  // Rows 41..`last` written on the promoted copy through `next` reach
  // node-3, streaming: with no snapshot, it ends byte for byte that copy.
  void ExpectNode3StreamsOnTo(Shipper& next, const Lost& lost, int last) {
    const std::string copy =
        WriteOnPromotedCopy(next, *followers_[0]->replicas, lost.position, 41, last);
    storage::repl::Detach(copy);
    WaitForFollowers(next);
    EXPECT_TRUE(next.NeedingSnapshot().empty());
    const std::string held = followers_[1]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
    EXPECT_TRUE(*ReadFile(held) == *ReadFile(copy))
        << "the follower's copy is not the promoted one";
    EXPECT_EQ(RowsIn(held), last);
  }

  // The rows of table t in the database at `path` (-1 when unreadable).
  int64_t RowsIn(const std::string& path) {
    auto db = storage::Database::Open(path, *key_, {.create = false});
    if (!db.ok()) return -1;
    auto count = (*db)->Prepare("SELECT count(*) FROM t");
    if (!count.ok() || !count->Step().ok()) return -1;
    return count->ColumnInt(0);
  }

  uint64_t FollowerSeq(int i) {
    auto p = followers_[i]->replicas->Position(kTenant);
    return p.ok() ? p->seq : 0;
  }

  std::string dir_;
  std::string primary_;
  std::string lineage_ = crypto::RandomBytes(kLineageSize);
  cluster::PeerTls primary_tls_;
  std::unique_ptr<crypto::SecretKey> key_;
  std::shared_ptr<SegmentRecorder> recorder_;
  std::vector<std::unique_ptr<FollowerNode>> followers_;

  Status CommitWithStuckFollowers(bool strict, std::vector<std::string>* sync_set);
};

TEST_F(ShippingTest, FollowersSnapshotWhileWritesGoOnThenHoldEveryAcknowledgedCommit) {
  // Over two snapshot chunks: the copy is sent a chunk at a time.
  CreateUnreplicated(int64_t{9} << 20);
  Shipper shipper(kTenant, ShipperOptions{}, Links());
  shipper.RequireSnapshot();  // the chain starts over a file that holds data
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(shipper.NeedingSnapshot().size(), 2u);

  // The snapshot is cut, and then, before and while it travels, the tenant
  // goes on writing: those segments queue for the followers and follow it.
  const std::string snapshot = CutSnapshot(shipper);
  ASSERT_GT(fs::file_size(snapshot), 2 * kSnapshotChunkBytes);
  for (int id = 2; id <= 100; ++id) ASSERT_OK(Insert(*db, id));
  std::thread writer([&] {
    auto second =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    ASSERT_OK(second);
    for (int id = 101; id <= 150; ++id) ASSERT_OK(Insert(**second, id));
  });
  ASSERT_OK(shipper.SendSnapshot(snapshot));
  writer.join();
  EXPECT_TRUE(shipper.NeedingSnapshot().empty());

  // Now every commit is answered only once a follower holds it.
  for (int id = 151; id <= 200; ++id) {
    ASSERT_OK(Insert(*db, id));
    uint64_t head = recorder_->head().seq;
    EXPECT_GE(std::max(FollowerSeq(0), FollowerSeq(1)), head)
        << "answered before any follower had it";
  }
  db.reset();                 // the last segments: checkpoint, WAL deleted
  WaitForFollowers(shipper);  // one of them acknowledged each after its commit was answered
  ASSERT_OK(shipper.MaintainSyncSet());  // the one not in it yet holds everything: it joins
  EXPECT_EQ(shipper.SyncSet(), (std::vector<std::string>{"node-2", "node-3"}));
  const uint64_t head = recorder_->head().seq;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(FollowerSeq(i), head);
    std::string copy = followers_[i]->replicas->Dir(kTenant);
    EXPECT_EQ(*ReadFile(copy + "/" + kReplicaDatabaseName), *ReadFile(primary_))
        << "follower " << i << " is not the primary, byte for byte";
    for (const auto& entry : fs::recursive_directory_iterator(copy)) {
      EXPECT_EQ(ReadFile(entry.path().string())->find(kNeedle), std::string::npos)
          << "plaintext in " << entry.path();
    }
  }
  // A copy opens with the key and holds all 200 rows.
  std::string copy = dir_ + "/promoted";
  fs::copy(followers_[0]->replicas->Dir(kTenant), copy);
  ASSERT_OK(CheckPromotable(copy, *key_));
  auto opened =
      storage::Database::Open(copy + "/" + kReplicaDatabaseName, *key_, {.create = false});
  ASSERT_OK(opened);
  auto count = (*opened)->Prepare("SELECT count(*) FROM t");
  ASSERT_OK(count);
  ASSERT_TRUE(*count->Step());
  EXPECT_EQ(count->ColumnInt(0), 200);
}

// A new chain over files the followers' copies already hold most of (as
// after a restart whose position could not be trusted): each follower is
// sent only the pages its copy lacks, and ends byte for byte the primary.
// One whose pages do not make the primary's file (here it says it holds
// that very file) refuses them, keeps its copy, and is sent the next
// snapshot whole.
TEST_F(ShippingTest, ACopyThatLeftTheChainIsSentOnlyThePagesThatDifferFromItsOwn) {
  CreateUnreplicated(int64_t{9} << 20);
  {
    Shipper first(kTenant, ShipperOptions{.sync = false}, Links());
    first.RequireSnapshot();
    auto db = OpenPrimary(first);
    ASSERT_NE(db, nullptr);
    const std::string snapshot = CutSnapshot(first);
    ASSERT_OK(first.SendSnapshot(snapshot));
    // Empty copies: each takes the file whole.
    EXPECT_EQ(first.snapshot_bytes_sent(), 2 * fs::file_size(snapshot));
    db.reset();
    WaitForFollowers(first);
    storage::repl::Detach(primary_);
  }
  lineage_ = crypto::RandomBytes(kLineageSize);
  Shipper second(kTenant, ShipperOptions{.sync = false}, Links());
  second.RequireSnapshot();
  auto db = OpenPrimary(second);
  ASSERT_NE(db, nullptr);
  for (int id = 2; id <= 30; ++id) ASSERT_OK(Insert(*db, id));
  const std::string snapshot = CutSnapshot(second);
  ASSERT_OK(second.SendSnapshot(snapshot));
  const uint64_t sent = second.snapshot_bytes_sent();
  EXPECT_GT(sent, 0u);
  EXPECT_LT(sent, fs::file_size(snapshot) / 8) << "sent " << sent;
  for (int id = 31; id <= 40; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(second);
  EXPECT_TRUE(second.NeedingSnapshot().empty());
  const std::string node3_db = followers_[1]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
  EXPECT_EQ(RowsIn(node3_db), 40);

  for (int id = 41; id <= 50; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(second);
  second.RequireSnapshot();
  const std::string again = CutSnapshot(second);
  PageSums forged{fs::file_size(again), ""};
  const std::string bytes = *ReadFile(again);
  for (size_t at = 0; at < bytes.size(); at += kPageSize) {
    forged.sums += PageSum(std::string_view(bytes).substr(at, kPageSize));
  }
  {
    std::lock_guard lock(followers_[1]->mu);
    followers_[1]->forged_sums = EncodePageSums(forged);
  }
  const std::string held = *ReadFile(node3_db);
  EXPECT_FALSE(second.SendSnapshot(again).ok());
  EXPECT_EQ(second.NeedingSnapshot(), std::vector<std::string>{"node-3"});
  EXPECT_TRUE(*ReadFile(node3_db) == held) << "a copy the pages did not make was installed";
  {
    std::lock_guard lock(followers_[1]->mu);
    followers_[1]->forged_sums.clear();
  }
  const uint64_t before = second.snapshot_bytes_sent();
  const std::string third = CutSnapshot(second, 1);
  ASSERT_OK(second.SendSnapshot(third));
  EXPECT_EQ(second.snapshot_bytes_sent() - before, fs::file_size(third)) << "not sent whole";
  // Only that one: once node-3 took a snapshot, it is sent pages again.
  for (int id = 51; id <= 55; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(second);
  second.RequireSnapshot();
  const uint64_t before_fourth = second.snapshot_bytes_sent();
  const std::string fourth = CutSnapshot(second, 2);
  ASSERT_OK(second.SendSnapshot(fourth));
  EXPECT_LT(second.snapshot_bytes_sent() - before_fourth, fs::file_size(fourth) / 8)
      << "a follower that once refused pages is sent every snapshot whole";
  db.reset();
  WaitForFollowers(second);
  EXPECT_TRUE(second.NeedingSnapshot().empty());
  for (int i = 0; i < 2; ++i) {
    const std::string copy = followers_[i]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
    EXPECT_TRUE(*ReadFile(copy) == *ReadFile(primary_)) << "follower " << i;
    EXPECT_EQ(RowsIn(copy), 55);
  }
}

// A former primary whose files stand at no position anyone can name (killed
// in the middle of a write) follows the node that took its tenant over: its
// files seed its empty copy (Replicas::SeedFrom), which takes no segment,
// and the snapshot that replaces them sends only the pages that differ,
// while the blob it holds stays the file it was seeded with. The files it
// was seeded from stay as they were (the operator's, under deposed/).
TEST_F(ShippingTest, AFormerPrimarysFilesSeedItsCopysSnapshot) {
  CreateUnreplicated(int64_t{9} << 20);
  const std::string files = dir_ + "/primary/files";
  const std::string blob_id(32, 'a');
  PutBlob(files, blob_id, 5000);
  // What the former primary left: its files as they were a few writes ago.
  const std::string deposed = dir_ + "/deposed";
  ASSERT_OK(MakeDirs(deposed));
  fs::copy(files, deposed + "/files", fs::copy_options::recursive);
  {
    auto db = storage::Database::Open(primary_, *key_);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Checkpoint());
  }
  fs::copy_file(primary_, deposed + "/tenant.db");
  const std::string deposed_bytes = *ReadFile(deposed + "/tenant.db");
  Replicas& node3 = *followers_[1]->replicas;
  ASSERT_OK(node3.SeedFrom(kTenant, deposed + "/tenant.db", deposed + "/files"));
  const std::string copy = node3.Dir(kTenant) + "/" + kReplicaDatabaseName;
  EXPECT_TRUE(*ReadFile(copy) == deposed_bytes);
  EXPECT_EQ(node3.Position(kTenant)->seq, 0u);
  // Not a copy of any chain: a lineage's first segment is refused.
  const std::string first = EncodeSegment(
      SegmentHeader{std::string(kLineageSize, 'x'), 1, 1, std::string(kHashSize, '\0')},
      {Op{OpKind::kWrite, FileId::kWal, 0, std::string(32, 'w')}});
  EXPECT_EQ(node3.Handle({kTenant, kSegment, 1, first}).kind, kNeedSnapshot);

  Shipper shipper(kTenant, ShipperOptions{.sync = false, .files_dir = files}, Links());
  shipper.RequireSnapshot();
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 2; id <= 20; ++id) ASSERT_OK(Insert(*db, id));
  const std::string snapshot = CutSnapshot(shipper);
  ASSERT_OK(shipper.SendSnapshot(snapshot));
  // node-2 (empty) takes the file whole; node-3 the pages that differ.
  const uint64_t size = fs::file_size(snapshot);
  EXPECT_GT(shipper.snapshot_bytes_sent(), size);
  EXPECT_LT(shipper.snapshot_bytes_sent(), size + size / 8);
  db.reset();
  WaitForFollowers(shipper);
  EXPECT_TRUE(*ReadFile(copy) == *ReadFile(primary_));
  EXPECT_EQ(RowsIn(copy), 20);
  EXPECT_TRUE(*ReadFile(deposed + "/tenant.db") == deposed_bytes) << "written through the link";
  // The blob it held was not sent: still the very file it was seeded with.
  const std::string held_blob = layout::BlobFileIn(node3.Dir(kTenant) + "/files", blob_id);
  EXPECT_EQ(fs::hard_link_count(held_blob), 2u);
}

// A commit while both followers have stopped answering (a pause, a dead
// disk): what Insert reports, and the sync set after it.
Status ShippingTest::CommitWithStuckFollowers(bool strict, std::vector<std::string>* sync_set) {
  Shipper shipper(kTenant, ShipperOptions{.sync = true, .ack_timeout = 300ms, .strict = strict},
                  Links());
  auto db = OpenPrimary(shipper);
  if (db == nullptr) return Internal("no primary");
  SILO_RETURN_IF_ERROR(Insert(*db, 1));
  SILO_RETURN_IF_ERROR(Insert(*db, 2));
  WaitForFollowers(shipper);
  SILO_RETURN_IF_ERROR(shipper.MaintainSyncSet());
  if (shipper.SyncSet().size() != 2) return Internal("the followers did not follow");
  for (auto& f : followers_) f->stuck = true;
  Status s = Insert(*db, 3);
  *sync_set = shipper.SyncSet();
  return s;
}

// Commits that wait outside the write lock (storage::repl::CommitWaits) may
// end their waits out of order. Here the later commit's wait ends first,
// with no follower holding it: the sync set empties (not strict) and it is
// answered. The earlier one's wait then finds a follower holding it; making
// that follower the set would confine the election to a copy that lacks
// the later, answered commit. It is answered and the set stays empty.
TEST_F(ShippingTest, AnEarlierCommitsWaitEndingLastDoesNotTakeTheSyncSetBack) {
  std::vector<std::vector<std::string>> recorded;
  ShipperOptions options{.sync = true, .ack_timeout = 300ms};
  options.record_sync_set = [&](const std::vector<std::string>& nodes) -> Status {
    recorded.push_back(nodes);
    return Status::Ok();
  };
  Shipper shipper(kTenant, options, Links());
  bool defer = false;
  std::vector<Shipper::Sent> sent;
  recorder_ = std::make_shared<SegmentRecorder>(lineage_, 1, ChainHead{},
                                                [&](uint64_t seq, const std::string& s) -> Status {
                                                  if (!defer) return shipper.Publish(seq, s);
                                                  sent.push_back(shipper.Send(seq, s));
                                                  return Status::Ok();
                                                });
  storage::repl::Attach(primary_, recorder_);
  followers_[0]->stuck = true;  // node-2 answers nothing from here on
  auto db = storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
  ASSERT_OK(db);
  ASSERT_OK((*db)->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)"));
  ASSERT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-3"});
  defer = true;
  ASSERT_OK(Insert(**db, 1));
  ASSERT_FALSE(sent.empty());
  const Shipper::Sent earlier = sent.back();
  for (int wait = 0; wait < 4000 && shipper.AckedSeqs()[1] < earlier.seq; ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_GE(shipper.AckedSeqs()[1], earlier.seq) << "node-3 did not acknowledge in 20 s";
  followers_[1]->stuck = true;
  ASSERT_OK(Insert(**db, 2));
  const Shipper::Sent later = sent.back();
  ASSERT_GT(later.seq, earlier.seq);
  EXPECT_OK(shipper.AwaitAck(later));
  EXPECT_TRUE(shipper.SyncSet().empty());
  const size_t records = recorded.size();
  EXPECT_OK(shipper.AwaitAck(earlier));
  EXPECT_TRUE(shipper.SyncSet().empty()) << "the set went back to a copy without the later commit";
  EXPECT_EQ(recorded.size(), records);
}

// The sync set may not hold every follower that streams: one that caught
// up joins only at the loop's next MaintainSyncSet. When all its members
// have left, the next commit waits for a follower that streams to hold it,
// and that follower becomes the set, rather than being answered with no
// copy anywhere (or refused, when strict). The ack timeout is far beyond
// node-3's answer: the test's verdict does not rest on it.
TEST_F(ShippingTest, ACommitAfterTheSyncSetsMembersLeftWaitsForAnotherFollower) {
  std::vector<std::vector<std::string>> recorded;
  bool etcd_up = true;
  ShipperOptions options = RecordingSyncSets(recorded, etcd_up);
  options.ack_timeout = 60s;
  Shipper shipper(kTenant, options, Links());
  followers_[1]->stuck = true;  // node-3 holds nothing of the first commit
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-2"});
  followers_[1]->stuck = false;  // node-3 catches up, but is not in the set
  followers_[1]->unstick.set_value();
  for (int wait = 0; wait < 4000 && shipper.AckedSeqs()[1] < recorder_->head().seq; ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(shipper.AckedSeqs()[1], recorder_->head().seq) << "node-3 did not catch up in 20 s";
  ASSERT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-2"});

  shipper.RemoveFollower("node-2");
  ASSERT_OK(Insert(*db, 1));
  EXPECT_EQ(FollowerSeq(1), recorder_->head().seq) << "answered before node-3 held it";
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-3"});
  ASSERT_FALSE(recorded.empty());
  EXPECT_EQ(recorded.back(), std::vector<std::string>{"node-3"});
}

// A snapshot whose copy cannot be read sends nothing, and its followers need
// one again (they do not wait for it behind a growing backlog).
TEST_F(ShippingTest, AnUnreadableSnapshotLeavesItsFollowersNeedingOne) {
  CreateUnreplicated();
  Shipper shipper(kTenant, ShipperOptions{}, Links());
  shipper.RequireSnapshot();
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  const std::string snapshot = CutSnapshot(shipper);
  EXPECT_TRUE(shipper.NeedingSnapshot().empty());  // both are taking it
  ASSERT_TRUE(fs::remove(snapshot));
  EXPECT_FALSE(shipper.SendSnapshot(snapshot).ok());
  EXPECT_EQ(shipper.NeedingSnapshot().size(), 2u);
}

TEST_F(ShippingTest, WithoutStrictACommitNoFollowerAcknowledgedIsAnsweredAndTheSyncSetEmpties) {
  std::vector<std::string> sync_set{"x"};
  EXPECT_OK(CommitWithStuckFollowers(/*strict=*/false, &sync_set));
  EXPECT_TRUE(sync_set.empty());
}

TEST_F(ShippingTest, StrictModeFailsACommitNoFollowerAcknowledged) {
  std::vector<std::string> sync_set{"x"};
  Status s = CommitWithStuckFollowers(/*strict=*/true, &sync_set);
  EXPECT_FALSE(s.ok()) << "a commit no follower had was reported as done";
  EXPECT_NE(s.message(), "the followers did not follow");
  // Not answered, so nothing to take back: the set stays.
  EXPECT_EQ(sync_set, (std::vector<std::string>{"node-2", "node-3"}));
}

TEST_F(ShippingTest, AFollowerBackOnANewLinkResumesFromTheRetainedSegmentsWithoutASnapshot) {
  Shipper shipper(kTenant, ShipperOptions{}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 20; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  // node-2 goes away (a restart) while commits go on; node-3 acknowledges.
  shipper.RemoveFollower("node-2");
  const uint64_t left_at = FollowerSeq(0);
  for (int id = 21; id <= 60; ++id) ASSERT_OK(Insert(*db, id));
  EXPECT_EQ(FollowerSeq(0), left_at);
  // Back on a new link: asked where it stands, it gets what it missed.
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(StateOf(shipper, "node-2"), "asking");
  EXPECT_EQ(shipper.Resume(), 1u);
  EXPECT_EQ(StateOf(shipper, "node-2"), "streaming");
  EXPECT_TRUE(shipper.NeedingSnapshot().empty());
  for (int id = 61; id <= 70; ++id) ASSERT_OK(Insert(*db, id));
  db.reset();
  WaitForFollowers(shipper);
  EXPECT_EQ(FollowerSeq(0), recorder_->head().seq);
  EXPECT_EQ(*ReadFile(followers_[0]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName),
            *ReadFile(primary_));
}

// A follower's copy taken over (as ClusterMember::Promote does): its chain
// goes on under a new term, with what the promotion check writes recorded
// in it, and a follower that holds the same position streams on with no
// snapshot, ending byte for byte the promoted copy. A copy emptied (as a
// refused one is) needs a snapshot.
TEST_F(ShippingTest, APromotedCopysChainGoesOnAndAFollowerAtItsPositionNeedsNoSnapshot) {
  {
    Shipper shipper(kTenant, ShipperOptions{}, Links());
    auto db = OpenPrimary(shipper);
    ASSERT_NE(db, nullptr);
    for (int id = 1; id <= 30; ++id) ASSERT_OK(Insert(*db, id));
    WaitForFollowers(shipper);
    storage::repl::Detach(primary_);  // the primary dies: its close is not recorded
  }
  Replicas& promoted = *followers_[0]->replicas;
  auto position = promoted.Position(kTenant);
  ASSERT_OK(position);
  promoted.Close(kTenant);
  auto recorded = Applier::RecordedPosition(promoted.Dir(kTenant));
  ASSERT_OK(recorded);
  ASSERT_EQ(recorded->seq, position->seq);
  ASSERT_EQ(FollowerSeq(1), position->seq);

  Shipper next(kTenant, ShipperOptions{.sync = false}, {NewLink(1)});
  const ChainHead from{position->seq, position->hash};
  next.ContinueFrom(from);
  // Asked before anything was written: it holds where the chain goes on.
  EXPECT_EQ(next.Resume(), 1u);
  EXPECT_EQ(StateOf(next, "node-3"), "streaming");
  const std::string copy = WriteOnPromotedCopy(next, promoted, *position, 31, 40);
  EXPECT_GT(recorder_->head().seq, position->seq);
  WaitForFollowers(next);
  EXPECT_TRUE(next.NeedingSnapshot().empty());
  const std::string held = followers_[1]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
  EXPECT_TRUE(*ReadFile(held) == *ReadFile(copy)) << "the follower's copy is not the promoted one";
  EXPECT_FALSE(fs::exists(held + "-wal"));
  EXPECT_EQ(RowsIn(held), 40);

  // Emptied, as a copy refused at promotion is: its key stays, its
  // position goes, and it is sent no segment until a snapshot.
  ASSERT_OK(followers_[1]->replicas->Reset(kTenant));
  auto emptied = followers_[1]->replicas->Position(kTenant);
  ASSERT_OK(emptied);
  EXPECT_EQ(emptied->seq, 0u);
  EXPECT_TRUE(emptied->lineage.empty());
  EXPECT_FALSE(fs::exists(held));
  next.SetFollower(NewLink(1));
  EXPECT_EQ(next.Resume(), 0u);
  EXPECT_EQ(next.NeedingSnapshot(), std::vector<std::string>{"node-3"});
}

// A follower behind the promoted copy when the primary was lost (it was
// away for the primary's last commits, one of which stored a blob) streams
// on from where it is with the segments the promoted copy applied last,
// given the blob first; without them, or with them not ending at the
// promoted position, it needs a snapshot.
TEST_F(ShippingTest, AFollowerBehindAPromotedCopyStreamsOnFromTheSegmentsTheCopyAppliedLast) {
  Lost lost = LoseThePrimaryWithNode3Away(/*blob=*/true);
  ASSERT_FALSE(HasFailure());
  Replicas& promoted = *followers_[0]->replicas;
  const ReplicaPosition& position = lost.position;
  const uint64_t behind = lost.behind;
  std::vector<std::string>& recent = lost.recent;
  ASSERT_FALSE(recent.empty());
  auto newest = DecodeSegment(recent.back());
  ASSERT_OK(newest);
  EXPECT_EQ(newest->header.seq, position.seq);
  EXPECT_EQ(newest->hash, position.hash);
  // Taken from memory once; the copy's files keep them (Applier::History).
  EXPECT_EQ(promoted.Close(kTenant), recent);
  const ChainHead from{position.seq, position.hash};
  const std::string copy_files = promoted.Dir(kTenant) + "/files";
  const std::string held_blob =
      layout::BlobFileIn(followers_[1]->replicas->Dir(kTenant) + "/files", std::string(32, 'c'));
  ASSERT_FALSE(fs::exists(held_blob));

  // Without the recent segments, or with them cut short of the promoted
  // position: a snapshot (and nothing sent meanwhile).
  {
    Shipper without(kTenant, ShipperOptions{.sync = false, .files_dir = copy_files}, {NewLink(1)});
    without.ContinueFrom(from);
    EXPECT_EQ(without.Resume(), 0u);
    EXPECT_EQ(without.NeedingSnapshot(), std::vector<std::string>{"node-3"});
    Shipper cut(kTenant, ShipperOptions{.sync = false, .files_dir = copy_files}, {NewLink(1)});
    cut.ContinueFrom(from, std::vector<std::string>(recent.begin(), recent.end() - 1));
    EXPECT_EQ(cut.Resume(), 0u);
    EXPECT_EQ(cut.NeedingSnapshot(), std::vector<std::string>{"node-3"});
  }
  EXPECT_EQ(FollowerSeq(1), behind);
  // Its snapshot gives it the blobs: none were sent ahead of it (so the
  // blob found below came with the resume).
  EXPECT_FALSE(fs::exists(held_blob)) << "a follower bound for a snapshot was sent blobs first";

  Shipper next(kTenant, ShipperOptions{.sync = false, .files_dir = copy_files}, {NewLink(1)});
  next.ContinueFrom(from, recent);
  EXPECT_EQ(next.Resume(), 1u);
  EXPECT_EQ(StateOf(next, "node-3"), "streaming");
  EXPECT_TRUE(fs::exists(held_blob)) << "the blob the missed commits name did not come first";
  ExpectNode3StreamsOnTo(next, lost, 50);
}

// A tenant idle for a while before its primary was lost: its copies were
// closed meanwhile (CloseIdle), and the promoted one still has the segments
// a follower away for the last commits needs to stream on.
TEST_F(ShippingTest, ACopyClosedWhileIdleIsPromotedWithTheSegmentsItAppliedLast) {
  Lost lost = LoseThePrimaryWithNode3Away(/*blob=*/false, /*idle=*/true);
  ASSERT_FALSE(HasFailure());
  ASSERT_FALSE(lost.recent.empty()) << "the idle copy's segments were not kept";
  Shipper next(kTenant, ShipperOptions{.sync = false}, {NewLink(1)});
  next.ContinueFrom({lost.position.seq, lost.position.hash}, lost.recent);
  EXPECT_EQ(next.Resume(), 1u);
  ExpectNode3StreamsOnTo(next, lost, 45);
}

// The promoted copy's segments are kept beyond retain_bytes until that
// many bytes of the new chain follow them (the promotion's own checkpoint
// may be MiBs): here retain_bytes is just what node-3 needs of them.
// Within it, node-3 (away when the primary was lost) still resumes after
// the new primary's first writes; past it, they go, and it needs a snapshot.
class SeededRetentionTest : public ShippingTest {
 protected:
  // Promotes node-2's copy under a shipper retaining only the bytes of the
  // segments node-3 lacks, writes rows 41..`last` there (their segments'
  // bytes to `written`), then links node-3 and asks it where it stands.
  // Returns how many resumed, or -1 when the setup failed.
  int PromoteWriteAndResume(int last, size_t* written, size_t* retained) {
    Lost lost = LoseThePrimaryWithNode3Away(/*blob=*/false);
    if (HasFailure() || lost.recent.empty()) return -1;
    *retained = 0;
    for (const std::string& encoded : lost.recent) {
      auto segment = DecodeSegment(encoded);
      if (segment.ok() && segment->header.seq > lost.behind) *retained += encoded.size();
    }
    next_ = std::make_unique<Shipper>(
        kTenant, ShipperOptions{.sync = false, .retain_bytes = *retained}, NoLinks());
    next_->ContinueFrom({lost.position.seq, lost.position.hash}, lost.recent);
    copy_ = WriteOnPromotedCopy(*next_, *followers_[0]->replicas, lost.position, 41, last, written);
    storage::repl::Detach(copy_);
    next_->SetFollower(NewLink(1));
    return static_cast<int>(next_->Resume());
  }
  static std::vector<FollowerLink> NoLinks() { return {}; }

  std::unique_ptr<Shipper> next_;
  std::string copy_;
};

TEST_F(SeededRetentionTest, AFollowerResumesFromThemWhileLessThanRetainBytesFollowThem) {
  size_t written = 0, retained = 0;
  ASSERT_EQ(PromoteWriteAndResume(42, &written, &retained), 1);
  // Together over the bound (the oldest would have gone), the new chain's
  // alone within it.
  EXPECT_LE(written, retained);
  EXPECT_EQ(StateOf(*next_, "node-3"), "streaming");
  WaitForFollowers(*next_);
  const std::string held = followers_[1]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
  EXPECT_TRUE(*ReadFile(held) == *ReadFile(copy_)) << "the follower's copy is not the promoted one";
  EXPECT_EQ(RowsIn(held), 42);
}

TEST_F(SeededRetentionTest, TheyGoOnceRetainBytesOfTheNewChainFollowThem) {
  size_t written = 0, retained = 0;
  ASSERT_EQ(PromoteWriteAndResume(100, &written, &retained), 0);
  EXPECT_GT(written, retained);
  EXPECT_EQ(next_->NeedingSnapshot(), std::vector<std::string>{"node-3"});
}

// Descriptors this process holds open on files under `dir`.
int OpenFilesUnder(const std::string& dir) {
  int n = 0;
  for (const auto& fd : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(fd.path(), ec).string();
    if (!ec && target.starts_with(dir + "/")) ++n;
  }
  return n;
}

// A copy no message reached for the idle time gives its descriptors back
// and reopens with the next segment, nothing lost.
TEST_F(ShippingTest, AnIdleCopyIsClosedAndReopensWithTheNextSegment) {
  Shipper shipper(kTenant, ShipperOptions{}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 10; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  Replicas& replicas = *followers_[0]->replicas;
  const std::string copy = replicas.Dir(kTenant);
  ASSERT_GT(OpenFilesUnder(copy), 0);
  EXPECT_EQ(replicas.CloseIdle(std::chrono::hours(1)), 0u);  // used just now
  EXPECT_GT(OpenFilesUnder(copy), 0);
  const std::string journal = copy + "/" + kReplicaJournalName;
  ASSERT_GT(fs::file_size(journal), 0u);  // the inserts' runs, journaled
  EXPECT_EQ(replicas.CloseIdle(0ms), 1u);
  EXPECT_EQ(OpenFilesUnder(copy), 0) << "a closed copy still holds descriptors";
  auto recorded = Applier::RecordedPosition(copy);
  ASSERT_OK(recorded);
  EXPECT_EQ(recorded->seq, recorder_->head().seq);
  // Nothing left to roll forward: what the journal holds is history, up to
  // the recorded position.
  std::vector<std::string> kept = Applier::History(copy, size_t{64} << 20);
  ASSERT_FALSE(kept.empty());
  auto last = DecodeSegment(kept.back());
  ASSERT_OK(last);
  EXPECT_EQ(last->header.seq, recorded->seq);
  EXPECT_EQ(
      fs::file_size(journal), 4 * kept.size() +
                                  [&] {
                                    size_t n = 0;
                                    for (const std::string& k : kept) n += k.size();
                                    return n;
                                  }())
      << "the journal holds records past its position";
  EXPECT_GT(OpenFilesUnder(followers_[1]->replicas->Dir(kTenant)), 0);  // only that node's
  for (int id = 11; id <= 20; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  EXPECT_GT(OpenFilesUnder(copy), 0);
  EXPECT_EQ(StateOf(shipper, "node-2"), "streaming");
  db.reset();
  WaitForFollowers(shipper);
  EXPECT_EQ(*ReadFile(copy + "/" + kReplicaDatabaseName), *ReadFile(primary_));
}

TEST_F(ShippingTest, AFollowerThatStoppedAnsweringAndLeftIsLetGoWithoutHangingTheShipper) {
  Shipper shipper(kTenant, ShipperOptions{.sync = false}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 5; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  // node-2 stops answering (a frozen machine) with a segment in flight,
  // then leaves (its lease ran out). The shipper holds the link's last
  // reference: letting it go breaks the link, whose reader answers the
  // segment's callback, which takes the shipper's lock.
  followers_[0]->stuck = true;
  ASSERT_OK(Insert(*db, 6));
  auto removed = std::async(std::launch::async, [&] { shipper.RemoveFollower("node-2"); });
  if (removed.wait_for(30s) != std::future_status::ready) {
    std::fprintf(stderr, "RemoveFollower did not return in 30 s: the shipper is deadlocked\n");
    std::abort();  // the stuck threads cannot be joined
  }
  EXPECT_EQ(StateOf(shipper, "node-2"), "absent");
  EXPECT_EQ(StateOf(shipper, "node-3"), "streaming");
  ASSERT_OK(Insert(*db, 7));  // the tenant goes on
  // The same when a link with an answer outstanding is replaced (the node
  // came back under a new incarnation).
  followers_[1]->stuck = true;
  ASSERT_OK(Insert(*db, 8));
  FollowerLink fresh = NewLink(1);
  ASSERT_NE(fresh.link, nullptr);
  auto replaced = std::async(std::launch::async, [&] { shipper.SetFollower(std::move(fresh)); });
  if (replaced.wait_for(30s) != std::future_status::ready) {
    std::fprintf(stderr, "SetFollower did not return in 30 s: the shipper is deadlocked\n");
    std::abort();
  }
  EXPECT_EQ(StateOf(shipper, "node-3"), "asking");
}

TEST_F(ShippingTest, EachStreamedSegmentsAcknowledgementTimeIsMeasuredOncePerFollower) {
  auto lag = std::make_shared<Histogram>(std::vector<double>{0.001, 0.01, 0.1, 1.0});
  Shipper shipper(kTenant, ShipperOptions{.sync = false, .ack_seconds = lag}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 10; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  // Both followers answered every segment: one measurement per answer. The
  // answers of one run of segments name the run's position, so a follower
  // may show it all acknowledged before its last answers are measured:
  // waited for (bounded), then counted exactly.
  const uint64_t answers = 2 * recorder_->head().seq;
  Histogram::Counts counts = lag->Read();
  for (int wait = 0; wait < 4000 && counts.count < answers; ++wait) {
    std::this_thread::sleep_for(5ms);
    counts = lag->Read();
  }
  EXPECT_EQ(counts.count, answers);
  EXPECT_GT(counts.sum, 0);
  EXPECT_LE(counts.cumulative.back(), counts.count);
}

TEST_F(ShippingTest, AFollowerThatMissedMoreThanIsRetainedTakesASnapshot) {
  // Only the newest segment is kept.
  Shipper shipper(kTenant, ShipperOptions{.retain_bytes = 1}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 5; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  shipper.RemoveFollower("node-2");
  for (int id = 6; id <= 10; ++id) ASSERT_OK(Insert(*db, id));
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 0u);
  EXPECT_EQ(shipper.NeedingSnapshot(), std::vector<std::string>{"node-2"});
  // One that missed nothing resumes even so (the newest is its hash).
  shipper.SetFollower(NewLink(1));
  EXPECT_EQ(shipper.Resume(), 1u);
  EXPECT_EQ(StateOf(shipper, "node-3"), "streaming");
}

// The tenants a node leads share one budget for the segments their
// shippers keep: past it, a shipper that sends another keeps only its
// newest, and what a shipper lets go of (dropped, or the shipper gone) is
// the budget's again.
TEST_F(ShippingTest, LedTenantsKeepTheirSegmentsWithinOneBudget) {
  auto budget = std::make_shared<RetainBudget>(size_t{1} << 20);
  // Another tenant's shipper holds all of it.
  auto other = std::make_unique<Shipper>("other", ShipperOptions{.sync = false, .budget = budget},
                                         std::vector<FollowerLink>{});
  other->Send(1, std::string(budget->total, 'x'));
  ASSERT_EQ(budget->held.load(), budget->total);

  Shipper shipper(kTenant, ShipperOptions{.budget = budget}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 5; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  EXPECT_EQ(shipper.Retained().size(), 1u) << "kept more than its newest past the budget";
  EXPECT_EQ(budget->held.load(), budget->total + shipper.RetainedBytes());
  // node-2 misses two commits: only the newest is kept, so a snapshot.
  shipper.RemoveFollower("node-2");
  ASSERT_OK(Insert(*db, 6));
  ASSERT_OK(Insert(*db, 7));
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 0u);
  EXPECT_EQ(shipper.NeedingSnapshot(), std::vector<std::string>{"node-2"});

  // The other tenant's shipper goes, and its bytes with it: this one keeps
  // its segments again, and node-3, away for two commits, resumes.
  other.reset();
  EXPECT_EQ(budget->held.load(), shipper.RetainedBytes());
  shipper.RemoveFollower("node-3");
  ASSERT_OK(Insert(*db, 8));
  ASSERT_OK(Insert(*db, 9));
  EXPECT_GT(shipper.Retained().size(), 2u);
  EXPECT_EQ(budget->held.load(), shipper.RetainedBytes());
  shipper.SetFollower(NewLink(1));
  EXPECT_EQ(shipper.Resume(), 1u);
  EXPECT_EQ(StateOf(shipper, "node-3"), "streaming");
}

// A closed tenant's shipper trimmed (once the closed ones keep too much)
// keeps no segment, only the newest one's position: a follower that holds
// it still resumes and streams on; one behind it takes a snapshot.
TEST_F(ShippingTest, AShipperThatKeepsNoSegmentStillResumesAFollowerHoldingItsNewest) {
  auto budget = std::make_shared<RetainBudget>();
  Shipper shipper(kTenant, ShipperOptions{.budget = budget}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 5; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  shipper.RemoveFollower("node-2");
  ASSERT_OK(Insert(*db, 6));
  shipper.TrimRetained();
  EXPECT_EQ(shipper.RetainedBytes(), 0u);
  EXPECT_TRUE(shipper.Retained().empty());
  EXPECT_EQ(budget->held.load(), 0u);

  shipper.RemoveFollower("node-3");  // as after a broken link: asked again
  shipper.SetFollower(NewLink(1));
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 1u);
  EXPECT_EQ(StateOf(shipper, "node-3"), "streaming");
  EXPECT_EQ(shipper.NeedingSnapshot(), std::vector<std::string>{"node-2"});
  ASSERT_OK(Insert(*db, 7));
  for (int wait = 0; wait < 4000 && FollowerSeq(1) < recorder_->head().seq; ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(FollowerSeq(1), recorder_->head().seq);
  db.reset();
  const std::string held = followers_[1]->replicas->Dir(kTenant) + "/" + kReplicaDatabaseName;
  EXPECT_EQ(RowsIn(held), RowsIn(primary_));
  EXPECT_EQ(RowsIn(held), 7);
}

TEST_F(ShippingTest, TheRecordedSyncSetAlwaysHoldsACopyOfEveryAnsweredCommit) {
  std::vector<std::vector<std::string>> recorded;
  bool etcd_up = true;
  const ShipperOptions options = RecordingSyncSets(recorded, etcd_up);
  Shipper shipper(kTenant, options, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  // The first commit a follower holds makes it a member (recorded before
  // the answer); the other joins once it holds everything.
  ASSERT_OK(Insert(*db, 1));
  ASSERT_FALSE(recorded.empty());
  WaitForFollowers(shipper);
  ASSERT_OK(shipper.MaintainSyncSet());
  EXPECT_EQ(recorded.back(), (std::vector<std::string>{"node-2", "node-3"}));
  const size_t records = recorded.size();
  ASSERT_OK(shipper.MaintainSyncSet());  // nothing new: nothing recorded
  // node-3 stops answering. A member (node-2) holds each commit: answered,
  // nothing recorded (no waiting on node-3).
  followers_[1]->stuck = true;
  ASSERT_OK(Insert(*db, 2));
  ASSERT_OK(Insert(*db, 3));
  EXPECT_EQ(recorded.size(), records);
  // Once node-3 answered nothing for the ack timeout it leaves the set
  // (node-2 holds everything).
  std::this_thread::sleep_for(2 * options.ack_timeout);
  ASSERT_OK(shipper.MaintainSyncSet());
  EXPECT_EQ(recorded.back(), std::vector<std::string>{"node-2"});
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-2"});
  // node-2 stops too: no follower holds the next commit, and the empty set
  // that answering it would need cannot be recorded: not answered.
  followers_[0]->stuck = true;
  etcd_up = false;
  EXPECT_FALSE(Insert(*db, 4).ok()) << "answered while the recorded set says node-2 has it";
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-2"});
}

// A re-key replaces the tenant's files under its chain: Retire records the
// sync set empty (no copy of the old files may be elected) and nothing
// adds a member again, neither the maintenance nor a commit's decision.
TEST_F(ShippingTest, ARetiredChainsSyncSetStaysEmpty) {
  std::vector<std::vector<std::string>> recorded;
  bool etcd_up = true;
  const ShipperOptions options = RecordingSyncSets(recorded, etcd_up);
  Shipper shipper(kTenant, options, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(Insert(*db, 1));
  WaitForFollowers(shipper);
  ASSERT_OK(shipper.MaintainSyncSet());
  ASSERT_EQ(shipper.SyncSet(), (std::vector<std::string>{"node-2", "node-3"}));
  // etcd does not take the empty set: not retired, nothing changed.
  etcd_up = false;
  EXPECT_FALSE(shipper.Retire().ok());
  EXPECT_EQ(shipper.SyncSet(), (std::vector<std::string>{"node-2", "node-3"}));
  etcd_up = true;
  ASSERT_OK(shipper.Retire());
  EXPECT_EQ(recorded.back(), std::vector<std::string>{});
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{});
  const size_t records = recorded.size();
  ASSERT_OK(shipper.MaintainSyncSet());
  ASSERT_OK(Insert(*db, 2));  // every follower holds it; none joins
  WaitForFollowers(shipper);
  ASSERT_OK(shipper.MaintainSyncSet());
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{});
  EXPECT_EQ(recorded.size(), records) << "a member was recorded after the chain was retired";
}

TEST_F(ShippingTest, AKeylessFollowersAcknowledgementAnswersNoSyncCommit) {
  std::vector<FollowerLink> links = Links();
  ASSERT_EQ(links.size(), 2u);
  links[0].promotable = false;  // node-2 has no master key: it could never take over
  Shipper shipper(kTenant, ShipperOptions{.sync = true, .ack_timeout = 300ms, .strict = true},
                  std::move(links));
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(Insert(*db, 1));
  WaitForFollowers(shipper);
  ASSERT_OK(shipper.MaintainSyncSet());
  EXPECT_EQ(shipper.SyncSet(), std::vector<std::string>{"node-3"});
  // Only the keyless copy answers now: the commit is not answered as done,
  // though that copy holds it.
  followers_[1]->stuck = true;
  const uint64_t before = FollowerSeq(0);
  EXPECT_FALSE(Insert(*db, 2).ok()) << "answered on a keyless copy's acknowledgement";
  for (int wait = 0; wait < 400 && FollowerSeq(0) == before; ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GT(FollowerSeq(0), before) << "the keyless copy was not sent the commit";
}

TEST_F(ShippingTest, ABlobReachesEveryFollowerAndOneThatMissedItTakesASnapshotNotTheSegments) {
  const std::string files = dir_ + "/primary/files";
  Shipper shipper(kTenant, ShipperOptions{.files_dir = files}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 10; ++id) ASSERT_OK(Insert(*db, id));
  WaitForFollowers(shipper);
  auto held = [&](int i, const std::string& id) -> std::string {
    auto bytes = ReadFile(layout::BlobFileIn(followers_[i]->replicas->Dir(kTenant) + "/files", id));
    return bytes.ok() ? *bytes : "";
  };

  // Several pieces: both copies hold it, byte for byte, before ShipBlob
  // returns (the commit that names it comes after).
  const std::string first_id(32, 'a');
  const std::string first = PutBlob(files, first_id, 2 * kBlobChunkBytes + 1000);
  ASSERT_OK(shipper.ShipBlob(first_id));
  EXPECT_EQ(held(0, first_id), first);
  EXPECT_EQ(held(1, first_id), first);
  EXPECT_FALSE(fs::exists(
      layout::BlobFileIn(followers_[0]->replicas->Dir(kTenant) + "/files", first_id) + ".partial"));

  // node-2 is away when the next blob is stored and its commit made.
  shipper.RemoveFollower("node-2");
  const std::string second_id = "0b" + std::string(30, '1');
  const std::string second = PutBlob(files, second_id, 5000);
  ASSERT_OK(shipper.ShipBlob(second_id));
  ASSERT_OK(Insert(*db, 11));
  EXPECT_EQ(held(1, second_id), second);
  EXPECT_EQ(held(0, second_id), "");
  // Back on a new link, the retained segments would continue its chain (as
  // in the test above), but they name a blob it lacks: it takes a snapshot,
  // which gives it the blob first.
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 0u);
  EXPECT_EQ(StateOf(shipper, "node-2"), "needs_snapshot");
  const std::string snapshot = CutSnapshot(shipper, 1);
  ASSERT_OK(shipper.SendSnapshot(snapshot));
  EXPECT_EQ(StateOf(shipper, "node-2"), "streaming");
  EXPECT_EQ(held(0, second_id), second);
  EXPECT_EQ(held(0, first_id), first);

  // A removal reaches the copies (best effort, so waited for).
  shipper.RemoveBlob(first_id, 1);
  for (int wait = 0; wait < 400 && (!held(0, first_id).empty() || !held(1, first_id).empty());
       ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(held(0, first_id), "");
  EXPECT_EQ(held(1, first_id), "");
  EXPECT_EQ(held(1, second_id), second);
}

TEST_F(ShippingTest, ABlobRemovedWhileAFollowerWasAwayLeavesItsCopyWhenItIsBack) {
  const std::string files = dir_ + "/primary/files";
  Shipper shipper(kTenant, ShipperOptions{.files_dir = files}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(Insert(*db, 1));
  WaitForFollowers(shipper);
  auto copy_files = [&](int i) { return followers_[i]->replicas->Dir(kTenant) + "/files"; };
  auto held = [&](int i, const std::string& id) {
    return fs::exists(layout::BlobFileIn(copy_files(i), id)) ||
           fs::exists(layout::BlobFileIn(copy_files(i), id) + ".partial");
  };
  const std::string kept_id = "1a" + std::string(30, '3');
  const std::string purged_id = "f0" + std::string(30, '4');
  PutBlob(files, kept_id, 4000);
  PutBlob(files, purged_id, 6000);
  ASSERT_OK(shipper.ShipBlob(kept_id));
  ASSERT_OK(shipper.ShipBlob(purged_id));
  // A new follower's copy may hold blobs from before it followed this
  // chain: node-3's stale blob goes at the first reconcile, with no other.
  const std::string stale_id = "7e" + std::string(30, '5');
  ASSERT_OK(MakeDirs(layout::BlobDirIn(copy_files(1), stale_id)));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(copy_files(1), stale_id), "sealed", 0600));
  EXPECT_EQ(shipper.ReconcileBlobs(1), 1u);
  EXPECT_FALSE(held(1, stale_id));
  EXPECT_TRUE(held(0, kept_id) && held(0, purged_id) && held(1, kept_id) && held(1, purged_id));

  // node-2 is away when a file is purged here: the removal reaches node-3
  // only. It also holds a piece of a blob this copy collected meanwhile.
  shipper.RemoveFollower("node-2");
  ASSERT_OK(Insert(*db, 2));
  fs::remove(layout::BlobFileIn(files, purged_id));
  shipper.RemoveBlob(purged_id, 1);
  for (int wait = 0; wait < 400 && held(1, purged_id); ++wait) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(held(1, purged_id));
  const std::string partial_id = "f0" + std::string(30, '6');
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(copy_files(0), partial_id) + ".partial", "x", 0600));
  // node-3 was reconciled and missed nothing since: it is not asked again
  // (what it holds beyond this copy's blobs stays until it misses one).
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(copy_files(1), stale_id), "sealed", 0600));
  EXPECT_EQ(shipper.ReconcileBlobs(1), 0u);
  EXPECT_TRUE(held(0, purged_id));  // away: not asked either

  // Back on a new link, resumed from the retained segments: the purged
  // blob and the collected piece leave its copy; the live blob stays.
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 1u);
  EXPECT_EQ(shipper.ReconcileBlobs(1), 2u);
  EXPECT_FALSE(held(0, purged_id));
  EXPECT_FALSE(held(0, partial_id));
  EXPECT_TRUE(held(0, kept_id));
  EXPECT_TRUE(held(1, kept_id));
  EXPECT_EQ(shipper.ReconcileBlobs(1), 0u);
}

TEST_F(ShippingTest, AFollowerThatRefusesABlobGetsNoLaterSegmentUntilItsSnapshot) {
  const std::string files = dir_ + "/primary/files";
  Shipper shipper(kTenant, ShipperOptions{.ack_timeout = 500ms, .files_dir = files}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(Insert(*db, 1));
  WaitForFollowers(shipper);
  // node-2 cannot write it (its blob directory is taken by a file).
  const std::string id = "cc" + std::string(30, '2');
  ASSERT_OK(MakeDirs(followers_[0]->replicas->Dir(kTenant) + "/files/b"));
  ASSERT_OK(WriteFileAtomic(followers_[0]->replicas->Dir(kTenant) + "/files/b/cc", "x", 0600));
  PutBlob(files, id, 3000);
  ASSERT_OK(shipper.ShipBlob(id));
  EXPECT_EQ(StateOf(shipper, "node-2"), "needs_snapshot");
  const uint64_t before = FollowerSeq(0);
  ASSERT_OK(Insert(*db, 2));  // the commit that names it: node-3 answers it
  for (int wait = 0; wait < 4000 && FollowerSeq(1) < recorder_->head().seq; ++wait) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(FollowerSeq(0), before);
  EXPECT_EQ(FollowerSeq(1), recorder_->head().seq);
}

// node-4: refuses the first run of messages it is handed (at least a
// blob's first piece) and holds every later run unanswered until Release
// (or its end); notes the blobs it was handed pieces of.
struct RefusingNode {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool was_released = false;
  std::atomic<bool> first_run{true};
  std::mutex mu;
  std::set<std::string> handed;  // blob ids
  std::unique_ptr<cluster::PeerListener> listener;

  void Release() {
    if (!std::exchange(was_released, true)) release.set_value();
  }
  bool Handed(const std::string& id) {
    std::lock_guard lock(mu);
    return handed.count(id) > 0;
  }
  ~RefusingNode() {
    Release();
    if (listener) listener->Stop();
  }
};

// Starts `node` and links the primary to it, as "node-4".
FollowerLink LinkRefusing(RefusingNode& node, const std::string& dir,
                          const cluster::PeerTls& primary_tls) {
  auto listener = cluster::PeerListener::StartForRuns(
      "127.0.0.1:0", cluster::testing::MakeNode(dir, "ca", "node-4"),
      [&node](const std::vector<cluster::Message>& run) {
        for (const auto& m : run) {
          auto chunk = DecodeBlobChunk(m.payload);
          std::lock_guard lock(node.mu);
          if (chunk.ok()) node.handed.insert(chunk->id);
        }
        const bool first = node.first_run.exchange(false);
        if (!first) node.released.wait();
        std::vector<cluster::Message> answers;
        for (const auto& m : run) answers.push_back({m.tenant, first ? kRefused : kAck, m.seq, ""});
        return answers;
      });
  EXPECT_OK(listener);
  if (!listener.ok()) return {};
  node.listener = std::move(listener).value();
  auto client = cluster::PeerClient::Connect("127.0.0.1:" + std::to_string(node.listener->port()),
                                             primary_tls);
  EXPECT_OK(client);
  if (!client.ok()) return {};
  return {"node-4", std::move(client).value()};
}

// A follower that refused a piece of a blob is given up at once: the
// pieces it still holds unanswered (a link's answers have no deadline) do
// not hold the upload up. Before, ShipBlob waited for them until the ack
// timeout: here an hour, so the upload would wait until they are answered.
TEST_F(ShippingTest, AFollowerThatRefusedABlobPieceIsNotWaitedForAnyLonger) {
  const std::string files = dir_ + "/primary/files";
  RefusingNode node4;
  std::vector<FollowerLink> links = Links();
  links.push_back(LinkRefusing(node4, dir_, primary_tls_));
  ASSERT_TRUE(links.back().link);
  Shipper shipper(kTenant, ShipperOptions{.ack_timeout = std::chrono::hours(1), .files_dir = files},
                  std::move(links));
  // Seven pieces fit the link's window, so none waits to be sent.
  const std::string id = "dd" + std::string(30, '4');
  const std::string bytes = PutBlob(files, id, 7 * kBlobChunkBytes);
  auto shipped = std::async(std::launch::async, [&] { return shipper.ShipBlob(id); });
  const bool answered = shipped.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  node4.Release();  // the held pieces are answered, whichever way it went
  EXPECT_TRUE(answered) << "the upload waited on a follower that had refused the blob";
  ASSERT_OK(shipped.get());
  EXPECT_EQ(StateOf(shipper, "node-4"), "needs_snapshot");
  EXPECT_EQ(StateOf(shipper, "node-2"), "streaming");
  auto held = ReadFile(layout::BlobFileIn(followers_[0]->replicas->Dir(kTenant) + "/files", id));
  ASSERT_OK(held);
  EXPECT_EQ(*held, bytes);
}

// A follower that needs a snapshot is sent no new blob (its snapshot gives
// it every blob it lacks): one that stopped answering, its link's window
// still full of an earlier blob's pieces, would otherwise hold each later
// upload up for the ack timeout (here an hour).
TEST_F(ShippingTest, ABlobIsNotSentToAFollowerThatNeedsASnapshot) {
  const std::string files = dir_ + "/primary/files";
  RefusingNode node4;
  std::vector<FollowerLink> links = Links();
  links.push_back(LinkRefusing(node4, dir_, primary_tls_));
  ASSERT_TRUE(links.back().link);
  Shipper shipper(kTenant, ShipperOptions{.ack_timeout = std::chrono::hours(1), .files_dir = files},
                  std::move(links));
  const std::string first_id = "ee" + std::string(30, '5');
  PutBlob(files, first_id, 7 * kBlobChunkBytes);
  ASSERT_OK(shipper.ShipBlob(first_id));  // answered: the test above
  ASSERT_EQ(StateOf(shipper, "node-4"), "needs_snapshot");
  const std::string id = "ef" + std::string(30, '6');
  const std::string bytes = PutBlob(files, id, 8 * kBlobChunkBytes);
  auto shipped = std::async(std::launch::async, [&] { return shipper.ShipBlob(id); });
  const bool answered = shipped.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  node4.Release();
  EXPECT_TRUE(answered) << "the upload waited on a follower that needs a snapshot";
  ASSERT_OK(shipped.get());
  EXPECT_FALSE(node4.Handed(id)) << "node-4 was handed pieces of the second blob";
  auto held = ReadFile(layout::BlobFileIn(followers_[0]->replicas->Dir(kTenant) + "/files", id));
  ASSERT_OK(held);
  EXPECT_EQ(*held, bytes);
  EXPECT_EQ(StateOf(shipper, "node-4"), "needs_snapshot");
}

// A resumable upload's part (files/u/<id>.part) as the primary's disk holds
// it after each request: the shipper sends what a request added, and a copy
// that missed some of it gets it whole, so every copy holds the part a
// client would resume from on it.
TEST_F(ShippingTest, AnUploadsPartReachesEveryFollowerAndACopyThatMissedSomeGetsItWhole) {
  const std::string files = dir_ + "/primary/files";
  Shipper shipper(kTenant, ShipperOptions{.files_dir = files}, Links());
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(Insert(*db, 1));
  WaitForFollowers(shipper);
  const std::string id = "5c" + std::string(30, '7');
  const std::string path = layout::UploadFileIn(files, id);
  ASSERT_OK(MakeDirs(files + "/u"));
  std::string part;
  // The primary's part grows to `size` (or is cut back to it), then the
  // bytes from `from` are shipped.
  auto write = [&](size_t size, uint64_t from) {
    if (size > part.size()) {
      part += crypto::RandomBytes(size - part.size());
    } else {
      part.resize(size);
    }
    EXPECT_OK(WriteFileAtomic(path, part, 0600));
    EXPECT_OK(shipper.ShipUploadPart(id, from));
  };
  auto held = [&](int i) -> std::string {
    auto bytes =
        ReadFile(layout::UploadFileIn(followers_[i]->replicas->Dir(kTenant) + "/files", id));
    return bytes.ok() ? *bytes : "<none>";
  };

  write(64, 0);  // the header, when the upload is made
  EXPECT_EQ(held(0), part);
  EXPECT_EQ(held(1), part);
  write(64 + 2 * kBlobChunkBytes + 500, 64);  // several pieces on the link
  EXPECT_EQ(held(0), part);
  EXPECT_EQ(held(1), part);

  // node-2 is away for one request; back, it is sent the next one's bytes
  // on a copy that lacks the one before: it is sent the part whole.
  shipper.RemoveFollower("node-2");
  write(part.size() + 3000, part.size());
  EXPECT_EQ(held(1), part);
  EXPECT_NE(held(0), part);
  shipper.SetFollower(NewLink(0));
  EXPECT_EQ(shipper.Resume(), 1u);  // from the retained segments: no snapshot
  ASSERT_EQ(StateOf(shipper, "node-2"), "streaming");
  write(part.size() + 4000, part.size());
  EXPECT_EQ(held(0), part) << "the copy that missed a request's bytes was not sent the part whole";
  EXPECT_EQ(held(1), part);

  // A request whose bytes failed their checksum is cut back here; the next
  // one's bytes follow from there, and each copy ends where this one does.
  const size_t cut = part.size() - 5000;
  write(cut, cut);
  write(cut + 100, cut);
  EXPECT_EQ(held(0), part);
  EXPECT_EQ(held(1), part);

  // The upload completes: the part is its blob. node-2's part is made the
  // blob where it is (the same file: its bytes did not travel again);
  // node-3's part was damaged, so it is sent the blob whole.
  auto copy_blob = [&](int i) {
    return layout::BlobFileIn(followers_[i]->replicas->Dir(kTenant) + "/files", id);
  };
  auto copy_part = [&](int i) {
    return layout::UploadFileIn(followers_[i]->replicas->Dir(kTenant) + "/files", id);
  };
  std::string damaged = part;
  damaged[damaged.size() / 2] ^= 1;
  ASSERT_OK(WriteFileAtomic(copy_part(1), damaged, 0600));
  struct stat before {};
  ASSERT_EQ(::stat(copy_part(0).c_str(), &before), 0);
  ASSERT_OK(MakeDirs(layout::BlobDirIn(files, id)));
  ASSERT_EQ(::rename(path.c_str(), layout::BlobFileIn(files, id).c_str()), 0);
  ASSERT_OK(shipper.ShipBlob(id, /*from_part=*/true));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(held(i), "<none>") << "a completed upload's part stayed on copy " << i;
    auto bytes = ReadFile(copy_blob(i));
    ASSERT_OK(bytes);
    EXPECT_EQ(*bytes, part) << "copy " << i;
  }
  struct stat after {};
  ASSERT_EQ(::stat(copy_blob(0).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the blob was sent again, not made of the part";
  EXPECT_EQ(StateOf(shipper, "node-2"), "streaming");
  EXPECT_EQ(StateOf(shipper, "node-3"), "streaming");
  // A part shipped late for a completed upload does not come back.
  ASSERT_OK(WriteFileAtomic(path, part.substr(0, 64), 0600));
  ASSERT_OK(shipper.ShipUploadPart(id, 0));
  EXPECT_EQ(held(0), "<none>");

  // Another upload is terminated here: its part leaves the copies (best
  // effort, so waited for).
  const std::string other = "5d" + std::string(30, '8');
  ASSERT_OK(WriteFileAtomic(layout::UploadFileIn(files, other), crypto::RandomBytes(64), 0600));
  ASSERT_OK(shipper.ShipUploadPart(other, 0));
  const std::string other_copy =
      layout::UploadFileIn(followers_[0]->replicas->Dir(kTenant) + "/files", other);
  EXPECT_TRUE(fs::exists(other_copy));
  shipper.RemoveUploadPart(other, 1);
  for (int wait = 0; wait < 400 && fs::exists(other_copy); ++wait) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(fs::exists(other_copy));
}

TEST(ReplicasTest, ARunOfSegmentsIsAcknowledgedOnlyAsFarAsItIsDurable) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::vector<std::string> chain;
  SegmentRecorder recorder(std::string(kLineageSize, 'r'), 1, ChainHead{},
                           [&](uint64_t, const std::string& encoded) {
                             chain.push_back(encoded);
                             return Status::Ok();
                           });
  recorder.Write(storage::repl::File::kWal, 0, std::string(32, 'h'));
  for (int i = 0; i < 5; ++i) {
    recorder.Write(storage::repl::File::kWal, 32 + i * (24 + 4096), std::string(4120, 'f'));
    ASSERT_OK(recorder.Sync(storage::repl::File::kWal));
  }
  std::string damaged = chain[4];
  damaged[damaged.size() / 2] ^= 1;
  auto segment = [&](uint64_t n, const std::string& payload) {
    return cluster::Message{"t1", kSegment, n, payload};
  };
  auto acked = [](const cluster::Message& m) -> uint64_t {
    if (m.kind != kAck) return 0;
    auto ack = DecodeAck(m.payload);
    return ack.ok() ? ack->first : 0;
  };
  {
    Replicas replicas(dir + "/replicas");
    // Deferred segments, a probe between them, then a damaged one: every
    // answer names a position that is durable by the time it goes, and the
    // damaged one does not undo the others.
    std::vector<cluster::Message> answers = replicas.HandleRun(
        {segment(1, chain[0]), segment(2, chain[1]), segment(3, chain[2]),
         cluster::Message{"t1", kProbe, 4, ""}, segment(5, chain[3]), segment(6, damaged)});
    ASSERT_EQ(answers.size(), 6u);
    EXPECT_EQ(acked(answers[0]), 1u);  // it starts the log: never deferred
    EXPECT_EQ(acked(answers[1]), 3u);
    EXPECT_EQ(acked(answers[2]), 3u);
    EXPECT_EQ(acked(answers[3]), 3u);
    EXPECT_EQ(acked(answers[4]), 4u);
    EXPECT_EQ(answers[5].kind, kRefused);
    for (size_t i = 0; i < answers.size(); ++i) EXPECT_EQ(answers[i].seq, i + 1);
  }
  // A restarted follower finds what it acknowledged.
  auto reopened = Applier::Open(dir + "/replicas/t1");
  ASSERT_OK(reopened);
  EXPECT_EQ((*reopened)->position().seq, 4u);
  EXPECT_EQ((*reopened)->position().wal_commit_frame, 4u);
  fs::remove_all(dir);
}

// Ids that are not blob ids (a path, upper case, one digit short) are
// refused by `send` and name no path under `dir`.
void ExpectBadIdsRefused(const std::function<cluster::Message(const std::string& id)>& send,
                         const std::string& dir) {
  for (const std::string& bad : {std::string("../../../../../../../../../../etc/x"),
                                 std::string(32, 'E'), std::string(31, 'e')}) {
    EXPECT_EQ(send(bad).kind, kRefused) << bad;
  }
  EXPECT_FALSE(fs::exists(dir + "/etc"));
}

TEST(ReplicasTest, AnUploadPartIsWrittenOnlyWhereItsIdSaysAndOnlyAfterWhatIsHeld) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  const std::string part = crypto::RandomBytes(3000);
  auto piece = [&](const std::string& id, uint64_t offset, size_t n) {
    BlobChunk c{id, offset, part.size(), part.substr(offset, n)};
    return replicas.Handle(cluster::Message{"t1", kUploadPart, offset + 1, EncodeBlobChunk(c)});
  };
  ExpectBadIdsRefused([&](const std::string& bad) { return piece(bad, 0, 1000); }, dir);
  const std::string id(32, 'c');
  const std::string path = layout::UploadFileIn(replicas.Dir("t1") + "/files", id);
  EXPECT_EQ(piece(id, 1000, 2000).kind, kNeedSnapshot);  // the sender sends it whole
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(piece(id, 0, 1000).kind, kAck);
  EXPECT_EQ(piece(id, 2000, 1000).kind, kNeedSnapshot);
  EXPECT_EQ(piece(id, 1000, 2000).kind, kAck);
  EXPECT_EQ(*ReadFile(path), part);
  fs::remove_all(dir);
}

TEST(ReplicasTest, ABlobIsKeptOnlyWhenItsPiecesArriveWholeAndInOrder) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  const std::string id(32, 'e');
  // Its header (files/blob.h) names key epoch 0 (bytes 12 to 15).
  std::string blob = crypto::RandomBytes(3000);
  blob.replace(12, 4, std::string(4, '\0'));
  const std::string path = layout::BlobFileIn(replicas.Dir("t1") + "/files", id);
  auto piece = [&](const std::string& blob_id, uint64_t offset, size_t n) {
    BlobChunk c{blob_id, offset, blob.size(), blob.substr(offset, n)};
    return replicas.Handle(cluster::Message{"t1", kBlobChunk, offset + 1, EncodeBlobChunk(c)});
  };
  ExpectBadIdsRefused([&](const std::string& bad) { return piece(bad, 0, 1000); }, dir);
  // A piece that does not follow what is there: start again, nothing kept.
  EXPECT_EQ(piece(id, 1000, 1000).kind, kNeedSnapshot);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(piece(id, 0, 1000).kind, kAck);
  EXPECT_FALSE(fs::exists(path));  // not whole yet
  // A piece past the blob's end is not one.
  BlobChunk past{id, 2900, blob.size(), std::string(200, 'x')};
  EXPECT_EQ(replicas.Handle(cluster::Message{"t1", kBlobChunk, 50, EncodeBlobChunk(past)}).kind,
            kRefused);
  EXPECT_EQ(piece(id, 1000, 1000).kind, kAck);
  EXPECT_EQ(piece(id, 2000, 1000).kind, kAck);
  EXPECT_EQ(*ReadFile(path), blob);
  EXPECT_FALSE(fs::exists(path + ".partial"));
  // Sent again (a ship and a snapshot's list that crossed): kept as it is.
  EXPECT_EQ(piece(id, 0, 1000).kind, kAck);
  EXPECT_EQ(*ReadFile(path), blob);

  // A list is answered with what the copy lacks or holds at another size.
  const std::string other(32, '7');
  auto want = [&](std::vector<BlobEntry> list) {
    cluster::Message answer =
        replicas.Handle(cluster::Message{"t1", kBlobList, 70, EncodeBlobList(list)});
    EXPECT_EQ(answer.kind, kBlobWant);
    return DecodeBlobIds(answer.payload).value();
  };
  EXPECT_EQ(want({{id, blob.size()}, {other, 10}}), std::vector<std::string>{other});
  EXPECT_EQ(want({{id, blob.size() + 1}}), std::vector<std::string>{id});
  EXPECT_EQ(want({{id, blob.size(), 1}}), std::vector<std::string>{id});  // sealed again
  EXPECT_EQ(replicas.Handle(cluster::Message{"t1", kBlobList, 71, "not a list"}).kind, kRefused);

  // Sealed again under key epoch 1 (a re-key on the primary): the same id
  // and size, another header. Written anew over the blob held, piece by
  // piece (the later pieces are not taken for the rest of a resend).
  std::string resealed = crypto::RandomBytes(blob.size());
  resealed.replace(12, 4, std::string("\0\0\0\1", 4));
  for (uint64_t at = 0; at < resealed.size(); at += 1000) {
    BlobChunk c{id, at, resealed.size(), resealed.substr(at, 1000)};
    EXPECT_EQ(replicas.Handle(cluster::Message{"t1", kBlobChunk, 90 + at, EncodeBlobChunk(c)}).kind,
              kAck);
    if (at == 0) {
      EXPECT_EQ(*ReadFile(path), blob) << "the blob held went before the new one was whole";
    }
  }
  EXPECT_EQ(*ReadFile(path), resealed);
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_EQ(want({{id, blob.size(), 1}}), std::vector<std::string>{});
  EXPECT_EQ(want({{id, blob.size(), 0}}), std::vector<std::string>{id});

  // A removal from a deposed primary (a term below the copy's) is refused.
  ASSERT_OK(Applier::Install(
      replicas.Dir("t1"), {std::string(kLineageSize, 'L'), 4, 0, std::string(kHashSize, '\0'), 0}));
  replicas.Close("t1");
  EXPECT_EQ(
      replicas.Handle(cluster::Message{"t1", kBlobRemove, 80, EncodeBlobRemove({3, id})}).kind,
      kRefused);
  EXPECT_TRUE(fs::exists(path));
  EXPECT_EQ(
      replicas.Handle(cluster::Message{"t1", kBlobRemove, 81, EncodeBlobRemove({4, id})}).kind,
      kAck);
  EXPECT_FALSE(fs::exists(path));
  fs::remove_all(dir);
}

TEST(ReplicasTest, AHeldBlobListNamesEachBlobOnceInOrderAfterItsCursor) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  auto held = [&](const std::vector<std::string>& cursor) -> std::vector<std::string> {
    cluster::Message answer =
        replicas.Handle(cluster::Message{"t1", kBlobHeld, 80, EncodeBlobIds(cursor)});
    EXPECT_EQ(answer.kind, kBlobHeldIds) << answer.payload;
    auto ids = DecodeBlobIds(answer.payload);
    return ids.ok() ? *ids : std::vector<std::string>{"undecodable"};
  };
  EXPECT_TRUE(held({}).empty());  // no blob was ever stored
  const std::string files = replicas.Dir("t1") + "/files";
  const std::vector<std::string> ids = {"0a" + std::string(30, '1'), "0a" + std::string(30, '2'),
                                        "c3" + std::string(30, '0'), "ff" + std::string(30, 'f')};
  for (const std::string& id : ids) {
    ASSERT_OK(MakeDirs(layout::BlobDirIn(files, id)));
  }
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, ids[3]), "whole", 0600));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, ids[0]), "whole", 0600));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, ids[0]) + ".partial", "again", 0600));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, ids[2]) + ".partial", "part", 0600));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, ids[1]), "whole", 0600));
  // Names that are not blobs are not listed.
  ASSERT_OK(WriteFileAtomic(layout::BlobDirIn(files, ids[1]) + "/notes.txt", "x", 0600));
  ASSERT_OK(WriteFileAtomic(layout::BlobDirIn(files, ids[1]) + "/0A" + std::string(30, '1') + ".sf",
                            "x", 0600));
  ASSERT_OK(MakeDirs(files + "/b/zz"));
  ASSERT_OK(WriteFileAtomic(files + "/b/zz/zz" + std::string(30, '0') + ".sf", "x", 0600));
  EXPECT_EQ(held({}), ids);
  EXPECT_EQ(held({ids[0]}), std::vector<std::string>(ids.begin() + 1, ids.end()));
  EXPECT_EQ(held({"0b" + std::string(30, '0')}),
            std::vector<std::string>(ids.begin() + 2, ids.end()));
  EXPECT_TRUE(held({ids[3]}).empty());
  // A cursor that is not one id is refused.
  EXPECT_EQ(
      replicas.Handle(cluster::Message{"t1", kBlobHeld, 81, EncodeBlobIds({ids[0], ids[1]})}).kind,
      kRefused);
  EXPECT_EQ(replicas.Handle(cluster::Message{"t1", kBlobHeld, 82, "../../etc/passwd"}).kind,
            kRefused);
  fs::remove_all(dir);
}

TEST(ReplicasTest, ATenantIdThatIsNotOneIsRefusedAndNamesNoPath) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  for (const std::string& bad :
       std::vector<std::string>{"../escape", "a/b", "", "UPPER", ".", std::string(65, 'a')}) {
    cluster::Message answer = replicas.Handle(cluster::Message{bad, kSegment, 1, "x"});
    EXPECT_EQ(answer.kind, kRefused) << bad;
  }
  EXPECT_FALSE(fs::exists(dir + "/escape"));
  EXPECT_FALSE(fs::exists(dir + "/replicas"));
  // A damaged segment for a real id: refused, nothing applied.
  cluster::Message answer = replicas.Handle(cluster::Message{"t1", kSegment, 1, "garbage"});
  EXPECT_EQ(answer.kind, kRefused);
  fs::remove_all(dir);
}

TEST(ReplicasTest, ASnapshotIsInstalledOnlyWhenItsChunksArriveWholeAndInOrder) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  const std::string file(3 * 1024, 'D');
  auto chunk = [&](uint64_t offset, size_t n) {
    SnapshotChunk c{std::string(kLineageSize, 'L'), 4,      9,
                    std::string(kHashSize, 'h'),    offset, file.size(),
                    file.substr(offset, n)};
    return cluster::Message{"t1", kSnapshotChunk, offset + 1, EncodeSnapshotChunk(c)};
  };
  const std::string db = replicas.Dir("t1") + "/" + kReplicaDatabaseName;
  EXPECT_EQ(replicas.Handle(chunk(0, 1024)).kind, kAck);
  // A chunk that skips ahead (one was lost): start again, nothing installed.
  EXPECT_EQ(replicas.Handle(chunk(2048, 1024)).kind, kNeedSnapshot);
  EXPECT_FALSE(fs::exists(db));
  EXPECT_EQ(replicas.Position("t1")->seq, 0u);
  // A chunk claiming bytes past the file's end is not one.
  SnapshotChunk past{std::string(kLineageSize, 'L'), 4,    9,
                     std::string(kHashSize, 'h'),    3000, file.size(),
                     std::string(200, 'x')};
  EXPECT_EQ(
      replicas.Handle(cluster::Message{"t1", kSnapshotChunk, 99, EncodeSnapshotChunk(past)}).kind,
      kRefused);
  EXPECT_FALSE(fs::exists(db));
  // Whole and in order: installed, at the snapshot's chain head.
  for (uint64_t offset = 0; offset < file.size(); offset += 1024) {
    ASSERT_EQ(replicas.Handle(chunk(offset, 1024)).kind, kAck);
  }
  EXPECT_EQ(*ReadFile(db), file);
  auto position = replicas.Position("t1");
  ASSERT_OK(position);
  EXPECT_EQ(position->seq, 9u);
  EXPECT_EQ(position->term, 4u);
  EXPECT_EQ(position->hash, std::string(kHashSize, 'h'));

  // A snapshot from a deposed primary (a lower term than the copy holds)
  // does not replace the copy, even whole.
  SnapshotChunk stale{
      std::string(kLineageSize, 'O'), 3, 50, std::string(kHashSize, 'o'), 0, 5, "STALE"};
  cluster::Message refused =
      replicas.Handle(cluster::Message{"t1", kSnapshotChunk, 100, EncodeSnapshotChunk(stale)});
  EXPECT_EQ(refused.kind, kRefused);
  EXPECT_NE(refused.payload.find("deposed"), std::string::npos) << refused.payload;
  EXPECT_EQ(*ReadFile(db), file);
  EXPECT_EQ(replicas.Position("t1")->term, 4u);
  fs::remove_all(dir);
}

TEST(ReplicasTest, ASnapshotSentAsPagesIsInstalledOnlyWhenTheyMakeThePrimarysFile) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  const std::string db = replicas.Dir("t1") + "/" + kReplicaDatabaseName;
  const std::string lineage(kLineageSize, 'L');
  // The copy holds 5 pages and a short one (a whole snapshot, at term 4).
  std::string held;
  for (char c : std::string("abcde")) held += std::string(kPageSize, c);
  held += "short";
  SnapshotChunk whole{lineage, 4, 9, std::string(kHashSize, 'h'), 0, held.size(), held};
  ASSERT_EQ(replicas.Handle({"t1", kSnapshotChunk, 1, EncodeSnapshotChunk(whole)}).kind, kAck);

  // It says what it holds: one sum per page, the short one too.
  cluster::Message answer = replicas.Handle({"t1", kPageSums, 2, ""});
  ASSERT_EQ(answer.kind, kPageSumList);
  auto sums = DecodePageSums(answer.payload);
  ASSERT_OK(sums);
  EXPECT_EQ(sums->size, held.size());
  ASSERT_EQ(sums->sums.size(), 6 * kPageSumBytes);
  EXPECT_EQ(sums->sums.substr(kPageSumBytes, kPageSumBytes), PageSum(std::string(kPageSize, 'b')));
  EXPECT_EQ(sums->sums.substr(5 * kPageSumBytes), PageSum("short"));

  // The primary's file: pages 1 and 3 changed, the short one now whole,
  // and one more. Sent as two spans, only what differs.
  std::string file = held.substr(0, 5 * kPageSize);
  file.replace(kPageSize, kPageSize, std::string(kPageSize, 'B'));
  file.replace(3 * kPageSize, kPageSize, std::string(kPageSize, 'D'));
  file += std::string(kPageSize, 'f') + std::string(kPageSize, 'g');
  auto span = [&](uint64_t offset, uint64_t length, std::vector<uint64_t> pages,
                  std::string digest) {
    SnapshotPages p{lineage, 5,      20,          std::string(kHashSize, 'n'),
                    offset,  length, file.size(), std::move(digest),
                    {}};
    for (uint64_t page : pages) {
      p.runs.push_back(PageRun{page * kPageSize, file.substr(page * kPageSize, kPageSize)});
    }
    return EncodeSnapshotPages(p);
  };
  const std::string digest = crypto::Sha256(file);
  const uint64_t half = 3 * kPageSize;
  auto send = [&](uint64_t seq, std::string payload) {
    return replicas.Handle({"t1", kSnapshotPages, seq, std::move(payload)});
  };

  // A run missing (page 5 not sent): the result is not the primary's file.
  // Refused, the copy as it was, nothing left behind.
  ASSERT_EQ(send(3, span(0, half, {1}, "")).kind, kAck);
  answer = send(4, span(half, file.size() - half, {3, 6}, digest));
  EXPECT_EQ(answer.kind, kRefused);
  EXPECT_NE(answer.payload.find("do not make"), std::string::npos) << answer.payload;
  EXPECT_EQ(*ReadFile(db), held);
  EXPECT_EQ(replicas.Position("t1")->term, 4u);
  EXPECT_FALSE(fs::exists(replicas.Dir("t1") + "/snapshot.partial"));

  // A span that skips ahead: start again.
  EXPECT_EQ(send(5, span(half, file.size() - half, {3, 5, 6}, digest)).kind, kNeedSnapshot);
  // Runs outside their span, overlapping, or a digest before the last span:
  // not a span of pages.
  EXPECT_EQ(send(6, span(0, half, {3}, "")).kind, kRefused);
  EXPECT_EQ(send(7, span(0, half, {1, 1}, "")).kind, kRefused);
  EXPECT_EQ(send(8, span(0, half, {1}, digest)).kind, kRefused);
  EXPECT_EQ(*ReadFile(db), held);

  // All that differs, in order: the primary's file, at its chain head.
  ASSERT_EQ(send(9, span(0, half, {1}, "")).kind, kAck);
  ASSERT_EQ(send(10, span(half, file.size() - half, {3, 5, 6}, digest)).kind, kAck);
  EXPECT_EQ(*ReadFile(db), file);
  auto position = replicas.Position("t1");
  ASSERT_OK(position);
  EXPECT_EQ(position->term, 5u);
  EXPECT_EQ(position->seq, 20u);

  // A deposed primary's pages (a lower term) change nothing.
  SnapshotPages stale{lineage,
                      4,
                      30,
                      std::string(kHashSize, 'o'),
                      0,
                      5,
                      5,
                      crypto::Sha256("STALE"),
                      {PageRun{0, "STALE"}}};
  answer = send(11, EncodeSnapshotPages(stale));
  EXPECT_EQ(answer.kind, kRefused);
  EXPECT_NE(answer.payload.find("deposed"), std::string::npos) << answer.payload;
  EXPECT_EQ(*ReadFile(db), file);
  fs::remove_all(dir);
}

TEST(ReplicasTest, TheTenantsFilesAreKeptWholeAndImpossibleOnesRefused) {
  char tmpl[] = "/tmp/silo-replicas-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Replicas replicas(dir + "/replicas");
  EXPECT_STATUS(StatusCode::kNotFound, replicas.Files("t1"));
  TenantFiles files{R"({"format":1,"id":"t1"})", std::string(72, '\x9c')};
  auto send = [&](const std::string& tenant, const std::string& payload) {
    return replicas.Handle(cluster::Message{tenant, kTenantFiles, 1, payload}).kind;
  };
  EXPECT_EQ(send("t1", EncodeTenantFiles(files)), kAck);
  auto kept = replicas.Files("t1");
  ASSERT_OK(kept);
  EXPECT_EQ(kept->meta, files.meta);
  EXPECT_EQ(kept->wrapped_key, files.wrapped_key);

  // Sizes that do not add up, an empty part or one over the limit: refused,
  // and what was kept stays.
  std::string lying = EncodeTenantFiles(files);
  lying[0] = static_cast<char>(0xff);
  EXPECT_EQ(send("t1", lying), kRefused);
  EXPECT_EQ(send("t1", EncodeTenantFiles({"", "k"})), kRefused);
  EXPECT_EQ(send("t1", EncodeTenantFiles({"m", ""})), kRefused);
  EXPECT_EQ(send("t1", EncodeTenantFiles({std::string(kMaxTenantFileBytes + 1, 'm'), "k"})),
            kRefused);
  EXPECT_EQ(send("t1", "short"), kRefused);
  EXPECT_EQ(replicas.Files("t1")->meta, files.meta);
  // Never under a name that is not a tenant id.
  EXPECT_EQ(send("../t1", EncodeTenantFiles(files)), kRefused);
  EXPECT_FALSE(fs::exists(dir + "/t1"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace silo::replication
