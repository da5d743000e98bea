#include "tenant/registry.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/file_util.h"
#include "base/status_matchers.h"

namespace silo::tenant {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-registry-XXXXXX";
    dir_ = mkdtemp(tmpl);
    master_ = std::make_unique<crypto::SecretKey>(crypto::SecretKey::Random());
    Reopen();
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Reopen() {
    registry_.reset();
    auto ring = crypto::Keyring::Open(dir_ + "/keyring", master_->Clone());
    ASSERT_OK(ring);
    keyring_ = std::move(ring).value();
    auto reg = TenantRegistry::Open(dir_, keyring_.get());
    ASSERT_OK(reg) << reg.status().ToString();
    registry_ = std::move(reg).value();
  }
  std::string dir_;
  std::unique_ptr<crypto::SecretKey> master_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<TenantRegistry> registry_;
};

TEST_F(RegistryTest, CreateFindListSurviveRestart) {
  auto t = registry_->Create("acme", "Acme Corp", "owner@acme.test");
  ASSERT_OK(t);
  EXPECT_EQ(t->id.size(), 32u);
  Reopen();
  auto found = registry_->Find("acme");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, t->id);
  EXPECT_EQ(found->name, "Acme Corp");
  EXPECT_EQ(found->owner_email, "owner@acme.test");
  EXPECT_EQ(registry_->List().size(), 1u);
}

TEST_F(RegistryTest, ATenantDirectoryPutInPlaceIsAdopted) {
  auto t = registry_->Create("acme", "Acme Corp", "owner@acme.test");
  ASSERT_OK(t);
  // What a follower does on promotion: the directory and key arrive from
  // elsewhere; here they are this registry's own, moved out and back.
  std::string meta = Slurp(fs::path(dir_) / "tenants" / t->id / "tenant.meta");
  fs::remove_all(fs::path(dir_) / "tenants" / t->id);
  Reopen();
  EXPECT_FALSE(registry_->Find("acme").has_value());
  EXPECT_STATUS(StatusCode::kNotFound, registry_->Adopt(t->id));
  ASSERT_OK(MakeDirs(dir_ + "/tenants/" + t->id));
  ASSERT_OK(WriteFileAtomic(dir_ + "/tenants/" + t->id + "/tenant.meta", meta));
  auto adopted = registry_->Adopt(t->id);
  ASSERT_OK(adopted);
  EXPECT_EQ(adopted->slug, "acme");
  EXPECT_EQ(adopted->name, "Acme Corp");
  EXPECT_EQ(registry_->FindActive("acme")->id, t->id);
  ASSERT_OK(registry_->Adopt(t->id));  // again: the same tenant

  // Metadata in another tenant's directory, or whose key is gone: refused.
  ASSERT_OK(MakeDirs(dir_ + "/tenants/" + t->id + "x"));
  ASSERT_OK(WriteFileAtomic(dir_ + "/tenants/" + t->id + "x/tenant.meta", meta));
  EXPECT_STATUS(StatusCode::kDataLoss, registry_->Adopt(t->id + "x"));
  auto other = registry_->Create("beta", "Beta", "owner@beta.test");
  ASSERT_OK(other);
  std::string beta_meta = Slurp(fs::path(dir_) / "tenants" / other->id / "tenant.meta");
  ASSERT_OK(registry_->Delete("beta"));
  ASSERT_OK(MakeDirs(dir_ + "/tenants/" + other->id));
  ASSERT_OK(WriteFileAtomic(dir_ + "/tenants/" + other->id + "/tenant.meta", beta_meta));
  EXPECT_STATUS(StatusCode::kDataLoss, registry_->Adopt(other->id));
  EXPECT_FALSE(registry_->Find("beta").has_value());
}

TEST_F(RegistryTest, ARelinquishedTenantIsMovedAsideWithItsKeyAndSlugKept) {
  std::vector<std::string> released;
  registry_->SetSlugReservations(
      {[](const std::string&, const std::string&) { return Status::Ok(); },
       [&](const std::string& slug, const std::string&) { released.push_back(slug); }});
  auto t = registry_->Create("acme", "Acme Corp", "owner@acme.test");
  ASSERT_OK(t);
  std::string meta = Slurp(fs::path(dir_) / "tenants" / t->id / "tenant.meta");
  const std::string kept = dir_ + "/deposed/" + t->id + ".7";
  ASSERT_OK(registry_->Relinquish(t->id, kept));
  EXPECT_FALSE(registry_->Find("acme").has_value());
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "tenants" / t->id));
  EXPECT_EQ(Slurp(fs::path(kept) / "tenant.meta"), meta);  // whole
  EXPECT_TRUE(released.empty());                           // the slug lives on elsewhere
  EXPECT_OK(keyring_->GetKey(t->id));                      // as does the key
  EXPECT_STATUS(StatusCode::kNotFound, registry_->Relinquish(t->id, kept + "x"));
  Reopen();  // not served after a restart either
  EXPECT_FALSE(registry_->Find("acme").has_value());
}

TEST_F(RegistryTest, ACreateReservesItsSlugFirstAndADeleteGivesItBack) {
  std::map<std::string, std::string> held;  // slug -> tenant id, as etcd would
  std::vector<std::string> released;
  registry_->SetSlugReservations({[&](const std::string& slug, const std::string& id) -> Status {
                                    auto [it, fresh] = held.emplace(slug, id);
                                    return fresh || it->second == id
                                               ? Status::Ok()
                                               : AlreadyExists("taken elsewhere");
                                  },
                                  [&](const std::string& slug, const std::string& id) {
                                    released.push_back(slug);
                                    if (held[slug] == id) held.erase(slug);
                                  }});
  held["beta"] = "another-node-s-tenant";
  EXPECT_STATUS(StatusCode::kAlreadyExists, registry_->Create("beta", "Beta", ""));
  EXPECT_FALSE(registry_->Find("beta").has_value());
  EXPECT_TRUE(fs::is_empty(fs::path(dir_) / "tenants"));  // nothing made

  auto acme = registry_->Create("acme", "Acme", "");
  ASSERT_OK(acme);
  EXPECT_EQ(held["acme"], acme->id);
  // A bad name is refused before anything is reserved.
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                registry_->Create("gamma", std::string(300, 'n'), ""));
  EXPECT_EQ(held.count("gamma"), 0u);
  EXPECT_TRUE(released.empty());
  ASSERT_OK(registry_->Delete("acme"));
  EXPECT_EQ(held.count("acme"), 0u);
  EXPECT_EQ(released, std::vector<std::string>{"acme"});
}

TEST_F(RegistryTest, NameAndEmailNeverPlaintextOnDisk) {
  ASSERT_OK(registry_->Create("acme", "CANARY-NAME-7731", "canary-7731@acme.test"));
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    if (!e.is_regular_file()) continue;
    std::string data = Slurp(e.path());
    EXPECT_EQ(data.find("CANARY-NAME-7731"), std::string::npos) << e.path();
    EXPECT_EQ(data.find("canary-7731"), std::string::npos) << e.path();
  }
}

TEST_F(RegistryTest, DuplicateAndInvalidRefused) {
  ASSERT_OK(registry_->Create("acme", "", ""));
  EXPECT_EQ(registry_->Create("acme", "", "").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(registry_->Create("Bad_Slug", "", "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->Create("good", "", "not-an-email").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->Create("good", "line\nbreak", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->List().size(), 1u);  // nothing half-created
}

TEST_F(RegistryTest, SuspendResumeAndActiveLookup) {
  ASSERT_OK(registry_->Create("acme", "", ""));
  ASSERT_OK(registry_->SetState("acme", TenantState::kSuspended));
  EXPECT_FALSE(registry_->FindActive("acme").has_value());
  Reopen();
  EXPECT_FALSE(registry_->FindActive("acme").has_value());
  ASSERT_OK(registry_->SetState("acme", TenantState::kActive));
  EXPECT_TRUE(registry_->FindActive("acme").has_value());
  EXPECT_EQ(registry_->SetState("nope", TenantState::kActive).code(), StatusCode::kNotFound);
}

TEST_F(RegistryTest, DeleteRemovesDirectoryAndKey) {
  auto t = registry_->Create("acme", "", "");
  ASSERT_OK(t);
  ASSERT_OK(registry_->Delete("acme"));
  EXPECT_FALSE(fs::exists(dir_ + "/tenants/" + t->id));
  EXPECT_EQ(keyring_->GetKey(t->id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->Delete("acme").code(), StatusCode::kNotFound);
  Reopen();
  EXPECT_FALSE(registry_->Find("acme").has_value());
  // The slug can be reused, with a new id and key.
  auto again = registry_->Create("acme", "", "");
  ASSERT_OK(again);
  EXPECT_NE(again->id, t->id);
}

TEST_F(RegistryTest, InterruptedDeleteIsFinishedOnOpen) {
  auto t = registry_->Create("acme", "", "");
  ASSERT_OK(t);
  fs::rename(dir_ + "/tenants/" + t->id, dir_ + "/tenants/.deleting-" + t->id);
  Reopen();
  EXPECT_FALSE(registry_->Find("acme").has_value());
  EXPECT_FALSE(fs::exists(dir_ + "/tenants/.deleting-" + t->id));
  EXPECT_EQ(keyring_->GetKey(t->id).status().code(), StatusCode::kNotFound);
}

TEST_F(RegistryTest, TamperedMetadataRefusesToLoad) {
  auto t = registry_->Create("acme", "Acme", "");
  ASSERT_OK(t);
  std::string meta_path = dir_ + "/tenants/" + t->id + "/tenant.meta";
  std::string meta = Slurp(meta_path);
  size_t pos = meta.find("\"sealed\":\"") + 14;
  meta[pos] = meta[pos] == 'A' ? 'B' : 'A';
  ASSERT_OK(WriteFileAtomic(meta_path, meta));
  registry_.reset();
  auto reg = TenantRegistry::Open(dir_, keyring_.get());
  ASSERT_STATUS(StatusCode::kDataLoss, reg);
}

}  // namespace
}  // namespace silo::tenant
