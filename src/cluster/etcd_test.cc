// The etcd client and node leases against a real etcd on loopback.
#include "cluster/etcd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "base/status_matchers.h"
#include "cluster/node_lease.h"
#include "cluster/prefix_cache.h"
#include "cluster/test_etcd.h"

namespace silo::cluster {
namespace {

using Clock = std::chrono::steady_clock;

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_process_.ok()) << "etcd did not start (scripts/bootstrap.sh installs it)";
    etcd_ = std::make_unique<Etcd>(etcd_process_.Options());
  }
  testing::EtcdProcess etcd_process_;
  std::unique_ptr<Etcd> etcd_;
};

TEST_F(EtcdTest, OnlyOneNodeCreatesAKeyAndEachNewHolderHasAHigherTerm) {
  const std::string key = "/silo/t/acme/primary";
  auto lease = etcd_->GrantLease(30);
  ASSERT_OK(lease);
  auto term = etcd_->CreateIfAbsent(key, "node-1", *lease);
  ASSERT_OK(term);
  EXPECT_STATUS(StatusCode::kAlreadyExists, etcd_->CreateIfAbsent(key, "node-2", 0));
  auto held = etcd_->Get(key);
  ASSERT_OK(held);
  ASSERT_TRUE(held->has_value());
  EXPECT_EQ((*held)->value, "node-1");
  EXPECT_EQ((*held)->mod_revision, *term);
  EXPECT_EQ((*held)->lease, *lease);

  // Compare-and-swap on the term: a stale writer changes nothing.
  EXPECT_STATUS(StatusCode::kVersionMismatch, etcd_->PutIf(key, "node-2", *term - 1, 0));
  EXPECT_STATUS(StatusCode::kVersionMismatch, etcd_->DeleteIf(key, *term - 1));
  EXPECT_EQ((*etcd_->Get(key))->value, "node-1");

  // Revoking the lease drops the key; the next holder's term is higher.
  ASSERT_OK(etcd_->Revoke(*lease));
  EXPECT_FALSE(etcd_->Get(key)->has_value());
  EXPECT_STATUS(StatusCode::kNotFound, etcd_->KeepAlive(*lease));
  ASSERT_OK(etcd_->Revoke(*lease));  // already gone: fine
  auto next = etcd_->CreateIfAbsent(key, "node-2", 0);
  ASSERT_OK(next);
  EXPECT_GT(*next, *term);
  auto moved = etcd_->PutIf(key, "node-3", *next, 0);
  ASSERT_OK(moved);
  EXPECT_GT(*moved, *next);
  ASSERT_OK(etcd_->DeleteIf(key, *moved));
  EXPECT_FALSE(etcd_->Get(key)->has_value());
}

TEST_F(EtcdTest, ListsAPrefixOnly) {
  ASSERT_OK(etcd_->CreateIfAbsent("/silo/nodes/a", "1", 0));
  ASSERT_OK(etcd_->CreateIfAbsent("/silo/nodes/b", "2", 0));
  ASSERT_OK(etcd_->CreateIfAbsent("/silo/nodesX", "3", 0));
  ASSERT_OK(etcd_->CreateIfAbsent("/silo/t/a/primary", "4", 0));
  auto nodes = etcd_->List("/silo/nodes/");
  ASSERT_OK(nodes);
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].key, "/silo/nodes/a");
  EXPECT_EQ((*nodes)[1].value, "2");

  // A plain put replaces whatever is there, and hangs on its lease.
  auto lease = etcd_->GrantLease(30);
  ASSERT_OK(lease);
  auto put = etcd_->Put("/silo/nodes/b", "20", *lease);
  ASSERT_OK(put);
  auto b = etcd_->Get("/silo/nodes/b");
  ASSERT_OK(b);
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->value, "20");
  EXPECT_EQ((*b)->mod_revision, *put);
  ASSERT_OK(etcd_->Revoke(*lease));
  EXPECT_FALSE(etcd_->Get("/silo/nodes/b")->has_value());
  // A plain delete, of a key that is there and of one that is not.
  ASSERT_OK(etcd_->Delete("/silo/nodes/a"));
  EXPECT_FALSE(etcd_->Get("/silo/nodes/a")->has_value());
  EXPECT_OK(etcd_->Delete("/silo/nodes/a"));
  EXPECT_EQ(etcd_->List("/silo/nodes")->size(), 1u);  // "/silo/nodesX" stays
}

TEST_F(EtcdTest, ListsOnlyKeysChangedSinceARevisionAndKeysAlone) {
  auto first = etcd_->Put("/silo/gone/a", "{}", 0);
  ASSERT_OK(first);
  auto second = etcd_->Put("/silo/gone/b", "{}", 0);
  ASSERT_OK(second);
  auto all = etcd_->List("/silo/gone/", 0, /*keys_only=*/true);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key, "/silo/gone/a");
  EXPECT_TRUE((*all)[0].value.empty());
  EXPECT_EQ((*all)[1].mod_revision, *second);  // still there without the value
  auto since = etcd_->List("/silo/gone/", *second, true);
  ASSERT_OK(since);
  ASSERT_EQ(since->size(), 1u);
  EXPECT_EQ((*since)[0].key, "/silo/gone/b");
  EXPECT_TRUE(etcd_->List("/silo/gone/", *second + 1, true)->empty());
}

// The cache's view after each read is what a full list says then: keys
// put, changed, deleted, deleted and made again; a full list only when a
// deletion has to be found.
TEST_F(EtcdTest, APrefixCacheReadsWhatAFullListWouldWithoutListingAgain) {
  const std::string prefix = "/silo/t/";
  PrefixCache cache(*etcd_, prefix);
  auto same_as_list = [&] {
    Status refreshed = cache.Refresh();
    auto list = etcd_->List(prefix);
    if (!refreshed.ok() || !list.ok()) {
      return ::testing::AssertionFailure() << "etcd did not answer";
    }
    auto text = [](const KeyValue& kv) {
      return kv.key + "=" + kv.value + "@" + std::to_string(kv.mod_revision) + " ";
    };
    std::string view_text;
    std::string list_text;
    for (const auto& [key, kv] : cache.view()) view_text += (key == kv.key ? "" : "!") + text(kv);
    for (const KeyValue& kv : *list) list_text += text(kv);
    if (view_text != list_text) {
      return ::testing::AssertionFailure() << "view: " << view_text << "\nlist: " << list_text;
    }
    return ::testing::AssertionSuccess();
  };
  ASSERT_OK(etcd_->Put(prefix + "a/primary", "n1", 0));
  ASSERT_OK(etcd_->Put(prefix + "b/primary", "n1", 0));
  ASSERT_OK(etcd_->Put("/silo/nodes/n1", "outside", 0));
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.full_lists(), 1);

  // Changed and new keys come with the changes alone.
  ASSERT_OK(etcd_->Put(prefix + "b/primary", "n2", 0));
  ASSERT_OK(etcd_->Put(prefix + "c/pos/n3", "{\"seq\":4}", 0));
  EXPECT_TRUE(same_as_list());
  // Nothing changed in etcd: not even a range (etcd's revision is the view's).
  const int64_t ranges = cache.ranges();
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.ranges(), ranges);
  // A change elsewhere in etcd: a range, which finds nothing of the prefix.
  ASSERT_OK(etcd_->Put("/silo/status/n1", "{}", 0));
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.ranges(), ranges + 1);
  // Deleted and made again in between: changed, not missing.
  ASSERT_OK(etcd_->Delete(prefix + "a/primary"));
  ASSERT_OK(etcd_->Put(prefix + "a/primary", "n3", 0));
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.full_lists(), 1);

  // A deletion, even with a new key beside it that keeps nothing from
  // looking changed but the count, is found by a full list.
  ASSERT_OK(etcd_->Delete(prefix + "b/primary"));
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.full_lists(), 2);
  ASSERT_OK(etcd_->Delete(prefix + "c/pos/n3"));
  ASSERT_OK(etcd_->Put(prefix + "d/primary", "n1", 0));
  EXPECT_TRUE(same_as_list());
  EXPECT_EQ(cache.full_lists(), 3);

  // A lease that ends takes its keys with it.
  auto lease = etcd_->GrantLease(30);
  ASSERT_OK(lease);
  ASSERT_OK(etcd_->Put(prefix + "e/primary", "n2", *lease));
  EXPECT_TRUE(same_as_list());
  ASSERT_OK(etcd_->Revoke(*lease));
  EXPECT_TRUE(same_as_list());

  // etcd gone: an error, never the old view.
  etcd_process_.Kill();
  EXPECT_STATUS(StatusCode::kUnavailable, cache.Refresh());
}

TEST_F(EtcdTest, AnEndpointThatDoesNotAnswerIsSkippedAndNoneAnsweringIsUnavailable) {
  std::string dead = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  Etcd with_dead_first(EtcdOptions{{dead, etcd_process_.endpoint()}, 2000, "", "", ""});
  ASSERT_OK(with_dead_first.CreateIfAbsent("/k", "v", 0));
  Etcd only_dead(EtcdOptions{{dead}, 2000, "", "", ""});
  EXPECT_STATUS(StatusCode::kUnavailable, only_dead.Get("/k"));
  etcd_process_.Kill();
  EXPECT_STATUS(StatusCode::kUnavailable, etcd_->Get("/k"));
}

TEST_F(EtcdTest, ALeaseIsRenewedAndANodeStopsBeforeEtcdLetsItGo) {
  const std::string key = "/silo/t/acme/primary";
  auto lease = NodeLease::Grant(*etcd_, 5);
  ASSERT_OK(lease);
  ASSERT_OK(etcd_->CreateIfAbsent(key, "node-1", (*lease)->id()));
  // Renewed every third of the TTL: the deadline moves on and the key
  // stays (losing it would take a renewal 3 s late).
  Clock::time_point first = (*lease)->deadline();
  for (int i = 0; i < 600 && (*lease)->deadline() == first; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT((*lease)->deadline(), first);
  EXPECT_TRUE(etcd_->Get(key)->has_value());

  // The node stops renewing (paused, cut off): etcd drops the key after the
  // TTL. Whenever that is seen, the node's own deadline has already passed:
  // it had stopped acting before anyone else could take over.
  (*lease)->StopRenewing();
  Clock::time_point deadline = (*lease)->deadline();
  bool gone = false;
  for (int i = 0; i < 600 && !gone; ++i) {  // etcd expires leases within TTL + ~0.5 s
    gone = !etcd_->Get(key)->has_value();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  Clock::time_point seen = Clock::now();
  ASSERT_TRUE(gone) << "the key outlived its lease by 15 s";
  EXPECT_LE(deadline, seen);
  EXPECT_FALSE((*lease)->Held());
  EXPECT_STATUS(StatusCode::kNotFound, etcd_->KeepAlive((*lease)->id()));
}

TEST_F(EtcdTest, ALeaseEtcdNoLongerHasIsLostForGood) {
  auto lease = NodeLease::Grant(*etcd_, 3);
  ASSERT_OK(lease);
  EXPECT_FALSE((*lease)->Lost());
  // Gone in etcd (what a lease that ran out while its node was paused is):
  // the next renewal hears so, and the lease is never held again.
  ASSERT_OK(etcd_->Revoke((*lease)->id()));
  for (int i = 0; i < 400 && !(*lease)->Lost(); ++i) {  // renewed every second
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE((*lease)->Lost());
  Clock::time_point deadline = (*lease)->deadline();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // a renewal period
  EXPECT_EQ((*lease)->deadline(), deadline);
}

// True while `pid` runs (a zombie nobody reaped yet counts as gone).
bool Running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t end = line.rfind(')');
  return end != std::string::npos && line.size() > end + 2 && line[end + 2] != 'Z';
}

// The harness's own promise: the etcd a test started does not outlive the
// test process, even one killed with no clean-up (it used to run on with
// parent 1, holding its ports).
TEST(EtcdProcessTest, DiesWithATestProcessKilledWithoutCleaningUp) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);  // etcd must not hold it open
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    testing::EtcdProcess etcd;
    std::string said = std::to_string(etcd.ok() ? etcd.pid() : -1) + " " + etcd.dir();
    (void)!::write(fds[1], said.data(), said.size());
    ::kill(::getpid(), SIGKILL);  // no destructor runs
    ::_exit(1);
  }
  ::close(fds[1]);
  std::string said;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) said.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const size_t space = said.find(' ');
  ASSERT_NE(space, std::string::npos) << said;
  const pid_t etcd = std::stoi(said.substr(0, space));
  const std::string dir = said.substr(space + 1);
  ASSERT_GT(etcd, 0) << "etcd did not start (scripts/bootstrap.sh installs it)";
  for (int i = 0; i < 200 && Running(etcd); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const bool outlived = Running(etcd);
  if (outlived) ::kill(etcd, SIGKILL);
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(outlived) << "etcd ran on after the test process that started it was killed";
}

}  // namespace
}  // namespace silo::cluster
