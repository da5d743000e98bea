// `silo tenant promote --accept-loss` (ForceElection) against a real etcd
// on loopback, with the keys a cluster's nodes would have written: what
// the command checks before it replaces a tenant's sync set.
#include "app/cluster_member.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "base/status_matchers.h"
#include "cluster/etcd.h"
#include "cluster/test_etcd.h"

namespace silo::app {
namespace {

using namespace std::chrono_literals;

constexpr char kLineage[] = "0123456789abcdef0123456789abcdef";
constexpr char kOtherLineage[] = "fedcba9876543210fedcba9876543210";

// Tenant t1 ("acme"): no node leads it; its sync set names n2 alone, lost
// for good; n3 is live, keyed, and posted a copy at seq 30, term 4. The
// current chain, set by each test, decides whether that copy may lead.
class ForceElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_process_.ok()) << "etcd did not start (scripts/bootstrap.sh installs it)";
    etcd_ = std::make_unique<cluster::Etcd>(etcd_process_.Options());
    ASSERT_OK(etcd_->Put("/silo/slugs/acme", R"({"id":"t1"})", 0));
    ASSERT_OK(etcd_->Put("/silo/nodes/n3", R"({"node":"n3","keyless":false})", 0));
    ASSERT_OK(etcd_->Put("/silo/t/t1/sync", R"({"term":9,"nodes":["n2"]})", 0));
    ASSERT_OK(etcd_->Put(
        "/silo/t/t1/pos/n3",
        std::string(R"({"seq":30,"term":4,"lineage":")") + kLineage + R"(","hash":"aa"})", 0));
  }

  // The command for n3, and the sync set it leaves.
  Result<std::string> ForceN3() { return ForceElection({etcd_process_.endpoint()}, "acme", "n3"); }
  std::string SyncSet() {
    auto kv = etcd_->Get("/silo/t/t1/sync");
    return kv.ok() && kv->has_value() ? (*kv)->value : "";
  }

  cluster::testing::EtcdProcess etcd_process_;
  std::unique_ptr<cluster::Etcd> etcd_;
};

TEST_F(ForceElectionTest, ACopyOffTheCurrentChainIsRefusedAndTheSetStays) {
  const std::string set = SyncSet();
  const std::vector<std::pair<std::string, std::string>> off_chain = {
      {"ended (a re-key)", R"({"ended":true,"term":9})"},
      {"another lineage",
       std::string(R"({"term":9,"lineage":")") + kOtherLineage + R"(","from":0,"from_hash":""})"},
      {"taken on before n3's seq",
       std::string(R"({"term":9,"lineage":")") + kLineage + R"(","from":25,"from_hash":"bb"})"},
  };
  for (const auto& [why, chain] : off_chain) {
    ASSERT_OK(etcd_->Put("/silo/t/t1/chain", chain, 0));
    auto forced = ForceN3();
    EXPECT_STATUS(StatusCode::kFailedPrecondition, forced) << why;
    EXPECT_NE(forced.status().message().find("not of the tenant's current chain"),
              std::string::npos)
        << why << ": " << forced.status().message();
    EXPECT_EQ(SyncSet(), set) << why;
  }
}

TEST_F(ForceElectionTest, ACopyOfTheCurrentChainGetsTheSetAlone) {
  // The chain's primary took it on from exactly where n3's copy stands.
  ASSERT_OK(etcd_->Put(
      "/silo/t/t1/chain",
      std::string(R"({"term":9,"lineage":")") + kLineage + R"(","from":30,"from_hash":"aa"})", 0));
  auto forcing = std::async(std::launch::async, [this] { return ForceN3(); });
  // n3's part: it sees the set name it alone, and takes the tenant.
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (SyncSet().find(R"("forced":true)") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(SyncSet(), R"({"term":9,"nodes":["n3"],"forced":true,"replaced":["n2"]})");
  ASSERT_OK(etcd_->Put("/silo/t/t1/primary", R"({"node":"n3"})", 0));
  auto forced = forcing.get();
  ASSERT_OK(forced);
  EXPECT_NE(forced->find("n3 leads acme now"), std::string::npos) << *forced;
  EXPECT_NE(forced->find("[n2]"), std::string::npos) << *forced;
}

}  // namespace
}  // namespace silo::app
