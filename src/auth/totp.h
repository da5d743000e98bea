// TOTP (RFC 6238 through liboath): 30-second steps, 6 digits, HMAC-SHA-1 (what
// authenticator apps use), a 20-byte random secret, one step of tolerance
// each way, and each step accepted once (the caller stores the last step
// used and passes it back).
#ifndef SILO_AUTH_TOTP_H_
#define SILO_AUTH_TOTP_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo::auth {

inline constexpr unsigned kTotpStepSeconds = 30;
inline constexpr unsigned kTotpDigits = 6;
inline constexpr size_t kTotpSecretBytes = 20;

std::string NewTotpSecret();  // kTotpSecretBytes random bytes
// RFC 4648 base32 without padding (what otpauth URIs carry).
std::string Base32(std::string_view bytes);
// otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30
std::string OtpauthUri(std::string_view issuer, std::string_view account, std::string_view secret);

// The code for the step containing `unix_seconds` (`digits` long).
std::string TotpCode(std::string_view secret, int64_t unix_seconds, unsigned digits = kTotpDigits);

// The step of `code` within one step of `unix_seconds`, if it is later than
// `last_used_step`. Unauthenticated otherwise (wrong, too old, too new,
// replayed, or not six digits). Compares in constant time.
Result<int64_t> VerifyTotp(std::string_view secret, std::string_view code, int64_t unix_seconds,
                           int64_t last_used_step);

// An SVG image of `text` as a QR code (libqrencode, error correction M).
Result<std::string> QrSvg(std::string_view text);

}  // namespace silo::auth

#endif  // SILO_AUTH_TOTP_H_
