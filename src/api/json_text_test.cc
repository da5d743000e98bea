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
  auto v = boost::json::parse(R"({"a":"x\"y\u0001","b":[true,null,{}],"c":{"d":[]},"e":-7})");
  EXPECT_EQ(JsonText(v), boost::json::serialize(v));
  EXPECT_EQ(JsonText(v.as_object()), boost::json::serialize(v));
}

}  // namespace
}  // namespace silo::api
