#include "realtime/protocol.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace silo::realtime {
namespace {
namespace json = boost::json;

TEST(Protocol, ChecksEachClientFrameAndKeepsWhatItCarries) {
  auto sub = ParseClientFrame(R"({"type":"subscribe","id":"s1","channel":"records:tickets",)"
                              R"("filter":"state:eq:open","after":42,"epoch":"e7"})");
  ASSERT_TRUE(sub.message) << sub.error.detail;
  EXPECT_EQ(sub.message->type, MessageType::kSubscribe);
  EXPECT_EQ(sub.message->channel->kind, Channel::Kind::kRecords);
  EXPECT_EQ(sub.message->channel->name, "tickets");
  EXPECT_EQ(*sub.message->filter, "state:eq:open");
  EXPECT_EQ(*sub.message->after, 42);
  EXPECT_EQ(*sub.message->epoch, "e7");

  auto pub = ParseClientFrame(
      R"({"type":"publish","id":7,"channel":"broadcast:room.1","event":"typing","payload":{"a":[1]}})");
  ASSERT_TRUE(pub.message) << pub.error.detail;
  EXPECT_EQ(pub.message->id, "7");  // an integer id comes back as its digits
  EXPECT_EQ(pub.message->payload, json::parse(R"({"a":[1]})"));

  auto track = ParseClientFrame(
      R"({"type":"presence.track","id":"p","channel":"broadcast:room","state":{"name":"ann"}})");
  ASSERT_TRUE(track.message) << track.error.detail;
  EXPECT_EQ(track.message->state.at("name"), "ann");
  EXPECT_TRUE(ParseClientFrame(R"({"type":"ping","id":"x"})").message);
  EXPECT_TRUE(ParseClientFrame(R"({"type":"unsubscribe","id":"x","channel":"user:self"})").message);
}

TEST(Protocol, RefusesBadFramesNamingTheProblemAndTheId) {
  struct Case {
    std::string frame;
    const char* code;
    const char* id;
  };
  const std::string big(70'000, 'x');
  const Case cases[] = {
      {"not json", "bad_frame", ""},
      {"[1]", "bad_frame", ""},
      {R"({"id":"a"})", "bad_frame", "a"},
      {R"({"type":"hello","id":"a"})", "unknown_type", "a"},
      {R"({"type":"ping"})", "bad_field", ""},
      {R"({"type":"ping","id":"a b"})", "bad_field", ""},
      {R"({"type":"ping","id":-1})", "bad_field", ""},
      {R"({"type":"ping","id":"a","extra":1})", "bad_field", "a"},
      {R"({"type":"subscribe","id":"a"})", "bad_channel", "a"},
      {R"({"type":"subscribe","id":"a","channel":"records:Tickets"})", "bad_channel", "a"},
      {R"({"type":"subscribe","id":"a","channel":"tickets"})", "bad_channel", "a"},
      {R"({"type":"subscribe","id":"a","channel":"user:other"})", "bad_channel", "a"},
      {R"({"type":"subscribe","id":"a","channel":"broadcast:x","after":1})", "bad_field", "a"},
      {R"({"type":"subscribe","id":"a","channel":"records:t","after":-1})", "bad_field", "a"},
      {R"({"type":"subscribe","id":"a","channel":"records:t","filter":""})", "bad_field", "a"},
      {R"({"type":"publish","id":"a","channel":"records:t","event":"e","payload":1})",
       "bad_channel", "a"},
      {R"({"type":"publish","id":"a","channel":"broadcast:t","event":"E!","payload":1})",
       "bad_field", "a"},
      {R"({"type":"publish","id":"a","channel":"broadcast:t","event":"e"})", "bad_field", "a"},
      {R"({"type":"presence.track","id":"a","channel":"broadcast:t","state":[1]})", "bad_field",
       "a"},
      {R"({"type":"presence.track","id":"a","channel":"broadcast:t","state":{"k":")" +
           std::string(1100, 'v') + R"("}})",
       "bad_field", "a"},
      {R"({"type":"ping","id":"a","x":)" + std::string(20, '[') + std::string(20, ']') + "}",
       "bad_frame", ""},
      {"\"" + big + "\"", "too_large", ""},
      {"{\"type\":\"ping\",\"id\":\"\xff\"}", "bad_frame", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.frame.substr(0, 120));
    auto parsed = ParseClientFrame(c.frame);
    ASSERT_FALSE(parsed.message);
    EXPECT_EQ(parsed.error.code, c.code) << parsed.error.detail;
    EXPECT_EQ(parsed.error.id, c.id);
    EXPECT_FALSE(parsed.error.detail.empty());
  }
}

TEST(Protocol, ServerFramesAreObjectsNamedByType) {
  const Channel ch{Channel::Kind::kRecords, "tickets"};
  auto event = json::parse(EventFrame(ch, 9, "e1", json::object{{"k", 1}})).as_object();
  EXPECT_EQ(event.at("type"), "event");
  EXPECT_EQ(event.at("channel"), "records:tickets");
  EXPECT_EQ(event.at("seq"), 9);
  EXPECT_EQ(json::parse(AckFrame("a")), json::parse(R"({"type":"ack","id":"a"})"));
  EXPECT_EQ(json::parse(ErrorFrame("", "bad_frame", "why")).at("id"), nullptr);
  EXPECT_EQ(json::parse(ResetFrame(ch, "e2")).at("epoch"), "e2");
  auto diff =
      json::parse(PresenceDiffFrame({Channel::Kind::kBroadcast, "r"},
                                    json::object{{"c1", json::object{}}}, json::array{"c2"}))
          .as_object();
  EXPECT_EQ(diff.at("channel"), "broadcast:r");
  EXPECT_EQ(diff.at("leaves"), json::array{"c2"});
  for (const char* text : {"records:tickets", "broadcast:a.b:c-d_e", "user:self"}) {
    auto parsed = ParseChannel(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(parsed->ToString(), text);
  }
  EXPECT_FALSE(ParseChannel("broadcast:" + std::string(129, 'a')));
  EXPECT_FALSE(ParseChannel("broadcast:-x"));
}

}  // namespace
}  // namespace silo::realtime
