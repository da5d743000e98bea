// The type of a file, decided from its first bytes: never from its name or
// the type the client declared (issue 17: a field's `types` allow-list is
// checked against this). An allow-list matcher of magic numbers for the
// types a SaaS stores (images, audio, video, PDF, Office, ZIP) and a text
// classifier that tells HTML, SVG and XML apart from plain text; anything it
// does not recognise is application/octet-stream. Pure functions, no I/O;
// fuzzed (tests/fuzz/file_sniff_fuzz.cc).
#ifndef SILO_FILES_SNIFF_H_
#define SILO_FILES_SNIFF_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace silo::files {

// How many leading bytes SniffType looks at (fewer for a shorter file).
inline constexpr size_t kSniffBytes = 4096;

// A MIME type: "image/png", "text/html", "image/svg+xml", "text/plain",
// "application/octet-stream", ... (the list is in sniff.cc).
std::string_view SniffType(std::string_view head);

// Whether a file of this sniffed type may be shown inline by a browser:
// raster images, audio, video and PDF. Everything else (SVG, HTML, XML,
// text, archives) is served as an attachment.
bool ServedInline(std::string_view type);

// Scans an SVG (or any XML) as it streams by for active content: <script>,
// event-handler attributes (onload=...), javascript: and vbscript: URLs,
// <foreignObject>, <iframe>, <embed>, <object>, <handler> and entity
// declarations. Case-insensitive, white space runs folded; a marker split
// between two Feed calls is still found (feeding in any pieces finds what
// feeding the whole finds). It errs towards finding: text that merely looks
// like an attribute (" one = 1") counts. Defence in depth: SVG is also only
// ever served as an attachment under a sandboxing CSP.
// Thread-compatible.
class ActiveContentScanner {
 public:
  void Feed(std::string_view bytes);
  bool found() const { return found_; }

 private:
  std::string tail_;  // the last bytes fed, lower-cased, for markers across calls
  bool found_ = false;
};

}  // namespace silo::files

#endif  // SILO_FILES_SNIFF_H_
