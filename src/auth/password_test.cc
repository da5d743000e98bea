#include "auth/password.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"

namespace silo::auth {
namespace {

TEST(Password, HashIsArgon2idWithTheCostAndAFreshSalt) {
  auto a = HashPassword("correct horse battery", kMinPasswordCost);
  auto b = HashPassword("correct horse battery", kMinPasswordCost);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << *a;
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword(*a, "correct horse battery"));
  EXPECT_FALSE(VerifyPassword(*a, "correct horse batter"));
  EXPECT_FALSE(VerifyPassword("not a hash", "correct horse battery"));
  EXPECT_FALSE(VerifyPassword("", ""));
  EXPECT_FALSE(NeedsRehash(*a, kMinPasswordCost));
  EXPECT_TRUE(NeedsRehash(*a, {32 * 1024, 3}));
}

TEST(Password, NoTruncation) {
  std::string long_pw(80, 'x');
  long_pw += "tail";
  auto h = HashPassword(long_pw, kMinPasswordCost);
  ASSERT_OK(h);
  EXPECT_FALSE(VerifyPassword(*h, long_pw.substr(0, 72)));
  EXPECT_TRUE(VerifyPassword(*h, long_pw));
}

TEST(Password, Policy) {
  EXPECT_OK(CheckPasswordPolicy("plum tree over river", "ann@example.com"));
  EXPECT_OK(CheckPasswordPolicy("pässwörd 🔑 mit 密码", "ann@example.com"));
  EXPECT_OK(CheckPasswordPolicy(std::string(128, 'q') + "z", "ann@example.com"));
  for (const char* bad :
       {"short1234!", "password1234", "qwertyuiopas", "123456789012", "Password1234!",
        "abcabcabcabc", "aaaaaaaaaaaaaaa", "monkeymonkey", "zyxwvutsrqponm", "1qaz2wsx3edc"}) {
    Status s = CheckPasswordPolicy(bad, "ann@example.com");
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    ASSERT_EQ(s.fields().size(), 1u);
    EXPECT_EQ(s.fields()[0].field, "password");
  }
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                CheckPasswordPolicy("annabelle-lee 2024 ok", "annabelle@example.com"));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                CheckPasswordPolicy(std::string(kMaxPasswordBytes + 1, 'k'), "a@b.c"));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                CheckPasswordPolicy(std::string("twelve chars\x01x"), "a@b.c"));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                CheckPasswordPolicy(std::string("twelve chars\xff\xfe"), "a@b.c"));
  // Twelve characters, counted as characters, not bytes.
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                CheckPasswordPolicy("密码钥匙门窗山水花草树", "a@b.c"));  // 11 (33 bytes)
  EXPECT_OK(CheckPasswordPolicy("密码钥匙门窗山水花草树林", "a@b.c"));    // 12
}

}  // namespace
}  // namespace silo::auth
