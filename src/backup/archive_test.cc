// The files list of a backup and the manifest's "files" member: bound to
// their backup, checked against each other, and absent from older backups.
#include "backup/archive.h"

#include <gtest/gtest.h>

#include "base/status_matchers.h"
#include "crypto/crypto.h"

namespace silo::backup {
namespace {

constexpr char kTenant[] = "0123456789abcdef0123456789abcdef";

Manifest Base(const std::string& id) {
  Manifest m;
  m.id = id;
  m.tenant_id = kTenant;
  m.tenant_slug = "acme";
  m.sha256 = std::string(64, 'a');
  m.key_id = "k";
  m.wrapped_key = "w";
  m.master_fingerprint = "f";
  return m;
}

TEST(FilesListTest, ARoundTripAndEveryWayItCanBeWrong) {
  const auto key = crypto::SecretKey::FromBytes(crypto::RandomBytes(32)).value();
  const std::string id = NewBackupId(kTenant, 1'780'000'000'000'000);
  Manifest m = Base(id);
  std::vector<FileEntry> entries = {{std::string(32, '1'), 104, std::string(64, 'b')},
                                    {std::string(32, '2'), 65640, std::string(64, 'c')}};
  std::string sealed = SealFilesList(entries, key, m);
  EXPECT_EQ(m.files, 2);
  EXPECT_EQ(m.files_bytes, 104 + 65640);
  auto opened = OpenFilesList(sealed, key, m);
  ASSERT_OK(opened);
  ASSERT_EQ(opened->size(), 2u);
  EXPECT_EQ((*opened)[1].blob_id, std::string(32, '2'));
  EXPECT_EQ((*opened)[1].sealed_bytes, 65640);
  // Altered, another backup's, another key, a manifest that disagrees.
  std::string altered = sealed;
  altered[altered.size() / 2] ^= 1;
  EXPECT_STATUS(StatusCode::kDataLoss, OpenFilesList(altered, key, m));
  Manifest other = Base(NewBackupId(kTenant, 1'780'000'000'000'001));
  std::string theirs = SealFilesList(entries, key, other);
  Manifest claims = m;
  claims.files_list_sha256 = crypto::Sha256Hex(theirs);
  EXPECT_STATUS(StatusCode::kDataLoss, OpenFilesList(theirs, key, claims));
  const auto wrong = crypto::SecretKey::FromBytes(crypto::RandomBytes(32)).value();
  EXPECT_STATUS(StatusCode::kDataLoss, OpenFilesList(sealed, wrong, m));
  Manifest fewer = m;
  fewer.files = 1;
  EXPECT_STATUS(StatusCode::kDataLoss, OpenFilesList(sealed, key, fewer));
}

TEST(FilesListTest, TheManifestCarriesFilesOnlyWhenThereAreAndTheMacCoversThem) {
  const auto key = crypto::SecretKey::FromBytes(crypto::RandomBytes(32)).value();
  Manifest without = Base(NewBackupId(kTenant, 1'780'000'000'000'000));
  std::string text = SerializeManifest(without, key);
  EXPECT_EQ(text.find("\"files\""), std::string::npos);  // as before files existed
  EXPECT_OK(CheckManifestMac(text, key));
  Manifest with = without;
  (void)SealFilesList({{std::string(32, '1'), 104, std::string(64, 'b')}}, key, with);
  text = SerializeManifest(with, key);
  EXPECT_OK(CheckManifestMac(text, key));
  auto parsed = ParseManifest(text);
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->files, 1);
  EXPECT_EQ(parsed->files_list_sha256, with.files_list_sha256);
  // Dropping or changing the member breaks the MAC.
  std::string changed = text;
  changed.replace(changed.find("\"count\":1"), 9, "\"count\":2");
  EXPECT_STATUS(StatusCode::kDataLoss, CheckManifestMac(changed, key));
}

}  // namespace
}  // namespace silo::backup
