#include "platform/security_log.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file_util.h"
#include "base/status_matchers.h"

namespace silo::platform {
namespace {

class SecurityLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-seclog-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/security.log";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

TEST_F(SecurityLogTest, ChainVerifiesAndContinuesAcrossReopen) {
  {
    auto log = SecurityLog::Open(path_);
    ASSERT_OK(log);
    ASSERT_OK((*log)->Append({"tenant.created", "operator", "127.0.0.1", "acme"}));
    ASSERT_OK((*log)->Append({"tenant.deleted", "operator", "127.0.0.1", "acme"}));
  }
  auto log = SecurityLog::Open(path_);
  ASSERT_OK(log);
  ASSERT_OK((*log)->Append({"tenant.created", "operator", "127.0.0.1", "beta"}));
  EXPECT_OK(SecurityLog::Verify(path_));
}

TEST_F(SecurityLogTest, EditedLineIsNamed) {
  auto log = SecurityLog::Open(path_);
  ASSERT_OK(log);
  for (int i = 0; i < 3; ++i)
    ASSERT_OK((*log)->Append({"x", "operator", "127.0.0.1", "d" + std::to_string(i)}));
  auto text = ReadFile(path_);
  ASSERT_OK(text);
  size_t pos = text->find("\"d1\"");
  (*text)[pos + 2] = '9';
  ASSERT_OK(WriteFileAtomic(path_, *text));
  Status s = SecurityLog::Verify(path_);
  ASSERT_STATUS(StatusCode::kDataLoss, s);
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  EXPECT_STATUS(StatusCode::kDataLoss, SecurityLog::Open(path_));
}

TEST_F(SecurityLogTest, DeletedLineIsDetected) {
  auto log = SecurityLog::Open(path_);
  for (int i = 0; i < 3; ++i) ASSERT_OK((*log)->Append({"x", "operator", "127.0.0.1", "d"}));
  auto text = ReadFile(path_);
  size_t first_nl = text->find('\n');
  ASSERT_OK(WriteFileAtomic(path_, text->substr(first_nl + 1)));
  EXPECT_STATUS(StatusCode::kDataLoss, SecurityLog::Verify(path_));
}

TEST_F(SecurityLogTest, InjectedNewlinesStayInOneLine) {
  auto log = SecurityLog::Open(path_);
  ASSERT_OK((*log)->Append({"x", "operator", "127.0.0.1", "a\n{\"forged\":1}"}));
  auto text = ReadFile(path_);
  EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 1);
  EXPECT_OK(SecurityLog::Verify(path_));
}

// An incident's timeline: the window's events, read only from a log whose
// chain holds and ends where this log last wrote (cutting the newest lines
// off leaves a valid chain, which the chain alone cannot tell).
TEST_F(SecurityLogTest, ReadGivesTheWindowOnlyFromAWholeUneditedLog) {
  auto log = SecurityLog::Open(path_);
  ASSERT_OK(log);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK((*log)->Append({"x", "operator", "127.0.0.1", "d" + std::to_string(i)}));
  }
  auto all = (*log)->Read(0, int64_t{1} << 62);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].event.detail, "d2");
  EXPECT_GT((*all)[0].at_us, 0);
  auto none = (*log)->Read(0, (*all)[0].at_us - 1'000'000);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());

  auto text = ReadFile(path_);
  ASSERT_OK(text);
  const std::string whole = *text;
  // The last line cut off: the chain of the rest holds, the log knows better.
  std::string cut = whole.substr(0, whole.rfind('\n', whole.size() - 2) + 1);
  ASSERT_OK(WriteFileAtomic(path_, cut));
  EXPECT_OK(SecurityLog::Verify(path_));
  EXPECT_STATUS(StatusCode::kDataLoss, (*log)->Read(0, int64_t{1} << 62));
  // A line edited.
  std::string edited = whole;
  edited[edited.find("\"d1\"") + 2] = '9';
  ASSERT_OK(WriteFileAtomic(path_, edited));
  EXPECT_STATUS(StatusCode::kDataLoss, (*log)->Read(0, int64_t{1} << 62));
  ASSERT_OK(WriteFileAtomic(path_, whole));
  EXPECT_OK((*log)->Read(0, int64_t{1} << 62));
}

}  // namespace
}  // namespace silo::platform
