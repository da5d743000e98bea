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

}  // namespace
}  // namespace silo::platform
