#include "auth/totp.h"

#include <liboath/oath.h>
#include <qrencode.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "crypto/crypto.h"

namespace silo::auth {
namespace {

void EnsureOath() {
  static std::once_flag once;
  std::call_once(once, [] { oath_init(); });
}

std::string PercentEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '@') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct Candidate {
  std::string_view code;
};

// liboath's comparison callback: 0 when equal. Constant time over 6 digits.
int CompareCode(void* handle, const char* test_otp) {
  auto* c = static_cast<Candidate*>(handle);
  if (std::strlen(test_otp) != c->code.size()) return 1;
  return sodium_memcmp(test_otp, c->code.data(), c->code.size()) == 0 ? 0 : 1;
}

}  // namespace

std::string NewTotpSecret() { return crypto::RandomBytes(kTotpSecretBytes); }

std::string Base32(std::string_view bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

std::string OtpauthUri(std::string_view issuer, std::string_view account, std::string_view secret) {
  return "otpauth://totp/" + PercentEncode(issuer) + ":" + PercentEncode(account) +
         "?secret=" + Base32(secret) + "&issuer=" + PercentEncode(issuer) +
         "&algorithm=SHA1&digits=" + std::to_string(kTotpDigits) +
         "&period=" + std::to_string(kTotpStepSeconds);
}

std::string TotpCode(std::string_view secret, int64_t unix_seconds, unsigned digits) {
  EnsureOath();
  char out[16] = {};
  if (oath_totp_generate(secret.data(), secret.size(), static_cast<time_t>(unix_seconds),
                         kTotpStepSeconds, 0, digits, out) != OATH_OK) {
    return "";
  }
  return out;
}

Result<int64_t> VerifyTotp(std::string_view secret, std::string_view code, int64_t unix_seconds,
                           int64_t last_used_step) {
  auto refused = [] { return Status(StatusCode::kUnauthenticated, "invalid code"); };
  if (code.size() != kTotpDigits ||
      !std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return refused();
  }
  EnsureOath();
  Candidate candidate{code};
  int pos = 0;
  uint64_t counter = 0;
  int rc = oath_totp_validate3_callback(secret.data(), secret.size(),
                                        static_cast<time_t>(unix_seconds), kTotpStepSeconds, 0,
                                        kTotpDigits, 1, &pos, &counter, CompareCode, &candidate);
  if (rc < 0) return refused();
  int64_t step = static_cast<int64_t>(counter);
  if (step <= last_used_step) return refused();  // replayed (or older than one used)
  return step;
}

Result<std::string> QrSvg(std::string_view text) {
  std::string s(text);
  std::unique_ptr<QRcode, decltype(&QRcode_free)> qr(
      QRcode_encodeString(s.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1), QRcode_free);
  if (!qr) return Internal("cannot encode the QR code");
  const int quiet = 4;
  const int size = qr->width + 2 * quiet;
  std::string path;
  for (int y = 0; y < qr->width; ++y) {
    for (int x = 0; x < qr->width; ++x) {
      if (qr->data[y * qr->width + x] & 1) {
        path += "M" + std::to_string(x + quiet) + " " + std::to_string(y + quiet) + "h1v1h-1z";
      }
    }
  }
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + std::to_string(size) + " " +
         std::to_string(size) + "\" shape-rendering=\"crispEdges\"><rect width=\"100%\" " +
         "height=\"100%\" fill=\"#fff\"/><path fill=\"#000\" d=\"" + path + "\"/></svg>";
}

}  // namespace silo::auth
