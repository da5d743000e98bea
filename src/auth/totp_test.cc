#include "auth/totp.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"

namespace silo::auth {
namespace {

const std::string kRfcSecret = "12345678901234567890";

// RFC 6238 Appendix B, SHA-1, reduced to six digits (see
// notes/security-requirements.md section 4.1), including the >32-bit time.
TEST(Totp, Rfc6238Vectors) {
  const std::pair<int64_t, const char*> kVectors[] = {
      {59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
      {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}};
  for (const auto& [t, code] : kVectors) {
    EXPECT_EQ(TotpCode(kRfcSecret, t), code) << t;
    EXPECT_OK(VerifyTotp(kRfcSecret, code, t, 0)) << t;
  }
  EXPECT_EQ(TotpCode(kRfcSecret, 59, 8), "94287082");
}

TEST(Totp, OneStepEachWayAndEachStepOnce) {
  const int64_t t = 1111111109;  // step 37037036
  const int64_t step = t / 30;
  std::string now = TotpCode(kRfcSecret, t);
  std::string prev = TotpCode(kRfcSecret, t - 30);
  std::string next = TotpCode(kRfcSecret, t + 30);
  EXPECT_EQ(*VerifyTotp(kRfcSecret, now, t, 0), step);
  EXPECT_EQ(*VerifyTotp(kRfcSecret, prev, t, 0), step - 1);
  EXPECT_EQ(*VerifyTotp(kRfcSecret, next, t, 0), step + 1);
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                VerifyTotp(kRfcSecret, TotpCode(kRfcSecret, t - 90), t, 0));
  EXPECT_STATUS(StatusCode::kUnauthenticated,
                VerifyTotp(kRfcSecret, TotpCode(kRfcSecret, t + 90), t, 0));
  // Replay: the step was used.
  EXPECT_EQ(VerifyTotp(kRfcSecret, now, t, step).status().code(), StatusCode::kUnauthenticated);
  // An older step after a newer one was used.
  EXPECT_STATUS(StatusCode::kUnauthenticated, VerifyTotp(kRfcSecret, prev, t, step));
  for (const char* bad : {"", "12345", "1234567", "abcdef", "28708 ", "94287082"}) {
    EXPECT_STATUS(StatusCode::kUnauthenticated, VerifyTotp(kRfcSecret, bad, 59, 0)) << bad;
  }
}

TEST(Totp, SecretsUrisAndQr) {
  std::string a = NewTotpSecret(), b = NewTotpSecret();
  EXPECT_EQ(a.size(), kTotpSecretBytes);
  EXPECT_NE(a, b);
  EXPECT_EQ(Base32(kRfcSecret), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
  std::string uri = OtpauthUri("Silo acme", "ann@example.com", kRfcSecret);
  EXPECT_EQ(uri,
            "otpauth://totp/Silo%20acme:ann@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&issuer=Silo%20acme&algorithm=SHA1&digits=6&period=30");
  auto svg = QrSvg(uri);
  ASSERT_OK(svg);
  EXPECT_EQ(svg->rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg->find("<path"), std::string::npos);
  EXPECT_EQ(svg->find("GEZDG"), std::string::npos);  // the secret is in the modules only
}

}  // namespace
}  // namespace silo::auth
