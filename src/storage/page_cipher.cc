#include "storage/page_cipher.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <array>
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

// Associated data: caller's ad || version || epoch || (page 1) the header.
// Built in a fixed buffer: no allocation per page.
class FullAd {
 public:
  FullAd(std::string_view ad, uint8_t version, uint8_t epoch, const uint8_t* header) {
    if (ad.size() > 64) std::abort();  // the VFS's AD is at most 29 bytes
    std::memcpy(bytes_.data(), ad.data(), ad.size());
    len_ = ad.size();
    bytes_[len_++] = version;
    bytes_[len_++] = epoch;
    if (header != nullptr) {
      std::memcpy(bytes_.data() + len_, header, kHeaderSize);
      len_ += kHeaderSize;
    }
  }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return len_; }

 private:
  std::array<uint8_t, 64 + 2 + kHeaderSize> bytes_{};
  size_t len_ = 0;
};

// XChaCha20-Poly1305-IETF, byte for byte what libsodium's
// crypto_aead_xchacha20poly1305_ietf_*_detached compute: the sub-key is
// HChaCha20(key, nonce[0..16)) (libsodium), then ChaCha20-Poly1305-IETF with
// nonce 0^4 || nonce[16..24) (OpenSSL, whose vectorised code runs about
// three times faster than libsodium 1.0.18's on this page size). A
// per-thread context avoids an allocation per page.
class Aead {
 public:
  static Aead& ForThread() {
    thread_local Aead aead;
    return aead;
  }
  bool Run(bool encrypt, const crypto::SecretKey& key, const uint8_t* nonce, const FullAd& ad,
           const uint8_t* in, size_t len, uint8_t* out, uint8_t* tag) {
    uint8_t subkey[crypto_core_hchacha20_OUTPUTBYTES];
    crypto_core_hchacha20(subkey, nonce, key.data(), nullptr);
    uint8_t iv[12] = {0, 0, 0, 0};
    std::memcpy(iv + 4, nonce + 16, 8);
    int out_len = 0;
    // The cipher is bound once per thread; later calls only set key and IV.
    bool ok = EVP_CipherInit_ex2(ctx_, nullptr, subkey, iv, encrypt ? 1 : 0, nullptr) == 1;
    sodium_memzero(subkey, sizeof subkey);
    if (!encrypt) {
      ok = ok && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG,
                                     crypto_aead_xchacha20poly1305_ietf_ABYTES, tag) == 1;
    }
    ok = ok &&
         EVP_CipherUpdate(ctx_, nullptr, &out_len, ad.data(), static_cast<int>(ad.size())) == 1;
    ok = ok && EVP_CipherUpdate(ctx_, out, &out_len, in, static_cast<int>(len)) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx_, out + out_len, &out_len) == 1;
    if (encrypt) {
      ok = ok && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG,
                                     crypto_aead_xchacha20poly1305_ietf_ABYTES, tag) == 1;
    }
    return ok;
  }

 private:
  Aead()
      : ctx_(EVP_CIPHER_CTX_new()),
        cipher_(EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr)) {
    if (ctx_ == nullptr || cipher_ == nullptr ||
        EVP_CipherInit_ex2(ctx_, cipher_, nullptr, nullptr, 1, nullptr) != 1) {
      std::abort();  // no cipher, no storage
    }
  }
  ~Aead() {
    EVP_CIPHER_CTX_free(ctx_);
    EVP_CIPHER_free(cipher_);
  }
  EVP_CIPHER_CTX* ctx_;
  EVP_CIPHER* cipher_;
};

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
  FullAd full(ad, kFormatVersion, 0, page_one ? out : nullptr);
  if (!Aead::ForThread().Run(true, key, nonce, full, in + start, kUsableSize - start, out + start,
                             out + kTagOffset)) {
    return Internal("page encryption failed");
  }
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
  FullAd full(ad, in[kVersionOffset], in[kEpochOffset], page_one ? in : nullptr);
  uint8_t tag[crypto_aead_xchacha20poly1305_ietf_ABYTES];
  std::memcpy(tag, in + kTagOffset, sizeof tag);
  bool ok = Aead::ForThread().Run(false, key, in + kNonceOffset, full, in + start,
                                  kUsableSize - start, out + start, tag);
  if (!ok) {  // OpenSSL has written unauthenticated plaintext: wipe it
    std::memset(out, 0, kPageSize);
    return PageOpenError::kAuthFailed;
  }
  if (page_one) std::memcpy(out, kSqliteMagic, kHeaderSize);
  std::memset(out + kUsableSize, 0, kReserveBytes);  // SQLite gets zeros in the reserve
  return PageOpenError::kOk;
}

}  // namespace silo::storage
