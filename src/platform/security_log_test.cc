#include "platform/security_log.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file_util.h"

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
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append({"tenant.created", "operator", "127.0.0.1", "acme"}).ok());
    ASSERT_TRUE((*log)->Append({"tenant.deleted", "operator", "127.0.0.1", "acme"}).ok());
  }
  auto log = SecurityLog::Open(path_);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append({"tenant.created", "operator", "127.0.0.1", "beta"}).ok());
  EXPECT_TRUE(SecurityLog::Verify(path_).ok());
}

TEST_F(SecurityLogTest, EditedLineIsNamed) {
  auto log = SecurityLog::Open(path_);
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 3; ++i)
    (*log)->Append({"x", "operator", "127.0.0.1", "d" + std::to_string(i)});
  auto text = ReadFile(path_);
  ASSERT_TRUE(text.ok());
  size_t pos = text->find("\"d1\"");
  (*text)[pos + 2] = '9';
  ASSERT_TRUE(WriteFileAtomic(path_, *text).ok());
  Status s = SecurityLog::Verify(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  EXPECT_FALSE(SecurityLog::Open(path_).ok());
}

TEST_F(SecurityLogTest, DeletedLineIsDetected) {
  auto log = SecurityLog::Open(path_);
  for (int i = 0; i < 3; ++i) (*log)->Append({"x", "operator", "127.0.0.1", "d"});
  auto text = ReadFile(path_);
  size_t first_nl = text->find('\n');
  ASSERT_TRUE(WriteFileAtomic(path_, text->substr(first_nl + 1)).ok());
  EXPECT_FALSE(SecurityLog::Verify(path_).ok());
}

TEST_F(SecurityLogTest, InjectedNewlinesStayInOneLine) {
  auto log = SecurityLog::Open(path_);
  ASSERT_TRUE((*log)->Append({"x", "operator", "127.0.0.1", "a\n{\"forged\":1}"}).ok());
  auto text = ReadFile(path_);
  EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 1);
  EXPECT_TRUE(SecurityLog::Verify(path_).ok());
}

}  // namespace
}  // namespace silo::platform
