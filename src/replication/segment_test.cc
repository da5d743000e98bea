// Segments and the applier's chain rules, without SQLite.
#include "replication/segment.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "base/file_util.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "replication/applier.h"
#include "replication/follower.h"
#include "replication/protocol.h"
#include "replication/recorder.h"

namespace silo::replication {
namespace {

namespace fs = std::filesystem;
using storage::repl::File;

SegmentHeader Header(uint64_t seq, std::string prev_hash) {
  return SegmentHeader{std::string(kLineageSize, 'L'), 7, seq, std::move(prev_hash)};
}

std::vector<Op> SomeOps() {
  return {Op{OpKind::kWrite, FileId::kWal, 32, std::string(24, '\x01')},
          Op{OpKind::kWrite, FileId::kWal, 56, std::string(4096, '\x02')},
          Op{OpKind::kTruncate, FileId::kDatabase, 8192, {}},
          Op{OpKind::kSync, FileId::kWal, 0, {}}, Op{OpKind::kDelete, FileId::kWal, 0, {}}};
}

TEST(SegmentTest, RoundTripsAndRefusesEveryDamagedOrShortenedSegment) {
  std::string hash;
  std::string encoded = EncodeSegment(Header(1, std::string(kHashSize, '\0')), SomeOps(), &hash);
  auto decoded = DecodeSegment(encoded);
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->ops, SomeOps());
  EXPECT_EQ(decoded->header.seq, 1u);
  EXPECT_EQ(decoded->header.term, 7u);
  EXPECT_EQ(decoded->hash, hash);

  for (size_t i = 0; i < encoded.size(); ++i) {
    std::string bad = encoded;
    bad[i] ^= 0x10;
    EXPECT_EQ(DecodeSegment(bad).status().code(), StatusCode::kDataLoss) << "byte " << i;
  }
  for (size_t n = 0; n < encoded.size(); n += 7) {
    EXPECT_FALSE(DecodeSegment(encoded.substr(0, n)).ok()) << "first " << n << " bytes";
  }
  EXPECT_FALSE(DecodeSegment(encoded + "x").ok());
}

TEST(SegmentTest, RecordsGiveBackEachWholeSegmentInOrderAndStopAtATornOne) {
  std::string first_hash;
  const std::string first =
      EncodeSegment(Header(1, std::string(kHashSize, '\0')), SomeOps(), &first_hash);
  const std::string second = EncodeSegment(Header(2, first_hash), SomeOps());
  std::string records;
  AppendSegmentRecord(records, first);
  AppendSegmentRecord(records, second);
  ASSERT_EQ(records.size(), 8 + first.size() + second.size());
  const auto n = static_cast<uint32_t>(first.size());  // little-endian, 4 bytes
  EXPECT_EQ(records.substr(0, 4),
            (std::string{static_cast<char>(n), static_cast<char>(n >> 8),
                         static_cast<char>(n >> 16), static_cast<char>(n >> 24)}));
  EXPECT_EQ(SegmentRecords(records), (std::vector<std::string_view>{first, second}));
  // Cut anywhere inside the second record: the first alone is whole.
  for (size_t cut = 4 + first.size(); cut < records.size(); cut += 97) {
    EXPECT_EQ(SegmentRecords(std::string_view(records).substr(0, cut)),
              (std::vector<std::string_view>{first}))
        << "cut at " << cut;
  }
  EXPECT_TRUE(SegmentRecords("").empty());
  EXPECT_TRUE(SegmentRecords(std::string("\xff\xff\xff\xff"
                                         "abc",
                                         7))
                  .empty());
}

TEST(SegmentTest, AWellHashedSegmentWithImpossibleContentIsRefused) {
  // The hash proves only that nothing changed on the way; the decoder still
  // checks every field, since a sender may be buggy or hostile.
  auto rehash = [](std::string body) { return body + crypto::Sha256(body); };
  std::string good = EncodeSegment(Header(1, std::string(kHashSize, '\0')), SomeOps());
  std::string body = good.substr(0, good.size() - kHashSize);
  ASSERT_OK(DecodeSegment(rehash(body)));

  const size_t ops_at = 4 + 1 + kLineageSize + 8 + 8 + kHashSize + 4;
  std::string unknown_kind = body;
  unknown_kind[ops_at] = 9;
  std::string unknown_file = body;
  unknown_file[ops_at + 1] = 2;
  std::string huge_count = body;
  huge_count[ops_at - 1] = '\x7f';
  std::string seq_zero = body;
  for (int i = 0; i < 8; ++i) seq_zero[4 + 1 + kLineageSize + 8 + i] = 0;
  std::string far_offset = body;
  far_offset[ops_at + 2 + 7] = '\x40';
  for (const auto& [name, bad] :
       std::vector<std::pair<std::string, std::string>>{{"kind", unknown_kind},
                                                        {"file", unknown_file},
                                                        {"count", huge_count},
                                                        {"seq", seq_zero},
                                                        {"offset", far_offset}}) {
    EXPECT_EQ(DecodeSegment(rehash(bad)).status().code(), StatusCode::kDataLoss) << name;
  }
}

TEST(SegmentTest, AFormatOneSegmentIsReadWithItsOwnHashAndNoSegmentWithTheOthers) {
  // Format 1 (BLAKE2b-256) is what copies written before format 2 hold in
  // their journals and histories; each version is checked with its own hash
  // function only.
  std::string hash;
  std::string current = EncodeSegment(Header(3, std::string(kHashSize, 'p')), SomeOps(), &hash);
  ASSERT_EQ(current[4], '\x02');
  std::string body = current.substr(0, current.size() - kHashSize);
  EXPECT_EQ(hash, crypto::Sha256(body));
  std::string v1_body = body;
  v1_body[4] = '\x01';
  const std::string v1 = v1_body + crypto::Blake2b256({v1_body});
  auto decoded = DecodeSegment(v1);
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->ops, SomeOps());
  EXPECT_EQ(decoded->header.seq, 3u);
  EXPECT_EQ(decoded->hash, crypto::Blake2b256({v1_body}));
  EXPECT_EQ(PeekSegmentSeq(v1), 3u);
  EXPECT_EQ(PeekSegmentSeq(current), 3u);

  EXPECT_EQ(DecodeSegment(v1_body + crypto::Sha256(v1_body)).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(DecodeSegment(body + crypto::Blake2b256({body})).status().code(),
            StatusCode::kDataLoss);
  for (char unknown : {'\x00', '\x03'}) {
    std::string other = body;
    other[4] = unknown;
    EXPECT_EQ(DecodeSegment(other + crypto::Sha256(other)).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(PeekSegmentSeq(other + crypto::Sha256(other)), 0u);
  }
}

TEST(SegmentRecorderTest, AWriteContinuingTheOneBeforeItJoinsItAndNoOtherDoes) {
  std::vector<Segment> cut;
  SegmentRecorder recorder(std::string(kLineageSize, 'r'), 1, ChainHead{},
                           [&](uint64_t, const std::string& encoded) {
                             auto segment = DecodeSegment(encoded);
                             EXPECT_OK(segment);
                             if (segment.ok()) cut.push_back(*std::move(segment));
                             return Status::Ok();
                           });
  recorder.Write(File::kWal, 0, "aaaa");
  recorder.Write(File::kWal, 4, "bbbb");  // joins
  recorder.Write(File::kWal, 20, "cc");   // a gap
  recorder.Write(File::kDatabase, 22, "dd");
  recorder.Write(File::kWal, 22, "ee");  // continues a WAL write, but not the last op
  recorder.Write(File::kWal, 100, std::string(kMaxWriteBytes - 10, 'f'));
  recorder.Write(File::kWal, 100 + kMaxWriteBytes - 10, std::string(20, 'g'));  // too long
  recorder.Truncate(File::kDatabase, 50);
  recorder.Write(File::kDatabase, 50, "hh");  // after a truncate: an op of its own
  ASSERT_OK(recorder.Sync(File::kWal));
  ASSERT_EQ(cut.size(), 1u);
  const std::vector<Op> expected = {
      {OpKind::kWrite, FileId::kWal, 0, "aaaabbbb"},
      {OpKind::kWrite, FileId::kWal, 20, "cc"},
      {OpKind::kWrite, FileId::kDatabase, 22, "dd"},
      {OpKind::kWrite, FileId::kWal, 22, "ee"},
      {OpKind::kWrite, FileId::kWal, 100, std::string(kMaxWriteBytes - 10, 'f')},
      {OpKind::kWrite, FileId::kWal, 100 + int64_t{kMaxWriteBytes} - 10, std::string(20, 'g')},
      {OpKind::kTruncate, FileId::kDatabase, 50, ""},
      {OpKind::kWrite, FileId::kDatabase, 50, "hh"},
      {OpKind::kSync, FileId::kWal, 0, ""},
  };
  EXPECT_TRUE(cut[0].ops == expected);
}

class ApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-repl-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A chain of `n` segments of lineage `lineage` under `term`, each writing
  // its number at its own offset of the database file and syncing.
  std::vector<std::string> Chain(int n, const std::string& lineage, uint64_t term) {
    std::vector<std::string> out;
    SegmentRecorder recorder(lineage, term, ChainHead{}, [&](uint64_t, const std::string& encoded) {
      out.push_back(encoded);
      return Status::Ok();
    });
    for (int i = 1; i <= n; ++i) {
      recorder.Write(File::kDatabase, i * 10, "seg" + std::to_string(i));
      EXPECT_OK(recorder.Sync(File::kDatabase));
    }
    return out;
  }
  std::string Db() const { return *ReadFile(dir_ + "/" + kReplicaDatabaseName); }
  // A chain of `n` commits that each append one WAL frame (after the
  // header the first one writes) and sync the WAL, as SQLite's do.
  std::vector<std::string> FrameChain(int n) {
    std::vector<std::string> out;
    SegmentRecorder recorder(std::string(kLineageSize, 'w'), 1, ChainHead{},
                             [&](uint64_t, const std::string& encoded) {
                               out.push_back(encoded);
                               return Status::Ok();
                             });
    for (int i = 1; i <= n; ++i) {
      if (i == 1) recorder.Write(File::kWal, 0, std::string(32, 'h'));
      recorder.Write(File::kWal, 32 + (i - 1) * (24 + 4096),
                     std::string(24, static_cast<char>(i)) + std::string(4096, 'p'));
      EXPECT_OK(recorder.Sync(File::kWal));
    }
    return out;
  }
  // The seq recorded in `replica.pos`, as a follower restarting after a
  // power loss now reads it (its journal gone with the kernel's cache).
  uint64_t DurableSeq() const {
    auto recorded = Applier::RecordedPosition(dir_);
    return recorded.ok() ? recorded->seq : ~uint64_t{0};
  }

  // A segment as `replica.next` records it (docs/formats.md).
  static std::string JournalRecord(const std::string& encoded) {
    std::string out;
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(encoded.size() >> (8 * i)));
    return out + encoded;
  }

  std::string dir_;
};

TEST_F(ApplierTest, AppliesTheNextLinkOnlyAndWritesNothingForAnythingElse) {
  const std::string lineage(kLineageSize, 'a');
  std::vector<std::string> chain = Chain(4, lineage, 3);
  auto applier = Applier::Open(dir_);
  ASSERT_OK(applier);
  Applier& a = **applier;
  EXPECT_EQ(a.Apply(chain[1]).code(), StatusCode::kFailedPrecondition);  // empty: seq 1 first
  ASSERT_OK(a.Apply(chain[0]));
  const std::string after_one = Db();

  EXPECT_EQ(a.Apply(chain[2]).code(), StatusCode::kFailedPrecondition);  // a gap
  EXPECT_EQ(a.Apply(Chain(2, std::string(kLineageSize, 'b'), 3)[1]).code(),
            StatusCode::kFailedPrecondition);  // another lineage
  EXPECT_EQ(a.Apply(Chain(2, lineage, 2)[1]).code(),
            StatusCode::kPermissionDenied);  // a stale term
  // Same lineage, term and seq, but another history before it: the chain
  // does not link.
  SegmentHeader forged{lineage, 3, 2, std::string(kHashSize, 'x')};
  EXPECT_EQ(a.Apply(EncodeSegment(forged, SomeOps())).code(), StatusCode::kDataLoss);
  std::string damaged = chain[1];
  damaged[damaged.size() / 2] ^= 1;
  EXPECT_EQ(a.Apply(damaged).code(), StatusCode::kDataLoss);
  EXPECT_EQ(Db(), after_one) << "a refused segment changed the replica";
  EXPECT_EQ(a.position().seq, 1u);

  ASSERT_OK(a.Apply(chain[1]));
  ASSERT_OK(a.Apply(chain[1]));  // a resend of what it holds: acknowledged again
  EXPECT_EQ(a.Apply(chain[0]).code(), StatusCode::kFailedPrecondition);  // behind
  ASSERT_OK(a.Apply(chain[2]));
  ASSERT_OK(a.Apply(chain[3]));
  EXPECT_NE(Db().find("seg4"), std::string::npos);
  EXPECT_EQ(a.position().seq, 4u);
  EXPECT_EQ(a.position().term, 3u);
  EXPECT_EQ(a.position().lineage, lineage);
}

TEST_F(ApplierTest, ThePositionSurvivesAReopenAndATornSlot) {
  std::vector<std::string> chain = Chain(3, std::string(kLineageSize, 'a'), 1);
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    for (const auto& s : chain) ASSERT_OK((*a)->Apply(s));
  }
  std::string pos_path = dir_ + "/" + kReplicaPositionName;
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, 3u);
  }
  // Seq 3 lives in slot 1 (seq % 2). Tear it: the copy falls back to seq 2,
  // and segment 3 applies again (its writes are absolute). (Without its
  // journal: the segments it holds past seq 2 would be rolled forward.)
  std::string bytes = *ReadFile(pos_path);
  bytes[128 + 20] ^= 0xff;
  ASSERT_OK(WriteFileAtomic(pos_path, bytes));
  fs::remove(dir_ + "/" + kReplicaJournalName);
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, 2u);
    ASSERT_OK((*a)->Apply(chain[2]));
    EXPECT_EQ((*a)->position().seq, 3u);
  }
  // Both slots torn: refused, never taken for an empty replica.
  bytes = *ReadFile(pos_path);
  bytes[20] ^= 0xff;
  bytes[128 + 20] ^= 0xff;
  ASSERT_OK(WriteFileAtomic(pos_path, bytes));
  EXPECT_EQ(Applier::Open(dir_).status().code(), StatusCode::kDataLoss);
}

TEST_F(ApplierTest, ARunOfFrameAppendsIsMadeDurableByItsJournalBeforeItReachesTheWal) {
  std::vector<std::string> chain = FrameChain(4);
  const std::string wal_path = dir_ + "/" + kReplicaWalName;
  const std::string journal = dir_ + "/" + kReplicaJournalName;
  auto opened = Applier::Open(dir_);
  ASSERT_OK(opened);
  Applier& a = **opened;
  // The first writes the WAL header (a new log): never deferred.
  ASSERT_OK(a.Apply(chain[0], /*may_defer=*/true));
  EXPECT_FALSE(a.deferred());
  EXPECT_EQ(DurableSeq(), 1u);
  const std::string wal_after_one = *ReadFile(wal_path);

  ASSERT_OK(a.Apply(chain[1], /*may_defer=*/true));
  ASSERT_OK(a.Apply(chain[2], /*may_defer=*/true));
  EXPECT_TRUE(a.deferred());
  EXPECT_EQ(a.position().seq, 3u);
  // Until its journal record is durable, nothing of a segment is in the
  // files: a power loss now leaves no WAL frame its journal lost.
  EXPECT_EQ(*ReadFile(wal_path), wal_after_one) << "a deferred segment reached the WAL unjournaled";
  // (Segment 1, recorded, stays in it as history.)
  EXPECT_EQ(*ReadFile(journal),
            JournalRecord(chain[0]) + JournalRecord(chain[1]) + JournalRecord(chain[2]));
  ASSERT_OK(a.Flush());
  EXPECT_FALSE(a.deferred());
  EXPECT_EQ(a.position().wal_commit_frame, 3u);
  EXPECT_GT(ReadFile(wal_path)->size(), wal_after_one.size());
  // One fsync (the journal's) made the run durable; the position is
  // recorded when the copy is next opened, or by a segment of another kind.
  EXPECT_EQ(DurableSeq(), 1u);
  {
    opened->reset();
    auto again = Applier::Open(dir_);
    ASSERT_OK(again);
    EXPECT_EQ((*again)->position().seq, 3u);
  }
  EXPECT_EQ(DurableSeq(), 3u);
  // All of it history now, which a later open only skips.
  EXPECT_EQ(*ReadFile(journal),
            JournalRecord(chain[0]) + JournalRecord(chain[1]) + JournalRecord(chain[2]));

  // Seq 3 skipped seq 2, so it went to the slot that did not hold seq 1
  // (slot 0, not seq % 2): tearing it leaves seq 1, whose segments after it
  // apply again (the journal, which would roll them forward, gone too).
  const std::string pos_path = dir_ + "/" + kReplicaPositionName;
  std::string bytes = *ReadFile(pos_path);
  bytes[20] ^= 0xff;
  ASSERT_OK(WriteFileAtomic(pos_path, bytes));
  EXPECT_EQ(DurableSeq(), 1u);
  fs::remove(journal);
  {
    auto again = Applier::Open(dir_);
    ASSERT_OK(again);
    ASSERT_OK((*again)->Apply(chain[1], /*may_defer=*/true));
    ASSERT_OK((*again)->Apply(chain[2]));  // without: recorded, with the one before
    EXPECT_FALSE((*again)->deferred());
    EXPECT_EQ(DurableSeq(), 3u);
  }

  // A segment that changes the database is never deferred, and is recorded.
  std::vector<std::string> db_chain = Chain(2, std::string(kLineageSize, 'd'), 1);
  fs::remove_all(dir_);
  auto fresh = Applier::Open(dir_);
  ASSERT_OK(fresh);
  ASSERT_OK((*fresh)->Apply(db_chain[0], /*may_defer=*/true));
  EXPECT_FALSE((*fresh)->deferred());
  EXPECT_EQ(DurableSeq(), 1u);
}

// The segments copies keep for a promotion (TakeRecent): the newest,
// ending at the copy's position, each copy within its own bound and all of
// them within their shared one (a copy over it keeps fewer, at least its
// newest); taken once; none without a budget; given back when a copy goes.
TEST_F(ApplierTest, TheSegmentsKeptForAPromotionAreTheNewestWithinTheirBounds) {
  const std::vector<std::string> chain = FrameChain(12);
  const size_t each = chain[5].size();  // all but the first (it writes the header too)
  auto budget = std::make_shared<RecentBudget>();
  budget->per_copy = 4 * each + each / 2;
  budget->total = 6 * each + each / 2;
  const std::string other_dir = dir_ + "-other";
  fs::remove_all(other_dir);
  {
    auto a = Applier::Open(dir_, budget);
    auto b = Applier::Open(other_dir, budget);
    auto none = Applier::Open(dir_ + "-none");
    ASSERT_OK(a);
    ASSERT_OK(b);
    ASSERT_OK(none);
    for (const std::string& segment : chain) {
      ASSERT_OK((*a)->Apply(segment, /*may_defer=*/true));
      ASSERT_OK((*none)->Apply(segment, /*may_defer=*/true));
    }
    ASSERT_OK((*a)->Flush());
    EXPECT_EQ(budget->held.load(), 4 * each);
    EXPECT_TRUE((*none)->TakeRecent().empty()) << "kept without a budget";
    // b's third would pass the shared bound: it keeps its newest two.
    for (int i = 0; i < 3; ++i) ASSERT_OK((*b)->Apply(chain[i]));
    EXPECT_LE(budget->held.load(), budget->total);
    std::vector<std::string> kept_b = (*b)->TakeRecent();
    EXPECT_EQ(kept_b, (std::vector<std::string>{chain[1], chain[2]}));
    EXPECT_EQ(budget->held.load(), 4 * each);

    std::vector<std::string> kept_a = (*a)->TakeRecent();
    EXPECT_EQ(kept_a, (std::vector<std::string>(chain.end() - 4, chain.end())));
    auto newest = DecodeSegment(kept_a.back());
    ASSERT_OK(newest);
    EXPECT_EQ(newest->header.seq, (*a)->position().seq);
    EXPECT_EQ(newest->hash, (*a)->position().hash);
    EXPECT_TRUE((*a)->TakeRecent().empty()) << "taken twice";
    EXPECT_EQ(budget->held.load(), 0u);
    ASSERT_OK((*b)->Apply(chain[3]));
    EXPECT_EQ(budget->held.load(), each);
  }
  EXPECT_EQ(budget->held.load(), 0u) << "a closed copy's segments still counted";
  fs::remove_all(other_dir);
  fs::remove_all(dir_ + "-none");
}

// A copy closed while idle keeps its recent segments in Replicas: given
// back when it opens again, or to a promotion (Close); those of the least
// recently closed copies go past RecentBudget::closed_total, and a copy
// whose files change (Reset, a snapshot) loses them. Seed keeps only
// segments that end at the copy's position.
TEST_F(ApplierTest, TheSegmentsOfACopyClosedWhileIdleOutliveItsCloseWithinTheirBound) {
  const std::vector<std::string> chain = FrameChain(4);
  size_t bytes = 0;
  for (const std::string& s : chain) bytes += s.size();
  auto budget = std::make_shared<RecentBudget>();
  budget->closed_total = 2 * bytes;  // two copies' worth
  const std::string root = dir_ + "-replicas";
  fs::remove_all(root);
  {
    Replicas replicas(root, budget);
    const std::vector<std::string> tenants{"t1", "t2", "t3", "t4"};
    for (const std::string& t : tenants) {
      for (size_t i = 0; i < chain.size(); ++i) {
        cluster::Message answer = replicas.Handle({t, kSegment, i + 1, chain[i]});
        ASSERT_EQ(answer.kind, kAck) << answer.payload;
      }
    }
    EXPECT_EQ(budget->held.load(), 4 * bytes);
    EXPECT_EQ(replicas.recent_bytes(), 4 * bytes);
    // Closed in id order: t1 is the least recently closed, and goes when
    // t3's come (t4's with it).
    EXPECT_EQ(replicas.CloseIdle(std::chrono::milliseconds(0)), 4u);
    EXPECT_EQ(budget->held.load(), 0u) << "a closed copy's segments counted as an open one's";
    EXPECT_EQ(replicas.recent_bytes(), 2 * bytes);
    // What memory keeps, without what the files keep (Applier::History).
    for (const std::string& t : tenants) {
      for (const char* name : {kReplicaJournalName, kReplicaHistoryName}) {
        fs::remove(replicas.Dir(t) + "/" + name);
      }
    }
    EXPECT_TRUE(replicas.Close("t1").empty()) << "past closed_total, the oldest stayed";
    EXPECT_TRUE(replicas.Close("t2").empty()) << "past closed_total, the oldest stayed";
    // Opened again (a message, or Position): they are the copy's again, and
    // outlive the next close too.
    ASSERT_OK(replicas.Position("t3"));
    EXPECT_EQ(budget->held.load(), bytes);
    EXPECT_EQ(replicas.CloseIdle(std::chrono::milliseconds(0)), 1u);
    EXPECT_EQ(replicas.Close("t3"), chain);
    EXPECT_TRUE(replicas.Close("t3").empty()) << "taken twice";
    // A copy emptied loses them.
    ASSERT_OK(replicas.Reset("t4"));
    EXPECT_TRUE(replicas.Close("t4").empty()) << "an emptied copy's segments were kept";
    EXPECT_EQ(replicas.recent_bytes(), 0u);
  }
  fs::remove_all(root);
  // Seed: only what ends at the copy's position, into a copy keeping none.
  {
    auto a = Applier::Open(dir_, budget);
    ASSERT_OK(a);
    for (int i = 0; i < 3; ++i) ASSERT_OK((*a)->Apply(chain[i]));
    (void)(*a)->TakeRecent();
    (*a)->Seed(chain);  // ends past it
    EXPECT_TRUE((*a)->TakeRecent().empty());
    (*a)->Seed({chain[1], chain[2]});  // ends at it
    (*a)->Seed({chain[2]});            // it keeps some already
    EXPECT_EQ((*a)->TakeRecent(), (std::vector<std::string>{chain[1], chain[2]}));
    EXPECT_EQ(budget->held.load(), 0u);
  }
}

TEST_F(ApplierTest, AProcessKilledMidRunRollsItsJournalForwardAndNothingElse) {
  std::vector<std::string> chain = FrameChain(5);
  std::string wal_through_three;
  {
    const std::string other_dir = dir_ + "-through-three";
    fs::remove_all(other_dir);
    auto a = Applier::Open(other_dir);
    ASSERT_OK(a);
    for (int i = 0; i < 3; ++i) ASSERT_OK((*a)->Apply(chain[i]));
    wal_through_three = *ReadFile(other_dir + "/" + kReplicaWalName);
    fs::remove_all(other_dir);
  }
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    ASSERT_OK((*a)->Apply(chain[0]));
    ASSERT_OK((*a)->Apply(chain[1], /*may_defer=*/true));
    ASSERT_OK((*a)->Apply(chain[2], /*may_defer=*/true));
    // Killed here: the run journaled (in the kernel's cache), not synced.
  }
  EXPECT_EQ(DurableSeq(), 1u);
  // The next segment's record torn in the journal (the process died writing
  // it), then one of another chain: neither is applied.
  const std::string journal = dir_ + "/" + kReplicaJournalName;
  {
    std::ofstream out(journal, std::ios::binary | std::ios::app);
    const std::string record = JournalRecord(chain[3]);
    out.write(record.data(), static_cast<std::streamsize>(record.size() - chain[3].size() / 2));
  }
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, 3u) << "the journaled run was not rolled forward";
    EXPECT_EQ((*a)->position().wal_commit_frame, 3u);
    EXPECT_FALSE((*a)->deferred());
  }
  EXPECT_EQ(DurableSeq(), 3u);
  EXPECT_EQ(*ReadFile(journal),
            JournalRecord(chain[0]) + JournalRecord(chain[1]) + JournalRecord(chain[2]))
      << "the journal does not go on from its last record kept";
  EXPECT_EQ(*ReadFile(dir_ + "/" + kReplicaWalName), wal_through_three)
      << "the copy is not the run's, or a torn journal record reached it";

  std::vector<std::string> other = Chain(4, std::string(kLineageSize, 'o'), 1);
  {
    std::ofstream out(journal, std::ios::binary);
    const std::string record = JournalRecord(other[3]);
    out.write(record.data(), static_cast<std::streamsize>(record.size()));
  }
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, 3u);
    ASSERT_OK((*a)->Apply(chain[3]));  // the chain goes on from its position
  }
  EXPECT_FALSE(PathExists(dir_ + "/" + kReplicaDatabaseName))
      << "a journaled segment of another chain reached the copy";
  EXPECT_EQ(DurableSeq(), 4u);
}

// The segments a copy applied last stay in its files (its journal's
// recorded records, then `replica.prev`) for a promotion after its node
// restarted: History gives them back linked to the recorded position,
// within the bytes asked for, across reopens and once the journal was
// retired; a damaged record ends them; a snapshot removes them.
TEST_F(ApplierTest, TheSegmentsACopyAppliedLastStayInItsFilesLinkedToItsPosition) {
  // Twelve segments of 1 MiB each (database writes: each recorded at once),
  // past the 8 MiB after which the journal is retired.
  std::vector<std::string> chain;
  SegmentRecorder recorder(std::string(kLineageSize, 'h'), 1, ChainHead{},
                           [&](uint64_t, const std::string& encoded) {
                             chain.push_back(encoded);
                             return Status::Ok();
                           });
  for (int i = 0; i < 12; ++i) {
    recorder.Write(File::kDatabase, int64_t{i} * kMaxWriteBytes,
                   std::string(kMaxWriteBytes, static_cast<char>('a' + i)));
    ASSERT_OK(recorder.Sync(File::kDatabase));
  }
  ASSERT_EQ(chain.size(), 12u);
  constexpr size_t kAll = size_t{64} << 20;
  auto tail = [&](size_t n) { return std::vector<std::string>(chain.end() - n, chain.end()); };
  EXPECT_TRUE(Applier::History(dir_, kAll).empty());  // no copy yet
  {
    auto a = Applier::Open(dir_);
    ASSERT_OK(a);
    for (int i = 0; i < 5; ++i) ASSERT_OK((*a)->Apply(chain[i]));
  }
  EXPECT_EQ(Applier::History(dir_, kAll),
            (std::vector<std::string>(chain.begin(), chain.begin() + 5)));
  {
    auto a = Applier::Open(dir_);  // the node restarted
    ASSERT_OK(a);
    for (int i = 5; i < 12; ++i) ASSERT_OK((*a)->Apply(chain[i]));
  }
  const std::string history = dir_ + "/" + kReplicaHistoryName;
  const std::string journal = dir_ + "/" + kReplicaJournalName;
  ASSERT_TRUE(fs::exists(history)) << "the journal was never retired";
  EXPECT_LT(fs::file_size(journal), fs::file_size(history));
  // At least 8 MiB of them, the newest, contiguous up to the position.
  std::vector<std::string> kept = Applier::History(dir_, kAll);
  ASSERT_GE(kept.size(), 8u);
  EXPECT_EQ(kept, tail(kept.size()));
  EXPECT_EQ(Applier::History(dir_, 3 * chain[11].size()), tail(3));
  EXPECT_EQ(Applier::History(dir_, 1), tail(1)) << "not even the last";
  {
    auto a = Applier::Open(dir_);  // skips them, changes nothing
    ASSERT_OK(a);
    EXPECT_EQ((*a)->position().seq, 12u);
  }
  EXPECT_EQ(Applier::History(dir_, kAll), kept);

  // One byte of segment 11's record flipped: only the one after it links.
  std::string bytes = *ReadFile(journal);
  const size_t at = bytes.find(chain[10]);
  ASSERT_NE(at, std::string::npos) << "segment 11 is not in the journal";
  bytes[at + chain[10].size() / 2] ^= 1;
  ASSERT_OK(WriteFileAtomic(journal, bytes));
  EXPECT_EQ(Applier::History(dir_, kAll), tail(1));

  // A snapshot's position: what the files kept precedes it.
  ASSERT_OK(Applier::Install(
      dir_, ReplicaPosition{std::string(kLineageSize, 's'), 2, 3, std::string(kHashSize, 'x'), 0}));
  EXPECT_FALSE(fs::exists(history));
  EXPECT_FALSE(fs::exists(journal));
  EXPECT_TRUE(Applier::History(dir_, kAll).empty());
}

TEST_F(ApplierTest, AWriteHoldingSeveralFramesFindsItsLastCommit) {
  // Frames 1-3 in one write (a commit of three pages, coalesced): only the
  // third's header names a commit size.
  std::string frames;
  for (int i = 1; i <= 3; ++i) {
    std::string header(24, static_cast<char>(i));
    for (int b = 4; b < 8; ++b) header[b] = '\0';
    if (i == 3) header[7] = 5;
    frames += header + std::string(4096, 'p');
  }
  std::vector<std::string> chain;
  SegmentRecorder recorder(std::string(kLineageSize, 'c'), 1, ChainHead{},
                           [&](uint64_t, const std::string& encoded) {
                             chain.push_back(encoded);
                             return Status::Ok();
                           });
  recorder.Write(File::kWal, 0, std::string(32, 'h') + frames);
  ASSERT_OK(recorder.Sync(File::kWal));
  // Frames 4-5 from the middle of frame 4's page (a write need not start
  // at a frame): frame 5 commits.
  std::string more = std::string(100, 'q');
  std::string header5(24, '\0');
  header5[7] = 6;
  more += header5 + std::string(4096, 'p');
  recorder.Write(File::kWal, 32 + 3 * (24 + 4096) + 24 + 3996, more);
  ASSERT_OK(recorder.Sync(File::kWal));
  auto a = Applier::Open(dir_);
  ASSERT_OK(a);
  ASSERT_OK((*a)->Apply(chain[0]));
  EXPECT_EQ((*a)->position().wal_commit_frame, 3u);
  ASSERT_OK((*a)->Apply(chain[1]));
  EXPECT_EQ((*a)->position().wal_commit_frame, 5u);
}

}  // namespace
}  // namespace silo::replication
