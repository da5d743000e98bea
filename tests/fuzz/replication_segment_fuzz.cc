// libFuzzer target: DecodeSegment on arbitrary segment bodies (each given a
// valid hash of either format's function, so the parser behind the hash
// check is what runs) must never crash or read out of bounds, and whatever
// it accepts must encode back to exactly the same bytes (one encoding per
// segment: a follower's chain and the primary's agree on every hash). The
// blob and snapshot page messages (protocol.h) run on the same bytes, under
// the same rule.
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
  if (auto s = DecodePageSums(body); s.ok() && EncodePageSums(*s) != body) __builtin_trap();
  if (auto p = DecodeSnapshotPages(body); p.ok() && EncodeSnapshotPages(*p) != body) {
    __builtin_trap();
  }
  // Format 1 is hashed with BLAKE2b-256, format 2 (what EncodeSegment
  // writes) with SHA-256: a body under the other's hash is refused before it
  // is parsed. A format 1 segment is format 2's bytes with its version byte
  // (after the 4-byte magic) 1 and its own hash.
  for (const bool sha256 : {false, true}) {
    const std::string encoded =
        body + (sha256 ? silo::crypto::Sha256(body) : silo::crypto::Blake2b256({body}));
    auto segment = DecodeSegment(encoded);
    if (!segment.ok()) continue;
    std::string again = EncodeSegment(segment->header, segment->ops);
    if (!sha256) {
      again.resize(again.size() - kHashSize);
      again[4] = 1;
      again += silo::crypto::Blake2b256({again});
    }
    if (again != encoded) __builtin_trap();
  }
  return 0;
}
