// libFuzzer target: the realtime protocol's client frame parser
// (realtime/protocol.h). Arbitrary bytes are a WebSocket text frame.
//
// Findings besides crashes: an accepted frame whose channel does not survive
// ToString and ParseChannel unchanged, an accepted id that is not printable
// or longer than 64 bytes, a refusal without a code, and error or ack frames
// that are not JSON objects (the id and detail are echoed into them).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "realtime/protocol.h"

namespace json = boost::json;
namespace rt = silo::realtime;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  rt::ParsedFrame parsed = rt::ParseClientFrame(text);
  if (!parsed.message) {
    if (parsed.error.code.empty() || parsed.error.detail.empty()) __builtin_trap();
    boost::system::error_code ec;
    json::value e =
        json::parse(rt::ErrorFrame(parsed.error.id, parsed.error.code, parsed.error.detail), ec);
    if (ec || !e.is_object()) __builtin_trap();
    return 0;
  }
  const rt::ClientMessage& m = *parsed.message;
  if (m.id.empty() || m.id.size() > 64) __builtin_trap();
  for (char c : m.id) {
    if (c <= ' ' || c > '~') __builtin_trap();
  }
  if (m.channel) {
    auto again = rt::ParseChannel(m.channel->ToString());
    if (!again || again->kind != m.channel->kind || again->name != m.channel->name) {
      __builtin_trap();
    }
  }
  boost::system::error_code ec;
  json::value ack = json::parse(rt::AckFrame(m.id), ec);
  if (ec || !ack.is_object()) __builtin_trap();
  return 0;
}
