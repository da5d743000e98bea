// The hub over real encrypted tenant stores, with a recording channel in
// place of the transport: credentials that end close the connection at the
// next sweep, tickets are single use, short-lived and per tenant, the
// connection limits hold, a consumer the transport refuses is dropped
// without holding up the others, and one tenant's writes reach no other.
#include "realtime/hub.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "base/status_matchers.h"
#include "realtime/protocol.h"
#include "records/tenant_store_test_util.h"

namespace silo::realtime {
namespace {

using records::testing::kT0;
using records::testing::TenantStoreTest;

class RecordingChannel : public http::MessageChannel {
 public:
  bool Send(std::shared_ptr<const std::string> message) override {
    if (refuse) return false;
    frames.push_back(boost::json::parse(*message).as_object());
    return true;
  }
  void Close(int c, std::string_view) override {
    if (code == 0) code = c;
  }
  std::vector<boost::json::object> frames;
  int code = 0;
  bool refuse = false;
};

Principal Everything() {
  Principal p;
  p.actor = {"user", "u1"};
  p.permissions = {"records.*.read", "channels.*.subscribe", "channels.*.publish"};
  p.rules = [](const records::CollectionSchema&, std::string_view) {
    return Result<records::RecordRules>(records::AllowAll());
  };
  p.user_id = "u1";
  return p;
}

class HubTest : public TenantStoreTest {
 protected:
  void SetUp() override {
    TenantStoreTest::SetUp();
    ASSERT_OK(a_->CreateCollection(Ctx(kT0), Tickets()));
    ASSERT_OK(b_->CreateCollection(Ctx(kT0), Tickets()));
  }

  // A connection of `tenant` whose credentials say `principal` until
  // `*ended` is set.
  std::pair<std::shared_ptr<http::MessageHandler>, std::shared_ptr<RecordingChannel>> Open(
      Hubs& hubs, const std::string& tenant, Principal principal,
      std::shared_ptr<bool> ended = std::make_shared<bool>(false)) {
    ConnectionSpec spec;
    spec.principal = principal;
    spec.reauthenticate = [principal, ended](int64_t) -> Result<Principal> {
      if (*ended) return Unauthenticated("ended");
      return principal;
    };
    auto handler = hubs.Connect(tenant, std::move(spec));
    EXPECT_OK(handler);
    auto channel = std::make_shared<RecordingChannel>();
    (*handler)->OnOpen(channel);
    return {*handler, channel};
  }

  static void Subscribe(http::MessageHandler& h, const std::string& channel) {
    h.OnMessage(R"({"type":"subscribe","id":"s","channel":")" + channel + R"("})");
  }

  static std::vector<std::string> EventIds(const RecordingChannel& c) {
    std::vector<std::string> out;
    for (const auto& f : c.frames) {
      if (f.at("type") == "event" && f.at("channel") == "records:tickets") {
        out.emplace_back(f.at("data").at("record").at("id").as_string());
      }
    }
    return out;
  }

  void Create(records::TenantStore& store, const std::string& id, int64_t at) {
    ASSERT_OK(store.CreateRecord(Ctx(at), "tickets",
                                 boost::json::object{{"id", id}, {"title", "t " + id}}));
  }
};

TEST_F(HubTest, CredentialsThatEndCloseTheConnectionAtTheSweep) {
  Hubs hubs(stores_.get(), {});
  Principal p = Everything();
  p.ends_at_us = kT0 + 1'000'000;
  auto ended = std::make_shared<bool>(false);
  auto [h, ch] = Open(hubs, "a", p, ended);
  hubs.Sweep(kT0 + 999'999);
  EXPECT_EQ(ch->code, 0);
  *ended = true;  // the session's idle limit passed
  hubs.Sweep(kT0 + 1'000'000);
  EXPECT_EQ(ch->code, kCloseAuthEnded);
  h->OnClose();
  EXPECT_EQ(hubs.connections(), 0u);
}

TEST_F(HubTest, RenewedCredentialsKeepTheConnection) {
  Hubs hubs(stores_.get(), {});
  Principal p = Everything();
  p.ends_at_us = kT0;
  auto [h, ch] = Open(hubs, "a", p);  // re-checks still pass: the session was used
  hubs.Sweep(kT0 + 1);
  EXPECT_EQ(ch->code, 0);
  h->OnClose();
}

TEST_F(HubTest, TicketsAreSingleUseShortLivedAndPerTenant) {
  Hubs hubs(stores_.get(), {});
  auto reauth = [](int64_t) -> Result<Principal> { return Everything(); };
  std::string t = hubs.IssueTicket("a", reauth, kT0);
  EXPECT_EQ(t.substr(0, 3), "rt_");
  EXPECT_EQ(hubs.RedeemTicket("b", t, kT0).status().code(), StatusCode::kUnauthenticated);
  EXPECT_OK(hubs.RedeemTicket("a", t, kT0 + 29'000'000));
  EXPECT_EQ(hubs.RedeemTicket("a", t, kT0).status().code(), StatusCode::kUnauthenticated);
  std::string late = hubs.IssueTicket("a", reauth, kT0);
  EXPECT_EQ(hubs.RedeemTicket("a", late, kT0 + 30'000'000).status().code(),
            StatusCode::kUnauthenticated);
  std::string swept = hubs.IssueTicket("a", reauth, kT0);
  hubs.Sweep(kT0 + 31'000'000);
  EXPECT_EQ(hubs.RedeemTicket("a", swept, kT0).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(HubTest, ConnectionLimitsHold) {
  Limits limits;
  limits.max_connections = 3;
  limits.max_tenant_connections = 2;
  Hubs hubs(stores_.get(), limits);
  auto a1 = Open(hubs, "a", Everything());
  auto a2 = Open(hubs, "a", Everything());
  ConnectionSpec spec;
  spec.principal = Everything();
  EXPECT_EQ(hubs.Connect("a", spec).status().code(), StatusCode::kResourceExhausted);
  auto b1 = Open(hubs, "b", Everything());
  EXPECT_EQ(hubs.Connect("b", spec).status().code(), StatusCode::kResourceExhausted);
  a1.first->OnClose();
  auto b2 = Open(hubs, "b", Everything());
  EXPECT_EQ(hubs.connections(), 3u);
  for (auto* c : {&a2, &b1, &b2}) c->first->OnClose();
}

TEST_F(HubTest, ChannelCapsHoldPerConnectionAndPerTenant) {
  Limits limits;
  limits.max_channels = 3;
  limits.max_tenant_channels = 4;
  Hubs hubs(stores_.get(), limits);
  auto [h1, c1] = Open(hubs, "a", Everything());
  auto [h2, c2] = Open(hubs, "a", Everything());
  auto [hb, cb] = Open(hubs, "b", Everything());
  auto last_error = [](const RecordingChannel& c) -> std::string {
    const auto& f = c.frames.back();
    return f.at("type") == "error" ? std::string(f.at("code").as_string()) : "";
  };
  for (const char* ch : {"broadcast:r1", "broadcast:r2", "broadcast:r3"}) {
    Subscribe(*h1, ch);
    EXPECT_EQ(last_error(*c1), "") << ch;
  }
  Subscribe(*h1, "broadcast:r4");  // a fourth for one connection
  EXPECT_EQ(last_error(*c1), "limit");
  Subscribe(*h2, "broadcast:r1");  // in use already: not a new channel
  EXPECT_EQ(last_error(*c2), "");
  Subscribe(*h2, "broadcast:r4");  // the tenant's fourth
  EXPECT_EQ(last_error(*c2), "");
  Subscribe(*h2, "broadcast:r5");  // a fifth in the tenant
  EXPECT_EQ(last_error(*c2), "limit");
  for (const char* ch : {"broadcast:r5", "broadcast:r6", "broadcast:r7"}) {
    Subscribe(*hb, ch);  // another tenant counts its own
    EXPECT_EQ(last_error(*cb), "") << ch;
  }
  h1->OnClose();  // r2 and r3 are free again
  Subscribe(*h2, "broadcast:r5");
  EXPECT_EQ(last_error(*c2), "");
  h2->OnClose();
  hb->OnClose();
}

TEST_F(HubTest, ARefusingConsumerIsDroppedAndTheOthersGoOn) {
  Hubs hubs(stores_.get(), {});
  auto [slow, slow_ch] = Open(hubs, "a", Everything());
  auto [fast, fast_ch] = Open(hubs, "a", Everything());
  Subscribe(*slow, "records:tickets");
  Subscribe(*fast, "records:tickets");
  slow_ch->refuse = true;  // the transport's queue is full
  Create(*a_, "r1", kT0 + 1);
  hubs.AfterWrite("a");
  Create(*a_, "r2", kT0 + 2);
  hubs.AfterWrite("a");
  EXPECT_EQ(EventIds(*fast_ch), (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(EventIds(*slow_ch), std::vector<std::string>{});
  EXPECT_EQ(hubs.counters().dropped_slow.load(), 1);
  slow->OnClose();
  fast->OnClose();
}

TEST_F(HubTest, OneTenantsWritesReachNoOther) {
  Hubs hubs(stores_.get(), {});
  auto [ha, cha] = Open(hubs, "a", Everything());
  auto [hb, chb] = Open(hubs, "b", Everything());
  Subscribe(*ha, "records:tickets");
  Subscribe(*hb, "records:tickets");
  ha->OnMessage(R"({"type":"subscribe","id":"r","channel":"broadcast:room"})");
  hb->OnMessage(R"({"type":"subscribe","id":"r","channel":"broadcast:room"})");
  Create(*a_, "same", kT0 + 1);
  hubs.AfterWrite("a");
  hubs.AfterWrite("b");  // nothing new in b
  ASSERT_OK(hubs.Publish("a", "room", "e", boost::json::value("for a")));
  EXPECT_EQ(EventIds(*cha), std::vector<std::string>{"same"});
  for (const auto& f : chb->frames) EXPECT_NE(f.at("type"), "event") << f;
  ha->OnClose();
  hb->OnClose();
}

}  // namespace
}  // namespace silo::realtime
