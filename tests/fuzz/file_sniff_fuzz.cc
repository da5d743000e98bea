// libFuzzer target: the type sniffer and the SVG active-content scanner on
// arbitrary bytes. Never crash; the sniffer always names a type; and the
// scanner finds the same whether the bytes come whole or in pieces (the
// first input byte chooses the piece size), so no marker hides at a seam.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "files/sniff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace silo::files;
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 97;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (SniffType(bytes).empty()) __builtin_trap();
  ActiveContentScanner whole, pieces;
  whole.Feed(bytes);
  for (size_t at = 0; at < bytes.size(); at += piece) pieces.Feed(bytes.substr(at, piece));
  if (whole.found() != pieces.found()) __builtin_trap();
  return 0;
}
