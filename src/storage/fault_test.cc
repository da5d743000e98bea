// Crashes, power loss and what reaches the disk, seen from below the cipher.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <random>

#include "base/status_matchers.h"
#include "storage/database.h"
#include "storage/fault_vfs.h"
#include "storage/tenant_databases.h"
#include "storage/test_util.h"

namespace silo::storage {
namespace {

namespace fs = std::filesystem;

using testing::FaultVfs;
using testing::FilesContaining;

constexpr char kMarker[] = "FAULT-MARKER-c0ffee-plaintext";

class FaultTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    key_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
    FaultVfs::Get().Reset();
  }
  void TearDown() override {
    FaultVfs::Get().Reset();
    TempDirTest::TearDown();
  }
  OpenOptions Faulty() { return {.vfs = testing::kFaultCipherVfs}; }

  // The ids of table t, in order.
  std::vector<int64_t> Ids(Database& db) {
    std::vector<int64_t> ids;
    auto stmt = db.Prepare("SELECT id FROM t ORDER BY id");
    EXPECT_OK(stmt);
    while (true) {
      auto row = stmt->Step();
      EXPECT_OK(row) << row.status().ToString();
      if (!row.ok() || !*row) break;
      ids.push_back(stmt->ColumnInt(0));
    }
    return ids;
  }

  // `rounds` times: forks a child that runs `child` (on the database
  // file, the next id to insert into table t, the pipe to write each
  // committed id to) and kills it with SIGKILL after its first report, at a
  // random moment within 40 ms (`seed`). The kill comes after a blocking
  // read, not a wait: however slow the machine, every round commits
  // something. After each: integrity_check passes, every reported id is
  // there, the ids are 1..n with n a multiple of `unit` (a group is whole).
  void KillRounds(int rounds, uint32_t seed, size_t unit,
                  const std::function<void(const std::string&, int64_t, int)>& child) {
    std::string path = Path("crash.db");
    {
      auto db = MustOpen(path, *key_);
      ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
    }
    std::mt19937 rng(seed);
    int64_t next_id = 1;
    for (int round = 0; round < rounds; ++round) {
      SCOPED_TRACE("round " + std::to_string(round));
      int fds[2];
      ASSERT_EQ(pipe(fds), 0);
      const pid_t parent = getpid();
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        // The writer dies with the test process, even one killed mid-round
        // (its pipe's SIGPIPE would end it only at its next report).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(7);
        close(fds[0]);
        child(path, next_id, fds[1]);
        _exit(6);
      }
      close(fds[1]);
      int64_t id = 0, last_reported = next_id - 1;
      if (read(fds[0], &id, sizeof id) == sizeof id) last_reported = id;
      usleep(std::uniform_int_distribution<int>(0, 40000)(rng));
      kill(pid, SIGKILL);
      while (read(fds[0], &id, sizeof id) == sizeof id) last_reported = std::max(last_reported, id);
      close(fds[0]);
      int status = 0;
      waitpid(pid, &status, 0);
      ASSERT_TRUE(WIFSIGNALED(status)) << "the child failed on its own: " << WEXITSTATUS(status);
      auto db = MustOpen(path, *key_);
      ASSERT_NE(db, nullptr);
      ASSERT_EQ(*db->IntegrityCheck(), "ok");
      std::vector<int64_t> ids = Ids(*db);
      ASSERT_GE(static_cast<int64_t>(ids.size()), last_reported) << "a reported commit vanished";
      for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], static_cast<int64_t>(i + 1));
      ASSERT_EQ(ids.size() % unit, 0u) << "a group was committed in part";
      next_id = static_cast<int64_t>(ids.size()) + 1;
    }
    EXPECT_GT(next_id, static_cast<int64_t>(rounds) * static_cast<int64_t>(unit))
        << "every child committed something";
    EXPECT_EQ(FilesContaining(dir_, kMarker), "") << "after crashes";
  }

  // A TenantDatabase on `path` (its writer opened with `options`).
  std::unique_ptr<TenantDatabase> OpenTenant(const std::string& path, const OpenOptions& options) {
    auto writer = Database::Open(path, *key_, options);
    EXPECT_TRUE(writer.ok()) << writer.status().ToString();
    if (!writer.ok()) return nullptr;
    return std::make_unique<TenantDatabase>(path, key_->Clone(), options, 1,
                                            std::move(writer).value());
  }

  // The grouped writes that insert ids first..first+n-1, one Transaction each.
  static std::vector<std::function<Status(Database&)>> Inserts(int64_t first, int n, size_t size) {
    std::vector<std::function<Status(Database&)>> out;
    for (int64_t id = first; id < first + n; ++id) {
      out.push_back([id, size](Database& d) -> Status {
        auto tx = Transaction::Begin(d);
        if (!tx.ok()) return tx.status();
        auto insert = d.Prepare("INSERT INTO t (id, body) VALUES (?, ?)");
        if (!insert.ok()) return insert.status();
        insert->Bind(1, id).Bind(2, std::string(kMarker) + std::string(size, 'g'));
        if (Status s = insert->Run(); !s.ok()) return s;
        return tx->Commit();
      });
    }
    return out;
  }

  std::unique_ptr<crypto::SecretKey> key_;
};

// Every byte handed to the disk, through every path (WAL, checkpoint, the
// journal that converts a VACUUM INTO copy to WAL, VACUUM), is scanned.
TEST_F(FaultTest, NoWriteOnAnyPathCarriesPlaintext) {
  FaultVfs::Get().AddNeedle(kMarker);
  {
    auto db = MustOpen(Path("a.db"), *key_, Faulty());
    ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
    for (int i = 0; i < 50; ++i) {
      ASSERT_OK(db->Exec(std::string("INSERT INTO t (body) VALUES ('") + kMarker +
                         std::string(300, 'y') + "')"));
    }
    ASSERT_OK(db->Checkpoint());
    ASSERT_OK(db->Exec("DELETE FROM t WHERE id < 10; VACUUM"));
    // VACUUM INTO through the faulty VFS too, then open the copy (rollback
    // journal for page 1 while it is switched to WAL).
    auto copy_key = RegisterKey(*key_);
    std::string uri = CipherUri(Path("copy.db"), *copy_key, testing::kFaultCipherVfs);
    ASSERT_OK(db->Exec("VACUUM INTO '" + uri + "'"));
  }
  auto copy = MustOpen(Path("copy.db"), *key_, Faulty());
  EXPECT_EQ(Ids(*copy).size(), 41u);
  copy.reset();
  testing::FaultStats stats = FaultVfs::Get().stats();
  EXPECT_GT(stats.db_writes, 0);
  EXPECT_GT(stats.wal_writes, 0);
  EXPECT_GT(stats.journal_writes, 0) << "the journal path was exercised";
  EXPECT_EQ(stats.needle_hits, 0) << stats.needle_files.front();
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
}

// The control for the test above: the same recorder sees plaintext when it
// is written (so a zero count means something).
TEST_F(FaultTest, TheRecorderSeesPlaintextWhenItIsThere) {
  FaultVfs::Get().AddNeedle(kMarker);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(Path("plain.db").c_str(), &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "fault-lower"),
            SQLITE_OK);
  std::string sql = std::string("CREATE TABLE t(b); INSERT INTO t VALUES ('") + kMarker + "')";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_GT(FaultVfs::Get().stats().needle_hits, 0);
}

// Power loss: writes not yet synced are thrown away. With synchronous=FULL
// every transaction whose commit returned must survive, at every cut point.
TEST_F(FaultTest, PowerLossKeepsEveryCommittedTransaction) {
  std::mt19937 rng(20261124);
  int cuts_inside_commit = 0;
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string path = Path("p" + std::to_string(round) + ".db");
    {
      auto db = MustOpen(path, *key_, Faulty());
      ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
    }
    FaultVfs::Get().Reset();
    int64_t committed = 0;
    {
      auto db = MustOpen(path, *key_, Faulty());
      FaultVfs::Get().CutPowerAfterWrites(std::uniform_int_distribution<int>(1, 400)(rng));
      auto insert = db->Prepare("INSERT INTO t (id, body) VALUES (?, ?)");
      for (int64_t id = 1; id <= 1000; ++id) {
        insert->Bind(1, id).Bind(2, std::string(id % 7 == 0 ? 5000 : 200, 'p'));
        Status s = insert->Run();
        insert->Reset();
        if (!s.ok()) {
          cuts_inside_commit += FaultVfs::Get().power_cut() ? 1 : 0;
          break;
        }
        committed = id;
        // Cuts also land inside checkpoints; a cut one fails, which is the point.
        if (id % 50 == 0) (void)db->Checkpoint();
      }
    }
    ASSERT_TRUE(FaultVfs::Get().power_cut());
    FaultVfs::Get().RestorePower();
    auto db = MustOpen(path, *key_);
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(*db->IntegrityCheck(), "ok");
    std::vector<int64_t> ids = Ids(*db);
    ASSERT_GE(static_cast<int64_t>(ids.size()), committed) << "a committed transaction vanished";
    for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], static_cast<int64_t>(i + 1));
    EXPECT_LE(static_cast<int64_t>(ids.size()), committed + 1);
  }
  EXPECT_GT(cuts_inside_commit, 30);
}

// The control: with synchronous=OFF (no syncs at all) the same power loss
// does lose committed transactions, so the test above can fail.
TEST_F(FaultTest, WithoutSyncsPowerLossLosesCommits) {
  std::string path = Path("off.db");
  {
    auto db = MustOpen(path, *key_, Faulty());
    ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
  }
  FaultVfs::Get().Reset();
  int64_t committed = 0;
  {
    auto db = MustOpen(path, *key_, Faulty());
    ASSERT_OK(db->Exec("PRAGMA synchronous=OFF"));
    FaultVfs::Get().CutPowerAfterWrites(300);
    for (int64_t id = 1; id <= 1000; ++id) {
      if (!db->Exec("INSERT INTO t (id, body) VALUES (" + std::to_string(id) + ", 'x')").ok()) {
        break;
      }
      committed = id;
    }
  }
  FaultVfs::Get().RestorePower();
  auto db = MustOpen(path, *key_);
  EXPECT_LT(static_cast<int64_t>(Ids(*db).size()), committed);
}

// A child process commits in a loop and reports each id whose commit
// returned; it is killed with SIGKILL at a random moment after its first
// commit, 50 times (the seed is fixed: 42). The
// parent reopens: integrity_check passes and every reported id is there.
TEST_F(FaultTest, SigkillAtRandomMomentsLosesNoCommittedTransaction) {
  KillRounds(50, 42, 1, [&](const std::string& path, int64_t next_id, int report) {
    auto db = Database::Open(path, *key_);
    if (!db.ok()) _exit(3);
    for (int64_t id = next_id;; ++id) {
      std::string body = std::string(kMarker) + std::string(id % 5 == 0 ? 6000 : 100, 'k');
      auto insert = (*db)->Prepare("INSERT INTO t (id, body) VALUES (?, ?)");
      insert->Bind(1, id).Bind(2, body);
      if (!insert->Run().ok()) _exit(4);
      if (write(report, &id, sizeof id) != sizeof id) _exit(5);
    }
  });
}

// Group commit under power loss: every round is one group of 8 writes
// sharing one COMMIT (built on purpose, testing::GroupRound), and the power
// goes at a random write (seed 20261202). Every write that was answered OK
// is there afterwards; a group is all or nothing, so the ids stay a prefix.
TEST_F(FaultTest, PowerLossKeepsEveryAnsweredGroupedWrite) {
  std::mt19937 rng(20261202);
  int cuts_inside_group = 0;
  for (int round = 0; round < 25; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string path = Path("g" + std::to_string(round) + ".db");
    {
      auto db = MustOpen(path, *key_, Faulty());
      ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"));
    }
    FaultVfs::Get().Reset();
    int64_t answered = 0;
    {
      auto tenant = OpenTenant(path, Faulty());
      ASSERT_NE(tenant, nullptr);
      FaultVfs::Get().CutPowerAfterWrites(std::uniform_int_distribution<int>(1, 300)(rng));
      for (int64_t first = 1; first < 2000; first += 8) {
        std::vector<Status> out =
            testing::GroupRound(*tenant, Inserts(first, 8, first % 3 ? 300 : 5000));
        bool all_ok = true;
        for (int i = 0; i < 8; ++i) {
          if (out[i].ok()) answered = std::max(answered, first + i);
          all_ok = all_ok && out[i].ok();
        }
        if (!all_ok) {
          cuts_inside_group += FaultVfs::Get().power_cut() ? 1 : 0;
          break;
        }
        if (first % 64 == 1) (void)tenant->Write([](Database& d) { return d.Checkpoint(); });
      }
      EXPECT_EQ(answered % 8, 0) << "a group was answered in part";
    }
    ASSERT_TRUE(FaultVfs::Get().power_cut());
    FaultVfs::Get().RestorePower();
    auto db = MustOpen(path, *key_);
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(*db->IntegrityCheck(), "ok");
    std::vector<int64_t> ids = Ids(*db);
    ASSERT_GE(static_cast<int64_t>(ids.size()), answered) << "an answered write vanished";
    for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], static_cast<int64_t>(i + 1));
    EXPECT_EQ(ids.size() % 8, 0u) << "a group was committed in part";
  }
  EXPECT_GT(cuts_inside_group, 15);
}

// Group commit under SIGKILL: a child commits groups of 8 (as above) and
// reports each answered id; it is killed at a random moment (seed 4242)
// after its first group was answered, 30 times. Every reported id is there
// and groups are whole.
TEST_F(FaultTest, SigkillDuringGroupCommitsLosesNoAnsweredWrite) {
  KillRounds(30, 4242, 8, [&](const std::string& path, int64_t next_id, int report) {
    auto tenant = OpenTenant(path, {});
    if (tenant == nullptr) _exit(3);
    for (int64_t first = next_id;; first += 8) {
      std::vector<Status> out =
          testing::GroupRound(*tenant, Inserts(first, 8, first % 5 ? 100 : 6000));
      for (int i = 0; i < 8; ++i) {
        if (!out[i].ok()) _exit(4);
        int64_t id = first + i;
        if (write(report, &id, sizeof id) != sizeof id) _exit(5);
      }
    }
  });
}

}  // namespace
}  // namespace silo::storage
