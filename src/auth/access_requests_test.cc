// The lockbox (issue 22) at the store: an operator's token or export needs an
// approved, live request that covers it, checked in the transaction that
// uses it; the tenant's operator_access setting and the platform's
// permission decide when none is needed, and "never" refuses everything.
// (The second factor of a decision, and the HTTP answers, are checked
// end to end in tests/e2e/test_lockbox.py.)
#include <gtest/gtest.h>

#include <algorithm>

#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "auth/test_migrations.h"
#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "storage/test_util.h"

namespace silo::auth {
namespace {

constexpr int64_t kMin = 60'000'000;
constexpr int64_t kHour = 60 * kMin;

class AccessRequestsTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    migrations_ = testing::AllMigrations();
    key_ = crypto::RandomBytes(crypto::SecretKey::kSize);
    dbs_ = std::make_unique<storage::TenantDatabases>(
        [this](const std::string&) { return crypto::SecretKey::FromBytes(key_); },
        [this](const std::string& id) { return Path(id + ".db"); }, migrations_,
        storage::TenantDatabasesOptions{});
    auto db = dbs_->Acquire("t");
    ASSERT_OK(db);
    db_ = *db;
    id_ = std::make_unique<Identity>(db_, crypto::SecretKey::Random(), Timeouts{});
    now_ = NowMicros();  // List and Get read states as of the wall clock
  }

  events::Origin Operator(int64_t at) { return {{"operator", "operator"}, "req", "10.0.0.1", at}; }
  events::Origin UserAt(const User& u, int64_t at) {
    return {{"user", u.id}, "req", "10.0.0.2", at};
  }

  User Active(const std::string& email, std::vector<std::string> roles) {
    auto inv = id_->InviteUser(Operator(now_), email, roles);
    EXPECT_OK(inv);
    auto u = id_->CompleteSetup(Operator(now_), inv->setup_token, "h");
    EXPECT_OK(u);
    return *u;
  }

  AccessRequest Request(std::vector<std::string> scopes, int64_t duration_us = 2 * kHour) {
    auto r = id_->RequestAccess(Operator(now_), {std::move(scopes), "ticket 4711", duration_us});
    EXPECT_OK(r);
    return r.ok() ? *r : AccessRequest{};
  }

  // An operator's token, as the operator API mints it.
  Result<IssuedToken> OperatorToken(std::vector<std::string> permissions,
                                    const std::string& request, int64_t at,
                                    bool platform_permits = false) {
    TokenSpec spec;
    spec.name = "support";
    spec.permissions = std::move(permissions);
    spec.expires_at_us = at + 30LL * 24 * kHour;
    spec.access_request = request;
    spec.platform_permits_operator_access = platform_permits;
    return id_->Tokens().Create(Operator(at), spec);
  }

  std::vector<std::string> AuditTypes() {
    std::vector<std::string> out;
    EXPECT_OK(db_->Read([&](storage::Database& db) -> Status {
      SILO_ASSIGN_OR_RETURN(auto entries, events::ReadAfter(db, 0, 1000, events::Log::kAudit));
      for (const auto& e : entries) out.push_back(e.type);
      return Status::Ok();
    }));
    return out;
  }

  int64_t Count(const std::vector<std::string>& v, const std::string& type) {
    return std::count(v.begin(), v.end(), type);
  }

  std::vector<storage::Migration> migrations_;
  std::string key_;
  std::unique_ptr<storage::TenantDatabases> dbs_;
  std::shared_ptr<storage::TenantDatabase> db_;
  std::unique_ptr<Identity> id_;
  int64_t now_ = 0;
};

TEST_F(AccessRequestsTest, AnOperatorTokenNeedsAnApprovedRequestThatCoversIt) {
  User owner = Active("owner@t.test", {"owner"});
  Active("sec@t.test", {"security_admin"});
  Active("admin@t.test", {"admin"});
  Active("editor@t.test", {"editor"});

  // No request: refused, and no token written.
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, "", now_));
  EXPECT_EQ(Count(AuditTypes(), "token.created"), 0);

  AccessRequest r = Request({"records.*.read", "records.*.read"});
  EXPECT_EQ(r.state, "pending");
  EXPECT_EQ(r.scopes, std::vector<std::string>{"records.*.read"});
  // Its approvers are told: the owner and the security admin, nobody else.
  auto mail = id_->DueMail(now_ + 1, 100);
  ASSERT_OK(mail);
  std::vector<std::string> to;
  for (const auto& m : *mail) {
    if (m.subject != "Operator access request for your data") continue;
    to.push_back(m.recipient);
    EXPECT_NE(m.body.find(r.id), std::string::npos);
    EXPECT_NE(m.body.find("ticket 4711"), std::string::npos);
  }
  std::sort(to.begin(), to.end());
  EXPECT_EQ(to, (std::vector<std::string>{"owner@t.test", "sec@t.test"}));

  // Pending: nothing yet.
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, r.id, now_));
  EXPECT_STATUS(StatusCode::kNotFound, OperatorToken({"records.*.read"}, "nope", now_));

  auto approved =
      id_->DecideAccessRequest(UserAt(owner, now_ + kMin), r.id, AccessDecision::kApprove);
  ASSERT_OK(approved);
  EXPECT_EQ(approved->state, "approved");
  EXPECT_EQ(approved->expires_at_us, now_ + kMin + 2 * kHour);
  EXPECT_EQ(approved->decided_by, owner.id);
  // A second decision (a replayed approval, or a deny after it) is refused.
  EXPECT_STATUS(
      StatusCode::kFailedPrecondition,
      id_->DecideAccessRequest(UserAt(owner, now_ + kMin), r.id, AccessDecision::kApprove));
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                id_->DecideAccessRequest(UserAt(owner, now_ + kMin), r.id, AccessDecision::kDeny));

  // Outside the scope: refused.
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"records.*.read", "records.*.update"}, r.id, now_ + 2 * kMin));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"users.read"}, r.id, now_ + 2 * kMin));
  // Within it: a token that ends with the request at the latest.
  auto token = OperatorToken({"records.tickets.read"}, r.id, now_ + 2 * kMin);
  ASSERT_OK(token);
  EXPECT_EQ(token->expires_at_us, approved->expires_at_us);
  auto tokens = id_->Tokens();
  EXPECT_OK(tokens.Authenticate(token->token, now_ + 3 * kMin));
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                tokens.Authenticate(token->token, approved->expires_at_us));

  // Revoked: its token ends in the same transaction, and nothing more is
  // minted under it.
  auto revoked = id_->RevokeAccessRequest(UserAt(owner, now_ + 4 * kMin), r.id);
  ASSERT_OK(revoked);
  EXPECT_EQ(revoked->state, "revoked");
  EXPECT_STATUS(StatusCode::kUnauthenticated, tokens.Authenticate(token->token, now_ + 5 * kMin));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"records.tickets.read"}, r.id, now_ + 5 * kMin));
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                id_->RevokeAccessRequest(UserAt(owner, now_ + 6 * kMin), r.id));
  EXPECT_EQ(id_->GetAccessRequest(r.id)->state, "revoked");

  auto types = AuditTypes();
  for (const char* t : {"access.requested", "access.approved", "access.revoked", "token.revoked"}) {
    EXPECT_EQ(Count(types, t), 1) << t;
  }
  EXPECT_EQ(Count(types, "token.created"), 1);
}

TEST_F(AccessRequestsTest, DeniedExpiredAndUndecidedRequestsGrantNothing) {
  User sec = Active("sec@t.test", {"security_admin"});
  AccessRequest denied = Request({"records.*.read"});
  ASSERT_OK(id_->DecideAccessRequest(UserAt(sec, now_), denied.id, AccessDecision::kDeny));
  EXPECT_EQ(id_->GetAccessRequest(denied.id)->state, "denied");
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"records.*.read"}, denied.id, now_ + kMin));

  AccessRequest brief = Request({"records.*.read"}, kMin);
  ASSERT_OK(id_->DecideAccessRequest(UserAt(sec, now_), brief.id, AccessDecision::kApprove));
  EXPECT_OK(OperatorToken({"records.*.read"}, brief.id, now_ + kMin - 1));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"records.*.read"}, brief.id, now_ + kMin));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                id_->UseAccess(Operator(now_ + kMin), brief.id, {"records.*.read"}, "export"));

  // A request nobody decided within a day lapses.
  AccessRequest late = Request({"records.*.read"});
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                id_->DecideAccessRequest(UserAt(sec, now_ + kAccessDecisionUs), late.id,
                                         AccessDecision::kApprove));

  // Bad requests are refused with the field named, and write nothing.
  auto types_before = AuditTypes();
  for (const AccessRequestSpec& bad :
       {AccessRequestSpec{{}, "why", kHour}, AccessRequestSpec{{"records.x.drop"}, "why", kHour},
        AccessRequestSpec{{"records.*.read"}, "", kHour},
        AccessRequestSpec{{"records.*.read"}, "line\nbreak", kHour},
        AccessRequestSpec{{"records.*.read"}, "why", kMin - 1},
        AccessRequestSpec{{"records.*.read"}, "why", kMaxAccessUs + 1}}) {
    EXPECT_STATUS(StatusCode::kInvalidArgument, id_->RequestAccess(Operator(now_), bad));
  }
  EXPECT_EQ(AuditTypes().size(), types_before.size());
}

TEST_F(AccessRequestsTest, UseOfARequestIsAuditedOnlyWhenItHolds) {
  User owner = Active("owner@t.test", {"owner"});
  AccessRequest r = Request({"records.*.export"});
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                id_->UseAccess(Operator(now_), r.id, {"records.*.export"}, "export"));
  ASSERT_OK(id_->DecideAccessRequest(UserAt(owner, now_), r.id, AccessDecision::kApprove));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                id_->UseAccess(Operator(now_), r.id, {"users.read"}, "export"));
  EXPECT_EQ(Count(AuditTypes(), "access.used"), 0);
  ASSERT_OK(id_->UseAccess(Operator(now_), r.id, {"records.*.export"}, "export"));
  EXPECT_EQ(Count(AuditTypes(), "access.used"), 1);
}

TEST_F(AccessRequestsTest, NeverRefusesRequestsDecisionsAndUses) {
  User owner = Active("owner@t.test", {"owner"});
  AccessRequest before = Request({"records.*.read"});
  ASSERT_OK(id_->DecideAccessRequest(UserAt(owner, now_), before.id, AccessDecision::kApprove));
  AccessRequest pending = Request({"records.*.read"});
  ASSERT_OK(id_->SetOperatorAccess(UserAt(owner, now_), "never", false));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                id_->RequestAccess(Operator(now_), {{"records.*.read"}, "why", kHour}));
  EXPECT_STATUS(
      StatusCode::kFailedPrecondition,
      id_->DecideAccessRequest(UserAt(owner, now_), pending.id, AccessDecision::kApprove));
  // An approval given before "never" opens nothing now, even where the
  // platform permits "allowed".
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                OperatorToken({"records.*.read"}, before.id, now_, true));
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, "", now_, true));
  EXPECT_STATUS(StatusCode::kPermissionDenied,
                id_->UseAccess(Operator(now_), before.id, {"records.*.read"}, "export"));
}

TEST_F(AccessRequestsTest, AllowedHoldsOnlyWhereThePlatformPermitsIt) {
  User owner = Active("owner@t.test", {"owner"});
  EXPECT_EQ(EffectiveOperatorAccess("", false), "approval");
  EXPECT_EQ(EffectiveOperatorAccess("", true), "allowed");
  EXPECT_EQ(EffectiveOperatorAccess("allowed", false), "approval");
  EXPECT_EQ(EffectiveOperatorAccess("approval", true), "approval");
  // Unset: the platform decides.
  EXPECT_OK(OperatorToken({"records.*.read"}, "", now_, true));
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, "", now_, false));
  // The owner closes it on a permitting platform.
  ASSERT_OK(id_->SetOperatorAccess(UserAt(owner, now_), "approval", true));
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, "", now_, true));
  // "allowed" cannot be chosen where the platform does not permit it, and
  // stops holding when the platform stops permitting it.
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                id_->SetOperatorAccess(UserAt(owner, now_), "allowed", false));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                id_->SetOperatorAccess(UserAt(owner, now_), "sometimes", true));
  ASSERT_OK(id_->SetOperatorAccess(UserAt(owner, now_), "allowed", true));
  EXPECT_EQ(id_->Settings()->operator_access, "allowed");
  EXPECT_OK(OperatorToken({"records.*.read"}, "", now_, true));
  EXPECT_STATUS(StatusCode::kPermissionDenied, OperatorToken({"records.*.read"}, "", now_, false));
  // A user's own token never needs a request.
  TokenSpec own;
  own.name = "mine";
  own.owner = "user:" + owner.id;
  own.permissions = {"records.*.read"};
  own.expires_at_us = now_ + kHour;
  EXPECT_OK(id_->Tokens().Create(UserAt(owner, now_), own));
}

TEST_F(AccessRequestsTest, ARestoredCopyBringsNoOperatorAccessBack) {
  User owner = Active("owner@t.test", {"owner"});
  AccessRequest r = Request({"records.*.read"});
  ASSERT_OK(id_->DecideAccessRequest(UserAt(owner, now_), r.id, AccessDecision::kApprove));
  auto token = OperatorToken({"records.*.read"}, r.id, now_);
  ASSERT_OK(token);
  AccessRequest pending = Request({"records.*.read"});
  ASSERT_OK(db_->Write([&](storage::Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_RETURN_IF_ERROR(EndSessionsAndOneTimeTokens(db).status());
    return tx.Commit();
  }));
  EXPECT_STATUS(StatusCode::kUnauthenticated, id_->Tokens().Authenticate(token->token, now_));
  EXPECT_EQ(id_->GetAccessRequest(r.id)->state, "revoked");
  EXPECT_EQ(id_->GetAccessRequest(pending.id)->state, "revoked");
}

}  // namespace
}  // namespace silo::auth
