#include "storage/tenant_databases.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "base/file_util.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "storage/repl_vfs.h"
#include "storage/test_util.h"

namespace silo::storage {
namespace {

namespace fs = std::filesystem;

constexpr Migration kSchema[] = {
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
};

class TenantDatabasesTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    for (const char* id : {"a", "b", "c", "d", "e", "f", "g", "h", "i"}) {
      std::string bytes = crypto::RandomBytes(32);
      keys_[id] = bytes;
    }
  }
  TenantDatabases Make(size_t max_open, size_t max_group = 64) {
    return TenantDatabases(
        [this](const std::string& id) -> Result<crypto::SecretKey> {
          if (!keys_.count(id)) return NotFound("no key for " + id);
          return crypto::SecretKey::FromBytes(keys_[id]);
        },
        [this](const std::string& id) { return Path(id + ".db"); }, kSchema,
        {.max_open_tenants = max_open,
         .readers_per_tenant = 2,
         .max_group = max_group,
         .open = {}});
  }
  // A cache of four tenants with these attach and detach hooks.
  TenantDatabases MakeWithHooks(
      std::function<Status(const std::string&, const std::string&)> attach,
      std::function<void(const std::string&, const std::string&)> detach) {
    return TenantDatabases(
        [this](const std::string& id) -> Result<crypto::SecretKey> {
          return crypto::SecretKey::FromBytes(keys_[id]);
        },
        [this](const std::string& id) { return Path(id + ".db"); }, kSchema,
        {.max_open_tenants = 4,
         .readers_per_tenant = 2,
         .open = {},
         .attach = std::move(attach),
         .detach = std::move(detach)});
  }
  static Status Insert(TenantDatabase& db, const std::string& body) {
    return db.Write([&](Database& d) {
      auto stmt = d.Prepare("INSERT INTO items (body) VALUES (?)");
      if (!stmt.ok()) return stmt.status();
      stmt->Bind(1, body);
      return stmt->Run();
    });
  }
  // A grouped write of one row in its own Transaction (a savepoint inside
  // the group), as the record store writes.
  static std::function<Status(Database&)> InsertTx(const std::string& body) {
    return [body](Database& d) -> Status {
      auto tx = Transaction::Begin(d);
      if (!tx.ok()) return tx.status();
      auto stmt = d.Prepare("INSERT INTO items (body) VALUES (?)");
      if (!stmt.ok()) return stmt.status();
      stmt->Bind(1, body);
      if (Status s = stmt->Run(); !s.ok()) return s;
      return tx->Commit();
    };
  }
  static int64_t Count(TenantDatabase& db, const std::string& body = "") {
    int64_t n = -1;
    Status s = db.Read([&](Database& d) {
      auto stmt = d.Prepare("SELECT count(*) FROM items WHERE ?1 = '' OR body = ?1");
      if (!stmt.ok()) return stmt.status();
      stmt->Bind(1, body);
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      n = stmt->ColumnInt(0);
      return Status::Ok();
    });
    EXPECT_OK(s) << s.ToString();
    return n;
  }
  std::map<std::string, std::string> keys_;
};

TEST_F(TenantDatabasesTest, EachTenantSeesOnlyItsOwnData) {
  auto dbs = Make(8);
  auto a = dbs.Acquire("a");
  auto b = dbs.Acquire("b");
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(Insert(**a, "secret-of-tenant-a"));
  EXPECT_EQ(Count(**a, "secret-of-tenant-a"), 1);
  EXPECT_EQ(Count(**b, "secret-of-tenant-a"), 0);
  EXPECT_EQ(Count(**b), 0);
  a = Result<std::shared_ptr<TenantDatabase>>(nullptr);
  dbs.Close("a");
  EXPECT_EQ(testing::FilesContaining(dir_, "secret-of-tenant-a"), "");
}

TEST_F(TenantDatabasesTest, FullCacheClosesTheLeastRecentlyUsedIdleTenant) {
  auto dbs = Make(2);
  ASSERT_OK(dbs.Acquire("a"));
  ASSERT_OK(dbs.Acquire("b"));
  ASSERT_OK(dbs.Acquire("a"));  // a is now the most recent
  EXPECT_EQ(dbs.open_count(), 2u);
  auto c = dbs.Acquire("c");
  ASSERT_OK(c);
  EXPECT_EQ(dbs.open_count(), 2u);
  // b went, a stayed: a second Acquire of a finds the same object.
  auto a1 = dbs.Acquire("a");
  auto a2 = dbs.Acquire("a");
  EXPECT_EQ(a1->get(), a2->get());
}

TEST_F(TenantDatabasesTest, TenantsInUseAreNeverClosedUnderTheirUsers) {
  auto dbs = Make(2);
  auto a = dbs.Acquire("a");
  auto b = dbs.Acquire("b");
  auto c = dbs.Acquire("c");
  ASSERT_STATUS(StatusCode::kUnavailable, c);
  EXPECT_OK(Insert(**a, "still works"));
  b = Result<std::shared_ptr<TenantDatabase>>(nullptr);  // release b
  EXPECT_OK(dbs.Acquire("c"));
}

TEST_F(TenantDatabasesTest, ReadersReadWhileTheWriterWrites) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  ASSERT_OK(a);
  std::shared_ptr<TenantDatabase> db = *a;
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (!done) {
        int64_t n = Count(*db);
        if (n < last) ++bad;  // a reader never goes back in time
        last = n;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 300; ++i) ASSERT_OK(Insert(*db, "row"));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_GT(reads, 3);
  EXPECT_EQ(Count(*db), 300);
}

TEST_F(TenantDatabasesTest, RefusedWritesIncludeTheQueuedOnesWhileReadsGoOn) {
  auto dbs = Make(4);
  std::shared_ptr<TenantDatabase> db = dbs.Acquire("a").value();
  ASSERT_OK(Insert(*db, "before"));
  // A write that holds the writer while two more queue behind it, then
  // refuses writes from inside (as a re-key does once its copy begins).
  std::atomic<bool> holding{false}, release{false};
  std::thread holder([&] {
    EXPECT_OK(db->Write([&](Database&) -> Status {
      holding = true;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      db->RefuseWrites(Unavailable("paused (test)"));
      return Status::Ok();
    }));
  });
  while (!holding) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Status queued[2];
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&, i] { queued[i] = Insert(*db, "queued"); });
  }
  while (db->queued_writes() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(Count(*db), 1);  // reads go on while the writer is held
  release = true;
  holder.join();
  for (auto& t : writers) t.join();
  for (const Status& s : queued) EXPECT_STATUS(StatusCode::kUnavailable, s);
  EXPECT_STATUS(StatusCode::kUnavailable, Insert(*db, "after"));
  EXPECT_STATUS(StatusCode::kUnavailable, db->WriteGrouped([](Database&) { return Status::Ok(); }));
  EXPECT_EQ(Count(*db), 1);  // none of them ran
  // The tenant opened again writes as before.
  db.reset();
  dbs.Close("a");
  ASSERT_OK(Insert(*dbs.Acquire("a").value(), "reopened"));
  EXPECT_EQ(Count(*dbs.Acquire("a").value()), 2);
}

TEST_F(TenantDatabasesTest, AFileFromAnotherTenantIsRefused) {
  auto dbs = Make(4);
  ASSERT_OK(dbs.Acquire("a"));
  ASSERT_OK(dbs.Acquire("b"));
  dbs.Close("a");
  dbs.Close("b");
  fs::copy_file(Path("b.db"), Path("a.db"), fs::copy_options::overwrite_existing);
  auto a = dbs.Acquire("a");
  ASSERT_STATUS(StatusCode::kDataLoss, a);
  EXPECT_EQ(a.status().message(), "wrong key or not a silo database");
  EXPECT_OK(dbs.Acquire("b"));
  EXPECT_EQ(dbs.Acquire("zzz").status().code(), StatusCode::kNotFound);
}

TEST_F(TenantDatabasesTest, ExclusiveWaitsForHoldersAndRefusesAcquireMeanwhile) {
  auto dbs = Make(4);
  auto held = dbs.Acquire("a");
  ASSERT_OK(held);
  ASSERT_OK(Insert(**held, "before"));
  // A holder that does not let go in time: Unavailable, nothing ran.
  bool ran = false;
  Status s = dbs.Exclusive("a", "held", std::chrono::milliseconds(50), [&] {
    ran = true;
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_FALSE(ran);

  std::thread late([db = std::move(held).value()]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    db.reset();  // the last holder finishes
  });
  s = dbs.Exclusive("a", "the tenant is being restored", std::chrono::seconds(5), [&] {
    ran = true;
    // Nobody gets the tenant meanwhile, and each is told why (the holder's
    // reason, not another's); other tenants are unaffected.
    auto refused = dbs.Acquire("a");
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(refused.status().message(), "the tenant is being restored; retry shortly");
    Status nested = dbs.Exclusive("a", "the tenant's data key is being changed",
                                  std::chrono::seconds(1), [] { return Status::Ok(); });
    EXPECT_EQ(nested.code(), StatusCode::kUnavailable);
    EXPECT_EQ(nested.message(), "the tenant is being restored; retry shortly");
    EXPECT_OK(dbs.Acquire("b"));
    // The file is closed: it can be replaced.
    fs::remove(Path("a.db"));
    return Status::Ok();
  });
  late.join();
  EXPECT_OK(s) << s.ToString();
  EXPECT_TRUE(ran);
  auto again = dbs.Acquire("a");
  ASSERT_OK(again);
  EXPECT_EQ(Count(**again), 0);  // a fresh database where the old one was
}

const cache::Namespace<std::string> kDerived{"derived"};

// The tenant cache (cache/tenant_cache.h) is the open database's: a write
// of this tenant empties it, another tenant's write does not, its
// connections reach it, and a replaced database starts with an empty one.
TEST_F(TenantDatabasesTest, EachTenantsCacheIsEmptiedByItsOwnWrites) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  auto b = dbs.Acquire("b");
  ASSERT_OK(a);
  ASSERT_OK(b);
  auto put = [](TenantDatabase& db, const std::string& v) {
    db.cache().Put(kDerived, "k", db.cache().generation(), std::make_shared<const std::string>(v),
                   1);
  };
  put(**a, "a");
  put(**b, "b");
  ASSERT_OK((*a)->Read([&](Database& d) {
    EXPECT_EQ(d.tenant_cache(), &(*a)->cache());
    return Status::Ok();
  }));
  ASSERT_OK((*a)->Write([&](Database& d) {
    EXPECT_EQ(d.tenant_cache(), &(*a)->cache());
    return Status::Ok();
  }));
  EXPECT_EQ((*a)->cache().Get(kDerived, "k"), nullptr);
  ASSERT_NE((*b)->cache().Get(kDerived, "k"), nullptr);
  EXPECT_EQ(*(*b)->cache().Get(kDerived, "k"), "b");
  // A failed write invalidates too (it may have been partly applied
  // before its rollback; dropping is always safe).
  put(**b, "b");
  EXPECT_FALSE((*b)->Write([](Database&) { return Internal("no"); }).ok());
  EXPECT_EQ((*b)->cache().Get(kDerived, "k"), nullptr);

  put(**a, "a");
  a->reset();
  ASSERT_OK(dbs.Exclusive("a", "held", std::chrono::seconds(5), [] { return Status::Ok(); }));
  auto again = dbs.Acquire("a");
  ASSERT_OK(again);
  EXPECT_EQ((*again)->cache().Get(kDerived, "k"), nullptr);  // a restore starts empty
}

// A tenant just opened answers short reads on its writer (no second
// connection) while the writer is idle; a write that comes meanwhile waits
// for the read, not the other way round; once a reader is open, short reads
// go to readers and a write no longer waits for them.
TEST_F(TenantDatabasesTest, AShortReadUsesTheIdleWriterUntilAReaderIsOpen) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  ASSERT_OK(a);
  TenantDatabase& db = **a;
  const Database* writer = nullptr;
  ASSERT_OK(db.Write([&](Database& d) {
    writer = &d;
    return Status::Ok();
  }));
  const Database* used = nullptr;
  ASSERT_OK(db.ReadShort([&](Database& d) {
    used = &d;
    return Status::Ok();
  }));
  EXPECT_EQ(used, writer);

  // A write queued while a short read runs on the writer waits for it.
  std::promise<void> reading, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> wrote{false};
  std::thread reader([&] {
    (void)db.ReadShort([&](Database& d) {
      EXPECT_EQ(&d, writer);
      reading.set_value();
      released.wait();
      EXPECT_FALSE(wrote);
      return Status::Ok();
    });
  });
  reading.get_future().wait();
  std::thread write([&] {
    EXPECT_OK(Insert(db, "queued"));
    wrote = true;
  });
  while (db.queued_writes() < 1) std::this_thread::yield();
  release.set_value();
  reader.join();
  write.join();
  EXPECT_TRUE(wrote);

  // A read left open is rolled back: the next write can begin.
  ASSERT_OK(db.ReadShort([&](Database& d) {
    (void)Count(db);  // a read inside it opens a reader: no deadlock
    return d.Exec("BEGIN; SELECT count(*) FROM items;");
  }));
  ASSERT_OK(Insert(db, "after"));

  // The nested read opened a reader: short reads use readers from now on.
  ASSERT_OK(db.ReadShort([&](Database& d) {
    used = &d;
    return Status::Ok();
  }));
  EXPECT_NE(used, writer);
  EXPECT_EQ(Count(db), 2);
}

// A short read never waits for a write: while the writer is busy it runs on
// a reader. The write is held until the read has returned (a short read that
// waited for it would be let through after 5 s, on the writer, and fail).
TEST_F(TenantDatabasesTest, AShortReadDoesNotWaitForABusyWriter) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  ASSERT_OK(a);
  TenantDatabase& db = **a;
  Mutex mu;
  CondVar cv;
  bool writing = false, read_done = false;
  const Database* writer = nullptr;
  std::thread write([&] {
    EXPECT_OK(db.Write([&](Database& d) {
      MutexLock lock(mu);
      writer = &d;
      writing = true;
      cv.SignalAll();
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!read_done && cv.WaitUntil(mu, until)) {
      }
      return Status::Ok();
    }));
  });
  {
    MutexLock lock(mu);
    while (!writing) cv.Wait(mu);
  }
  const Database* used = nullptr;
  EXPECT_OK(db.ReadShort([&](Database& d) {
    used = &d;
    return Status::Ok();
  }));
  {
    MutexLock lock(mu);
    read_done = true;
    cv.SignalAll();
  }
  write.join();
  EXPECT_NE(used, writer) << "the short read waited for the write";
}

// Sixteen writes queued while the writer was busy are made durable by one
// COMMIT; with the limit at 4 they take four; with grouping off, sixteen.
TEST_F(TenantDatabasesTest, WritesQueuedBehindTheWriterShareOneCommit) {
  for (size_t limit : {64, 4, 1}) {
    SCOPED_TRACE("max_group " + std::to_string(limit));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto dbs = Make(4, limit);
    auto a = dbs.Acquire("a");
    ASSERT_OK(a);
    std::vector<std::function<Status(Database&)>> writes;
    for (int i = 0; i < 16; ++i) writes.push_back(InsertTx("w" + std::to_string(i)));
    for (const Status& s : testing::GroupRound(**a, writes)) EXPECT_OK(s) << s.ToString();
    EXPECT_EQ(Count(**a), 16);
    EXPECT_EQ((*a)->group_commits(), static_cast<int64_t>((16 + limit - 1) / limit));
    EXPECT_EQ((*a)->queued_writes(), 0u);
  }
}

// A replica's acknowledgement a commit waits for (storage/repl_vfs.h
// CommitWaits) is awaited after the writer lets go of the write lock: the
// next write commits meanwhile, the first is answered only once its wait
// ends, and a failed wait fails it although its row is committed here.
TEST_F(TenantDatabasesTest, AReplicaWaitHoldsItsWritesAnswerButNotTheNextWrite) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  ASSERT_OK(a);
  std::promise<void> waiting;
  std::promise<Status> acked;
  std::shared_future<Status> ack = acked.get_future().share();
  auto first = std::async(std::launch::async, [&] {
    return (*a)->WriteGrouped([&](Database& d) -> Status {
      SILO_RETURN_IF_ERROR(InsertTx("first")(d));
      auto wait = [&]() -> Status {
        waiting.set_value();
        return ack.get();
      };
      // As a replicated tenant's recorder does at the COMMIT's sync; with
      // no CommitWaits on the thread it would wait here, under the lock.
      if (auto* waits = repl::CommitWaits::Current()) {
        waits->Add(wait);
        return Status::Ok();
      }
      return wait();
    });
  });
  waiting.get_future().wait();
  auto second = std::async(std::launch::async, [&] { return Insert(**a, "second"); });
  if (second.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    acked.set_value(Status::Ok());  // let both finish, then fail
    FAIL() << "the next write waited for the first one's replica";
  }
  EXPECT_OK(second.get());
  EXPECT_EQ(first.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "answered before its replica acknowledged it";
  EXPECT_EQ(Count(**a), 2);  // committed here, visible to readers
  acked.set_value(Unavailable("no follower acknowledged the commit in time"));
  Status answered = first.get();
  EXPECT_EQ(answered.code(), StatusCode::kUnavailable) << answered.ToString();
  EXPECT_OK(Insert(**a, "third"));
  EXPECT_EQ(repl::CommitWaits::Current(), nullptr) << "left installed after its batch";
}

// In one group: a write that fails undoes its own Transaction and nothing
// of the others'; what a failing write ran outside a Transaction is kept,
// as in autocommit; each caller gets its own answer.
TEST_F(TenantDatabasesTest, AFailingWriteInAGroupUndoesOnlyItsOwnChanges) {
  auto dbs = Make(4);
  auto a = dbs.Acquire("a");
  ASSERT_OK(a);
  auto fails_inside_tx = [](Database& d) -> Status {
    auto tx = Transaction::Begin(d);
    if (!tx.ok()) return tx.status();
    if (Status s = d.Exec("INSERT INTO items (body) VALUES ('undone')"); !s.ok()) return s;
    return InvalidArgument("refused after writing");
  };
  auto fails_outside_tx = [](Database& d) -> Status {
    if (Status s = d.Exec("INSERT INTO items (body) VALUES ('kept')"); !s.ok()) return s;
    return InvalidArgument("refused after an autocommit-style write");
  };
  auto violates = [](Database& d) -> Status {  // a constraint failure mid-transaction
    auto tx = Transaction::Begin(d);
    if (!tx.ok()) return tx.status();
    if (Status s = d.Exec("INSERT INTO items (body) VALUES ('half')"); !s.ok()) return s;
    if (Status s = d.Exec("INSERT INTO items (body) VALUES (NULL)"); !s.ok()) return s;
    return tx->Commit();
  };
  std::vector<Status> out =
      testing::GroupRound(**a, {InsertTx("one"), fails_inside_tx, InsertTx("two"), fails_outside_tx,
                                violates, InsertTx("three")});
  EXPECT_OK(out[0]);
  EXPECT_EQ(out[1].code(), StatusCode::kInvalidArgument);
  EXPECT_OK(out[2]);
  EXPECT_EQ(out[3].code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(out[4].ok());
  EXPECT_OK(out[5]);
  EXPECT_EQ((*a)->group_commits(), 1);
  for (const char* kept : {"one", "two", "three", "kept"}) EXPECT_EQ(Count(**a, kept), 1) << kept;
  for (const char* gone : {"undone", "half"}) EXPECT_EQ(Count(**a, gone), 0) << gone;
  // The writer is left outside any transaction: an exclusive write may
  // checkpoint.
  ASSERT_OK((*a)->Write([](Database& d) {
    EXPECT_FALSE(d.InTransaction());
    return d.Checkpoint();
  }));
}

// A new tenant's database is the template (built once from the
// migrations) sealed under its key: the same schema and migration records
// as a database migrated from scratch, in WAL mode, under the tenant's key
// only; a staging file a crash left behind is replaced, not trusted.
TEST_F(TenantDatabasesTest, AttachRunsBeforeTheFirstConnectionAndDetachAfterTheLast) {
  std::vector<std::string> calls;
  bool refuse = true;
  TenantDatabases dbs = MakeWithHooks(
      [&](const std::string& id, const std::string& path) -> Status {
        // The file exists (created from the template); no connection yet.
        EXPECT_TRUE(PathExists(path));
        EXPECT_FALSE(PathExists(path + "-wal"));
        calls.push_back("attach " + id);
        return refuse ? FailedPrecondition("led elsewhere") : Status::Ok();
      },
      [&](const std::string& id, const std::string& path) {
        EXPECT_FALSE(PathExists(path + "-wal"));  // the last connection closed
        calls.push_back("detach " + id);
      });
  // A refused attach refuses the open, and nothing is detached.
  EXPECT_STATUS(StatusCode::kFailedPrecondition, dbs.Acquire("a"));
  EXPECT_EQ(calls, std::vector<std::string>{"attach a"});
  EXPECT_EQ(dbs.open_count(), 0u);

  refuse = false;
  auto held = dbs.Acquire("a");
  ASSERT_OK(held);
  ASSERT_OK(Insert(**held, "x"));
  EXPECT_OK(dbs.Acquire("a"));  // open already: no second attach
  dbs.Close("a");
  EXPECT_EQ(calls.size(), 2u);  // still held here
  held->reset();
  EXPECT_EQ(calls, (std::vector<std::string>{"attach a", "attach a", "detach a"}));
}

// A tenant taken out of the cache while a caller still holds it (Close,
// before a suspend or a delete; an Exclusive whose holders did not finish
// in time) is not opened a second time beside it: one file, one set of
// connections, one attach at a time (a cluster node's attach installs the
// tenant's recorder, which the old open's detach would take away from the
// new one). Acquire is refused until the holder lets go.
TEST_F(TenantDatabasesTest, ATenantTakenOutOfTheCacheUnderAHolderOpensAgainOnlyOnceItLetsGo) {
  std::vector<std::string> calls;
  TenantDatabases dbs = MakeWithHooks(
      [&](const std::string& id, const std::string&) -> Status {
        calls.push_back("attach " + id);
        return Status::Ok();
      },
      [&](const std::string& id, const std::string&) { calls.push_back("detach " + id); });
  for (const bool by_exclusive : {false, true}) {
    SCOPED_TRACE(by_exclusive ? "an Exclusive that gave up" : "Close");
    calls.clear();
    auto held = dbs.Acquire("a");
    ASSERT_OK(held);
    ASSERT_OK(Insert(**held, "x"));
    if (by_exclusive) {
      EXPECT_STATUS(
          StatusCode::kUnavailable,
          dbs.Exclusive("a", "held", std::chrono::milliseconds(50), [] { return Status::Ok(); }));
    } else {
      dbs.Close("a");
    }
    auto refused = dbs.Acquire("a");
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(refused.status().message(), "the tenant's last open is still in use; retry shortly");
    EXPECT_EQ(calls, std::vector<std::string>{"attach a"});
    held->reset();  // the holder finishes: its connections close, then its detach
    auto reopened = dbs.Acquire("a");
    ASSERT_OK(reopened);
    EXPECT_EQ(Count(**reopened), by_exclusive ? 2 : 1);
    EXPECT_EQ(calls, (std::vector<std::string>{"attach a", "detach a", "attach a"}));
    dbs.Close("a");
  }
}

// Sets `release` and wakes `cv` when it goes out of scope, also on a failed
// assertion. Declared after the TenantDatabases whose hooks wait for
// `release`, so it lets them go before that object's destructor waits for
// its closes (mu, cv and release are declared before it and outlive it).
struct LetGoOnExit {
  Mutex& mu;
  CondVar& cv;
  bool& release;
  ~LetGoOnExit() {
    MutexLock lock(mu);
    release = true;
    cv.SignalAll();
  }
};

// A tenant pushed out of a full cache is closed by the closer thread: the
// Acquire that needed the room returns while that close is still running
// (here held in its detach); opening the tenant again waits until the close
// is over (its detach done before the next attach).
TEST_F(TenantDatabasesTest, AnEvictedTenantClosesInTheBackgroundAndReopensOnlyAfter) {
  Mutex mu;
  CondVar cv;
  std::vector<std::string> calls;
  bool release = false;
  auto reattached = [&]() {  // with mu held
    return std::count(calls.begin(), calls.end(), "attach a") > 1;
  };
  TenantDatabases dbs = MakeWithHooks(
      [&](const std::string& id, const std::string&) -> Status {
        MutexLock lock(mu);
        calls.push_back("attach " + id);
        cv.SignalAll();
        return Status::Ok();
      },
      [&](const std::string& id, const std::string&) {
        MutexLock lock(mu);
        if (id != "a") return;
        calls.push_back("closing a");
        cv.SignalAll();
        // Until the test lets go (or a reopening did not wait, a bug).
        while (!release && !reattached()) cv.Wait(mu);
        calls.push_back("closed a");
      });
  const LetGoOnExit let_go{mu, cv, release};
  for (const char* id : {"a", "b", "c", "d"}) ASSERT_OK(dbs.Acquire(id));
  ASSERT_OK(dbs.Acquire("e"));  // a, the coldest, makes room; not waited for
  {
    MutexLock lock(mu);
    while (std::count(calls.begin(), calls.end(), "closing a") == 0) cv.Wait(mu);
    EXPECT_EQ(std::count(calls.begin(), calls.end(), "closed a"), 0);
  }
  std::thread reopen([&] { EXPECT_OK(dbs.Acquire("a")); });
  {
    // Give a reopening that does not wait the time to show itself.
    MutexLock lock(mu);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (!reattached() && cv.WaitUntil(mu, until)) {
    }
    release = true;
    cv.SignalAll();
  }
  reopen.join();
  MutexLock lock(mu);
  auto closed = std::find(calls.begin(), calls.end(), "closed a");
  auto second =
      std::find(std::find(calls.begin(), calls.end(), "attach a") + 1, calls.end(), "attach a");
  ASSERT_NE(second, calls.end());
  EXPECT_LT(closed, second) << "a was opened again before its close was over";
}

// Handing closes to the closer thread has a bound: with as many tenants
// waiting to be closed as the cache holds (4), opening one more waits until
// a close is over.
TEST_F(TenantDatabasesTest, OpeningWaitsWhileAsManyTenantsWaitToBeClosedAsTheCacheHolds) {
  Mutex mu;
  CondVar cv;
  bool release = false;
  TenantDatabases dbs =
      MakeWithHooks([](const std::string&, const std::string&) { return Status::Ok(); },
                    [&](const std::string&, const std::string&) {
                      MutexLock lock(mu);
                      while (!release) cv.Wait(mu);
                    });
  const LetGoOnExit let_go{mu, cv, release};
  // a..d fill the cache; e..h push them out, and their closes wait.
  for (const char* id : {"a", "b", "c", "d", "e", "f", "g", "h"}) ASSERT_OK(dbs.Acquire(id));
  std::atomic<bool> opened{false};
  std::thread ninth([&] {
    EXPECT_OK(dbs.Acquire("i"));
    opened = true;
  });
  {
    // Give an open that does not wait the time to show itself.
    MutexLock lock(mu);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (!opened && cv.WaitUntil(mu, until)) {
    }
    EXPECT_FALSE(opened) << "i was opened with four closes pending";
    release = true;
    cv.SignalAll();
  }
  ninth.join();
  EXPECT_TRUE(opened);
  EXPECT_EQ(dbs.open_count(), 4u);
}

TEST_F(TenantDatabasesTest, ExclusiveWaitsUntilTheLastHoldersConnectionsHaveClosed) {
  // The last holder's reference goes first; its connections close (and
  // the detach runs) after. What runs exclusively must come after all of
  // it: a cluster node hands a tenant over only once its last commit, the
  // close's checkpoint, was published.
  std::atomic<bool> detached{false};
  TenantDatabases dbs =
      MakeWithHooks([](const std::string&, const std::string&) { return Status::Ok(); },
                    [&](const std::string&, const std::string&) {
                      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a slow close
                      detached = true;
                    });
  auto held = dbs.Acquire("a");
  ASSERT_OK(held);
  ASSERT_OK(Insert(**held, "x"));
  std::thread holder([db = std::move(held).value()]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    db.reset();  // closes on this thread
  });
  bool ran = false;
  ASSERT_OK(dbs.Exclusive("a", "held", std::chrono::seconds(10), [&] {
    EXPECT_TRUE(detached) << "ran while the last connection was still closing";
    ran = true;
    return Status::Ok();
  }));
  holder.join();
  EXPECT_TRUE(ran);
}

TEST_F(TenantDatabasesTest, ANewTenantIsTheMigratedTemplateUnderItsOwnKey) {
  constexpr Migration kTwo[] = {
      {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"},
      {2, "index", "CREATE INDEX items_body ON items (body)"},
  };
  auto schema_of = [](Database& d) {
    std::string out;
    auto st = d.Prepare(
        "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name");
    EXPECT_OK(st);
    while (*st->Step()) out += st->ColumnText(0) + "\n";
    auto m = d.Prepare("SELECT version || ' ' || name || ' ' || checksum FROM silo_migrations");
    EXPECT_OK(m);
    while (*m->Step()) out += m->ColumnText(0) + "\n";
    return out;
  };
  std::string scratch_schema;
  {
    auto key = crypto::SecretKey::Random();
    auto db = MustOpen(Path("scratch.db"), key);
    ASSERT_OK(Migrate(*db, kTwo));
    scratch_schema = schema_of(*db);
  }
  std::ofstream(Path("b.db.new")) << "half-written";  // an interrupted creation's leftover
  TenantDatabases dbs(
      [this](const std::string& id) -> Result<crypto::SecretKey> {
        return crypto::SecretKey::FromBytes(keys_[id]);
      },
      [this](const std::string& id) { return Path(id + ".db"); }, kTwo, {});
  for (const char* id : {"a", "b"}) {
    SCOPED_TRACE(id);
    auto db = dbs.Acquire(id);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Read([&](Database& d) {
      EXPECT_EQ(schema_of(d), scratch_schema);
      EXPECT_EQ(*d.IntegrityCheck(), "ok");
      auto mode = d.Prepare("PRAGMA journal_mode");
      EXPECT_TRUE(*mode->Step());
      EXPECT_EQ(mode->ColumnText(0), "wal");
      return Status::Ok();
    }));
    ASSERT_OK(Insert(**db, std::string("TEMPLATE-PLAINTEXT-") + id));
    EXPECT_EQ(Count(**db), 1);
    EXPECT_FALSE(fs::exists(Path(std::string(id) + ".db.new")));
  }
  dbs.Close("a");
  dbs.Close("b");
  // Each under its own key: a's file does not open under b's.
  auto b_key = crypto::SecretKey::FromBytes(keys_["b"]);
  ASSERT_OK(b_key);
  EXPECT_FALSE(Database::Open(Path("a.db"), *b_key, {.create = false}).ok());
  EXPECT_OK(Database::Open(Path("b.db"), *b_key, {.create = false}));
  EXPECT_EQ(testing::FilesContaining(dir_, "TEMPLATE-PLAINTEXT-"), "");
}

}  // namespace
}  // namespace silo::storage
