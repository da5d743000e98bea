// libFuzzer target: the backup manifest parser and the sealed-chunk reader on
// arbitrary bytes. Input = u16 big-endian manifest length || manifest text ||
// data object. Never a crash; never a manifest MAC or a chunk that opens
// without the key; never an image from bytes this process did not seal.
#include <cstddef>
#include <cstdint>
#include <string>

#include "backup/archive.h"
#include "crypto/crypto.h"

namespace {

const silo::crypto::SecretKey& Key() {
  static const silo::crypto::SecretKey key = silo::crypto::SecretKey::Random();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace silo::backup;
  if (size < 2) return 0;
  size_t len = std::min<size_t>((size_t{data[0]} << 8) | data[1], size - 2);
  std::string manifest(reinterpret_cast<const char*>(data + 2), len);
  std::string object(reinterpret_cast<const char*>(data + 2 + len), size - 2 - len);

  auto parsed = ParseManifest(manifest);
  if (CheckManifestMac(manifest, Key()).ok()) __builtin_trap();  // a forged MAC

  // Reach the chunk reader: a manifest that agrees with the object's size and
  // hash, as an attacker who rewrote both would have.
  Manifest m = parsed.ok() ? *parsed : Manifest{};
  m.id = std::string(32, 'a') + "-20261124T020000Z-0001";
  m.stored_bytes = static_cast<int64_t>(object.size());
  m.sha256 = silo::crypto::Sha256Hex(object);
  if (!parsed.ok()) m.image_bytes = static_cast<int64_t>(object.size()) * 4;
  m.chunks = 1 + m.image_bytes / static_cast<int64_t>(kChunkBytes);
  auto image = OpenImage(object, Key(), m);
  if (image.ok()) __builtin_trap();  // a chunk opened without being sealed here
  return 0;
}
