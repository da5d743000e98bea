#include "storage/page_cipher.h"

#include <sodium.h>

#include <cstring>
#include <string>

#include "crypto/crypto.h"
#include "crypto/sodium_init.h"

namespace silo::storage {
namespace {

constexpr char kSqliteMagic[kHeaderSize] = "SQLite format 3";  // 15 chars + NUL
constexpr char kSiloMagic[6] = {'S', 'I', 'L', 'O', 'D', 'B'};
constexpr size_t kNonceOffset = kUsableSize;
constexpr size_t kTagOffset = kNonceOffset + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kVersionOffset = kTagOffset + crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kEpochOffset = kVersionOffset + 1;
static_assert(kEpochOffset + 1 + 6 == kPageSize, "reserve layout must fill 48 bytes");

std::string FullAd(std::string_view ad, uint8_t version, uint8_t epoch, const uint8_t* header) {
  std::string full(ad);
  full.push_back(static_cast<char>(version));
  full.push_back(static_cast<char>(epoch));
  if (header != nullptr) full.append(reinterpret_cast<const char*>(header), kHeaderSize);
  return full;
}

}  // namespace

std::string PageKeyFingerprint(const crypto::SecretKey& key) {
  return crypto::KeyedHash(key, "silo page key fingerprint v1", kFingerprintSize);
}

Status SealPage(const crypto::SecretKey& key, std::string_view fingerprint, bool page_one,
                std::string_view ad, const uint8_t* in, uint8_t* out) {
  crypto::EnsureSodium();
  size_t start = 0;
  if (page_one) {
    // Why the checks: a page 1 with another page size or reserve would be
    // written fine and be unreadable (or mis-parsed) forever after.
    if (std::memcmp(in, kSqliteMagic, kHeaderSize) != 0) {
      return InvalidArgument("page 1 lacks the SQLite magic");
    }
    if (in[16] != 0x10 || in[17] != 0x00 || in[20] != kReserveBytes) {
      return InvalidArgument("page 1 has the wrong page size or reserve");
    }
    std::memcpy(out, kSiloMagic, sizeof kSiloMagic);
    out[6] = 0;
    out[7] = kFormatVersion;
    std::memcpy(out + 8, fingerprint.data(), kFingerprintSize);
    start = kHeaderSize;
  }
  uint8_t* nonce = out + kNonceOffset;
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  out[kVersionOffset] = kFormatVersion;
  out[kEpochOffset] = 0;
  std::memset(out + kEpochOffset + 1, 0, 6);
  std::string full = FullAd(ad, kFormatVersion, 0, page_one ? out : nullptr);
  unsigned long long tag_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
      out + start, out + kTagOffset, &tag_len, in + start, kUsableSize - start,
      reinterpret_cast<const unsigned char*>(full.data()), full.size(), nullptr, nonce, key.data());
  return Status::Ok();
}

PageOpenError OpenPage(const crypto::SecretKey& key, std::string_view fingerprint, bool page_one,
                       std::string_view ad, const uint8_t* in, uint8_t* out) {
  crypto::EnsureSodium();
  size_t start = 0;
  if (page_one) {
    if (std::memcmp(in, kSiloMagic, sizeof kSiloMagic) != 0) {
      std::memset(out, 0, kPageSize);
      return PageOpenError::kNotSilo;
    }
    if (in[6] != 0 || in[7] != kFormatVersion) {
      std::memset(out, 0, kPageSize);
      return PageOpenError::kBadVersion;
    }
    if (sodium_memcmp(in + 8, fingerprint.data(), kFingerprintSize) != 0) {
      std::memset(out, 0, kPageSize);
      return PageOpenError::kWrongKey;
    }
    start = kHeaderSize;
  }
  for (size_t i = kEpochOffset + 1; i < kPageSize; ++i) {
    if (in[i] != 0) {  // unused reserve bytes must stay zero: every byte is checked
      std::memset(out, 0, kPageSize);
      return PageOpenError::kAuthFailed;
    }
  }
  if (in[kVersionOffset] != kFormatVersion) {
    std::memset(out, 0, kPageSize);
    return in[kVersionOffset] > kFormatVersion ? PageOpenError::kBadVersion
                                               : PageOpenError::kAuthFailed;
  }
  std::string full = FullAd(ad, in[kVersionOffset], in[kEpochOffset], page_one ? in : nullptr);
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
      out + start, nullptr, in + start, kUsableSize - start, in + kTagOffset,
      reinterpret_cast<const unsigned char*>(full.data()), full.size(), in + kNonceOffset,
      key.data());
  if (rc != 0) {
    std::memset(out, 0, kPageSize);
    return PageOpenError::kAuthFailed;
  }
  if (page_one) std::memcpy(out, kSqliteMagic, kHeaderSize);
  std::memset(out + kUsableSize, 0, kReserveBytes);  // SQLite gets zeros in the reserve
  return PageOpenError::kOk;
}

}  // namespace silo::storage
