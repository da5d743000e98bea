#include "platform/event_shipper.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"

namespace silo::platform {
namespace {

// RFC 5424: PRI authpriv.notice (85) or .warning (84) for alerts, the type as
// MSGID, SD-PARAM values with '"', '\' and ']' escaped.
TEST(EventShipperTest, SyslogMessagesFollowRfc5424) {
  ShippedEvent e{1'780'000'000'000'000, "auth.token_refused", "t1", "anonymous:1.2.3.4", "1.2.3.4",
                 "route GET /x"};
  std::string m = EventShipper::SyslogMessage(e, "node a");
  EXPECT_TRUE(m.starts_with("<85>1 2026-05-28T")) << m;
  EXPECT_NE(m.find(" node_a silo "), std::string::npos) << m;
  EXPECT_NE(m.find(" auth.token_refused [silo@32473 type=\"auth.token_refused\" tenant=\"t1\""),
            std::string::npos)
      << m;
  EXPECT_TRUE(m.ends_with("] route GET /x")) << m;
  e.type = "honeypot.hit";
  e.actor = "a\"b]c\\d";
  m = EventShipper::SyslogMessage(e, "h");
  EXPECT_TRUE(m.starts_with("<84>1 ")) << m;
  EXPECT_NE(m.find("actor=\"a\\\"b\\]c\\\\d\""), std::string::npos) << m;
}

TEST(EventShipperTest, RefusesMalformedSettings) {
  ShipperOptions o;
  o.syslog_url = "udp://h:514";
  EXPECT_STATUS(StatusCode::kInvalidArgument, EventShipper::Start(o));
  o.syslog_url = "tls://h";
  EXPECT_STATUS(StatusCode::kInvalidArgument, EventShipper::Start(o));
  o.syslog_url = "";
  o.webhook_url = "https://h/x";  // without its secret
  EXPECT_STATUS(StatusCode::kInvalidArgument, EventShipper::Start(o));
}

// A receiver that is down keeps events queued up to the bound; beyond it
// they are dropped and counted, never silently.
TEST(EventShipperTest, AFullQueueCountsWhatItDrops) {
  ShipperOptions o;
  o.syslog_url = "tls://127.0.0.1:1";  // nothing listens on port 1
  o.queue_limit = 2;
  auto shipper = EventShipper::Start(o);
  ASSERT_OK(shipper);
  for (int i = 0; i < 5; ++i) (*shipper)->Ship({0, "tenant.created", "", "operator", "", "x"});
  ShipperStats s = (*shipper)->Stats();
  EXPECT_EQ(s.dropped, 3);
  EXPECT_EQ(s.queued, 2);
  EXPECT_EQ(s.shipped, 0);
  (*shipper)->Stop();
}

}  // namespace
}  // namespace silo::platform
