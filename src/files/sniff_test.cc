// The sniffer decides by content: each allowed type from its magic number,
// a file renamed or declared as something else sniffed as what it is, HTML
// never passing as an image, and active content in SVG found wherever it is.
#include "files/sniff.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace silo::files {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

std::string Bin(std::initializer_list<int> bytes, std::string_view rest = "") {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s + std::string(rest);
}

TEST(SniffTypeTest, MagicNumbers) {
  const std::pair<std::string, std::string_view> cases[] = {
      {Bin({0xff, 0xd8, 0xff, 0xe0}, "JFIF"), "image/jpeg"},
      {Bin({0x89}, "PNG\r\n\x1a\n....IHDR"), "image/png"},
      {"GIF89a....", "image/gif"},
      {"GIF87a....", "image/gif"},
      {"RIFF\x10\0\0\0WEBPVP8 "s, "image/webp"},
      {"RIFF\x10\0\0\0WAVEfmt "s, "audio/wav"},
      {"%PDF-1.7\n", "application/pdf"},
      {"OggS\0\x02"s, "audio/ogg"},
      {"fLaC\0\0\0\x22"s, "audio/flac"},
      {Bin({0x1a, 0x45, 0xdf, 0xa3}, "....B\x82\x84webm"), "video/webm"},
      {Bin({0x1a, 0x45, 0xdf, 0xa3}, "....B\x82\x88matroska"), "video/x-matroska"},
      {Bin({0, 0, 0, 0x20}, "ftypisom\0\0\x02\0"sv), "video/mp4"},
      {Bin({0, 0, 0, 0x14}, "ftypqt  "), "video/quicktime"},
      {Bin({0, 0, 0, 0x1c}, "ftypavif"), "image/avif"},
      {Bin({0, 0, 0, 0x18}, "ftypheic"), "image/heic"},
      {Bin({0, 0, 0, 0x20}, "ftypM4A "), "audio/mp4"},
      {"ID3\x04\0\0"s, "audio/mpeg"},
      {Bin({0xff, 0xfb, 0x90, 0x64}), "audio/mpeg"},
      {Bin({0xff, 0xf1, 0x50, 0x80}), "audio/aac"},
      {"PK\x03\x04\x14\0\0\0[Content_Types].xml....word/document.xml"s,
       "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {"PK\x03\x04\x14\0\0\0[Content_Types].xml....xl/workbook.xml"s,
       "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
      {"PK\x03\x04\x14\0\0\0notes.txt"s, "application/zip"},
  };
  for (const auto& [bytes, type] : cases) {
    EXPECT_EQ(SniffType(bytes), type) << bytes.substr(0, 12);
  }
}

TEST(SniffTypeTest, TextKinds) {
  EXPECT_EQ(SniffType("hello, world\nsecond line\n"), "text/plain");
  EXPECT_EQ(SniffType("name,qty\nwidget,3\n"), "text/plain");
  EXPECT_EQ(SniffType("gr\xc3\xbc\xc3\x9f dich"), "text/plain");  // UTF-8
  EXPECT_EQ(SniffType(""), "text/plain");
  EXPECT_EQ(SniffType("<?xml version=\"1.0\"?><note/>"), "application/xml");
  EXPECT_EQ(SniffType("<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            "image/svg+xml");
  EXPECT_EQ(SniffType("  <SVG width=\"1\"></SVG>"), "image/svg+xml");
  for (std::string html : {"<!DOCTYPE html><html>", "\xef\xbb\xbf <html><body>x", "<script>x()",
                           "\n\n<iframe src=x>", "<!-- c --><p>x</p>", "<BODY onload=x>"}) {
    EXPECT_EQ(SniffType(html), "text/html") << html;
  }
  // Not text: NUL, other controls, broken UTF-8.
  EXPECT_EQ(SniffType(std::string("abc\0def", 7)), "application/octet-stream");
  EXPECT_EQ(SniffType("abc\x01"), "application/octet-stream");
  EXPECT_EQ(SniffType("abc\xc3("), "application/octet-stream");
  EXPECT_EQ(SniffType("abc\xff"), "application/octet-stream");
  // A multi-byte character cut by the end of the window is still text.
  EXPECT_EQ(SniffType(std::string(kSniffBytes - 1, 'a') + "\xc3\xbc"), "text/plain");
}

// What a client says a file is does not matter: only the bytes do.
TEST(SniffTypeTest, RenamedOrMislabelledFilesAreWhatTheyAre) {
  const std::string png = Bin({0x89}, "PNG\r\n\x1a\n\0\0\0\rIHDR"sv);  // saved as "invoice.pdf"
  EXPECT_EQ(SniffType(png), "image/png");
  const std::string html = "<html><script>steal()</script></html>";  // sent as image/png
  EXPECT_EQ(SniffType(html), "text/html");
  EXPECT_FALSE(ServedInline(SniffType(html)));
  // Only what follows the first 4 KiB window's bytes is looked at.
  EXPECT_EQ(SniffType(std::string(kSniffBytes, 'a') + std::string(1, '\0')), "text/plain");
}

TEST(ServedInlineTest, OnlyMediaAndPdf) {
  for (std::string_view t :
       {"image/png", "image/jpeg", "audio/ogg", "video/mp4", "application/pdf"}) {
    EXPECT_TRUE(ServedInline(t)) << t;
  }
  for (std::string_view t : {"image/svg+xml", "text/html", "application/xml", "text/plain",
                             "application/zip", "application/octet-stream"}) {
    EXPECT_FALSE(ServedInline(t)) << t;
  }
}

bool Active(std::string_view svg, size_t piece) {
  ActiveContentScanner s;
  for (size_t at = 0; at < svg.size(); at += piece) s.Feed(svg.substr(at, piece));
  return s.found();
}

TEST(ActiveContentScannerTest, FindsScriptWhereverItIs) {
  const std::string clean =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\"><circle r=\"4\" "
      "fill=\"red\"/><text x=\"1\">Donation</text></svg>";
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}}) {
    EXPECT_FALSE(Active(clean, piece)) << piece;
    for (const std::string& bad : std::vector<std::string>{
             "<svg><script>alert(1)</script></svg>", "<svg onload=\"alert(1)\"/>",
             "<svg><rect ONCLICK = 'x()'/></svg>", "<svg><a href=\"JavaScript:x()\">a</a></svg>",
             "<svg><foreignObject><iframe/></foreignObject></svg>",
             "<!DOCTYPE svg [<!ENTITY x \"y\">]><svg/>", "<svg/onload=alert(1)>",
             "<svg><a href=\"jav&#x61;script:x()\">a</a></svg>",
             "<svg><a href=\"java\tscript:x()\">a</a></svg>",
             "<svg onload\n\n\n" + std::string(100, ' ') + "= \"x()\"/>"}) {
      std::string padded = clean.substr(0, 60) + std::string(5000, ' ') + bad;
      EXPECT_TRUE(Active(bad, piece)) << bad << " in pieces of " << piece;
      EXPECT_TRUE(Active(padded, piece)) << bad << " late, in pieces of " << piece;
    }
  }
}

}  // namespace
}  // namespace silo::files
