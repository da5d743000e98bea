// Writes tests/data/blob1.sf and blob1.key: a sealed blob in file format
// version 1 that every later build must still read (files/blob_test.cc,
// BlobFormatFixture). Run once per format version, by hand:
//   build/make_blob1_fixture tests/data
// Blob id 00112233445566778899aabbccddeeff, 2 x 65,536 + 1,234 bytes of the
// test's Content() pattern. The key is a test key, used for nothing else.
#include <cstdio>
#include <string>

#include "crypto/crypto.h"
#include "files/blob.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t size = 2 * silo::files::kChunkBytes + 1234;
  auto key = silo::crypto::SecretKey::Random();
  auto w = silo::files::BlobWriter::Create(dir + "/blob1.sf", key,
                                           "00112233445566778899aabbccddeeff", size);
  if (!w.ok()) return 1;
  std::string content(size, '\0');
  for (uint64_t i = 0; i < size; ++i)
    content[i] = static_cast<char>((i * 131 + i / 7 + 'a') & 0xff);
  if (!(*w)->Append(content).ok() || !(*w)->Finish().ok()) return 1;
  std::string hex =
      silo::crypto::HexEncode(std::string(reinterpret_cast<const char*>(key.data()), key.size()));
  FILE* out = std::fopen((dir + "/blob1.key").c_str(), "w");
  if (out == nullptr) return 1;
  std::fprintf(out, "%s\n", hex.c_str());
  std::fclose(out);
  return 0;
}
