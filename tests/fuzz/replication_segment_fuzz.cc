// libFuzzer target: DecodeSegment on arbitrary segment bodies (each given a
// valid hash, so the parser behind the hash check is what runs) must never
// crash or read out of bounds, and whatever it accepts must encode back to
// exactly the same bytes (one encoding per segment: a follower's chain and
// the primary's agree on every hash). The blob messages (protocol.h) run on
// the same bytes, under the same rule.
#include <cstddef>
#include <cstdint>
#include <string>

#include "crypto/crypto.h"
#include "replication/protocol.h"
#include "replication/segment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace silo::replication;
  std::string body(reinterpret_cast<const char*>(data), size);
  if (auto c = DecodeBlobChunk(body); c.ok() && EncodeBlobChunk(*c) != body) __builtin_trap();
  if (auto r = DecodeBlobRemove(body); r.ok() && EncodeBlobRemove(*r) != body) __builtin_trap();
  if (auto l = DecodeBlobList(body); l.ok() && EncodeBlobList(*l) != body) __builtin_trap();
  if (auto i = DecodeBlobIds(body); i.ok() && EncodeBlobIds(*i) != body) __builtin_trap();
  std::string encoded = body + silo::crypto::Blake2b256({body});
  auto segment = DecodeSegment(encoded);
  if (!segment.ok()) return 0;
  if (EncodeSegment(segment->header, segment->ops) != encoded) __builtin_trap();
  return 0;
}
