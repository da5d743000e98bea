#include "api/json_strict.h"

#include <gtest/gtest.h>

#include <string>

namespace silo::api {
namespace {

TEST(JsonStrictTest, ADuplicateKeyIsNamedWhereverItIs) {
  // Named, with where the parser stopped (at the second key).
  EXPECT_EQ(StrictJsonProblem(R"({"title":"one","title":"two"})")
                .rfind("duplicate key \"title\" at byte 2", 0),
            0u);
  EXPECT_NE(StrictJsonProblem(R"({"a":{"b":1,"b":2}})").find("duplicate key \"b\""),
            std::string::npos);
  EXPECT_NE(StrictJsonProblem(R"({"a":[{"x":1},{"x":1,"x":2}]})").find("\"x\""), std::string::npos);
  // The same key in different objects, or escaped differently but equal
  // once decoded, is judged on the decoded text.
  EXPECT_EQ(StrictJsonProblem(R"({"a":{"x":1},"b":{"x":1},"x":[{"x":2}]})"), "");
  EXPECT_NE(StrictJsonProblem(R"({"ab":1,"a\u0062":2})").find("duplicate key \"ab\""),
            std::string::npos);
  // A long key (read in parts by the parser) is still one key.
  const std::string k(5000, 'k');
  EXPECT_NE(StrictJsonProblem("{\"" + k + "\":1,\"" + k + "\":2}").find("duplicate"),
            std::string::npos);
}

TEST(JsonStrictTest, ControlCharactersOtherThanTabAndNewlinesAreRefused) {
  EXPECT_EQ(StrictJsonProblem(R"({"t":"a\tb\r\nc"})"), "");
  EXPECT_NE(StrictJsonProblem(R"({"title":"a\u0001b"})").find("U+0001 in the value of \"title\""),
            std::string::npos);
  EXPECT_NE(StrictJsonProblem(R"({"a\u0000":1})").find("U+0000 in a key"), std::string::npos);
  EXPECT_NE(StrictJsonProblem(R"({"x":["\u001b[31m"]})").find("U+001B"), std::string::npos);
  EXPECT_EQ(StrictJsonProblem(R"({"x":"\u007f é ✓"})"), "");  // only C0 is refused
}

}  // namespace
}  // namespace silo::api
