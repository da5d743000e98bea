// The realtime protocol's frames (issue 19; docs/formats.md, "Realtime
// protocol"): JSON text frames, each an object whose "type" names it. Pure:
// parsing a client frame into a checked message and writing server frames,
// no connection, no tenant, no permission. Fuzzed (tests/fuzz/
// realtime_message_fuzz.cc).
//
// Client frames:
//   {"type":"subscribe","id","channel","filter"?,"after"?,"epoch"?}
//   {"type":"unsubscribe","id","channel"}
//   {"type":"publish","id","channel","event","payload"}
//   {"type":"presence.track","id","channel","state"}
//   {"type":"presence.untrack","id","channel"}
//   {"type":"ping","id"}
// Server frames: ack, error, event, presence.diff, reset (writers below).
#ifndef SILO_REALTIME_PROTOCOL_H_
#define SILO_REALTIME_PROTOCOL_H_

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace silo::realtime {

inline constexpr size_t kMaxMessageBytes = 64 * 1024;
inline constexpr int kMaxDepth = 16;
inline constexpr size_t kMaxPresenceBytes = 1024;
inline constexpr size_t kMaxPresenceKeys = 10;
inline constexpr size_t kMaxFilterBytes = 1024;

// WebSocket close codes (RFC 6455 leaves 4000-4999 to applications).
inline constexpr int kCloseAuthEnded = 4001;
inline constexpr int kCloseForbidden = 4003;
inline constexpr int kCloseSlowConsumer = 4008;
inline constexpr int kCloseRateLimited = 4029;

// records:<collection>, broadcast:<name> or user:self. A collection name is
// a records name ([a-z][a-z0-9_]{0,62}); a broadcast name matches
// [a-z0-9][a-z0-9_.:-]{0,127}.
struct Channel {
  enum class Kind { kRecords, kBroadcast, kUserSelf };
  Kind kind = Kind::kRecords;
  std::string name;  // the collection or broadcast name; empty for user:self

  std::string ToString() const;
};
std::optional<Channel> ParseChannel(std::string_view text);

enum class MessageType {
  kSubscribe,
  kUnsubscribe,
  kPublish,
  kPresenceTrack,
  kPresenceUntrack,
  kPing
};

struct ClientMessage {
  MessageType type = MessageType::kPing;
  std::string id;  // the client's, echoed in ack and error
  std::optional<Channel> channel;
  std::optional<std::string> filter;  // subscribe to records: listing syntax
  std::optional<int64_t> after;       // subscribe to records: replay after this seq
  std::optional<std::string> epoch;   // subscribe: the epoch `after` belongs to
  std::string event;                  // publish: [a-z0-9_.-]{1,64}
  boost::json::value payload;         // publish
  boost::json::object state;          // presence.track
};

// Why a frame was refused: an error frame's code and detail, and the id if
// the frame had a usable one.
struct ProtocolError {
  std::string id;
  std::string code;  // bad_frame, unknown_type, bad_field, bad_channel, too_large
  std::string detail;
};

// A client text frame as a checked message, or why not. Never throws;
// unknown members are refused (a typo is not silently ignored).
struct ParsedFrame {
  std::optional<ClientMessage> message;
  ProtocolError error;  // set when !message
};
ParsedFrame ParseClientFrame(std::string_view text);

// Server frames, serialised.
std::string AckFrame(std::string_view id);
std::string ErrorFrame(std::string_view id, std::string_view code, std::string_view detail);
std::string EventFrame(const Channel& channel, int64_t seq, std::string_view epoch,
                       const boost::json::value& data);
std::string ResetFrame(const Channel& channel, std::string_view epoch);
std::string PresenceDiffFrame(const Channel& channel, const boost::json::object& joins,
                              const boost::json::array& leaves);

// One frame as a text/event-stream event (the SSE feed): `data:` the frame's
// JSON (one line: JSON text has no raw newline), and `id:` when given, which
// the browser sends back as Last-Event-ID on reconnect ("<epoch>:<seq>").
std::string StreamFrame(std::string_view id, std::string_view frame);

}  // namespace silo::realtime

#endif  // SILO_REALTIME_PROTOCOL_H_
