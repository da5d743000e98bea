#include "files/sniff.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace silo::files {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

bool At(std::string_view s, size_t at, std::string_view what) {
  return s.size() >= at + what.size() && s.substr(at, what.size()) == what;
}

// ISO base media files (MP4, QuickTime, HEIF, AVIF): "ftyp" at byte 4, then
// the major brand.
std::string_view IsoMedia(std::string_view h) {
  if (!At(h, 4, "ftyp") || h.size() < 12) return {};
  const std::string_view brand = h.substr(8, 4);
  if (brand == "avif" || brand == "avis") return "image/avif";
  if (brand == "heic" || brand == "heix" || brand == "heim" || brand == "heis") return "image/heic";
  if (brand == "qt  ") return "video/quicktime";
  if (brand == "M4A " || brand == "M4B ") return "audio/mp4";
  for (std::string_view mp4 : {"isom", "iso2", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1",
                               "dash", "M4V ", "MSNV", "3gp4", "3gp5"}) {
    if (brand == mp4) return "video/mp4";
  }
  return {};
}

// ZIP, and the Office formats that are ZIP files: their part names appear in
// the local headers near the start.
std::string_view Zip(std::string_view h) {
  if (!StartsWith(h, "PK\x03\x04")) return {};
  if (h.find("word/") != std::string_view::npos) {
    return "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
  }
  if (h.find("xl/") != std::string_view::npos) {
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  }
  if (h.find("ppt/") != std::string_view::npos) {
    return "application/vnd.openxmlformats-officedocument.presentationml.presentation";
  }
  return "application/zip";
}

// MPEG audio: an ID3 tag, or a frame header (11 sync bits). ADTS (AAC) is
// the same sync with layer bits 00.
std::string_view MpegAudio(std::string_view h) {
  if (StartsWith(h, "ID3")) return "audio/mpeg";
  if (h.size() < 2 || static_cast<uint8_t>(h[0]) != 0xff) return {};
  const uint8_t b1 = static_cast<uint8_t>(h[1]);
  if ((b1 & 0xe0) != 0xe0) return {};
  if ((b1 & 0xf6) == 0xf0) return "audio/aac";  // 12 sync bits, layer 00
  if ((b1 & 0x06) == 0) return {};              // layer 00 is reserved in MPEG audio
  return "audio/mpeg";
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Text: valid UTF-8 (a sequence cut at the end of `h` is allowed) without
// NUL or control characters other than tab, newline, form feed and return.
bool LooksLikeText(std::string_view h) {
  size_t i = 0;
  while (i < h.size()) {
    const uint8_t c = static_cast<uint8_t>(h[i]);
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') return false;
      if (c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t n = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 0;
    if (n == 0 || c == 0xc0 || c == 0xc1 || c > 0xf4) return false;
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= h.size()) return true;  // cut by the sniff window
      if ((static_cast<uint8_t>(h[i + k]) & 0xc0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

// HTML, SVG, XML or plain text, for text that passed LooksLikeText. A
// browser sniffs HTML from any of these openings, so they decide first.
std::string_view TextType(std::string_view h) {
  std::string s = Lower(h);
  size_t start = StartsWith(s, "\xef\xbb\xbf") ? 3 : 0;  // UTF-8 byte order mark
  start = s.find_first_not_of(" \t\r\n\f", start);
  if (start == std::string::npos) return "text/plain";
  const std::string_view t = std::string_view(s).substr(start);
  for (std::string_view tag :
       {"<!doctype html", "<html", "<head", "<body", "<script", "<iframe", "<h1", "<div", "<table",
        "<a ", "<title", "<style", "<br", "<p>", "<p ", "<img", "<font", "<b>", "<!--"}) {
    if (StartsWith(t, tag)) return "text/html";
  }
  if (s.find("<svg") != std::string::npos &&
      (StartsWith(t, "<svg") || StartsWith(t, "<?xml") || StartsWith(t, "<!doctype svg"))) {
    return "image/svg+xml";
  }
  if (StartsWith(t, "<?xml")) return "application/xml";
  return "text/plain";
}

}  // namespace

std::string_view SniffType(std::string_view head) {
  const std::string_view h = head.substr(0, std::min(head.size(), kSniffBytes));
  if (StartsWith(h, "\xff\xd8\xff")) return "image/jpeg";
  if (StartsWith(h, "\x89PNG\r\n\x1a\n")) return "image/png";
  if (StartsWith(h, "GIF87a") || StartsWith(h, "GIF89a")) return "image/gif";
  if (StartsWith(h, "RIFF") && At(h, 8, "WEBP")) return "image/webp";
  if (StartsWith(h, "RIFF") && At(h, 8, "WAVE")) return "audio/wav";
  if (StartsWith(h, "%PDF-")) return "application/pdf";
  if (StartsWith(h, "OggS")) return "audio/ogg";
  if (StartsWith(h, "fLaC")) return "audio/flac";
  if (StartsWith(h, "\x1a\x45\xdf\xa3")) {
    return h.find("webm") != std::string_view::npos ? "video/webm" : "video/x-matroska";
  }
  if (auto t = IsoMedia(h); !t.empty()) return t;
  if (auto t = Zip(h); !t.empty()) return t;
  if (auto t = MpegAudio(h); !t.empty()) return t;
  if (LooksLikeText(h)) return TextType(h);
  return "application/octet-stream";
}

bool ServedInline(std::string_view type) {
  if (type == "image/svg+xml") return false;
  return StartsWith(type, "image/") || StartsWith(type, "audio/") || StartsWith(type, "video/") ||
         type == "application/pdf";
}

void ActiveContentScanner::Feed(std::string_view bytes) {
  // Longer than any marker and any event-handler attribute we look for, so
  // that none is missed at the seam between two calls.
  constexpr size_t kKeep = 64;
  constexpr size_t kMaxHandlerName = 40;  // "onwebkitanimationiteration" is 26
  if (found_) return;
  // Lower-cased, each run of white space one space (browsers ignore white
  // space around "=" and inside "java\tscript:").
  std::string s = tail_;
  s.reserve(s.size() + bytes.size());
  for (unsigned char c : bytes) {
    if (std::isspace(c)) {
      if (s.empty() || s.back() != ' ') s.push_back(' ');
    } else {
      s.push_back(static_cast<char>(std::tolower(c)));
    }
  }
  // "script:" covers javascript: and vbscript:, also with characters
  // escaped before "script" (jav&#x61;script:).
  static constexpr std::array<std::string_view, 9> kMarkers = {
      "<script", "script:",  "<foreignobject", "<iframe", "<embed",
      "<object", "<!entity", "data:text/html", "<handler"};
  for (std::string_view m : kMarkers) {
    if (s.find(m) != std::string::npos) found_ = true;
  }
  // Event handlers: "on" + letters + optional space + "=", after a space,
  // a slash or a quote (an attribute), e.g. <svg onload="...">.
  for (size_t at = s.find("on"); !found_ && at != std::string::npos; at = s.find("on", at + 1)) {
    if (at == 0 || std::string_view(" /\"'").find(s[at - 1]) == std::string_view::npos) {
      continue;
    }
    size_t i = at + 2;
    while (i < s.size() && i - at - 2 < kMaxHandlerName + 1 &&
           std::isalpha(static_cast<unsigned char>(s[i])))
      ++i;
    const size_t name = i - at - 2;
    if (name == 0 || name > kMaxHandlerName) continue;
    if (i < s.size() && s[i] == ' ') ++i;
    if (i < s.size() && s[i] == '=') found_ = true;
  }
  tail_ = s.substr(s.size() > kKeep ? s.size() - kKeep : 0);
}

}  // namespace silo::files
