#include "crypto/crypto.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "crypto/sodium_init.h"

namespace silo::crypto {

std::string Seal(const SecretKey& key, std::string_view plaintext,
                 std::string_view associated_data) {
  EnsureSodium();
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, kNonceSize);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonceSize, &clen, reinterpret_cast<const unsigned char*>(plaintext.data()),
      plaintext.size(), reinterpret_cast<const unsigned char*>(associated_data.data()),
      associated_data.size(), nullptr, nonce, key.data());
  return out;
}

Result<std::string> Open(const SecretKey& key, std::string_view sealed,
                         std::string_view associated_data) {
  EnsureSodium();
  if (sealed.size() < kSealOverhead) return DataLoss("sealed data too short");
  std::string out(sealed.size() - kSealOverhead, '\0');
  auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  unsigned long long mlen = 0;
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      reinterpret_cast<unsigned char*>(out.data()), &mlen, nullptr, nonce + kNonceSize,
      sealed.size() - kNonceSize, reinterpret_cast<const unsigned char*>(associated_data.data()),
      associated_data.size(), nonce, key.data());
  if (rc != 0) {
    sodium_memzero(out.data(), out.size());
    return DataLoss("authentication failed");
  }
  return out;
}

namespace {

SecretKey Derive(const SecretKey& parent, uint64_t id, const char ctx[8]) {
  static_assert(crypto_kdf_CONTEXTBYTES == 8);
  SecretKey out = SecretKey::Random();
  crypto_kdf_derive_from_key(out.mutable_data(), SecretKey::kSize, id, ctx, parent.data());
  return out;
}

}  // namespace

SecretKey DeriveSubkey(const SecretKey& dek, KeyPurpose purpose) {
  return Derive(dek, static_cast<uint64_t>(purpose), "silo-dek");
}

SecretKey DeriveKek(const SecretKey& master) { return Derive(master, 1, "silo-kek"); }

std::string KeyedHash(const SecretKey& key, std::string_view label, size_t out_len) {
  EnsureSodium();
  std::string out(out_len, '\0');
  if (out_len == 0 || crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                                         reinterpret_cast<const unsigned char*>(label.data()),
                                         label.size(), key.data(), SecretKey::kSize) != 0) {
    std::abort();  // a programming error: an identifier of the wrong length
  }
  return out;
}

std::string Blake2b256(std::initializer_list<std::string_view> parts) {
  EnsureSodium();
  crypto_generichash_state state;
  std::string out(crypto_generichash_BYTES, '\0');
  crypto_generichash_init(&state, nullptr, 0, out.size());
  for (std::string_view part : parts) {
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(part.data()),
                              part.size());
  }
  crypto_generichash_final(&state, reinterpret_cast<unsigned char*>(out.data()), out.size());
  return out;
}

std::string KeyFingerprint(const SecretKey& key) {
  return HexEncode(KeyedHash(key, "silo key fingerprint v1", 8));
}

namespace {

// The key pair of `seed`: the public key in *pk, the secret key in `sk`
// (crypto_sign_SECRETKEYBYTES bytes), which the caller wipes.
void KeyPairOf(const SecretKey& seed, unsigned char* pk, unsigned char* sk) {
  static_assert(SecretKey::kSize == crypto_sign_SEEDBYTES);
  EnsureSodium();
  if (crypto_sign_seed_keypair(pk, sk, seed.data()) != 0) std::abort();
}

}  // namespace

std::string SigningPublicKey(const SecretKey& seed) {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  KeyPairOf(seed, pk, sk);
  sodium_memzero(sk, sizeof sk);
  return std::string(reinterpret_cast<char*>(pk), sizeof pk);
}

std::string Sign(const SecretKey& seed, std::string_view message) {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  KeyPairOf(seed, pk, sk);
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(), sk);
  sodium_memzero(sk, sizeof sk);
  return sig;
}

bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature) {
  EnsureSodium();
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) {
    return false;
  }
  return crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

std::string RandomBytes(size_t n) {
  EnsureSodium();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string RandomId(size_t n) {
  static constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string out;
  while (out.size() < n) {
    for (unsigned char b : RandomBytes(n)) {
      if (b < 252 && out.size() < n) out += kBase36[b % 36];  // 252 = 7 * 36
    }
  }
  return out;
}

std::string RandomToken(size_t n) {
  std::string raw = RandomBytes(n);
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), n,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  sodium_memzero(raw.data(), raw.size());
  return out;
}

namespace {

// OpenSSL's SHA-256, fetched once: EVP_sha256() makes OpenSSL 3 look the
// implementation up in its provider store on every digest (0.9 µs against
// 0.3 for 100 bytes here), under the store's lock. Kept for the process's
// life; null if OpenSSL has none.
const EVP_MD* FetchedSha256() {
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return kSha256;
}

}  // namespace

std::string Sha256Hex(std::string_view data) { return HexEncode(Sha256(data)); }

std::string Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int n = 0;
  if (FetchedSha256() == nullptr ||
      EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n,
                 FetchedSha256(), nullptr) != 1 ||
      n != out.size()) {
    throw std::runtime_error("SHA-256 unavailable");
  }
  return out;
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || FetchedSha256() == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), FetchedSha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 unavailable");
  }
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Stream::Update(std::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

std::string Sha256Stream::FinishHex() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &n);
  return HexEncode(std::string_view(reinterpret_cast<char*>(out), n));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  EnsureSodium();
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Base64Encode(std::string_view bytes) {
  EnsureSodium();
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  EnsureSodium();
  std::string out(text.size(), '\0');
  size_t len = 0;
  const char* end = nullptr;
  int variant = (!text.empty() && text.back() == '=') ? sodium_base64_VARIANT_ORIGINAL
                                                      : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), " \n\r\t", &len, &end, variant) != 0 ||
      end != text.data() + text.size()) {
    return InvalidArgument("not valid base64");
  }
  out.resize(len);
  return out;
}

std::string HexEncode(std::string_view bytes) {
  EnsureSodium();
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  out.pop_back();
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  EnsureSodium();
  if (hex.size() % 2 != 0) return InvalidArgument("not hex: odd length");
  std::string out(hex.size() / 2, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(),
                     hex.size(), nullptr, &len, &end) != 0 ||
      end != hex.data() + hex.size() || len != out.size()) {
    return InvalidArgument("not hex");
  }
  return out;
}

void WipeString(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
}

Result<FileDigest> DigestFile(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    if (errno == ENOENT) return NotFound("no file to hash").WithCause(path);
    return Unavailable("cannot read the file").WithCause(path + ": " + std::strerror(errno));
  }
  Sha256Stream digest;
  std::vector<char> piece(size_t{1} << 20);
  FileDigest out;
  size_t n;
  while ((n = std::fread(piece.data(), 1, piece.size(), f.get())) > 0) {
    digest.Update(std::string_view(piece.data(), n));
    out.size += static_cast<int64_t>(n);
  }
  if (std::ferror(f.get())) return Unavailable("cannot read the file").WithCause(path);
  out.sha256 = digest.FinishHex();
  return out;
}

}  // namespace silo::crypto
