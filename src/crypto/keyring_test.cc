#include "crypto/keyring.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <map>

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
  std::string KeyFile(const std::string& id) const { return path_ + ".d/" + id; }
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
  ASSERT_EQ(stat(KeyFile("t1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((path_ + ".d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(KeyringTest, RawKeyNeverOnDisk) {
  auto ring = OpenOk();
  auto k = ring->CreateKey("t1");
  ASSERT_OK(k);
  std::string raw(reinterpret_cast<const char*>(k->data()), k->size());
  auto file = ReadFile(KeyFile("t1"));
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
  auto text = ReadFile(KeyFile("t1"));
  ASSERT_OK(text);
  // Flip one character inside the wrapped key's base64.
  size_t pos = text->find("\"wrapped\":\"") + 20;
  (*text)[pos] = (*text)[pos] == 'A' ? 'B' : 'A';
  ASSERT_OK(WriteFileAtomic(KeyFile("t1"), *text));
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
  auto a = ReadFile(KeyFile("aaaa"));
  ASSERT_OK(a);
  // bbbb's file now holds aaaa's wrapped key (under bbbb's name).
  std::string moved = *a;
  moved.replace(moved.find("\"aaaa\""), 6, "\"bbbb\"");
  ASSERT_OK(WriteFileAtomic(KeyFile("bbbb"), moved));
  auto ring = OpenOk();
  EXPECT_OK(ring->GetKey("aaaa"));
  EXPECT_EQ(ring->GetKey("bbbb").status().code(), StatusCode::kDataLoss);
  // A file whose name and content disagree is refused at open.
  ASSERT_OK(WriteFileAtomic(KeyFile("cccc"), *a));
  EXPECT_STATUS(StatusCode::kDataLoss, Keyring::Open(path_, master_->Clone()));
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

TEST_F(KeyringTest, AKeyWrappedElsewhereIsImportedOnlyUnderTheSameMasterAndTenant) {
  auto ring = OpenOk();
  ASSERT_OK(ring->CreateKey("t1"));
  std::string wrapped = *ring->Wrapped("t1");

  // Another node with the same master key keeps it, and it survives a reopen.
  auto same = Keyring::Open(dir_ + "/same", master_->Clone());
  ASSERT_OK(same);
  EXPECT_STATUS(StatusCode::kDataLoss, (*same)->Import("t2", wrapped));  // another tenant's
  std::string altered = wrapped;
  altered[altered.size() / 2] ^= 1;
  EXPECT_STATUS(StatusCode::kDataLoss, (*same)->Import("t1", altered));
  EXPECT_STATUS(StatusCode::kNotFound, (*same)->GetKey("t1"));
  ASSERT_OK((*same)->Import("t1", wrapped));
  ASSERT_OK((*same)->Import("t1", wrapped));  // again: nothing changes
  auto reopened = Keyring::Open(dir_ + "/same", master_->Clone());
  ASSERT_OK(reopened);
  EXPECT_EQ(KeyFingerprint(*(*reopened)->GetKey("t1")), KeyFingerprint(*ring->GetKey("t1")));
  // A different key for a tenant it holds is refused.
  ASSERT_OK(ring->CreateKey("t3"));
  ASSERT_OK((*reopened)->Import("t3", *ring->Wrapped("t3")));
  ASSERT_OK(ring->DestroyKey("t3"));
  ASSERT_OK(ring->CreateKey("t3"));
  EXPECT_STATUS(StatusCode::kAlreadyExists, (*reopened)->Import("t3", *ring->Wrapped("t3")));

  // Under another master key it does not open.
  auto other = Keyring::Open(dir_ + "/other", SecretKey::Random());
  ASSERT_OK(other);
  EXPECT_STATUS(StatusCode::kDataLoss, (*other)->Import("t1", wrapped));
  EXPECT_STATUS(StatusCode::kInvalidArgument, (*other)->Import("../t1", wrapped));
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
  ASSERT_OK(WriteFileAtomic(path_, R"({"format":3,"master_fingerprint":"x"})"));
  EXPECT_STATUS(StatusCode::kDataLoss, Keyring::Open(path_, master_->Clone()));
}

TEST_F(KeyringTest, BadKeyFilesAndIdsAreRefused) {
  ASSERT_OK(OpenOk()->CreateKey("t1"));
  for (const char* bad : {"", "../x", "a/b", ".", "t 1"}) {
    EXPECT_STATUS(StatusCode::kInvalidArgument, OpenOk()->CreateKey(bad)) << bad;
  }
  ASSERT_OK(WriteFileAtomic(KeyFile("t2"), "{not json"));
  EXPECT_STATUS(StatusCode::kDataLoss, Keyring::Open(path_, master_->Clone()));
  // A key file of another installation (another master key).
  std::filesystem::remove(KeyFile("t2"));
  {
    auto other = Keyring::Open(dir_ + "/other", SecretKey::Random());
    ASSERT_OK(other);
    ASSERT_OK((*other)->CreateKey("t2"));
  }
  std::filesystem::copy_file(dir_ + "/other.d/t2", KeyFile("t2"));
  EXPECT_STATUS(StatusCode::kDataLoss, Keyring::Open(path_, master_->Clone()));
  // An interrupted write's temporary file is dropped, not read.
  std::filesystem::remove(KeyFile("t2"));
  ASSERT_OK(WriteFileAtomic(KeyFile("t2.tmp.123"), "{partial"));
  auto ring = OpenOk();
  EXPECT_EQ(ring->TenantIds(), std::vector<std::string>{"t1"});
  EXPECT_FALSE(PathExists(KeyFile("t2.tmp.123")));
}

// Creating a key writes that key's file and no other: the cost of a new
// tenant does not grow with the number of tenants (issue 23).
TEST_F(KeyringTest, CreatingAKeyRewritesNoOtherFile) {
  auto ring = OpenOk();
  ASSERT_OK(ring->CreateKey("t1"));
  struct stat header, first;
  ASSERT_EQ(stat(path_.c_str(), &header), 0);
  ASSERT_EQ(stat(KeyFile("t1").c_str(), &first), 0);
  for (int i = 2; i <= 50; ++i) ASSERT_OK(ring->CreateKey("t" + std::to_string(i)));
  struct stat header_after, first_after;
  ASSERT_EQ(stat(path_.c_str(), &header_after), 0);
  ASSERT_EQ(stat(KeyFile("t1").c_str(), &first_after), 0);
  EXPECT_EQ(header.st_ino, header_after.st_ino);  // replaced atomically = a new inode
  EXPECT_EQ(first.st_ino, first_after.st_ino);
  EXPECT_EQ(OpenOk()->TenantIds().size(), 50u);
}

// A format 1 keyring (every key in one file) is converted when opened; a key
// file format 1 does not list (one destroyed after an interrupted conversion)
// is removed, and an interrupted conversion is simply redone.
TEST_F(KeyringTest, Format1IsConvertedAndADestroyedKeyStaysDestroyed) {
  std::string wrapped_t1, fp_t1;
  {
    auto ring = OpenOk();
    auto k = ring->CreateKey("t1");
    ASSERT_OK(k);
    fp_t1 = KeyFingerprint(*k);
    wrapped_t1 = *ring->Wrapped("t1");
    ASSERT_OK(ring->CreateKey("gone"));
  }
  const std::string format1 = R"({"format":1,"master_fingerprint":")" +
                              OpenOk()->master_fingerprint() + R"(","keys":{"t1":")" +
                              Base64Encode(wrapped_t1) + R"("}})";
  ASSERT_OK(WriteFileAtomic(path_, format1));
  std::filesystem::remove(KeyFile("t1"));  // as if the conversion had not got there
  auto ring = OpenOk();
  auto k = ring->GetKey("t1");
  ASSERT_OK(k);
  EXPECT_EQ(KeyFingerprint(*k), fp_t1);
  EXPECT_EQ(ring->TenantIds(), std::vector<std::string>{"t1"});
  EXPECT_FALSE(PathExists(KeyFile("gone")));
  auto header = ReadFile(path_);
  ASSERT_OK(header);
  EXPECT_NE(header->find(R"("format":2)"), std::string::npos);
  EXPECT_EQ(header->find("keys"), std::string::npos);
  EXPECT_EQ(OpenOk()->TenantIds(), std::vector<std::string>{"t1"});
  // Under another master key, format 1 is refused before anything is written.
  ASSERT_OK(WriteFileAtomic(path_, format1));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::Open(path_, SecretKey::Random()));
  EXPECT_NE(ReadFile(path_)->find(R"("format":1)"), std::string::npos);
}

// silo keys rotate-master at the keyring: interrupted and rerun, every key
// opens under the new master key alone; the old one is refused; a rerun with
// another new key, or with a master key that is not the keyring's, changes
// nothing.
TEST_F(KeyringTest, ARotationResumesAndLeavesOnlyTheNewKey) {
  std::map<std::string, std::string> deks;
  {
    auto ring = OpenOk();
    for (const char* id : {"a", "b", "c", "d"}) {
      auto k = ring->CreateKey(id);
      ASSERT_OK(k);
      deks[id] = std::string(reinterpret_cast<const char*>(k->data()), k->size());
    }
  }
  SecretKey next = SecretKey::Random();
  SecretKey stranger = SecretKey::Random();
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::RotateKeys(path_, stranger, next));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::RotateKeys(path_, *master_, *master_));
  EXPECT_OK(Keyring::Open(path_, master_->Clone()));  // nothing changed

  // Interrupted after two keys: the keyring opens under neither key.
  EXPECT_STATUS(StatusCode::kUnavailable, Keyring::RotateKeys(path_, *master_, next, 2));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::Open(path_, master_->Clone()));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::Open(path_, next.Clone()));
  // A rerun towards another key is refused, with nothing changed.
  EXPECT_STATUS(StatusCode::kFailedPrecondition,
                Keyring::RotateKeys(path_, *master_, SecretKey::Random()));
  // The rerun with the same keys completes.
  auto rest = Keyring::RotateKeys(path_, *master_, next);
  ASSERT_OK(rest);
  EXPECT_EQ(*rest, 2);
  ASSERT_OK(Keyring::FinishRotation(path_, next));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, Keyring::Open(path_, master_->Clone()));
  auto ring = Keyring::Open(path_, next.Clone());
  ASSERT_OK(ring);
  for (const auto& [id, bytes] : deks) {
    auto k = (*ring)->GetKey(id);
    ASSERT_OK(k);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(k->data()), k->size()), bytes) << id;
  }
  // Running it again finds nothing to do.
  EXPECT_EQ(*Keyring::RotateKeys(path_, *master_, next), 0);
  EXPECT_OK(Keyring::FinishRotation(path_, next));
}

TEST_F(KeyringTest, AStagedKeyIsTheTenantsOnlyOnceCommittedAndTheOldOneIsThenGone) {
  std::string old_fp, old_file, new_fp;
  {
    auto ring = OpenOk();
    old_fp = KeyFingerprint(ring->CreateKey("t1").value());
    ASSERT_OK(ring->CreateKey("t2"));
    old_file = ReadFile(KeyFile("t1")).value();
    EXPECT_EQ(ring->Epoch("t1").value(), 0u);
    EXPECT_STATUS(StatusCode::kNotFound, ring->StageKey("nobody"));
    auto staged = ring->StageKey("t1");
    ASSERT_OK(staged);
    EXPECT_EQ(staged->epoch, 1u);
    new_fp = KeyFingerprint(staged->key);
    EXPECT_NE(new_fp, old_fp);
    EXPECT_STATUS(StatusCode::kAlreadyExists, ring->StageKey("t1"));
    // Staged is not committed: the tenant's key is still the old one.
    EXPECT_EQ(KeyFingerprint(ring->GetKey("t1").value()), old_fp);
    EXPECT_EQ(ring->StagedIds(), std::vector<std::string>{"t1"});
  }
  // A staged key survives a restart (what the start's recovery reads).
  {
    auto ring = OpenOk();
    EXPECT_EQ(ring->StagedIds(), std::vector<std::string>{"t1"});
    EXPECT_EQ(KeyFingerprint(ring->GetKey("t1").value()), old_fp);
    ASSERT_OK(ring->CommitStaged("t1"));
    EXPECT_EQ(KeyFingerprint(ring->GetKey("t1").value()), new_fp);
    EXPECT_STATUS(StatusCode::kFailedPrecondition, ring->CommitStaged("t1"));
  }
  auto ring = OpenOk();
  EXPECT_EQ(KeyFingerprint(ring->GetKey("t1").value()), new_fp);
  EXPECT_EQ(ring->Epoch("t1").value(), 1u);
  EXPECT_EQ(ring->Epoch("t2").value(), 0u);
  EXPECT_TRUE(ring->StagedIds().empty());
  EXPECT_FALSE(std::filesystem::exists(KeyFile("t1") + ".next"));
  // The old wrapped key is in no file of the keyring any more.
  const std::string old_wrapped = old_file.substr(old_file.find("\"wrapped\""));
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
    if (!e.is_regular_file()) continue;
    EXPECT_EQ(ReadFile(e.path().string()).value().find(old_wrapped), std::string::npos) << e.path();
  }
  // A discarded stage leaves the key as it was; the next one is epoch 2.
  auto again = ring->StageKey("t1");
  ASSERT_OK(again);
  EXPECT_EQ(again->epoch, 2u);
  ASSERT_OK(ring->DiscardStaged("t1"));
  EXPECT_EQ(KeyFingerprint(ring->GetKey("t1").value()), new_fp);
  EXPECT_FALSE(std::filesystem::exists(KeyFile("t1") + ".next"));
  EXPECT_TRUE(OpenOk()->StagedIds().empty());
}

TEST_F(KeyringTest, ARotationRewrapsAStagedKeyAndKeepsEpochs) {
  const SecretKey new_master = SecretKey::Random();
  std::string staged_fp;
  {
    auto ring = OpenOk();
    ASSERT_OK(ring->CreateKey("t1"));
    ASSERT_OK(ring->StageKey("t1"));
    ASSERT_OK(ring->CommitStaged("t1"));  // epoch 1
    auto staged = ring->StageKey("t1");   // epoch 2, staged
    ASSERT_OK(staged);
    staged_fp = KeyFingerprint(staged->key);
  }
  ASSERT_OK(Keyring::RotateKeys(path_, *master_, new_master));
  ASSERT_OK(Keyring::FinishRotation(path_, new_master));
  auto ring = Keyring::Open(path_, new_master.Clone());
  ASSERT_OK(ring);
  EXPECT_EQ((*ring)->Epoch("t1").value(), 1u);
  // The staged key opens under the new master key, and commits as epoch 2.
  ASSERT_OK((*ring)->CommitStaged("t1"));
  EXPECT_EQ((*ring)->Epoch("t1").value(), 2u);
  EXPECT_EQ(KeyFingerprint((*ring)->GetKey("t1").value()), staged_fp);
}

}  // namespace
}  // namespace silo::crypto
