// A primary writing through the replication shim and a follower applying its
// segments, on real SQLite files under the cipher.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "replication/applier.h"
#include "replication/follower.h"
#include "replication/live_head.h"
#include "replication/promotion.h"
#include "replication/protocol.h"
#include "replication/recorder.h"
#include "replication/segment.h"
#include "storage/database.h"
#include "storage/repl_vfs.h"

namespace silo::replication {
namespace {

namespace fs = std::filesystem;

constexpr char kNeedle[] = "REPL-NEEDLE-plaintext-5eed";

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-repl-XXXXXX";
    dir_ = mkdtemp(tmpl);
    primary_ = dir_ + "/primary/tenant.db";
    follower_ = dir_ + "/follower";
    ASSERT_OK(MakeDirs(dir_ + "/primary"));
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
  }
  void TearDown() override {
    storage::repl::Detach(primary_);
    fs::remove_all(dir_);
  }

  // Attaches a recorder to the primary's path whose segments go to
  // `publish`.
  void Record(SegmentRecorder::Publish publish) {
    storage::repl::Attach(primary_,
                          std::make_shared<SegmentRecorder>(crypto::RandomBytes(kLineageSize), 1,
                                                            ChainHead{}, std::move(publish)));
  }
  std::unique_ptr<storage::Database> OpenPrimary() {
    auto db =
        storage::Database::Open(primary_, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    EXPECT_OK(db);
    if (!db.ok()) return nullptr;
    // Small WAL generations: checkpoints and WAL restarts every few
    // commits, the order a follower must keep (notes: replication.md, P3).
    EXPECT_OK(
        (*db)->Exec("PRAGMA wal_autocheckpoint=8; CREATE TABLE IF NOT EXISTS t("
                    "id INTEGER PRIMARY KEY, body TEXT)"));
    return std::move(db).value();
  }
  Status Insert(storage::Database& db, int id) {
    auto stmt = db.Prepare("INSERT INTO t(id, body) VALUES(?, ?)");
    if (!stmt.ok()) return stmt.status();
    return stmt->Bind(1, int64_t{id}).Bind(2, std::string(kNeedle) + std::string(600, 'x')).Run();
  }

  // A copy of the follower's files (a promotion check may checkpoint what
  // it opens, so checks run on copies).
  std::string CopyFollower(const std::string& name) {
    std::string copy = dir_ + "/" + name;
    fs::remove_all(copy);
    fs::create_directories(copy);
    for (const char* f :
         {kReplicaDatabaseName, kReplicaWalName, kReplicaPositionName, kReplicaJournalName}) {
      if (fs::exists(follower_ + "/" + f)) fs::copy_file(follower_ + "/" + f, copy + "/" + f);
    }
    return copy;
  }

  // Opens a copy of the follower with the key, as a promotion would: the
  // number of rows, or -1.
  int64_t RowsInACopyOfTheFollower(const std::string& name) {
    std::string copy = CopyFollower(name);
    Status check = CheckPromotable(copy, *key_);
    EXPECT_OK(check) << name;
    if (!check.ok()) return -1;
    auto db = storage::Database::Open(copy + "/" + kReplicaDatabaseName, *key_, {.create = false});
    EXPECT_OK(db);
    if (!db.ok()) return -1;
    auto stmt = (*db)->Prepare("SELECT count(*) FROM t");
    EXPECT_OK(stmt);
    auto row = stmt->Step();
    EXPECT_OK(row);
    return (row.ok() && *row) ? stmt->ColumnInt(0) : -1;
  }

  // The segments of 60 single-row commits on the primary (with checkpoints
  // and WAL restarts every few), closed at the end; empty on a failure.
  std::vector<std::string> ChainOf60Commits() {
    // Held by the publish too, which stays attached until TearDown.
    auto chain = std::make_shared<std::vector<std::string>>();
    Record([chain](uint64_t, const std::string& encoded) {
      chain->push_back(encoded);
      return Status::Ok();
    });
    auto db = OpenPrimary();
    if (db == nullptr) return {};
    for (int id = 1; id <= 60; ++id) {
      if (Status s = Insert(*db, id); !s.ok()) {
        ADD_FAILURE() << s.ToString();
        return {};
      }
    }
    db.reset();
    return *chain;
  }

  // Runs of kRun commits that only append frames (a follower defers their
  // syncs and position): where one may start in `chain`.
  static constexpr size_t kRun = 4;
  static std::vector<size_t> RunStarts(const std::vector<std::string>& chain) {
    auto appends_frames = [](const std::string& encoded) {
      auto segment = DecodeSegment(encoded);
      if (!segment.ok()) return false;
      bool writes = false;
      for (const Op& op : segment->ops) {
        if (op.file != FileId::kWal || op.kind == OpKind::kTruncate || op.kind == OpKind::kDelete ||
            (op.kind == OpKind::kWrite && op.offset < 32)) {
          return false;
        }
        writes = writes || op.kind == OpKind::kWrite;
      }
      return writes;
    };
    std::vector<size_t> starts;
    for (size_t i = 1; i + kRun <= chain.size(); ++i) {
      bool all = true;
      for (size_t j = i; j < i + kRun; ++j) all = all && appends_frames(chain[j]);
      if (all) starts.push_back(i);
    }
    return starts;
  }

  // ChainOf60Commits with the primary's final bytes, its RunStarts (empty
  // on a failure) and a seed to choose runs with (printed).
  struct ChainWithRuns {
    std::vector<std::string> chain;
    std::string primary_bytes;
    std::vector<size_t> starts;
    unsigned seed = 0;
  };
  ChainWithRuns MakeChainWithRuns() {
    ChainWithRuns out;
    out.chain = ChainOf60Commits();
    if (out.chain.empty()) return out;
    out.primary_bytes = *ReadFile(primary_);
    out.starts = RunStarts(out.chain);
    out.seed = Seed();
    return out;
  }

  // The seed of a test's random choices: fixed, so that no verdict depends
  // on a draw; SEED=<n> in the environment tries another (printed).
  static unsigned Seed() {
    const char* given = std::getenv("SEED");
    const unsigned seed =
        given ? static_cast<unsigned>(std::strtoul(given, nullptr, 10)) : 20261207;
    std::printf("seed %u\n", seed);
    return seed;
  }

  std::string dir_;
  std::string primary_;
  std::string follower_;
  std::unique_ptr<crypto::SecretKey> key_;
};

TEST_F(ReplicationTest, TheFollowerIsAlwaysACommittedPrefixAndHoldsNoPlaintext) {
  auto applier = Applier::Open(follower_);
  ASSERT_OK(applier);
  int segments = 0;
  int checkpoints = 0;  // segments that wrote the database file
  Record([&](uint64_t, const std::string& encoded) {
    ++segments;
    auto segment = DecodeSegment(encoded);
    if (segment.ok()) {
      for (const Op& op : segment->ops) {
        if (op.file == FileId::kDatabase && op.kind == OpKind::kWrite) {
          ++checkpoints;
          break;
        }
      }
    }
    return (*applier)->Apply(encoded);
  });
  auto db = OpenPrimary();
  ASSERT_NE(db, nullptr);
  constexpr int kRows = 120;
  for (int id = 1; id <= kRows; ++id) {
    ASSERT_OK(Insert(*db, id));
    // Every commit was published and applied before it returned: the copy
    // holds exactly the rows committed so far, never fewer, never more.
    if (id % 10 == 0) {
      EXPECT_EQ(RowsInACopyOfTheFollower("copy-" + std::to_string(id)), id);
    }
  }
  EXPECT_GT(checkpoints, 10) << "the test did not exercise checkpoints";
  ASSERT_OK(db->Checkpoint());
  EXPECT_EQ(RowsInACopyOfTheFollower("after-checkpoint"), kRows);
  db.reset();  // the last connection checkpoints and deletes the WAL

  EXPECT_EQ(*ReadFile(follower_ + "/" + kReplicaDatabaseName), *ReadFile(primary_))
      << "the follower's database is not the primary's, byte for byte";
  EXPECT_FALSE(fs::exists(follower_ + "/" + kReplicaWalName));
  EXPECT_FALSE(fs::exists(primary_ + "-wal"));
  EXPECT_EQ((*applier)->position().seq, static_cast<uint64_t>(segments));
  for (const auto& entry : fs::recursive_directory_iterator(follower_)) {
    std::string bytes = *ReadFile(entry.path().string());
    EXPECT_EQ(bytes.find(kNeedle), std::string::npos) << "plaintext in " << entry.path();
  }
}

TEST_F(ReplicationTest, AFollowerStoppedMidSegmentResumesFromItsPosition) {
  const std::vector<std::string> chain = ChainOf60Commits();
  ASSERT_FALSE(chain.empty());
  const std::string primary_bytes = *ReadFile(primary_);
  ASSERT_GT(chain.size(), 20u);

  const unsigned seed = Seed();
  std::mt19937 rng(seed);
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(seed));
    fs::remove_all(follower_);
    // Not inside the first segment: a copy with no position that holds
    // files takes no segment (a former primary's files seed such a copy,
    // and only a snapshot replaces them), and the applier's journal rules
    // that state out after a crash: the first segment's bytes reach the
    // files only once it is durable in the journal, which the next open
    // rolls forward.
    size_t stop = std::uniform_int_distribution<size_t>(1, chain.size() - 1)(rng);
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      for (size_t i = 0; i < stop; ++i) ASSERT_OK((*a)->Apply(chain[i]));
    }
    // The follower dies inside segment `stop`: some of its ops reached the
    // files, its position was never written.
    auto segment = DecodeSegment(chain[stop]);
    ASSERT_OK(segment);
    size_t done = std::uniform_int_distribution<size_t>(0, segment->ops.size())(rng);
    for (size_t i = 0; i < done; ++i) {
      const Op& op = segment->ops[i];
      std::string path =
          follower_ + "/" + (op.file == FileId::kWal ? kReplicaWalName : kReplicaDatabaseName);
      if (op.kind == OpKind::kWrite) {
        if (!fs::exists(path)) {
          ASSERT_OK(WriteFileAtomic(path, ""));
        }
        std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
        out.seekp(op.offset);
        out.write(op.bytes.data(), static_cast<std::streamsize>(op.bytes.size()));
      } else if (op.kind == OpKind::kTruncate && fs::exists(path)) {
        fs::resize_file(path, static_cast<uintmax_t>(op.offset));
      } else if (op.kind == OpKind::kDelete) {
        fs::remove(path);
      }
    }
    auto a = Applier::Open(follower_);
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, stop);
    for (size_t i = stop; i < chain.size(); ++i) ASSERT_OK((*a)->Apply(chain[i]));
    EXPECT_EQ(*ReadFile(follower_ + "/" + kReplicaDatabaseName), primary_bytes);
  }
}

TEST_F(ReplicationTest, AFollowerKilledMidRunRollsForwardAndCanBePromotedWithoutAResend) {
  const ChainWithRuns runs = MakeChainWithRuns();
  ASSERT_GE(runs.starts.size(), 3u) << "the chain has too few runs of commits";
  std::mt19937 rng(runs.seed);
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(runs.seed));
    fs::remove_all(follower_);
    const size_t start =
        runs.starts[std::uniform_int_distribution<size_t>(0, runs.starts.size() - 1)(rng)];
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      for (size_t i = 0; i < start; ++i) ASSERT_OK((*a)->Apply(runs.chain[i]));
      for (size_t i = start; i < start + kRun; ++i) {
        ASSERT_OK((*a)->Apply(runs.chain[i], /*may_defer=*/true));
      }
      ASSERT_TRUE((*a)->deferred());
    }
    // Killed mid-run, inside its last segment: the run's frames written but
    // not synced, its position not recorded, the last write half done.
    auto last = DecodeSegment(runs.chain[start + kRun - 1]);
    ASSERT_OK(last);
    const Op* write = nullptr;
    for (const Op& op : last->ops) {
      if (op.kind == OpKind::kWrite) write = &op;
    }
    ASSERT_NE(write, nullptr);
    {
      std::fstream out(follower_ + "/" + kReplicaWalName,
                       std::ios::binary | std::ios::in | std::ios::out);
      const size_t half = write->bytes.size() / 2;
      out.seekp(write->offset + static_cast<std::streamoff>(half));
      const std::string zeros(write->bytes.size() - half, '\0');
      out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    auto recorded = Applier::RecordedPosition(follower_);
    ASSERT_OK(recorded);
    ASSERT_EQ(recorded->seq, start);
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      EXPECT_EQ((*a)->position().seq, start + kRun) << "the run was not rolled forward";
    }
    // Promotable as it is, with the run: no resend from its primary needed.
    EXPECT_OK(CheckPromotable(CopyFollower("rolled-" + std::to_string(round)), *key_));
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      for (size_t i = start + kRun; i < runs.chain.size(); ++i)
        ASSERT_OK((*a)->Apply(runs.chain[i]));
    }
    EXPECT_EQ(*ReadFile(follower_ + "/" + kReplicaDatabaseName), runs.primary_bytes);
  }
}

// A power loss keeps what was synced and any part of what was not. The
// worst cases: before a run's journal sync, the journal's records lost and
// every byte written to the files kept; after it, the journal kept and the
// WAL back at its last sync.
TEST_F(ReplicationTest, AFollowerThatLostPowerMidRunIsPromotableWithWhatItAcknowledged) {
  const ChainWithRuns runs = MakeChainWithRuns();
  ASSERT_GE(runs.starts.size(), 3u) << "the chain has too few runs of commits";
  std::mt19937 rng(runs.seed);
  const std::string wal = follower_ + "/" + kReplicaWalName;
  const std::string journal = follower_ + "/" + kReplicaJournalName;
  for (int round = 0; round < 4; ++round) {
    const bool synced = round % 2 == 1;
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(runs.seed));
    fs::remove_all(follower_);
    const size_t start =
        runs.starts[std::uniform_int_distribution<size_t>(0, runs.starts.size() - 1)(rng)];
    std::string wal_at_last_sync;
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      for (size_t i = 0; i < start; ++i) ASSERT_OK((*a)->Apply(runs.chain[i]));
      wal_at_last_sync = *ReadFile(wal);  // segment `start - 1` was recorded: all synced
      for (size_t i = start; i < start + kRun; ++i) {
        ASSERT_OK((*a)->Apply(runs.chain[i], /*may_defer=*/true));
      }
      if (synced) {
        ASSERT_OK((*a)->Flush());  // acknowledged from here
      }
    }
    if (synced) {
      ASSERT_OK(WriteFileAtomic(wal, wal_at_last_sync));
    } else {
      ASSERT_OK(WriteFileAtomic(journal, ""));
    }
    const size_t expected = synced ? start + kRun : start;
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      EXPECT_EQ((*a)->position().seq, expected);
    }
    EXPECT_OK(CheckPromotable(CopyFollower("power-" + std::to_string(round)), *key_))
        << "a WAL frame its journal did not hold survived";
    {
      auto a = Applier::Open(follower_);
      ASSERT_OK(a);
      for (size_t i = expected; i < runs.chain.size(); ++i) ASSERT_OK((*a)->Apply(runs.chain[i]));
    }
    EXPECT_EQ(*ReadFile(follower_ + "/" + kReplicaDatabaseName), runs.primary_bytes);
  }
}

TEST_F(ReplicationTest, AFlippedByteInTheFollowersWalRefusesPromotion) {
  auto applier = Applier::Open(follower_);
  ASSERT_OK(applier);
  Record([&](uint64_t, const std::string& encoded) { return (*applier)->Apply(encoded); });
  auto db = OpenPrimary();
  ASSERT_NE(db, nullptr);
  ASSERT_OK(db->Exec("PRAGMA wal_autocheckpoint=0"));
  for (int id = 1; id <= 6; ++id) ASSERT_OK(Insert(*db, id));
  ASSERT_GT((*applier)->position().wal_commit_frame, 6u);
  ASSERT_OK(CheckPromotable(CopyFollower("intact"), *key_));

  // A flip in frame 1's page: SQLite would end the log there and silently
  // drop every later commit. The check sees the shortfall.
  std::string copy = CopyFollower("flipped");
  std::string wal_path = copy + "/" + kReplicaWalName;
  std::string wal = *ReadFile(wal_path);
  wal[32 + 24 + 100] ^= 0x01;
  ASSERT_OK(WriteFileAtomic(wal_path, wal));
  Status s = CheckPromotable(copy, *key_);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("needs a resync"), std::string::npos);
}

TEST_F(ReplicationTest, APrimarysLiveHeadIsCleanAtEachCutOnlyWhileItsFilesAreThat) {
  auto applier = Applier::Open(follower_);
  ASSERT_OK(applier);
  auto recorder = std::make_shared<SegmentRecorder>(
      crypto::RandomBytes(kLineageSize), 1, ChainHead{},
      [&](uint64_t, const std::string& encoded) { return (*applier)->Apply(encoded); });
  recorder->SetCommitFrame(0);  // no WAL yet
  auto live = LiveHead::Open(primary_);
  ASSERT_OK(live);
  recorder->KeepLiveHead(std::move(live).value());
  EXPECT_FALSE(LiveHead::Read(primary_).has_value()) << "nothing is known before the first cut";
  storage::repl::Attach(primary_, recorder);
  auto db = OpenPrimary();
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 20; ++id) {
    ASSERT_OK(Insert(*db, id));
    // What a process killed now leaves: its files at the follower's
    // position, commit frame included (checkpoints and WAL restarts among).
    auto at = LiveHead::Read(primary_);
    ASSERT_TRUE(at.has_value()) << id;
    const ReplicaPosition& copy = (*applier)->position();
    EXPECT_EQ(at->lineage, copy.lineage);
    EXPECT_EQ(at->seq, copy.seq);
    EXPECT_EQ(at->hash, copy.hash);
    EXPECT_EQ(at->wal_commit_frame, copy.wal_commit_frame) << id;
  }
  // A change under way (the next write is about to reach the disk).
  recorder->BeforeChange();
  EXPECT_FALSE(LiveHead::Read(primary_).has_value()) << "dirty is not a position";
  ASSERT_OK(Insert(*db, 21));
  ASSERT_TRUE(LiveHead::Read(primary_).has_value());
  // A file changed behind the recorder's back (another program, a restore).
  ASSERT_GT(fs::file_size(primary_ + "-wal"), 0u);
  {
    std::ofstream wal(primary_ + "-wal", std::ios::app | std::ios::binary);
    wal << '\0';
  }
  EXPECT_FALSE(LiveHead::Read(primary_).has_value()) << "a changed WAL";
  ASSERT_OK(Insert(*db, 22));  // SQLite overwrites from the last commit on
  ASSERT_TRUE(LiveHead::Read(primary_).has_value());
  // A damaged record.
  std::string record = *ReadFile(LiveHead::FileOf(primary_));
  record[60] ^= 0x01;
  ASSERT_OK(WriteFileAtomic(LiveHead::FileOf(primary_), record));
  EXPECT_FALSE(LiveHead::Read(primary_).has_value()) << "a damaged record";
}

TEST_F(ReplicationTest, AClosedPrimarysFilesBecomeACopyAtItsHeadThatTheChainGoesOnFrom) {
  const std::string lineage = crypto::RandomBytes(kLineageSize);
  std::vector<std::string> chain;
  storage::repl::Attach(
      primary_, std::make_shared<SegmentRecorder>(lineage, 1, ChainHead{},
                                                  [&chain](uint64_t, const std::string& encoded) {
                                                    chain.push_back(encoded);
                                                    return Status::Ok();
                                                  }));
  const std::string files = dir_ + "/primary/files";
  ASSERT_OK(MakeDirs(fs::path(layout::BlobFileIn(files, "b0b")).parent_path().string()));
  ASSERT_OK(WriteFileAtomic(layout::BlobFileIn(files, "b0b"), "sealed blob"));
  ASSERT_OK(MakeDirs(fs::path(layout::UploadFileIn(files, "up1")).parent_path().string()));
  ASSERT_OK(WriteFileAtomic(layout::UploadFileIn(files, "up1"), "part of an upload"));
  const std::string tenant_files = EncodeTenantFiles({"the meta", "the wrapped key"});
  Replicas replicas(dir_ + "/replicas");
  auto db = OpenPrimary();
  ASSERT_NE(db, nullptr);
  for (int id = 1; id <= 30; ++id) ASSERT_OK(Insert(*db, id));

  // With a WAL that holds frames (files a process that died left): the WAL
  // comes too, and the position with its commit frame.
  ASSERT_GT(fs::file_size(primary_ + "-wal"), 0u);
  ReplicaPosition at{.lineage = lineage,
                     .term = 1,
                     .seq = 1,
                     .hash = std::string(kHashSize, 'h'),
                     .wal_commit_frame = 7};
  ASSERT_OK(replicas.AdoptLed("t1", primary_, files, tenant_files, at));
  EXPECT_TRUE(fs::equivalent(replicas.Dir("t1") + "/" + kReplicaWalName, primary_ + "-wal"));
  auto with_wal = Applier::RecordedPosition(replicas.Dir("t1"));
  ASSERT_OK(with_wal);
  EXPECT_EQ(with_wal->wal_commit_frame, 7u);
  ASSERT_OK(replicas.Drop("t1"));
  ASSERT_TRUE(fs::exists(primary_ + "-wal")) << "a dropped copy removes its links only";

  // Closed (the WAL removed): a copy at the head, of the very files.
  db.reset();
  ASSERT_FALSE(chain.empty());
  auto last = DecodeSegment(chain.back());
  ASSERT_OK(last);
  at = {.lineage = lineage, .term = 1, .seq = chain.size(), .hash = last->hash};
  ASSERT_OK(replicas.AdoptLed("t1", primary_, files, tenant_files, at));
  const std::string copy = replicas.Dir("t1");
  auto recorded = Applier::RecordedPosition(copy);
  ASSERT_OK(recorded);
  EXPECT_EQ(recorded->lineage, lineage);
  EXPECT_EQ(recorded->seq, chain.size());
  EXPECT_EQ(recorded->hash, last->hash);
  EXPECT_EQ(recorded->wal_commit_frame, 0u);
  EXPECT_EQ(fs::status(copy + "/" + kReplicaDatabaseName).type(), fs::file_type::regular);
  EXPECT_TRUE(fs::equivalent(copy + "/" + kReplicaDatabaseName, primary_));
  EXPECT_TRUE(
      fs::equivalent(layout::BlobFileIn(copy + "/files", "b0b"), layout::BlobFileIn(files, "b0b")));
  EXPECT_FALSE(fs::exists(layout::UploadFileIn(copy + "/files", "up1")))
      << "an upload's part may still be written by its request: never shared";
  auto kept = replicas.Files("t1");
  ASSERT_OK(kept);
  EXPECT_EQ(kept->meta, "the meta");
  EXPECT_EQ(kept->wrapped_key, "the wrapped key");

  // The primary's directory goes (a handover moves it away); a node that
  // held the same files goes on with the chain under a new term, and the
  // copy takes each segment, ending byte for byte its files.
  const std::string target = dir_ + "/target/tenant.db";
  ASSERT_OK(MakeDirs(dir_ + "/target"));
  fs::copy_file(primary_, target);
  storage::repl::Detach(primary_);
  fs::remove_all(dir_ + "/primary");
  auto applier = Applier::Open(copy);
  ASSERT_OK(applier);
  int applied = 0;
  storage::repl::Attach(
      target, std::make_shared<SegmentRecorder>(lineage, 2, ChainHead{at.seq, at.hash},
                                                [&](uint64_t, const std::string& encoded) {
                                                  ++applied;
                                                  return (*applier)->Apply(encoded);
                                                }));
  {
    auto next =
        storage::Database::Open(target, *key_, {.vfs = storage::repl::kReplicatedCipherVfs});
    ASSERT_OK(next);
    for (int id = 31; id <= 40; ++id) ASSERT_OK(Insert(**next, id));
  }
  storage::repl::Detach(target);
  EXPECT_GE(applied, 10);
  EXPECT_EQ((*applier)->position().seq, at.seq + static_cast<uint64_t>(applied));
  EXPECT_EQ(*ReadFile(copy + "/" + kReplicaDatabaseName), *ReadFile(target));
  EXPECT_EQ(*ReadFile(layout::BlobFileIn(copy + "/files", "b0b")), "sealed blob");
}

}  // namespace
}  // namespace silo::replication
