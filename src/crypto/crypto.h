// The crypto front door: AEAD sealing, sub-key derivation, randomness, hashing,
// encodings and constant-time comparison, all on libsodium.
//
// Sealed format (Seal/Open): nonce (24 bytes) || ciphertext || tag (16 bytes),
// XChaCha20-Poly1305-IETF. A fresh random nonce per call; with 192-bit nonces
// random choice is safe for any realistic number of messages per key.
// All functions are thread-safe.
#ifndef SILO_CRYPTO_CRYPTO_H_
#define SILO_CRYPTO_CRYPTO_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::crypto {

inline constexpr size_t kNonceSize = 24;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kSealOverhead = kNonceSize + kTagSize;

// Seals `plaintext` under `key`, binding `associated_data`.
std::string Seal(const SecretKey& key, std::string_view plaintext,
                 std::string_view associated_data);

// Opens a Seal() output. DataLoss when the key, the associated data or any
// byte of `sealed` is wrong; never returns unauthenticated bytes.
Result<std::string> Open(const SecretKey& key, std::string_view sealed,
                         std::string_view associated_data);

// Purposes of per-tenant sub-keys (DESIGN section 3). The numeric values are
// part of the on-disk format: never renumber.
enum class KeyPurpose : uint64_t {
  kDatabasePages = 1,
  kFiles = 2,
  kSecretFields = 3,
  kBackups = 4,
  kMetadata = 5,
};

// Derives the sub-key for `purpose` from a tenant data key (BLAKE2b KDF,
// context "silo-dek"), so one leaked sub-key exposes one purpose only.
SecretKey DeriveSubkey(const SecretKey& dek, KeyPurpose purpose);

// Key-encryption key derived from the master key (context "silo-kek").
SecretKey DeriveKek(const SecretKey& master);

// 16 hex characters identifying a key without revealing it (keyed BLAKE2b of
// a constant). Safe to store and print.
std::string KeyFingerprint(const SecretKey& key);

// `out_len` raw bytes of BLAKE2b keyed with `key` over `label`: a one-way,
// per-label identifier of a key. Distinct labels give unrelated values.
// REQUIRES: 1 <= out_len <= 64 (BLAKE2b's range; aborts otherwise).
std::string KeyedHash(const SecretKey& key, std::string_view label, size_t out_len);

std::string RandomBytes(size_t n);
// `n` random bytes as URL-safe base64 without padding.
std::string RandomToken(size_t n);
// `n` random characters of [0-9a-z], uniform (rejection sampling): ids that
// are safe in paths, e-mail and case-insensitive file systems.
std::string RandomId(size_t n);

// SHA-256 of `data` as 64 lowercase hex digits: Sha256's (OpenSSL; until
// 2026-12-07 libsodium's, the same digest at a fifth of the speed). Event
// chains, token and CSRF hashes, migration checksums.
std::string Sha256Hex(std::string_view data);

// Unkeyed BLAKE2b-256 (32 raw bytes) of the concatenation of `parts`: the
// links of hash chains (replica positions; segments of format 1).
std::string Blake2b256(std::initializer_list<std::string_view> parts);

// SHA-256 (32 raw bytes) of `data`, by OpenSSL, which uses the CPU's SHA
// extensions: 1.3 GB/s here on a 67 KB buffer against BLAKE2b's 0.78
// (libsodium) and libsodium's SHA-256 0.25. Replication segments of format 2
// are chained with it, since every segment is hashed on its primary and on
// each follower.
std::string Sha256(std::string_view data);

// SHA-256 of a stream fed in pieces (file contents): OpenSSL's, which uses
// the CPU's SHA extensions (1.7 GB/s here against libsodium's 0.3-0.4).
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::string_view bytes);
  // Lowercase hex of the digest of everything fed. Once.
  std::string FinishHex();

 private:
  void* ctx_;  // EVP_MD_CTX
};

// The SHA-256 (hex) and size of a file, read in 1 MiB pieces. NotFound when
// there is no file, Unavailable when it cannot be read.
struct FileDigest {
  std::string sha256;
  int64_t size = 0;
};
Result<FileDigest> DigestFile(const std::string& path);

// Ed25519 signatures (libsodium's crypto_sign), from a 32-byte seed held as a
// SecretKey: the key pair is derived from the seed for each call and its
// secret half wiped. Signed checkpoints and reports (issue 22).
inline constexpr size_t kSigningPublicKeySize = 32;
inline constexpr size_t kSignatureSize = 64;
// The raw 32-byte public key of `seed`.
std::string SigningPublicKey(const SecretKey& seed);
// A detached 64-byte signature of `message`.
std::string Sign(const SecretKey& seed, std::string_view message);
// Whether `signature` is `public_key`'s over `message` (false for wrong sizes).
bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature);

// Constant-time equality; lengths are compared first (length is not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

std::string Base64Encode(std::string_view bytes);
// Accepts standard base64 with or without padding.
Result<std::string> Base64Decode(std::string_view text);
std::string HexEncode(std::string_view bytes);
// The bytes of an even-length hex string (either case); InvalidArgument for
// anything else, a trailing newline included.
Result<std::string> HexDecode(std::string_view hex);

// Overwrites a string's bytes with zeros (for plaintext key copies).
void WipeString(std::string& s);

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_CRYPTO_H_
