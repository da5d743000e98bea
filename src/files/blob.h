// Sealed blobs: the on-disk form of a tenant's file (docs/formats.md,
// "Blob format SILOFIL1"). A 64-byte header, then the file's bytes in chunks
// of 64 KiB, each sealed (XChaCha20-Poly1305, crypto::Seal) under a key of
// its own blob, with the header, the chunk's index and whether it is the
// last one as associated data. Truncation, extension, reordering, a chunk
// moved between blobs or tenants, and any edit of the header fail to open.
// No plaintext byte is written: a writer holds at most one chunk in memory
// and writes only sealed chunks.
//
// Blob ids are 32 lowercase hex characters (128 random bits); they name the
// file on disk and carry no user byte.
// Thread-compatible: one BlobWriter or BlobReader per thread at a time;
// readers of the same blob in different threads are independent.
#ifndef SILO_FILES_BLOB_H_
#define SILO_FILES_BLOB_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret_key.h"

namespace silo::files {

inline constexpr size_t kChunkBytes = 64 * 1024;
inline constexpr size_t kHeaderBytes = 64;
// A full chunk on disk: nonce, ciphertext, tag.
inline constexpr size_t kSealedChunkBytes = kChunkBytes + 40;

// A fresh random blob id.
std::string NewBlobId();
// 32 lowercase hex characters (layout::ValidBlobId, as a function the
// route table can name).
bool ValidBlobId(std::string_view id);

// The blob's own key: keyed BLAKE2b of the tenant's files sub-key
// (crypto::KeyPurpose::kFiles) over "silo-file-v1:" + id.
// REQUIRES: ValidBlobId(id).
crypto::SecretKey BlobKey(const crypto::SecretKey& files_key, std::string_view id);

// The size on disk of a blob of `plaintext_size` bytes.
uint64_t SealedSize(uint64_t plaintext_size);

// The key epoch in the header of the blob at `path`, without a key: what
// names a blob's object in backups. DataLoss when it is not a blob.
Result<uint32_t> ReadKeyEpoch(const std::string& path);

// Opens every chunk of the blob `id` of `size` bytes at `from` under
// `from_key`; with `to`, seals each again into a new blob there under
// `to_key` and `to_epoch` (finished and synced): a re-key, or a backup's
// blob restored as another tenant. One chunk's plaintext is in memory at a
// time, and wiped. DataLoss when the blob does not open.
Status CopyBlob(const std::string& from, const crypto::SecretKey& from_key, std::string_view id,
                uint64_t size, const std::string* to = nullptr,
                const crypto::SecretKey* to_key = nullptr, uint32_t to_epoch = 0);

// Writes a new blob of a size known up front, chunk by chunk.
class BlobWriter {
 public:
  // Creates `path` (0600; AlreadyExists if it exists) and writes the header.
  // InvalidArgument for an invalid id.
  // `key_epoch` (header): which of the tenant's data keys sealed it, 0 for
  // the first; a re-key (silo tenant rekey) seals its blobs again under the
  // next one, so that one blob id and epoch always name the same bytes.
  static Result<std::unique_ptr<BlobWriter>> Create(const std::string& path,
                                                    const crypto::SecretKey& files_key,
                                                    std::string_view id, uint64_t plaintext_size,
                                                    uint32_t key_epoch = 0);
  // Reopens a blob that a crash or a dropped connection left unfinished
  // (a resumable upload): keeps the whole chunks that open, cuts off the
  // rest (a torn chunk, a partial write), and goes on from there (under the
  // header's key epoch);
  // appended() is then a multiple of kChunkBytes. DataLoss when the header is
  // not the one `id` and `plaintext_size` make; AlreadyExists when the blob
  // is complete; NotFound without a file.
  static Result<std::unique_ptr<BlobWriter>> Resume(const std::string& path,
                                                    const crypto::SecretKey& files_key,
                                                    std::string_view id, uint64_t plaintext_size);
  ~BlobWriter();  // closes; a blob not finished stays as it is (the caller removes it)
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends bytes; seals and writes every chunk that fills. InvalidArgument
  // (and nothing written) when the bytes would exceed the declared size.
  Status Append(std::string_view bytes);
  // Seals the last chunk and syncs the file. FailedPrecondition when fewer
  // bytes than declared were appended.
  Status Finish();
  // Makes the chunks written so far durable (what a resumable upload
  // acknowledges); the partial chunk in memory is not written.
  Status Sync();
  // Forgets the bytes of the chunk not yet sealed, so that appended() equals
  // durable_bytes() again: for a request that ended mid-chunk, whose client
  // resends from the acknowledged offset.
  void DiscardPartialChunk();
  uint64_t appended() const { return appended_; }
  // The bytes in sealed chunks on disk: a multiple of kChunkBytes until the
  // blob is finished, then its size.
  uint64_t durable_bytes() const;

 private:
  BlobWriter(int fd, crypto::SecretKey key, std::string header, uint64_t size);
  Status WriteChunk(bool last);
  // The whole chunks at the start of the file that open (Resume).
  Result<uint64_t> CountGoodChunks();

  int fd_;
  const crypto::SecretKey key_;
  const std::string header_;
  const uint64_t size_;
  uint64_t appended_ = 0;
  uint64_t chunks_written_ = 0;
  std::string pending_;  // plaintext of the chunk being filled; wiped when sealed
  bool finished_ = false;
};

// Reads a blob, any range of it, verifying every chunk it touches.
class BlobReader {
 public:
  // Checks the header (magic, version, id, size; any key epoch) and that
  // the file is exactly as long as a blob of `expected_size` bytes:
  // DataLoss otherwise; NotFound when there is no file.
  static Result<std::unique_ptr<BlobReader>> Open(const std::string& path,
                                                  const crypto::SecretKey& files_key,
                                                  std::string_view id, uint64_t expected_size);
  ~BlobReader();
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;

  uint64_t size() const { return size_; }
  uint64_t chunk_count() const { return chunks_; }
  uint32_t key_epoch() const;
  // Chunk `index`'s plaintext. DataLoss when it fails to open (any change to
  // the blob); InvalidArgument past the last chunk.
  Result<std::string> ReadChunk(uint64_t index);
  // Bytes [offset, offset + length) clipped to the size. A range that
  // reaches the end also proves the last chunk is the final one.
  Result<std::string> Read(uint64_t offset, uint64_t length);

 private:
  BlobReader(int fd, crypto::SecretKey key, std::string header, uint64_t size);

  int fd_;
  const crypto::SecretKey key_;
  const std::string header_;
  const uint64_t size_;
  const uint64_t chunks_;
};

}  // namespace silo::files

#endif  // SILO_FILES_BLOB_H_
