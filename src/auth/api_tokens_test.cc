#include "auth/api_tokens.h"

#include <gtest/gtest.h>

#include "auth/identity.h"
#include "auth/test_migrations.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "files/catalog.h"
#include "rbac/rbac.h"
#include "records/tenant_store.h"
#include "storage/test_util.h"

namespace silo::auth {
namespace {

constexpr int64_t kT0 = 1'780'000'000'000'000;  // simulated time

class ApiTokensTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    migrations_ = testing::AllMigrations();  // identity's: a user's token notifies its owner
    keys_["a"] = crypto::RandomBytes(crypto::SecretKey::kSize);
    keys_["b"] = crypto::RandomBytes(crypto::SecretKey::kSize);
    dbs_ = std::make_unique<storage::TenantDatabases>(
        [this](const std::string& id) { return crypto::SecretKey::FromBytes(keys_[id]); },
        [this](const std::string& id) { return Path(id + ".db"); }, migrations_,
        storage::TenantDatabasesOptions{});
    for (const char* id : {"a", "b"}) {
      auto db = dbs_->Acquire(id);
      ASSERT_OK(db);
      dbs_of_[id] = *db;
    }
    a_ = std::make_unique<ApiTokens>(dbs_of_["a"]);
    b_ = std::make_unique<ApiTokens>(dbs_of_["b"]);
  }

  events::Origin Ctx(int64_t now) { return {{"user", "u1"}, "req", "127.0.0.1", now}; }

  // A token spec; the operator's (the default owner) on a platform that
  // lets tenants open themselves to it (the lockbox has its own tests:
  // access_requests_test.cc).
  static TokenSpec Spec(std::string name, std::vector<std::string> permissions, int64_t expires,
                        std::string owner = "operator") {
    TokenSpec spec;
    spec.name = std::move(name);
    spec.permissions = std::move(permissions);
    spec.expires_at_us = expires;
    spec.owner = std::move(owner);
    spec.platform_permits_operator_access = true;
    return spec;
  }

  std::vector<events::StoredEvent> Log(events::Log log) {
    std::vector<events::StoredEvent> out;
    EXPECT_OK(dbs_of_["a"]->Read([&](storage::Database& db) -> Status {
      SILO_ASSIGN_OR_RETURN(out, events::ReadAfter(db, 0, 100, log));
      return Status::Ok();
    }));
    return out;
  }

  std::vector<storage::Migration> migrations_;
  std::map<std::string, std::string> keys_;
  std::unique_ptr<storage::TenantDatabases> dbs_;
  std::map<std::string, std::shared_ptr<storage::TenantDatabase>> dbs_of_;
  std::unique_ptr<ApiTokens> a_, b_;
};

TEST_F(ApiTokensTest, TokensAuthenticateUntilTheyExpireAndOnlyInTheirTenant) {
  TokenSpec spec = Spec("ci", {"records.*.read", "events.read"}, kT0 + 1000);
  auto issued = a_->Create(Ctx(kT0), spec);
  ASSERT_OK(issued);
  auto p = a_->Authenticate(issued->token, kT0 + 999);
  ASSERT_OK(p);
  EXPECT_EQ(p->token_id, issued->id);
  EXPECT_TRUE(rbac::Grants(p->permissions, "records.tickets.read"));
  EXPECT_FALSE(rbac::Grants(p->permissions, "records.tickets.update"));
  EXPECT_FALSE(rbac::Grants(p->permissions, "collections.manage"));
  EXPECT_STATUS(StatusCode::kUnauthenticated, a_->Authenticate(issued->token, kT0 + 1000));
  EXPECT_STATUS(StatusCode::kUnauthenticated, b_->Authenticate(issued->token, kT0));
  std::string forged = issued->token;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_STATUS(StatusCode::kUnauthenticated, a_->Authenticate(forged, kT0));
  EXPECT_STATUS(StatusCode::kUnauthenticated, a_->Authenticate("silo_", kT0));

  // Refused specs write nothing.
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                a_->Create(Ctx(kT0), Spec("x", {"records.tickets.drop"}, kT0 + 10)));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                a_->Create(Ctx(kT0), Spec("x", {"events.read"}, kT0)));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                a_->Create(Ctx(kT0), Spec("", {"events.read"}, kT0 + 10)));
  auto evs = Log(events::Log::kEvents);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].type, "token.created");
  EXPECT_EQ(evs[0].body->find(issued->token.substr(5)), std::string::npos);
  EXPECT_NE(evs[0].body->find(R"({"field":"secret","changed":true})"), std::string::npos);
  auto audit = Log(events::Log::kAudit);
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].subject_kind, "token");
  EXPECT_EQ(audit[0].subject_id, issued->id);
  EXPECT_EQ(storage::testing::FilesContaining(dir_, issued->token.substr(5)), "");
}

TEST_F(ApiTokensTest, TokensAreListedByOwnerAndRevokedOnlyByTheirOwner) {
  TokenSpec mine = Spec("mine", {"records.*.read"}, kT0 + 3'600'000'000LL, "user:u1");
  TokenSpec theirs = Spec("theirs", {"records.*.read"}, kT0 + 3'600'000'000LL, "user:u2");
  auto a = a_->Create(Ctx(kT0), mine);
  auto b = a_->Create(Ctx(kT0), theirs);
  ASSERT_OK(a);
  ASSERT_OK(b);
  auto listed = a_->List(std::string("user:u1"));
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, a->id);
  EXPECT_EQ((*listed)[0].owner, "user:u1");
  EXPECT_EQ(a_->List(std::nullopt)->size(), 2u);
  // u1 cannot revoke u2's token; the token still works.
  EXPECT_STATUS(StatusCode::kNotFound, a_->Revoke(Ctx(kT0 + 1), b->id, std::string("user:u1")));
  EXPECT_OK(a_->Authenticate(b->token, kT0 + 2));
  ASSERT_OK(a_->Revoke(Ctx(kT0 + 1), a->id, std::string("user:u1")));
  EXPECT_STATUS(StatusCode::kUnauthenticated, a_->Authenticate(a->token, kT0 + 2));
  EXPECT_EQ(a_->Authenticate(b->token, kT0 + 2)->owner, "user:u2");
  auto evs = Log(events::Log::kEvents);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[2].type, "token.revoked");
}

}  // namespace
}  // namespace silo::auth
