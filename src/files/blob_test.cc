// Sealed blobs: round trips at the chunk boundaries, ranges, no plaintext on
// disk, and every way of changing a blob on disk failing to read.
#include "files/blob.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "base/file_util.h"
#include "base/status_matchers.h"
#include "crypto/crypto.h"

namespace silo::files {
namespace {

namespace fs = std::filesystem;

// Deterministic content: byte i of a file is a function of i (and of `salt`),
// so a range can be checked without keeping the whole file.
std::string Content(uint64_t size, char salt = 'a') {
  std::string s(size, '\0');
  for (uint64_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + i / 7 + salt) & 0xff);
  return s;
}

class BlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-blob-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) { return dir_ + "/" + name; }

  // Writes `content` as blob `id` in pieces of `piece` bytes.
  void Write(const std::string& path, const std::string& id, const std::string& content,
             size_t piece = 1000, const crypto::SecretKey* key = nullptr) {
    auto w = BlobWriter::Create(path, key ? *key : key_, id, content.size());
    ASSERT_OK(w);
    for (size_t at = 0; at < content.size(); at += piece) {
      ASSERT_OK((*w)->Append(std::string_view(content).substr(at, piece)));
    }
    ASSERT_OK((*w)->Finish());
  }

  // The whole blob, or the status of the first failure.
  Result<std::string> ReadAll(const std::string& path, const std::string& id, uint64_t size,
                              const crypto::SecretKey* key = nullptr) {
    SILO_ASSIGN_OR_RETURN(auto r, BlobReader::Open(path, key ? *key : key_, id, size));
    return r->Read(0, size);
  }

  std::string Bytes(const std::string& path) { return ReadFile(path).value(); }
  void Overwrite(const std::string& path, const std::string& bytes) {
    ASSERT_OK(WriteFileAtomic(path, bytes));
  }

  std::string dir_;
  crypto::SecretKey key_ = crypto::SecretKey::Random();
  const std::string id_ = NewBlobId();
};

TEST_F(BlobTest, RoundTripsAtEveryChunkBoundary) {
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, kChunkBytes - 1, kChunkBytes, kChunkBytes + 1,
                        3 * kChunkBytes + 5}) {
    const std::string path = Path("b" + std::to_string(size));
    const std::string content = Content(size);
    for (size_t piece : {size_t{1000}, size_t{70'000}}) {
      fs::remove(path);
      Write(path, id_, content, piece);
      EXPECT_EQ(fs::file_size(path), SealedSize(size)) << size;
      auto all = ReadAll(path, id_, size);
      ASSERT_OK(all) << size;
      EXPECT_EQ(*all, content) << size << " in pieces of " << piece;
    }
  }
}

TEST_F(BlobTest, RangesAcrossChunksAndClippedAtTheEnd) {
  const uint64_t size = 3 * kChunkBytes + 5;
  const std::string content = Content(size);
  Write(Path("b"), id_, content);
  auto r = BlobReader::Open(Path("b"), key_, id_, size);
  ASSERT_OK(r);
  EXPECT_EQ((*r)->chunk_count(), 4u);
  for (auto [offset, length] : {std::pair<uint64_t, uint64_t>{0, 1},
                                {kChunkBytes - 3, 10},
                                {kChunkBytes, kChunkBytes},
                                {5, 2 * kChunkBytes + 17},
                                {size - 1, 1},
                                {size - 4, 100}}) {
    auto got = (*r)->Read(offset, length);
    ASSERT_OK(got);
    EXPECT_EQ(*got, content.substr(offset, length)) << offset << "+" << length;
  }
  EXPECT_EQ((*r)->Read(size, 10).value(), "");
  EXPECT_STATUS(StatusCode::kInvalidArgument, (*r)->ReadChunk(4));
}

TEST_F(BlobTest, NoPlaintextReachesTheDisk) {
  std::string canary;
  while (canary.size() < 2 * kChunkBytes + 100) canary += "SILO-CANARY-PLAINTEXT-";
  canary.resize(2 * kChunkBytes + 100);
  Write(Path("b"), id_, canary, 333);
  const std::string disk = Bytes(Path("b"));
  EXPECT_EQ(disk.find("CANARY"), std::string::npos);
  EXPECT_EQ(disk.find("SILO-C"), std::string::npos);
  EXPECT_EQ(disk.substr(0, 8), "SILOFIL1");
}

TEST_F(BlobTest, TheWriterKeepsItsSize) {
  auto w = BlobWriter::Create(Path("b"), key_, id_, 10);
  ASSERT_OK(w);
  EXPECT_STATUS(StatusCode::kInvalidArgument, (*w)->Append(std::string(11, 'x')));
  EXPECT_EQ((*w)->appended(), 0u);
  ASSERT_OK((*w)->Append("12345"));
  EXPECT_STATUS(StatusCode::kFailedPrecondition, (*w)->Finish());
  EXPECT_STATUS(StatusCode::kAlreadyExists, BlobWriter::Create(Path("b"), key_, id_, 10));
  EXPECT_STATUS(StatusCode::kInvalidArgument, BlobWriter::Create(Path("c"), key_, "../x", 10));
  EXPECT_STATUS(StatusCode::kInvalidArgument,
                BlobWriter::Create(Path("c"), key_, std::string(32, 'A'), 10));
  EXPECT_STATUS(StatusCode::kNotFound, BlobReader::Open(Path("none"), key_, id_, 10));
}

// A resumable upload: the process dies mid-chunk, the file has a torn tail;
// the upload goes on from the last whole chunk and the blob reads back whole.
TEST_F(BlobTest, AnUnfinishedBlobResumesFromItsLastWholeChunk) {
  const uint64_t size = 3 * kChunkBytes + 5;
  const std::string content = Content(size);
  {
    auto w = BlobWriter::Create(Path("b"), key_, id_, size);
    ASSERT_OK(w);
    ASSERT_OK((*w)->Append(std::string_view(content).substr(0, 2 * kChunkBytes + 7000)));
    ASSERT_OK((*w)->Sync());
    EXPECT_EQ((*w)->durable_bytes(), 2 * kChunkBytes);  // what an upload acknowledges
  }  // the crash: the 7,000 bytes in memory are gone
  {
    // A torn write of the next chunk.
    std::string disk = Bytes(Path("b"));
    Overwrite(Path("b"), disk + crypto::RandomBytes(1000));
  }
  auto w = BlobWriter::Resume(Path("b"), key_, id_, size);
  ASSERT_OK(w);
  EXPECT_EQ((*w)->appended(), 2 * kChunkBytes);
  EXPECT_EQ(fs::file_size(Path("b")), kHeaderBytes + 2 * kSealedChunkBytes);
  ASSERT_OK((*w)->Append(std::string_view(content).substr(2 * kChunkBytes)));
  ASSERT_OK((*w)->Finish());
  EXPECT_EQ(ReadAll(Path("b"), id_, size).value(), content);
  // Complete now: nothing to resume.
  EXPECT_STATUS(StatusCode::kAlreadyExists, BlobWriter::Resume(Path("b"), key_, id_, size));
  // Not this blob, or not this size: refused, the file untouched.
  EXPECT_STATUS(StatusCode::kDataLoss, BlobWriter::Resume(Path("b"), key_, id_, size + 1));
  EXPECT_STATUS(StatusCode::kDataLoss, BlobWriter::Resume(Path("b"), key_, NewBlobId(), size));
  EXPECT_EQ(fs::file_size(Path("b")), SealedSize(size));
  EXPECT_STATUS(StatusCode::kNotFound, BlobWriter::Resume(Path("none"), key_, id_, size));
}

TEST_F(BlobTest, ResumingKeepsOnlyChunksThatOpen) {
  const uint64_t size = 4 * kChunkBytes;
  const std::string content = Content(size);
  {
    auto w = BlobWriter::Create(Path("b"), key_, id_, size);
    ASSERT_OK(w);
    ASSERT_OK((*w)->Append(std::string_view(content).substr(0, 3 * kChunkBytes + 1)));
  }
  std::string disk = Bytes(Path("b"));
  disk[kHeaderBytes + kSealedChunkBytes + 100] ^= 0x01;  // chunk 1 damaged
  Overwrite(Path("b"), disk);
  auto w = BlobWriter::Resume(Path("b"), key_, id_, size);
  ASSERT_OK(w);
  EXPECT_EQ((*w)->appended(), kChunkBytes);
  ASSERT_OK((*w)->Append(std::string_view(content).substr(kChunkBytes)));
  ASSERT_OK((*w)->Finish());
  EXPECT_EQ(ReadAll(Path("b"), id_, size).value(), content);
}

// A request that ends mid-chunk: only whole chunks are acknowledged, and
// the client resends from there.
TEST_F(BlobTest, DiscardingThePartialChunkGoesBackToTheAcknowledgedOffset) {
  const uint64_t size = 2 * kChunkBytes + 3;
  const std::string content = Content(size);
  auto w = BlobWriter::Create(Path("b"), key_, id_, size);
  ASSERT_OK(w);
  ASSERT_OK((*w)->Append(std::string_view(content).substr(0, kChunkBytes + 10)));
  EXPECT_EQ((*w)->durable_bytes(), kChunkBytes);
  (*w)->DiscardPartialChunk();
  EXPECT_EQ((*w)->appended(), kChunkBytes);
  ASSERT_OK((*w)->Append(std::string_view(content).substr(kChunkBytes)));
  ASSERT_OK((*w)->Finish());
  EXPECT_EQ((*w)->durable_bytes(), size);
  EXPECT_EQ(ReadAll(Path("b"), id_, size).value(), content);
}

// Each change an attacker with the disk (not the key) could make.
class TamperTest : public BlobTest {
 protected:
  void SetUp() override {
    BlobTest::SetUp();
    content_ = Content(kSize);
    Write(Path("b"), id_, content_);
    disk_ = Bytes(Path("b"));
  }
  static constexpr uint64_t kSize = 3 * kChunkBytes + 5;  // chunks 0-2 full, 3 short
  static uint64_t ChunkAt(uint64_t i) { return kHeaderBytes + i * kSealedChunkBytes; }
  std::string content_;
  std::string disk_;
};

TEST_F(TamperTest, TheUntouchedBlobReads) {
  EXPECT_EQ(ReadAll(Path("b"), id_, kSize).value(), content_);
}

TEST_F(TamperTest, TruncationOrExtensionFails) {
  Overwrite(Path("b"), disk_.substr(0, disk_.size() - 1));
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize));
  Overwrite(Path("b"), disk_ + "x");
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize));
  // Whole chunks cut off and the header's size rewritten to match: the
  // expected size comes from the database, and the last chunk left was not
  // sealed as the final one.
  std::string cut = disk_.substr(0, ChunkAt(2));
  const uint64_t shorter = 2 * kChunkBytes;
  for (int i = 0; i < 8; ++i) cut[32 + i] = static_cast<char>((shorter >> (8 * (7 - i))) & 0xff);
  Overwrite(Path("b"), cut);
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize));
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, shorter));
}

TEST_F(TamperTest, ReorderedChunksFail) {
  std::string swapped = disk_;
  swapped.replace(ChunkAt(0), kSealedChunkBytes, disk_.substr(ChunkAt(1), kSealedChunkBytes));
  swapped.replace(ChunkAt(1), kSealedChunkBytes, disk_.substr(ChunkAt(0), kSealedChunkBytes));
  Overwrite(Path("b"), swapped);
  auto r = BlobReader::Open(Path("b"), key_, id_, kSize);
  ASSERT_OK(r);  // same length, same header: the chunks themselves refuse
  EXPECT_STATUS(StatusCode::kDataLoss, (*r)->ReadChunk(0));
  EXPECT_STATUS(StatusCode::kDataLoss, (*r)->ReadChunk(1));
  EXPECT_OK((*r)->ReadChunk(2));
}

TEST_F(TamperTest, AChunkFromAnotherBlobOrTenantFails) {
  const std::string other = NewBlobId();
  Write(Path("o"), other, Content(kSize, 'z'));
  std::string mixed = disk_;
  mixed.replace(ChunkAt(1), kSealedChunkBytes,
                Bytes(Path("o")).substr(ChunkAt(1), kSealedChunkBytes));
  Overwrite(Path("b"), mixed);
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize));
  // The blob renamed to the other id: the header names this one.
  Overwrite(Path("b"), disk_);
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), other, kSize));
  // The same blob under another tenant's files key.
  auto other_tenant = crypto::SecretKey::Random();
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize, &other_tenant));
}

TEST_F(TamperTest, AnyHeaderOrCiphertextByteChangedFails) {
  for (size_t at :
       {size_t{0}, size_t{8}, size_t{9}, size_t{11}, size_t{15}, size_t{16}, size_t{40}, size_t{63},
        size_t{ChunkAt(0) + 30}, size_t{ChunkAt(3) + 5}, size_t{disk_.size() - 1}}) {
    std::string edited = disk_;
    edited[at] = static_cast<char>(edited[at] ^ 0x01);
    Overwrite(Path("b"), edited);
    EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(Path("b"), id_, kSize)) << "byte " << at;
  }
}

// tests/data/blob1.sf was written by format version 1 (tests/data/README.md);
// every later build must read it.
TEST(BlobFormatFixture, Version1Reads) {
  const std::string dir = SILO_SOURCE_DIR "/tests/data/";
  auto hex = ReadFile(dir + "blob1.key");
  ASSERT_OK(hex);
  auto raw = crypto::HexDecode(std::string_view(*hex).substr(0, 64));
  ASSERT_OK(raw);
  auto key = crypto::SecretKey::FromBytes(*raw);
  ASSERT_OK(key);
  auto r = BlobReader::Open(dir + "blob1.sf", *key, "00112233445566778899aabbccddeeff",
                            2 * kChunkBytes + 1234);
  ASSERT_OK(r);
  auto all = (*r)->Read(0, (*r)->size());
  ASSERT_OK(all);
  EXPECT_EQ(*all, Content(2 * kChunkBytes + 1234));
}

TEST_F(BlobTest, AKeyEpochIsInTheHeaderAndAnEditedOneDoesNotOpen) {
  const std::string path = Path("e.sf");
  const std::string content = Content(3 * kChunkBytes + 5);
  const crypto::SecretKey next = crypto::SecretKey::Random();
  // Sealed again under the next key (a re-key), as epoch 7.
  Write(path, id_, content);
  const std::string resealed = Path("e.sf.rekey");
  ASSERT_OK(CopyBlob(path, key_, id_, content.size(), &resealed, &next, 7));
  EXPECT_EQ(ReadKeyEpoch(path).value(), 0u);
  EXPECT_EQ(ReadKeyEpoch(resealed).value(), 7u);
  auto opened = BlobReader::Open(resealed, next, id_, content.size());
  ASSERT_OK(opened);
  EXPECT_EQ((*opened)->key_epoch(), 7u);
  EXPECT_EQ((*opened)->Read(0, content.size()).value(), content);
  // The old key opens no chunk of it, and the new key none of the original.
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(resealed, id_, content.size()));
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(path, id_, content.size(), &next));
  // The epoch is authenticated with every chunk: edited, nothing opens.
  std::string bytes = Bytes(resealed);
  bytes[15] = 8;
  Overwrite(resealed, bytes);
  EXPECT_STATUS(StatusCode::kDataLoss, ReadAll(resealed, id_, content.size(), &next));
  EXPECT_STATUS(StatusCode::kDataLoss, CopyBlob(resealed, next, id_, content.size()));
  EXPECT_STATUS(StatusCode::kNotFound, ReadKeyEpoch(Path("none.sf")));
}

}  // namespace
}  // namespace silo::files
