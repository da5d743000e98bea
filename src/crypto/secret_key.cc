#include "crypto/secret_key.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "crypto/sodium_init.h"

namespace silo::crypto {

SecretKey::SecretKey() {
  EnsureSodium();
  bytes_ = static_cast<uint8_t*>(sodium_malloc(kSize));
  if (bytes_ == nullptr) throw std::bad_alloc();
}

SecretKey SecretKey::Random() {
  SecretKey k;
  randombytes_buf(k.bytes_, kSize);
  return k;
}

Result<SecretKey> SecretKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return InvalidArgument("key must be exactly 32 bytes");
  }
  SecretKey k;
  std::memcpy(k.bytes_, bytes.data(), kSize);
  return k;
}

SecretKey::SecretKey(SecretKey&& other) noexcept : bytes_(other.bytes_) { other.bytes_ = nullptr; }

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    if (bytes_ != nullptr) sodium_free(bytes_);
    bytes_ = other.bytes_;
    other.bytes_ = nullptr;
  }
  return *this;
}

SecretKey::~SecretKey() {
  if (bytes_ != nullptr) sodium_free(bytes_);  // wipes before freeing
}

SecretKey SecretKey::Clone() const {
  SecretKey k;
  std::memcpy(k.bytes_, bytes_, kSize);
  return k;
}

}  // namespace silo::crypto
