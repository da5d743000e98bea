#include "api/json_text.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace silo::api {
namespace {

TEST(JsonText, NumbersAreTheShortestDecimalThatReadsBackTheSame) {
  auto v = boost::json::parse(R"([1.5, 0.1, 3.0, -2, 1e21, 2.5e-7, 9007199254740993, 1E0])");
  EXPECT_EQ(JsonText(v), "[1.5,0.1,3,-2,1e+21,2.5e-07,9007199254740993,1]");
  // Each reads back as the same double.
  auto back = boost::json::parse(JsonText(v));
  EXPECT_EQ(back.as_array()[1].as_double(), 0.1);
}

TEST(JsonText, EverythingElseIsWrittenAsBoostJsonWritesIt) {
  const char* rest = R"({"a":"x\"y\u0001","b":[true,null,{}],"c":{"d":[]},"e":-7)";
  // Without a double: Boost.JSON's own text.
  auto plain = boost::json::parse(std::string(rest) + "}");
  EXPECT_EQ(JsonText(plain), boost::json::serialize(plain));
  EXPECT_EQ(JsonText(plain.as_object()), boost::json::serialize(plain));
  // With one, written member by member: the other members come out the same.
  auto mixed = boost::json::parse(std::string(rest) + R"(,"n":[2.5]})");
  std::string expected = boost::json::serialize(plain);
  expected.pop_back();
  expected += R"(,"n":[2.5]})";
  EXPECT_EQ(JsonText(mixed), expected);
  EXPECT_EQ(JsonText(mixed.as_object()), expected);
}

}  // namespace
}  // namespace silo::api
