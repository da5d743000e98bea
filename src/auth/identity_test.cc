#include "auth/identity.h"

#include <gtest/gtest.h>

#include "auth/api_tokens.h"
#include "auth/test_migrations.h"
#include "auth/totp.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "files/catalog.h"
#include "records/tenant_store.h"
#include "storage/test_util.h"

namespace silo::auth {
namespace {

constexpr int64_t kT0 = 1'780'000'000'000'000;  // simulated time
constexpr int64_t kMin = 60'000'000;

using testing::AllMigrations;

class IdentityTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    migrations_ = AllMigrations();
    key_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    dbs_ = std::make_unique<storage::TenantDatabases>(
        [this](const std::string&) { return crypto::SecretKey::FromBytes(key_); },
        [this](const std::string& id) { return Path(id + ".db"); }, migrations_,
        storage::TenantDatabasesOptions{});
    auto db = dbs_->Acquire("t");
    ASSERT_OK(db);
    id_ = std::make_unique<Identity>(*db, crypto::SecretKey::Random(), Timeouts{});
  }

  events::Origin Ctx(int64_t now, std::string actor = "op") {
    return {{"operator", std::move(actor)}, "req", "127.0.0.1", now};
  }

  // An active user with `roles` and password hash "h".
  User Active(const std::string& email, std::vector<std::string> roles) {
    auto inv = id_->InviteUser(Ctx(kT0), email, roles);
    EXPECT_OK(inv) << inv.status().ToString();
    auto u = id_->CompleteSetup(Ctx(kT0), inv->setup_token, "h");
    EXPECT_OK(u) << u.status().ToString();
    return *u;
  }

  std::vector<storage::Migration> migrations_;
  std::string key_;
  std::unique_ptr<storage::TenantDatabases> dbs_;
  std::unique_ptr<Identity> id_;
};

TEST_F(IdentityTest, SetupTokenIsSingleUseAndExpires) {
  auto inv = id_->InviteUser(Ctx(kT0), "Ann@Example.com", {"owner"});
  ASSERT_OK(inv);
  EXPECT_EQ(inv->user.email, "ann@example.com");
  EXPECT_EQ(inv->user.status, "invited");
  EXPECT_EQ(id_->InviteUser(Ctx(kT0), "ann@example.com", {}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(id_->InviteUser(Ctx(kT0), "bob@example.com", {"nope"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(id_->InviteUser(Ctx(kT0), "not-an-email", {}).status().code(),
            StatusCode::kInvalidArgument);
  auto u = id_->CompleteSetup(Ctx(kT0 + 1), inv->setup_token, "hash1");
  ASSERT_OK(u);
  EXPECT_EQ(u->status, "active");
  EXPECT_EQ(id_->CompleteSetup(Ctx(kT0 + 2), inv->setup_token, "hash2").status().code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(id_->FindLogin("ANN@example.com")->password_hash, "hash1");
  auto late = id_->InviteUser(Ctx(kT0), "late@example.com", {});
  EXPECT_EQ(id_->CompleteSetup(Ctx(kT0 + 73LL * 60 * kMin), late->setup_token, "h").status().code(),
            StatusCode::kUnauthenticated);
  // The token is not in the database file in clear.
  EXPECT_EQ(storage::testing::FilesContaining(dir_, late->setup_token), "");
}

// A realtime connection's checks (IdleClock::kKeep) do not count as use: an
// unattended tab still times out, and the end time says when.
TEST_F(IdentityTest, ChecksThatKeepTheIdleClockDoNotExtendASession) {
  User ann = Active("ann@example.com", {"viewer"});
  auto s = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  ASSERT_OK(s);
  for (int64_t t = kT0 + 5 * kMin; t < kT0 + 30 * kMin; t += 5 * kMin) {
    auto a = id_->AuthenticateSession(s->token, t, IdleClock::kKeep);
    ASSERT_OK(a);
    EXPECT_EQ(a->ends_at_us, kT0 + 30 * kMin);
  }
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                id_->AuthenticateSession(s->token, kT0 + 30 * kMin, IdleClock::kKeep));
  // A request's check (the default) does count, and moves the end.
  auto s2 = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  auto used = id_->AuthenticateSession(s2->token, kT0 + 20 * kMin);
  ASSERT_OK(used);
  EXPECT_EQ(used->ends_at_us, kT0 + 50 * kMin);
  EXPECT_OK(id_->AuthenticateSession(s2->token, kT0 + 45 * kMin, IdleClock::kKeep));
}

// A re-key's pause refuses the tenant's writes: a signed-in user's reads go
// on, the idle clock simply not moved by them.
TEST_F(IdentityTest, ASessionStillAuthenticatesWhileTheTenantRefusesWrites) {
  User ann = Active("ann@example.com", {"viewer"});
  auto s = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  ASSERT_OK(s);
  auto db = dbs_->Acquire("t");
  ASSERT_OK(db);
  (*db)->RefuseWrites(Unavailable("paused (test)"));
  auto a = id_->AuthenticateSession(s->token, kT0 + 20 * kMin);  // a refresh is due
  ASSERT_OK(a) << a.status().ToString();
  EXPECT_EQ(a->ends_at_us, kT0 + 30 * kMin);  // not moved
  EXPECT_STATUS(StatusCode::kUnavailable,
                id_->CreateSession(Ctx(kT0 + 20 * kMin), ann.id, MfaPassed::kNo, ""));
}

TEST_F(IdentityTest, SessionsTimeOutAndAreRevoked) {
  User ann = Active("ann@example.com", {"viewer"});
  auto s = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "test agent");
  ASSERT_OK(s);
  EXPECT_EQ(s->token.size(), 43u);
  EXPECT_NE(s->token, s->csrf_token);
  auto a = id_->AuthenticateSession(s->token, kT0 + 29 * kMin);
  ASSERT_OK(a);
  EXPECT_EQ(a->user.id, ann.id);
  EXPECT_EQ(a->csrf_hash, crypto::Sha256Hex(s->csrf_token));
  // Used at 29 min, so still alive at 58 min; idle 30 min -> gone.
  EXPECT_OK(id_->AuthenticateSession(s->token, kT0 + 58 * kMin));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession(s->token, kT0 + 89 * kMin));
  // Absolute limit, however active.
  auto s2 = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  for (int64_t t = kT0; t < kT0 + 12 * 60 * kMin; t += 20 * kMin) {
    ASSERT_OK(id_->AuthenticateSession(s2->token, t)) << (t - kT0) / kMin;
  }
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                id_->AuthenticateSession(s2->token, kT0 + 12 * 60 * kMin));
  // Revocation, and a password change ends every session.
  auto s3 = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  auto s4 = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  ASSERT_OK(id_->RevokeSession(Ctx(kT0), ann.id, s3->session.id));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession(s3->token, kT0 + 1));
  EXPECT_OK(id_->AuthenticateSession(s4->token, kT0 + 1));
  ASSERT_OK(id_->ChangePassword(Ctx(kT0), ann.id, "new"));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession(s4->token, kT0 + 1));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession("garbage", kT0));
  EXPECT_EQ(storage::testing::FilesContaining(dir_, s4->token), "");
}

TEST_F(IdentityTest, DisablingEndsSessionsAndTheLastOwnerStays) {
  User owner = Active("owner@example.com", {"owner"});
  User ed = Active("ed@example.com", {"editor"});
  auto s = id_->CreateSession(Ctx(kT0), ed.id, MfaPassed::kNo, "");
  ASSERT_OK(id_->SetAccountState(Ctx(kT0), ed.id, Account::kDisabled, Caller::kNotOwner));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession(s->token, kT0 + 1));
  EXPECT_EQ(id_->GetUser(ed.id)->status, "disabled");
  // The last owner can be neither demoted nor disabled.
  EXPECT_EQ(id_->SetUserRoles(Ctx(kT0), owner.id, {"admin"}, Caller::kOwner).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(id_->SetAccountState(Ctx(kT0), owner.id, Account::kDisabled, Caller::kOwner).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(id_->GetUser(owner.id)->roles, std::vector<std::string>{"owner"});
  // Only an owner grants the owner role.
  EXPECT_EQ(id_->SetUserRoles(Ctx(kT0), ed.id, {"owner"}, Caller::kNotOwner).code(),
            StatusCode::kPermissionDenied);
  ASSERT_OK(id_->SetUserRoles(Ctx(kT0), ed.id, {"owner"}, Caller::kOwner));
  ASSERT_OK(id_->SetAccountState(Ctx(kT0), ed.id, Account::kEnabled, Caller::kOwner));
  EXPECT_OK(id_->SetUserRoles(Ctx(kT0), owner.id, {"admin"}, Caller::kOwner));
}

TEST_F(IdentityTest, TotpEnrolmentCodesOnceAndRecoveryCodesOnce) {
  User ann = Active("ann@example.com", {"owner"});
  auto secret = id_->StartTotp(Ctx(kT0), ann.id);
  ASSERT_OK(secret);
  int64_t t = kT0 / 1'000'000;
  EXPECT_FALSE(id_->ConfirmTotp(Ctx(kT0), ann.id, "000000").ok() &&
               TotpCode(*secret, t) != "000000");
  auto codes = id_->ConfirmTotp(Ctx(kT0), ann.id, TotpCode(*secret, t));
  ASSERT_OK(codes) << codes.status().ToString();
  EXPECT_EQ(codes->size(), 10u);
  EXPECT_TRUE(id_->GetUser(ann.id)->totp_enabled);
  // The code used to confirm cannot log in; the next step's can, once.
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                id_->CheckTotp(Ctx(kT0), ann.id, TotpCode(*secret, t)));
  int64_t later = kT0 + 30'000'000;
  EXPECT_OK(id_->CheckTotp(Ctx(later), ann.id, TotpCode(*secret, t + 30)));
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                id_->CheckTotp(Ctx(later), ann.id, TotpCode(*secret, t + 30)));
  // Recovery codes: each once, dashes and case ignored.
  std::string upper = (*codes)[3];
  for (auto& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_OK(id_->UseRecoveryCode(Ctx(kT0), ann.id, upper));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->UseRecoveryCode(Ctx(kT0), ann.id, (*codes)[3]));
  EXPECT_OK(id_->UseRecoveryCode(Ctx(kT0), ann.id, (*codes)[4]));
  // Neither the secret nor a code is stored in clear.
  EXPECT_EQ(storage::testing::FilesContaining(dir_, *secret), "");
  EXPECT_EQ(storage::testing::FilesContaining(dir_, (*codes)[5]), "");
  ASSERT_OK(id_->DisableTotp(Ctx(kT0), ann.id));
  EXPECT_FALSE(id_->GetUser(ann.id)->totp_enabled);
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->UseRecoveryCode(Ctx(kT0), ann.id, (*codes)[5]));
}

TEST_F(IdentityTest, ResetIsSingleUseShortLivedAndEndsSessions) {
  User ann = Active("ann@example.com", {"viewer"});
  auto s = id_->CreateSession(Ctx(kT0), ann.id, MfaPassed::kNo, "");
  std::string token;
  auto compose = [&](const std::string& t) {
    token = t;
    return std::make_pair(std::string("reset"), "code " + t);
  };
  ASSERT_OK(id_->RequestReset(Ctx(kT0), "ann@example.com", compose));
  ASSERT_FALSE(token.empty());
  std::string unused = token;
  token.clear();
  ASSERT_OK(id_->RequestReset(Ctx(kT0), "nobody@example.com", compose));
  EXPECT_TRUE(token.empty());  // no mail for an unknown address
  auto mail = id_->DueMail(kT0, 10);
  ASSERT_EQ(mail->size(), 1u);
  EXPECT_EQ((*mail)[0].recipient, "ann@example.com");
  // Expired after 10 minutes (the default of SILO_RESET_TOKEN_MINUTES).
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->ConfirmReset(Ctx(kT0 + 11 * kMin), unused, "x"));
  ASSERT_OK(id_->RequestReset(Ctx(kT0), "ann@example.com", compose));
  auto u = id_->ConfirmReset(Ctx(kT0 + kMin), token, "new-hash");
  ASSERT_OK(u);
  EXPECT_EQ(id_->FindLogin("ann@example.com")->password_hash, "new-hash");
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->ConfirmReset(Ctx(kT0 + kMin), token, "again"));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AuthenticateSession(s->token, kT0 + kMin));
  // Sending erases the body that held the token.
  auto due = id_->DueMail(kT0 + kMin, 10);
  ASSERT_OK(due);
  std::vector<Mail> pending = std::move(due).value();
  for (const auto& m : pending) ASSERT_OK(id_->MarkMailSent(m.id, kT0));
  EXPECT_TRUE(id_->DueMail(kT0 + kMin, 10)->empty());
}

TEST_F(IdentityTest, TenantRolesAreValidatedAndGuarded) {
  rbac::Role support{"support", "Support desk", {"records.tickets.read", "records.tickets.update"},
                     false,     false,          {}};
  ASSERT_OK(id_->CreateRole(Ctx(kT0), support));
  EXPECT_EQ(id_->CreateRole(Ctx(kT0), support).status().code(), StatusCode::kAlreadyExists);
  rbac::Role bad = support;
  bad.name = "bad";
  bad.permissions = {"records.tickets.drop"};
  EXPECT_EQ(id_->CreateRole(Ctx(kT0), bad).status().code(), StatusCode::kInvalidArgument);
  bad.name = "owner";
  EXPECT_STATUS(StatusCode::kInvalidArgument, id_->CreateRole(Ctx(kT0), bad));
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                id_->UpdateRole(Ctx(kT0), *rbac::FindBuiltIn("viewer")));
  User sam = Active("sam@example.com", {"support"});
  EXPECT_EQ(id_->DeleteRole(Ctx(kT0), "support").code(), StatusCode::kFailedPrecondition);
  auto roles = id_->RolesOf(sam);
  ASSERT_EQ(roles->size(), 1u);
  EXPECT_EQ((*roles)[0].permissions, support.permissions);
  EXPECT_EQ(id_->ListRoles()->size(), rbac::BuiltInRoles().size() + 1);
  ASSERT_OK(id_->SetUserRoles(Ctx(kT0), sam.id, {}, Caller::kNotOwner));
  EXPECT_OK(id_->DeleteRole(Ctx(kT0), "support"));
}

// RolesOf serves a tenant's own roles from the tenant cache; a role edit is
// a write, and the next RolesOf sees it (a stale permission never survives
// the change that removed it; cache/tenant_cache.h).
TEST_F(IdentityTest, ARoleEditIsNeverServedStaleFromTheCache) {
  rbac::Role support{"support", "",    {"records.tickets.read", "records.tickets.update"},
                     false,     false, {}};
  ASSERT_OK(id_->CreateRole(Ctx(kT0), support));
  User sam = Active("sam@example.com", {"support"});
  auto db = dbs_->Acquire("t");
  ASSERT_OK(db);
  cache::TenantCache& cache = (*db)->cache();
  for (int round = 0; round < 3; ++round) {
    support.permissions = round % 2 == 0 ? std::vector<std::string>{"records.tickets.read"}
                                         : std::vector<std::string>{"records.tickets.update"};
    ASSERT_OK(id_->UpdateRole(Ctx(kT0), support));
    const uint64_t hits = cache.stats().hits;
    for (int i = 0; i < 3; ++i) {
      auto roles = id_->RolesOf(sam);
      ASSERT_OK(roles);
      ASSERT_EQ(roles->size(), 1u);
      EXPECT_EQ((*roles)[0].permissions, support.permissions) << "round " << round << " read " << i;
    }
    EXPECT_EQ(cache.stats().hits, hits + 2) << "the second and third reads are cache hits";
  }
}

TEST_F(IdentityTest, MfaChallengesAllowFiveAttempts) {
  User ann = Active("ann@example.com", {"owner"});
  auto c = id_->CreateMfaChallenge(ann.id, kT0);
  ASSERT_OK(c);
  for (int i = 0; i < kMaxMfaAttempts; ++i) {
    EXPECT_EQ(*id_->AttemptMfaChallenge(*c, kT0), ann.id) << i;
  }
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AttemptMfaChallenge(*c, kT0));
  auto d = id_->CreateMfaChallenge(ann.id, kT0);
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->AttemptMfaChallenge(*d, kT0 + 6 * kMin));
}

}  // namespace
}  // namespace silo::auth
