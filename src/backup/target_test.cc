// The directory target's streamed transfers: whole, all or nothing, and
// never outside the target.
#include "backup/target.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "storage/test_util.h"

namespace silo::backup {
namespace {

namespace fs = std::filesystem;
using storage::testing::Slurp;

class DirectoryTargetTest : public storage::testing::TempDirTest {};

TEST_F(DirectoryTargetTest, FilesGoInAndComeOutWholeInPieces) {
  auto target = NewDirectoryTarget(Path("target"));
  // Larger than one 1 MiB piece, and not a multiple of it.
  const std::string bytes = crypto::RandomBytes((3 << 20) + 12345);
  { std::ofstream(Path("blob.sf"), std::ios::binary) << bytes; }
  ASSERT_OK(target->PutFile("t1/files/abc.sf", Path("blob.sf")));
  EXPECT_EQ(Slurp(Path("target/t1/files/abc.sf")), bytes);
  ASSERT_OK(target->GetFile("t1/files/abc.sf", Path("back.sf")));
  EXPECT_EQ(Slurp(Path("back.sf")), bytes);
  auto listed = target->List("t1/files/");
  ASSERT_OK(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{"t1/files/abc.sf"});  // no temporary left
  // Replacing is whole too.
  ASSERT_OK(target->GetFile("t1/files/abc.sf", Path("back.sf")));
  EXPECT_EQ(Slurp(Path("back.sf")), bytes);
}

TEST_F(DirectoryTargetTest, MissingObjectsAndBadNamesAreRefusedWithNothingWritten) {
  auto target = NewDirectoryTarget(Path("target"));
  EXPECT_STATUS(StatusCode::kNotFound, target->GetFile("t1/files/none.sf", Path("out")));
  EXPECT_FALSE(fs::exists(Path("out")));
  EXPECT_STATUS(StatusCode::kNotFound, target->PutFile("t1/files/x.sf", Path("no-such-file")));
  EXPECT_STATUS(StatusCode::kInvalidArgument, target->PutFile("../escape.sf", Path("x")));
  EXPECT_STATUS(StatusCode::kInvalidArgument, target->GetFile("/etc/passwd", Path("out")));
  auto listed = target->List("");
  ASSERT_OK(listed);
  EXPECT_TRUE(listed->empty());
}

}  // namespace
}  // namespace silo::backup
