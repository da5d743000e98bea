#include "crypto/crypto.h"

#include <gtest/gtest.h>

#include <set>

#include "base/status_matchers.h"

namespace silo::crypto {
namespace {

TEST(SealTest, RoundTripsAndUsesFreshNonces) {
  SecretKey k = SecretKey::Random();
  std::string a = Seal(k, "attack at dawn", "ad");
  std::string b = Seal(k, "attack at dawn", "ad");
  EXPECT_NE(a, b);  // fresh nonce per seal
  EXPECT_EQ(a.find("attack"), std::string::npos);
  auto opened = Open(k, a, "ad");
  ASSERT_OK(opened);
  EXPECT_EQ(*opened, "attack at dawn");
}

TEST(SealTest, EveryFlippedByteIsDetected) {
  SecretKey k = SecretKey::Random();
  std::string sealed = Seal(k, "0123456789abcdef", "ad");
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x01;
    auto r = Open(k, bad, "ad");
    ASSERT_STATUS(StatusCode::kDataLoss, r) << "byte " << i;
  }
}

TEST(SealTest, WrongKeyWrongAdAndTruncationFail) {
  SecretKey k = SecretKey::Random();
  std::string sealed = Seal(k, "secret", "tenant-a");
  EXPECT_STATUS(StatusCode::kDataLoss, Open(SecretKey::Random(), sealed, "tenant-a"));
  EXPECT_STATUS(StatusCode::kDataLoss, Open(k, sealed, "tenant-b"));
  EXPECT_STATUS(StatusCode::kDataLoss, Open(k, sealed.substr(0, sealed.size() - 1), "tenant-a"));
  EXPECT_STATUS(StatusCode::kDataLoss, Open(k, "", "tenant-a"));
}

TEST(KdfTest, SubkeysDifferPerPurposeAndAreDeterministic) {
  SecretKey dek = SecretKey::Random();
  SecretKey pages = DeriveSubkey(dek, KeyPurpose::kDatabasePages);
  SecretKey pages2 = DeriveSubkey(dek, KeyPurpose::kDatabasePages);
  SecretKey files = DeriveSubkey(dek, KeyPurpose::kFiles);
  EXPECT_EQ(KeyFingerprint(pages), KeyFingerprint(pages2));
  EXPECT_NE(KeyFingerprint(pages), KeyFingerprint(files));
  EXPECT_NE(KeyFingerprint(pages), KeyFingerprint(dek));
}

TEST(KeyedHashTest, DeterministicPerKeyAndLabel) {
  SecretKey a = SecretKey::Random();
  SecretKey b = SecretKey::Random();
  EXPECT_EQ(KeyedHash(a, "label", 8), KeyedHash(a.Clone(), "label", 8));
  EXPECT_NE(KeyedHash(a, "label", 8), KeyedHash(b, "label", 8));
  EXPECT_NE(KeyedHash(a, "label", 8), KeyedHash(a, "other", 8));
  EXPECT_EQ(KeyedHash(a, "label", 8).size(), 8u);
  EXPECT_EQ(KeyFingerprint(a), HexEncode(KeyedHash(a, "silo key fingerprint v1", 8)));
}

TEST(EncodingTest, Base64RoundTripAndRejectsGarbage) {
  std::string raw = RandomBytes(32);
  auto back = Base64Decode(Base64Encode(raw));
  ASSERT_OK(back);
  EXPECT_EQ(*back, raw);
  EXPECT_STATUS(StatusCode::kInvalidArgument, Base64Decode("not base64 !!"));
  EXPECT_EQ(HexEncode("\x01\xff"), "01ff");
  EXPECT_EQ(HexDecode("01fF").value(), "\x01\xff");
  EXPECT_EQ(HexDecode(HexEncode(raw)).value(), raw);
  EXPECT_EQ(HexDecode("").value(), "");
  for (std::string_view bad : {"0", "0g", "01 ", "01\n", "-1"}) {
    EXPECT_STATUS(StatusCode::kInvalidArgument, HexDecode(bad)) << bad;
  }
}

TEST(Sha256Test, MatchesTheStandardsVectorsAndTheHexForm) {
  // FIPS 180-2, appendix B.1 and B.2.
  EXPECT_EQ(HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string long_input(100000, 'q');
  EXPECT_EQ(HexEncode(Sha256(long_input)), Sha256Hex(long_input));
  EXPECT_EQ(Sha256("").size(), 32u);
  // The hex form, which event chains and stored token hashes hold: the same
  // digests whichever library computes them.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256Stream stream;
  stream.Update(long_input.substr(0, 12345));
  stream.Update(long_input.substr(12345));
  EXPECT_EQ(stream.FinishHex(), Sha256Hex(long_input));
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

TEST(RandomTokenTest, UniqueAndFullLength) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string t = RandomToken(32);
    EXPECT_EQ(t.size(), 43u);  // 256 bits, base64url without padding
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(SignTest, SignaturesVerifyOnlyForTheirKeyAndMessage) {
  SecretKey seed = SecretKey::Random();
  const std::string pk = SigningPublicKey(seed);
  EXPECT_EQ(pk.size(), kSigningPublicKeySize);
  EXPECT_EQ(SigningPublicKey(seed), pk);  // deterministic from the seed
  const std::string sig = Sign(seed, "checkpoint");
  EXPECT_EQ(sig.size(), kSignatureSize);
  EXPECT_TRUE(VerifySignature(pk, "checkpoint", sig));
  EXPECT_FALSE(VerifySignature(pk, "checkpoinT", sig));
  EXPECT_FALSE(VerifySignature(SigningPublicKey(SecretKey::Random()), "checkpoint", sig));
  std::string flipped = sig;
  flipped[10] ^= 1;
  EXPECT_FALSE(VerifySignature(pk, "checkpoint", flipped));
  EXPECT_FALSE(VerifySignature(pk, "checkpoint", sig.substr(1)));
  EXPECT_FALSE(VerifySignature(pk.substr(1), "checkpoint", sig));
}

}  // namespace
}  // namespace silo::crypto
