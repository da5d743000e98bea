#include "tenant/slug.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"

namespace silo::tenant {
namespace {

TEST(SlugTest, Valid) {
  for (const char* s : {"acme", "a-1", "abc", "x9z", "my-company-2024",
                        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"}) {
    EXPECT_OK(ValidateSlug(s)) << s;
  }
}

TEST(SlugTest, Invalid) {
  const char* bad[] = {"",
                       "ab",
                       "ACME",
                       "acme_co",
                       "-acme",
                       "acme-",
                       "ac.me",
                       "a cme",
                       "acme/x",
                       "../etc",
                       "xn--80ak6aa92e",
                       "é-co",
                       "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl",
                       "acme\n",
                       "acme%2f"};
  for (const char* s : bad) {
    auto st = ValidateSlug(s);
    EXPECT_STATUS(StatusCode::kInvalidArgument, st) << s;
  }
}

TEST(SlugTest, ReservedNamesRefused) {
  for (const char* s : {"www", "api", "admin", "login", "silo", "localhost"}) {
    EXPECT_STATUS(StatusCode::kInvalidArgument, ValidateSlug(s)) << s;
    EXPECT_TRUE(IsReservedSlug(s));
  }
  EXPECT_FALSE(IsReservedSlug("acme"));
}

}  // namespace
}  // namespace silo::tenant
