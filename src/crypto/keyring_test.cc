#include "crypto/keyring.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "base/file_util.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"

namespace silo::crypto {
namespace {

class KeyringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-keyring-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/keyring";
    master_ = std::make_unique<SecretKey>(SecretKey::Random());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<Keyring> OpenOk() {
    auto r = Keyring::Open(path_, master_->Clone());
    EXPECT_OK(r) << r.status().ToString();
    return std::move(r).value();
  }
  std::string dir_, path_;
  std::unique_ptr<SecretKey> master_;
};

TEST_F(KeyringTest, KeysSurviveReopenAndFileIsPrivate) {
  std::string fp;
  {
    auto ring = OpenOk();
    auto k = ring->CreateKey("t1");
    ASSERT_OK(k);
    fp = KeyFingerprint(*k);
  }
  auto ring = OpenOk();
  auto k = ring->GetKey("t1");
  ASSERT_OK(k);
  EXPECT_EQ(KeyFingerprint(*k), fp);
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(KeyringTest, RawKeyNeverOnDisk) {
  auto ring = OpenOk();
  auto k = ring->CreateKey("t1");
  ASSERT_OK(k);
  std::string raw(reinterpret_cast<const char*>(k->data()), k->size());
  auto file = ReadFile(path_);
  ASSERT_OK(file);
  EXPECT_EQ(file->find(raw), std::string::npos);
  EXPECT_EQ(file->find(Base64Encode(raw)), std::string::npos);
  EXPECT_EQ(file->find(HexEncode(raw)), std::string::npos);
}

TEST_F(KeyringTest, WrongMasterKeyFailsCleanly) {
  ASSERT_OK(OpenOk()->CreateKey("t1"));
  auto r = Keyring::Open(path_, SecretKey::Random());
  ASSERT_STATUS(StatusCode::kFailedPrecondition, r);
  EXPECT_NE(r.status().message().find("wrong master key"), std::string::npos);
}

TEST_F(KeyringTest, TamperedWrappedKeyFailsCleanly) {
  ASSERT_OK(OpenOk()->CreateKey("t1"));
  auto text = ReadFile(path_);
  ASSERT_OK(text);
  // Flip one character inside the wrapped key's base64.
  size_t pos = text->find("\"t1\":\"") + 10;
  (*text)[pos] = (*text)[pos] == 'A' ? 'B' : 'A';
  ASSERT_OK(WriteFileAtomic(path_, *text));
  auto ring = OpenOk();
  auto k = ring->GetKey("t1");
  ASSERT_STATUS(StatusCode::kDataLoss, k);
}

TEST_F(KeyringTest, WrappedKeyMovedToAnotherTenantFails) {
  {
    auto ring = OpenOk();
    ASSERT_OK(ring->CreateKey("aaaa"));
    ASSERT_OK(ring->CreateKey("bbbb"));
  }
  auto text = ReadFile(path_);
  ASSERT_OK(text);
  auto grab = [&](const std::string& id) {
    size_t s = text->find("\"" + id + "\":\"") + id.size() + 4;
    return text->substr(s, text->find('"', s) - s);
  };
  std::string a = grab("aaaa"), b = grab("bbbb");
  std::string swapped = *text;
  swapped.replace(swapped.find(b), b.size(), a);  // b's slot now holds a's key
  ASSERT_OK(WriteFileAtomic(path_, swapped));
  auto ring = OpenOk();
  EXPECT_OK(ring->GetKey("aaaa"));
  EXPECT_EQ(ring->GetKey("bbbb").status().code(), StatusCode::kDataLoss);
}

TEST_F(KeyringTest, WrappedKeyOpensOnlyUnderTheSameMasterAndTenant) {
  auto ring = OpenOk();
  auto dek = ring->CreateKey("t1");
  ASSERT_OK(dek);
  auto wrapped = ring->Wrapped("t1");
  ASSERT_OK(wrapped);
  EXPECT_EQ(wrapped->find(std::string(reinterpret_cast<const char*>(dek->data()), dek->size())),
            std::string::npos);
  auto back = ring->Unwrap("t1", *wrapped);
  ASSERT_OK(back);
  EXPECT_EQ(KeyFingerprint(*back), KeyFingerprint(*dek));
  EXPECT_EQ(ring->Unwrap("t2", *wrapped).status().code(), StatusCode::kDataLoss);
  std::string altered = *wrapped;
  altered[altered.size() / 2] ^= 1;
  EXPECT_EQ(ring->Unwrap("t1", altered).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ring->Wrapped("nobody").status().code(), StatusCode::kNotFound);

  // Another installation with another master key cannot open it.
  auto other = Keyring::Open(dir_ + "/other", SecretKey::Random());
  ASSERT_OK(other);
  EXPECT_EQ((*other)->Unwrap("t1", *wrapped).status().code(), StatusCode::kDataLoss);
  EXPECT_NE((*other)->master_fingerprint(), ring->master_fingerprint());
}

TEST_F(KeyringTest, DestroyRemovesKeyForGood) {
  auto ring = OpenOk();
  ASSERT_OK(ring->CreateKey("t1"));
  EXPECT_EQ(ring->CreateKey("t1").status().code(), StatusCode::kAlreadyExists);
  ASSERT_OK(ring->DestroyKey("t1"));
  EXPECT_EQ(ring->GetKey("t1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(OpenOk()->GetKey("t1").status().code(), StatusCode::kNotFound);
}

TEST_F(KeyringTest, GarbageFileIsDataLoss) {
  ASSERT_OK(WriteFileAtomic(path_, "{not json"));
  auto r = Keyring::Open(path_, master_->Clone());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace silo::crypto
