// SecretKey: 32 bytes of key material in libsodium guarded memory.
//
// The bytes live in sodium_malloc'd pages (guard pages, mlock where allowed) and
// are wiped by sodium_free when the key is destroyed. Move-only; copying key
// material must be explicit (Clone) so that it is visible in review.
// Never log or print a SecretKey.
#ifndef SILO_CRYPTO_SECRET_KEY_H_
#define SILO_CRYPTO_SECRET_KEY_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/status.h"

namespace silo::crypto {

class SecretKey {
 public:
  static constexpr size_t kSize = 32;

  // A fresh key from the operating system's CSPRNG.
  static SecretKey Random();
  // REQUIRES: bytes.size() == kSize (else InvalidArgument).
  static Result<SecretKey> FromBytes(std::string_view bytes);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  SecretKey Clone() const;
  const uint8_t* data() const { return bytes_; }
  uint8_t* mutable_data() { return bytes_; }
  static constexpr size_t size() { return kSize; }

 private:
  SecretKey();
  uint8_t* bytes_;  // owned, sodium_malloc'd, kSize bytes
};

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_SECRET_KEY_H_
