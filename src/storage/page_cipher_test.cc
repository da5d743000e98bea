#include "storage/page_cipher.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <cstring>
#include <string>

#include "base/status_matchers.h"
#include "crypto/crypto.h"

namespace silo::storage {
namespace {

using Page = std::array<uint8_t, kPageSize>;

Page PlainPage(bool page_one, const std::string& marker) {
  Page p{};
  for (size_t i = 0; i < kUsableSize; ++i) p[i] = static_cast<uint8_t>(i * 7);
  std::memcpy(p.data() + 200, marker.data(), marker.size());
  if (page_one) {
    std::memcpy(p.data(), "SQLite format 3", 16);
    p[16] = 0x10;
    p[17] = 0x00;
    p[20] = kReserveBytes;
  }
  for (size_t i = kUsableSize; i < kPageSize; ++i) p[i] = 0xAB;  // SQLite may leave junk here
  return p;
}

class PageCipherTest : public ::testing::TestWithParam<bool> {
 protected:
  crypto::SecretKey key_ = crypto::SecretKey::Random();
  std::string fp_ = PageKeyFingerprint(key_);
  bool page_one() const { return GetParam(); }
  Page Seal(const Page& in, std::string_view ad) {
    Page out{};
    EXPECT_OK(SealPage(key_, fp_, page_one(), ad, in.data(), out.data()));
    return out;
  }
};

TEST_P(PageCipherTest, RoundTripZeroesReserveAndHidesMarker) {
  const std::string marker = "MARKER-PAGE-CIPHER-31337";
  Page in = PlainPage(page_one(), marker);
  Page sealed = Seal(in, "D:7");
  std::string s(sealed.begin(), sealed.end());
  EXPECT_EQ(s.find(marker), std::string::npos);
  if (page_one()) {
    EXPECT_EQ(s.find("SQLite format 3"), std::string::npos);
    EXPECT_EQ(std::memcmp(sealed.data(), "SILODB", 6), 0);
  }
  Page out{};
  ASSERT_EQ(OpenPage(key_, fp_, page_one(), "D:7", sealed.data(), out.data()), PageOpenError::kOk);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), kUsableSize), 0);
  for (size_t i = kUsableSize; i < kPageSize; ++i) EXPECT_EQ(out[i], 0) << i;
}

TEST_P(PageCipherTest, FreshNonceEverySeal) {
  Page in = PlainPage(page_one(), "x");
  EXPECT_NE(Seal(in, "D:1"), Seal(in, "D:1"));
}

TEST_P(PageCipherTest, EveryFlippedBitIsDetected) {
  Page sealed = Seal(PlainPage(page_one(), "x"), "D:3");
  Page out{};
  for (size_t i = 0; i < kPageSize; ++i) {
    for (uint8_t bit : {0x01, 0x80}) {
      Page bad = sealed;
      bad[i] ^= bit;
      auto rc = OpenPage(key_, fp_, page_one(), "D:3", bad.data(), out.data());
      ASSERT_NE(rc, PageOpenError::kOk) << "byte " << i;
      for (size_t j = 0; j < kPageSize; j += 512) ASSERT_EQ(out[j], 0) << "leaked plaintext";
    }
  }
}

TEST_P(PageCipherTest, MovedPageIsDetected) {
  Page sealed = Seal(PlainPage(page_one(), "x"), "D:3");
  Page out{};
  EXPECT_EQ(OpenPage(key_, fp_, page_one(), "D:4", sealed.data(), out.data()),
            PageOpenError::kAuthFailed);
  EXPECT_EQ(OpenPage(key_, fp_, page_one(), "W:3", sealed.data(), out.data()),
            PageOpenError::kAuthFailed);
}

TEST_P(PageCipherTest, OtherTenantsKey) {
  Page sealed = Seal(PlainPage(page_one(), "x"), "D:1");
  crypto::SecretKey other = crypto::SecretKey::Random();
  std::string other_fp = PageKeyFingerprint(other);
  Page out{};
  auto rc = OpenPage(other, other_fp, page_one(), "D:1", sealed.data(), out.data());
  EXPECT_EQ(rc, page_one() ? PageOpenError::kWrongKey : PageOpenError::kAuthFailed);
  // Even with the fingerprint forged to match, the tag fails.
  EXPECT_EQ(OpenPage(other, fp_, page_one(), "D:1", sealed.data(), out.data()),
            PageOpenError::kAuthFailed);
}

INSTANTIATE_TEST_SUITE_P(PageOneAndOthers, PageCipherTest, ::testing::Bool());

TEST(PageOneTest, PlaintextSqliteFileIsNotSilo) {
  auto key = crypto::SecretKey::Random();
  Page plain = PlainPage(true, "x");
  Page out{};
  EXPECT_EQ(OpenPage(key, PageKeyFingerprint(key), true, "D:1", plain.data(), out.data()),
            PageOpenError::kNotSilo);
}

TEST(PageOneTest, WrongPageSizeOrReserveRefusedAtSeal) {
  auto key = crypto::SecretKey::Random();
  auto fp = PageKeyFingerprint(key);
  Page out{};
  Page p = PlainPage(true, "x");
  p[16] = 0x04;  // 1024-byte pages
  EXPECT_STATUS(StatusCode::kInvalidArgument, SealPage(key, fp, true, "D:1", p.data(), out.data()));
  p = PlainPage(true, "x");
  p[20] = 0;  // no reserve
  EXPECT_STATUS(StatusCode::kInvalidArgument, SealPage(key, fp, true, "D:1", p.data(), out.data()));
  p = PlainPage(true, "x");
  p[0] = 'X';
  EXPECT_STATUS(StatusCode::kInvalidArgument, SealPage(key, fp, true, "D:1", p.data(), out.data()));
}

TEST(PageOneTest, NewerFormatVersionIsReported) {
  auto key = crypto::SecretKey::Random();
  auto fp = PageKeyFingerprint(key);
  Page sealed{}, out{};
  Page p = PlainPage(true, "x");
  ASSERT_OK(SealPage(key, fp, true, "D:1", p.data(), sealed.data()));
  sealed[7] = kFormatVersion + 1;
  EXPECT_EQ(OpenPage(key, fp, true, "D:1", sealed.data(), out.data()), PageOpenError::kBadVersion);
}

// The format is XChaCha20-Poly1305-IETF as libsodium defines it, whichever
// library computes it: a page sealed here opens with libsodium's own call,
// and a page libsodium seals opens here.
TEST(PageCipherFormat, IsLibsodiumXChaCha20Poly1305) {
  crypto::SecretKey key = crypto::SecretKey::Random();
  std::string fp = PageKeyFingerprint(key);
  Page in = PlainPage(false, "interop");
  Page sealed{};
  ASSERT_OK(SealPage(key, fp, false, "D:9", in.data(), sealed.data()));
  const uint8_t ad[] = {'D', ':', '9', kFormatVersion, 0};
  Page out{};
  ASSERT_EQ(crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                out.data(), nullptr, sealed.data(), kUsableSize, sealed.data() + kUsableSize + 24,
                ad, sizeof ad, sealed.data() + kUsableSize, key.data()),
            0);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), kUsableSize), 0);

  Page theirs{};
  randombytes_buf(theirs.data() + kUsableSize, 24);
  theirs[kUsableSize + 40] = kFormatVersion;
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
      theirs.data(), theirs.data() + kUsableSize + 24, nullptr, in.data(), kUsableSize, ad,
      sizeof ad, nullptr, theirs.data() + kUsableSize, key.data());
  ASSERT_EQ(OpenPage(key, fp, false, "D:9", theirs.data(), out.data()), PageOpenError::kOk);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), kUsableSize), 0);
}

}  // namespace
}  // namespace silo::storage
