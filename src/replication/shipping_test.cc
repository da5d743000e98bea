// A primary's segments shipped over real mutual-TLS node links to two
// followers' keyless copies: snapshots while writes go on, sync and strict
// acknowledgement.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>

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
};

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
      auto listener = cluster::PeerListener::Start("127.0.0.1:0", tls, [raw](const auto& m) {
        if (raw->stuck) raw->unstuck.wait();
        return raw->replicas->Handle(m);
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
      auto client = cluster::PeerClient::Connect(
          "127.0.0.1:" + std::to_string(followers_[i]->listener->port()), primary_tls_);
      EXPECT_OK(client);
      if (client.ok()) {
        links.push_back({"node-" + std::to_string(i + 2), std::move(client).value()});
      }
    }
    return links;
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
  // Returns the file for SendSnapshot. (Its own connection: the tenant's
  // writer may be busy.)
  std::string CutSnapshot(Shipper& shipper) {
    auto db =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    EXPECT_OK(db);
    if (!db.ok()) return "";
    EXPECT_OK((*db)->Checkpoint());
    std::string bytes;
    EXPECT_OK(storage::repl::WithChangesHeld(primary_, [&] {
      SILO_ASSIGN_OR_RETURN(bytes, ReadFile(primary_));
      EXPECT_EQ(shipper.BeginSnapshot(lineage_, 1, recorder_->head()), 2u);
      return Status::Ok();
    }));
    return bytes;
  }

  Status Insert(storage::Database& db, int id) {
    auto stmt = db.Prepare("INSERT INTO t(id, body) VALUES(?, ?)");
    if (!stmt.ok()) return stmt.status();
    return stmt->Bind(1, int64_t{id}).Bind(2, std::string(kNeedle) + std::string(500, 'y')).Run();
  }

  // Makes the primary's database, with row 1, before any replication.
  void CreateUnreplicated() {
    auto db = storage::Database::Open(primary_, *key_);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)"));
    ASSERT_OK(Insert(**db, 1));
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
  CreateUnreplicated();
  Shipper shipper(kTenant, ShipperOptions{}, Links());
  shipper.RequireSnapshot();  // the chain starts over a file that holds data
  auto db = OpenPrimary(shipper);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(shipper.NeedingSnapshot().size(), 2u);

  // The snapshot is cut, and then, before and while it travels, the tenant
  // goes on writing: those segments queue for the followers and follow it.
  std::string bytes = CutSnapshot(shipper);
  for (int id = 2; id <= 100; ++id) ASSERT_OK(Insert(*db, id));
  std::thread writer([&] {
    auto second =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    ASSERT_OK(second);
    for (int id = 101; id <= 150; ++id) ASSERT_OK(Insert(**second, id));
  });
  ASSERT_OK(shipper.SendSnapshot(bytes));
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
  EXPECT_EQ(shipper.SyncSet().size(), 2u);
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
  if (shipper.SyncSet().size() != 2) return Internal("the followers did not follow");
  for (auto& f : followers_) f->stuck = true;
  Status s = Insert(*db, 3);
  *sync_set = shipper.SyncSet();
  return s;
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
  EXPECT_TRUE(sync_set.empty());
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
