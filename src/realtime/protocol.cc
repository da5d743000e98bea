#include "realtime/protocol.h"

#include <boost/json.hpp>
#include <initializer_list>

#include "records/schema.h"

namespace silo::realtime {
namespace json = boost::json;
namespace {

constexpr std::pair<std::string_view, MessageType> kTypes[] = {
    {"subscribe", MessageType::kSubscribe},
    {"unsubscribe", MessageType::kUnsubscribe},
    {"publish", MessageType::kPublish},
    {"presence.track", MessageType::kPresenceTrack},
    {"presence.untrack", MessageType::kPresenceUntrack},
    {"ping", MessageType::kPing}};

bool IsIn(char c, std::string_view set) { return set.find(c) != std::string_view::npos; }

bool Lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9][a-z0-9_.:-]{0,127}
bool ValidBroadcastName(std::string_view s) {
  if (s.empty() || s.size() > 128 || !Lower(s[0])) return false;
  for (char c : s) {
    if (!Lower(c) && !IsIn(c, "_.:-")) return false;
  }
  return true;
}

// [A-Za-z0-9_.:-]{1,64}: what an id may be (echoed back in frames).
bool ValidId(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!Lower(c) && !(c >= 'A' && c <= 'Z') && !IsIn(c, "_.:-")) return false;
  }
  return true;
}

// [a-z0-9_.-]{1,64}
bool ValidEventName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!Lower(c) && !IsIn(c, "_.-")) return false;
  }
  return true;
}

ParsedFrame Refuse(std::string id, std::string code, std::string detail) {
  return {std::nullopt, {std::move(id), std::move(code), std::move(detail)}};
}

// The members a type takes besides "type" and "id".
bool TakesMember(MessageType t, std::string_view member) {
  auto any = [&](std::initializer_list<std::string_view> names) {
    for (std::string_view n : names) {
      if (n == member) return true;
    }
    return false;
  };
  switch (t) {
    case MessageType::kSubscribe: return any({"channel", "filter", "after", "epoch"});
    case MessageType::kUnsubscribe:
    case MessageType::kPresenceUntrack: return any({"channel"});
    case MessageType::kPublish: return any({"channel", "event", "payload"});
    case MessageType::kPresenceTrack: return any({"channel", "state"});
    case MessageType::kPing: return false;
  }
  return false;
}

std::string Serialize(json::object o) { return json::serialize(o); }

}  // namespace

std::string Channel::ToString() const {
  switch (kind) {
    case Kind::kRecords: return "records:" + name;
    case Kind::kBroadcast: return "broadcast:" + name;
    case Kind::kUserSelf: return "user:self";
  }
  return "";
}

std::optional<Channel> ParseChannel(std::string_view text) {
  if (text == "user:self") return Channel{Channel::Kind::kUserSelf, ""};
  if (text.substr(0, 8) == "records:" && records::ValidName(text.substr(8))) {
    return Channel{Channel::Kind::kRecords, std::string(text.substr(8))};
  }
  if (text.substr(0, 10) == "broadcast:" && ValidBroadcastName(text.substr(10))) {
    return Channel{Channel::Kind::kBroadcast, std::string(text.substr(10))};
  }
  return std::nullopt;
}

ParsedFrame ParseClientFrame(std::string_view text) {
  if (text.size() > kMaxMessageBytes) {
    return Refuse("", "too_large", "a frame is at most 65536 bytes");
  }
  json::parse_options opts;
  opts.max_depth = kMaxDepth;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opts);
  if (ec || !v.is_object()) return Refuse("", "bad_frame", "a frame is one JSON object");
  const json::object& o = v.as_object();

  // The id first, so that every later refusal can name it.
  std::string id;
  if (const json::value* given = o.if_contains("id")) {
    if (given->is_string() && ValidId(given->as_string())) {
      id = given->as_string();
    } else if (given->is_int64() && given->as_int64() >= 0) {
      id = std::to_string(given->as_int64());
    } else {
      return Refuse("", "bad_field", "id must be [A-Za-z0-9_.:-]{1,64} or a non-negative integer");
    }
  }
  const json::value* type = o.if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return Refuse(id, "bad_frame", "a frame needs a \"type\"");
  }
  ClientMessage m;
  bool known = false;
  for (const auto& [name, t] : kTypes) {
    if (type->as_string() == name) {
      m.type = t;
      known = true;
    }
  }
  if (!known) {
    return Refuse(id, "unknown_type",
                  "type must be subscribe, unsubscribe, publish, presence.track, "
                  "presence.untrack or ping");
  }
  if (id.empty()) return Refuse("", "bad_field", "id is required");
  m.id = id;
  for (const auto& kv : o) {
    if (kv.key() == "type" || kv.key() == "id") continue;
    if (!TakesMember(m.type, kv.key())) {
      return Refuse(id, "bad_field",
                    "unknown member for " + std::string(type->as_string()) + ": " +
                        (records::ValidName(kv.key()) ? std::string(kv.key()) : "(not a name)"));
    }
  }
  if (m.type == MessageType::kPing) return {std::move(m), {}};

  const json::value* channel = o.if_contains("channel");
  if (channel == nullptr || !channel->is_string()) {
    return Refuse(id, "bad_channel", "channel is required");
  }
  m.channel = ParseChannel(channel->as_string());
  if (!m.channel) {
    return Refuse(id, "bad_channel",
                  "channel must be records:<collection>, broadcast:<name> or user:self");
  }
  const bool records = m.channel->kind == Channel::Kind::kRecords;
  const bool broadcast = m.channel->kind == Channel::Kind::kBroadcast;
  switch (m.type) {
    case MessageType::kSubscribe: {
      if (const json::value* f = o.if_contains("filter")) {
        if (!records) return Refuse(id, "bad_field", "filter applies to records channels");
        if (!f->is_string() || f->as_string().empty() || f->as_string().size() > kMaxFilterBytes) {
          return Refuse(id, "bad_field", "filter must be a listing filter of at most 1024 bytes");
        }
        m.filter = std::string(f->as_string());
      }
      if (const json::value* a = o.if_contains("after")) {
        if (!records) return Refuse(id, "bad_field", "after applies to records channels");
        if (!a->is_int64() || a->as_int64() < 0) {
          return Refuse(id, "bad_field", "after must be a sequence number");
        }
        m.after = a->as_int64();
      }
      if (const json::value* e = o.if_contains("epoch")) {
        if (!e->is_string() || !ValidId(e->as_string())) {
          return Refuse(id, "bad_field", "epoch must be the epoch a server frame carried");
        }
        m.epoch = std::string(e->as_string());
      }
      break;
    }
    case MessageType::kPublish: {
      if (!broadcast) return Refuse(id, "bad_channel", "clients publish to broadcast channels");
      const json::value* e = o.if_contains("event");
      if (e == nullptr || !e->is_string() || !ValidEventName(e->as_string())) {
        return Refuse(id, "bad_field", "event must match [a-z0-9_.-]{1,64}");
      }
      m.event = e->as_string();
      const json::value* p = o.if_contains("payload");
      if (p == nullptr) return Refuse(id, "bad_field", "payload is required");
      m.payload = *p;
      break;
    }
    case MessageType::kPresenceTrack: {
      if (!broadcast) return Refuse(id, "bad_channel", "presence lives in broadcast channels");
      const json::value* s = o.if_contains("state");
      if (s == nullptr || !s->is_object() || s->as_object().size() > kMaxPresenceKeys ||
          json::serialize(*s).size() > kMaxPresenceBytes) {
        return Refuse(id, "bad_field", "state must be an object of at most 10 keys and 1024 bytes");
      }
      m.state = s->as_object();
      break;
    }
    case MessageType::kPresenceUntrack:
      if (!broadcast) return Refuse(id, "bad_channel", "presence lives in broadcast channels");
      break;
    case MessageType::kUnsubscribe:
    case MessageType::kPing: break;
  }
  return {std::move(m), {}};
}

std::string AckFrame(std::string_view id) { return Serialize({{"type", "ack"}, {"id", id}}); }

std::string ErrorFrame(std::string_view id, std::string_view code, std::string_view detail) {
  json::object o{{"type", "error"}, {"code", code}, {"detail", detail}};
  o["id"] = id.empty() ? json::value(nullptr) : json::value(json::string(id));
  return Serialize(std::move(o));
}

std::string EventFrame(const Channel& channel, int64_t seq, std::string_view epoch,
                       const json::value& data) {
  return Serialize({{"type", "event"},
                    {"channel", channel.ToString()},
                    {"seq", seq},
                    {"epoch", epoch},
                    {"data", data}});
}

std::string ResetFrame(const Channel& channel, std::string_view epoch) {
  return Serialize({{"type", "reset"}, {"channel", channel.ToString()}, {"epoch", epoch}});
}

std::string PresenceDiffFrame(const Channel& channel, const json::object& joins,
                              const json::array& leaves) {
  return Serialize({{"type", "presence.diff"},
                    {"channel", channel.ToString()},
                    {"joins", joins},
                    {"leaves", leaves}});
}

std::string StreamFrame(std::string_view id, std::string_view frame) {
  std::string out;
  out.reserve(frame.size() + id.size() + 16);
  if (!id.empty()) out.append("id: ").append(id).append("\n");
  out.append("data: ").append(frame).append("\n\n");
  return out;
}

}  // namespace silo::realtime
