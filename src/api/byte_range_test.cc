#include "api/byte_range.h"

#include <gtest/gtest.h>

namespace silo::api {
namespace {

using K = ByteRange::Kind;

void ExpectPart(std::string_view h, uint64_t size, uint64_t first, uint64_t length) {
  ByteRange r = ParseByteRange(h, size);
  EXPECT_EQ(r.kind, K::kPart) << h;
  EXPECT_EQ(r.first, first) << h;
  EXPECT_EQ(r.length, length) << h;
}

TEST(ByteRangeTest, ServesOneRangeInEachForm) {
  ExpectPart("bytes=0-0", 100, 0, 1);
  ExpectPart("bytes=10-19", 100, 10, 10);
  ExpectPart("bytes=50-", 100, 50, 50);
  ExpectPart("bytes=-10", 100, 90, 10);
  ExpectPart("bytes=-500", 100, 0, 100);     // more than there is: all of it
  ExpectPart("bytes=90-5000", 100, 90, 10);  // clipped at the end
  ExpectPart("bytes=99-99", 100, 99, 1);
}

TEST(ByteRangeTest, PastTheEndIsUnsatisfiable) {
  EXPECT_EQ(ParseByteRange("bytes=100-", 100).kind, K::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=100-200", 100).kind, K::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=-0", 100).kind, K::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=0-", 0).kind, K::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=-5", 0).kind, K::kUnsatisfiable);
}

TEST(ByteRangeTest, AnythingElseGetsTheWholeBody) {
  for (std::string_view h :
       {"", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-1", "bytes=0-1,5-6", "items=0-1",
        "bytes= 0-1", "bytes=+1-2", "bytes=0-99999999999999999999", "Bytes=0-1"}) {
    EXPECT_EQ(ParseByteRange(h, 100).kind, K::kWhole) << h;
  }
  EXPECT_EQ(ParseByteRange(std::nullopt, 100).kind, K::kWhole);
}

}  // namespace
}  // namespace silo::api
