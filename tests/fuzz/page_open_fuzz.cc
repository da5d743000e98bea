// libFuzzer target: OpenPage on arbitrary bytes must never crash, never read
// out of bounds, and never report success for input it did not seal.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "storage/page_cipher.h"

namespace {

const silo::crypto::SecretKey& Key() {
  static const silo::crypto::SecretKey key = silo::crypto::SecretKey::Random();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace silo::storage;
  if (size < 1) return 0;
  bool page_one = data[0] & 1;
  std::vector<uint8_t> page(kPageSize, 0);
  std::memcpy(page.data(), data + 1, std::min(size - 1, kPageSize));
  std::vector<uint8_t> out(kPageSize, 0xEE);
  static const std::string fp = PageKeyFingerprint(Key());
  auto rc = OpenPage(Key(), fp, page_one, "D:1", page.data(), out.data());
  if (rc == PageOpenError::kOk) __builtin_trap();  // forging a tag is a finding
  for (uint8_t b : out) {
    if (b != 0) __builtin_trap();  // no unauthenticated plaintext on failure
  }
  return 0;
}
