// libFuzzer target: a blob file of arbitrary bytes, read (and resumed as an
// unfinished upload) with a key no input was sealed under, must never crash,
// never read out of bounds, and never be reported as readable or as holding
// a whole chunk (that would be a forged chunk).
// Input: 3 bytes of expected size (big-endian, at most 16 MiB), then the file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "files/blob.h"

namespace {

const silo::crypto::SecretKey& Key() {
  static const silo::crypto::SecretKey key = silo::crypto::SecretKey::Random();
  return key;
}

// This process's scratch file, removed after each input (libFuzzer may end
// with _Exit, which runs no exit handlers).
const std::string& Path() {
  static const std::string path = "/tmp/silo-blob-fuzz-" + std::to_string(::getpid()) + ".sf";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace silo::files;
  if (size < 3) return 0;
  const uint64_t expected = (uint64_t{data[0]} << 16) | (uint64_t{data[1]} << 8) | data[2];
  {
    std::ofstream out(Path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 3), static_cast<std::streamsize>(size - 3));
  }
  const char* id = "00112233445566778899aabbccddeeff";
  if (auto reader = BlobReader::Open(Path(), Key(), id, expected); reader.ok()) {
    for (uint64_t i = 0; i < (*reader)->chunk_count(); ++i) {
      if ((*reader)->ReadChunk(i).ok()) __builtin_trap();  // forged: a finding
    }
    if ((*reader)->Read(0, expected).ok() && expected > 0) __builtin_trap();
  }
  // Resuming keeps only chunks that open: none can, so it starts at zero.
  auto writer = BlobWriter::Resume(Path(), Key(), id, expected);
  if (writer.ok() && (*writer)->appended() != 0) __builtin_trap();
  if (writer.status().code() == silo::StatusCode::kAlreadyExists) __builtin_trap();
  ::unlink(Path().c_str());
  return 0;
}
