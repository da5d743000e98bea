#include "files/blob.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/data_layout.h"
#include "crypto/crypto.h"

namespace silo::files {
namespace {

constexpr std::string_view kMagic = "SILOFIL1";
constexpr uint8_t kFormat = 1;
constexpr uint8_t kChunkLog2 = 16;
static_assert(size_t{1} << kChunkLog2 == kChunkBytes);
static_assert(kSealedChunkBytes == kChunkBytes + crypto::kSealOverhead);

void PutBe(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// magic (8) | format u8 | chunk_log2 u8 | flags u16 | key_epoch u32 |
// blob id (16 raw bytes) | plaintext size u64 | reserved (24 zero bytes);
// integers big-endian.
std::string Header(std::string_view id, uint64_t size, uint32_t key_epoch) {
  std::string h(kMagic);
  h.push_back(static_cast<char>(kFormat));
  h.push_back(static_cast<char>(kChunkLog2));
  PutBe(&h, 0, 2);                     // flags
  PutBe(&h, key_epoch, 4);             // key epoch
  h += crypto::HexDecode(id).value();  // callers checked ValidBlobId(id)
  PutBe(&h, size, 8);
  h.append(24, '\0');
  return h;
}

// The key epoch in a header read from disk (bytes 12-15); 0 for a short one
// (which no expected header then equals).
uint32_t EpochOf(std::string_view header) {
  if (header.size() < 16) return 0;
  uint32_t v = 0;
  for (size_t i = 12; i < 16; ++i) v = (v << 8) | static_cast<unsigned char>(header[i]);
  return v;
}

uint64_t ChunkCount(uint64_t size) {
  return size == 0 ? 1 : (size + kChunkBytes - 1) / kChunkBytes;
}

// The chunk's associated data: the header, its index, and 1 for the last.
std::string ChunkAd(const std::string& header, uint64_t index, bool last) {
  std::string ad = header;
  PutBe(&ad, index, 8);
  ad.push_back(last ? '\1' : '\0');
  return ad;
}

Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal("blob write failed").WithCause(std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<std::string> ReadAt(int fd, uint64_t offset, size_t length) {
  std::string out(length, '\0');
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, out.data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal("blob read failed").WithCause(std::strerror(errno));
    if (n == 0) return DataLoss("blob is shorter than its header says");
    done += static_cast<size_t>(n);
  }
  return out;
}

// An fd for `path` opened with `flags` (O_CLOEXEC added, mode 0600 when it
// creates): NotFound without the file, AlreadyExists when O_EXCL finds one.
Result<int> OpenBlobFile(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno == ENOENT) return NotFound("no such blob");
  if (errno == EEXIST) return AlreadyExists("the blob exists");
  return Internal("cannot open the blob").WithCause(path + ": " + std::strerror(errno));
}

}  // namespace

std::string NewBlobId() { return crypto::HexEncode(crypto::RandomBytes(16)); }

bool ValidBlobId(std::string_view id) { return layout::ValidBlobId(id); }

crypto::SecretKey BlobKey(const crypto::SecretKey& files_key, std::string_view id) {
  std::string raw =
      crypto::KeyedHash(files_key, "silo-file-v1:" + std::string(id), crypto::SecretKey::kSize);
  auto key = crypto::SecretKey::FromBytes(raw);
  crypto::WipeString(raw);
  return std::move(key).value();  // the size is right by construction
}

uint64_t SealedSize(uint64_t size) {
  const uint64_t n = ChunkCount(size);
  return kHeaderBytes + (n - 1) * kSealedChunkBytes + (size - (n - 1) * kChunkBytes) +
         crypto::kSealOverhead;
}

// --- BlobWriter ---

Result<std::unique_ptr<BlobWriter>> BlobWriter::Create(const std::string& path,
                                                       const crypto::SecretKey& files_key,
                                                       std::string_view id, uint64_t plaintext_size,
                                                       uint32_t key_epoch) {
  if (!ValidBlobId(id)) return InvalidArgument("not a blob id");
  SILO_ASSIGN_OR_RETURN(int fd, OpenBlobFile(path, O_WRONLY | O_CREAT | O_EXCL));
  std::unique_ptr<BlobWriter> w(new BlobWriter(
      fd, BlobKey(files_key, id), Header(id, plaintext_size, key_epoch), plaintext_size));
  SILO_RETURN_IF_ERROR(WriteAll(fd, w->header_));
  return w;
}

Result<std::unique_ptr<BlobWriter>> BlobWriter::Resume(const std::string& path,
                                                       const crypto::SecretKey& files_key,
                                                       std::string_view id,
                                                       uint64_t plaintext_size) {
  if (!ValidBlobId(id)) return InvalidArgument("not a blob id");
  SILO_ASSIGN_OR_RETURN(int fd, OpenBlobFile(path, O_RDWR));
  auto header = ReadAt(fd, 0, kHeaderBytes);
  std::unique_ptr<BlobWriter> w(new BlobWriter(
      fd, BlobKey(files_key, id), Header(id, plaintext_size, header.ok() ? EpochOf(*header) : 0),
      plaintext_size));
  if (!header.ok() || *header != w->header_) {
    return DataLoss("blob header does not match").WithCause(path);
  }
  SILO_ASSIGN_OR_RETURN(uint64_t good, w->CountGoodChunks());
  const off_t keep = static_cast<off_t>(kHeaderBytes + good * kSealedChunkBytes);
  if (::ftruncate(fd, keep) != 0 || ::fsync(fd) != 0 || ::lseek(fd, keep, SEEK_SET) != keep) {
    return Internal("cannot cut the blob back").WithCause(path + ": " + std::strerror(errno));
  }
  w->chunks_written_ = good;
  w->appended_ = good * kChunkBytes;
  return w;
}

Result<uint64_t> BlobWriter::CountGoodChunks() {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Internal("cannot stat the blob");
  const uint64_t n = ChunkCount(size_);
  const uint64_t length = static_cast<uint64_t>(st.st_size);
  if (length == SealedSize(size_)) {
    // Complete if the last chunk opens as the last one; then every chunk
    // before it would open too, or Finish was never reached.
    const uint64_t at = kHeaderBytes + (n - 1) * kSealedChunkBytes;
    auto last = ReadAt(fd_, at, length - at);
    if (last.ok() && crypto::Open(key_, *last, ChunkAd(header_, n - 1, true)).ok()) {
      return AlreadyExists("the blob is complete");
    }
  }
  uint64_t good = 0;
  // Only chunks before the last are ever written unfinished.
  while (good + 1 < n && kHeaderBytes + (good + 1) * kSealedChunkBytes <= length) {
    auto sealed = ReadAt(fd_, kHeaderBytes + good * kSealedChunkBytes, kSealedChunkBytes);
    if (!sealed.ok()) return sealed.status();
    auto opened = crypto::Open(key_, *sealed, ChunkAd(header_, good, false));
    if (!opened.ok()) break;
    crypto::WipeString(*opened);
    ++good;
  }
  return good;
}

BlobWriter::BlobWriter(int fd, crypto::SecretKey key, std::string header, uint64_t size)
    : fd_(fd), key_(std::move(key)), header_(std::move(header)), size_(size) {
  pending_.reserve(kChunkBytes);
}

BlobWriter::~BlobWriter() {
  crypto::WipeString(pending_);
  ::close(fd_);
}

Status BlobWriter::WriteChunk(bool last) {
  std::string sealed = crypto::Seal(key_, pending_, ChunkAd(header_, chunks_written_, last));
  crypto::WipeString(pending_);
  pending_.clear();
  SILO_RETURN_IF_ERROR(WriteAll(fd_, sealed));
  ++chunks_written_;
  return Status::Ok();
}

Status BlobWriter::Append(std::string_view bytes) {
  if (finished_) return FailedPrecondition("the blob is finished");
  if (bytes.size() > size_ - appended_) {
    return InvalidArgument("more bytes than the declared size");
  }
  while (!bytes.empty()) {
    size_t take = std::min(bytes.size(), kChunkBytes - pending_.size());
    pending_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    appended_ += take;
    // A full chunk is sealed now unless it is the last one, which Finish
    // seals with the final flag.
    if (pending_.size() == kChunkBytes && appended_ < size_) {
      SILO_RETURN_IF_ERROR(WriteChunk(false));
    }
  }
  return Status::Ok();
}

Status BlobWriter::Finish() {
  if (finished_) return FailedPrecondition("the blob is finished");
  if (appended_ != size_) return FailedPrecondition("fewer bytes than the declared size");
  SILO_RETURN_IF_ERROR(WriteChunk(true));
  if (::fsync(fd_) != 0) return Internal("blob sync failed").WithCause(std::strerror(errno));
  finished_ = true;
  return Status::Ok();
}

Status BlobWriter::Sync() {
  if (::fsync(fd_) != 0) return Internal("blob sync failed").WithCause(std::strerror(errno));
  return Status::Ok();
}

void BlobWriter::DiscardPartialChunk() {
  if (finished_) return;
  crypto::WipeString(pending_);
  pending_.clear();
  appended_ = chunks_written_ * kChunkBytes;
}

uint64_t BlobWriter::durable_bytes() const {
  return finished_ ? size_ : chunks_written_ * kChunkBytes;
}

// --- BlobReader ---

Result<std::unique_ptr<BlobReader>> BlobReader::Open(const std::string& path,
                                                     const crypto::SecretKey& files_key,
                                                     std::string_view id, uint64_t expected_size) {
  if (!ValidBlobId(id)) return InvalidArgument("not a blob id");
  SILO_ASSIGN_OR_RETURN(int fd, OpenBlobFile(path, O_RDONLY));
  auto read = ReadAt(fd, 0, kHeaderBytes);
  if (!read.ok()) {
    ::close(fd);
    return read.status();
  }
  const std::string header = std::move(*read);
  // The key epoch is taken from the file (a re-keyed tenant's blobs carry
  // their key's); it is in every chunk's associated data, so an edited one
  // fails to open like any other edit of the header.
  std::unique_ptr<BlobReader> r(new BlobReader(
      fd, BlobKey(files_key, id), Header(id, expected_size, EpochOf(header)), expected_size));
  struct stat st;
  if (::fstat(fd, &st) != 0) return Internal("cannot stat the blob").WithCause(path);
  // The header names the one blob and size this reader expects; any other
  // header is another blob or an edited one. The chunks' associated data
  // would refuse it too; refusing here says so before any chunk is read.
  if (header != r->header_) return DataLoss("blob header does not match").WithCause(path);
  if (static_cast<uint64_t>(st.st_size) != SealedSize(expected_size)) {
    return DataLoss("blob length does not match its size").WithCause(path);
  }
  return r;
}

uint32_t BlobReader::key_epoch() const { return EpochOf(header_); }

Result<uint32_t> ReadKeyEpoch(const std::string& path) {
  SILO_ASSIGN_OR_RETURN(int fd, OpenBlobFile(path, O_RDONLY));
  auto header = ReadAt(fd, 0, kHeaderBytes);
  ::close(fd);
  if (!header.ok()) return header.status();
  if (header->size() != kHeaderBytes || header->substr(0, kMagic.size()) != kMagic) {
    return DataLoss("not a blob").WithCause(path);
  }
  return EpochOf(*header);
}

Status CopyBlob(const std::string& from, const crypto::SecretKey& from_key, std::string_view id,
                uint64_t size, const std::string* to, const crypto::SecretKey* to_key,
                uint32_t to_epoch) {
  auto reader = BlobReader::Open(from, from_key, id, size);
  if (!reader.ok()) return DataLoss("does not open: " + reader.status().message());
  std::unique_ptr<BlobWriter> writer;
  if (to != nullptr) {
    SILO_ASSIGN_OR_RETURN(writer, BlobWriter::Create(*to, *to_key, id, size, to_epoch));
  }
  for (uint64_t i = 0; i < (*reader)->chunk_count(); ++i) {
    auto chunk = (*reader)->ReadChunk(i);
    if (!chunk.ok()) return DataLoss("failed authentication in chunk " + std::to_string(i));
    Status s = writer ? writer->Append(*chunk) : Status::Ok();
    crypto::WipeString(*chunk);
    if (!s.ok()) return s;
  }
  return writer ? writer->Finish() : Status::Ok();
}

BlobReader::BlobReader(int fd, crypto::SecretKey key, std::string header, uint64_t size)
    : fd_(fd),
      key_(std::move(key)),
      header_(std::move(header)),
      size_(size),
      chunks_(ChunkCount(size)) {}

BlobReader::~BlobReader() { ::close(fd_); }

Result<std::string> BlobReader::ReadChunk(uint64_t index) {
  if (index >= chunks_) return InvalidArgument("past the last chunk");
  const bool last = index == chunks_ - 1;
  const size_t plain = last ? size_ - index * kChunkBytes : kChunkBytes;
  SILO_ASSIGN_OR_RETURN(std::string sealed, ReadAt(fd_, kHeaderBytes + index * kSealedChunkBytes,
                                                   plain + crypto::kSealOverhead));
  auto opened = crypto::Open(key_, sealed, ChunkAd(header_, index, last));
  if (!opened.ok()) return DataLoss("blob chunk " + std::to_string(index) + " fails to open");
  return opened;
}

Result<std::string> BlobReader::Read(uint64_t offset, uint64_t length) {
  std::string out;
  if (offset >= size_ || length == 0) return out;
  const uint64_t end = offset + std::min(length, size_ - offset);
  for (uint64_t i = offset / kChunkBytes; i * kChunkBytes < end; ++i) {
    SILO_ASSIGN_OR_RETURN(std::string chunk, ReadChunk(i));
    const uint64_t from = i * kChunkBytes;
    const uint64_t lo = std::max(offset, from) - from;
    const uint64_t hi = std::min(end, from + chunk.size()) - from;
    out.append(chunk, lo, hi - lo);
    crypto::WipeString(chunk);
  }
  return out;
}

}  // namespace silo::files
