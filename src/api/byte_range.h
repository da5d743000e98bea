// The Range header of a download (RFC 9110 section 14): one range of bytes,
// or none. Pure; no I/O.
#ifndef SILO_API_BYTE_RANGE_H_
#define SILO_API_BYTE_RANGE_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace silo::api {

struct ByteRange {
  enum class Kind {
    kWhole,          // no Range, one we do not serve (several ranges, another unit): 200
    kPart,           // one satisfiable range: 206
    kUnsatisfiable,  // a well-formed range wholly past the end: 416
  };
  Kind kind = Kind::kWhole;
  uint64_t first = 0;  // kPart: the first byte and how many
  uint64_t length = 0;
};

// `header` is the Range header's value (nullopt when absent) for a body of
// `size` bytes. "bytes=a-b", "bytes=a-" and "bytes=-n" (the last n bytes)
// are served; a last byte past the end is clipped. Several ranges, another
// unit or a malformed value answer with the whole body, as RFC 9110 allows.
ByteRange ParseByteRange(std::optional<std::string_view> header, uint64_t size);

}  // namespace silo::api

#endif  // SILO_API_BYTE_RANGE_H_
