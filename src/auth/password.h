// Passwords: Argon2id hashes (libsodium) and the policy a new password must
// meet (ASVS 2.1: at least 12 characters, at most kMaxPasswordBytes, no
// truncation, no composition rules, screened against common passwords).
//
// Hashing is slow on purpose (tens of milliseconds); callers run it on the
// password worker pool, never on a network thread.
#ifndef SILO_AUTH_PASSWORD_H_
#define SILO_AUTH_PASSWORD_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace silo::auth {

// Argon2id cost. OWASP's minimum (19 MiB, t=2) is the floor config allows.
struct PasswordCost {
  uint64_t memory_kib = 19 * 1024;
  uint64_t iterations = 2;
};
inline constexpr PasswordCost kMinPasswordCost{19 * 1024, 2};

inline constexpr size_t kMinPasswordChars = 12;
// Longer is refused quickly (before any hashing), with a clear error.
inline constexpr size_t kMaxPasswordBytes = 1024;

// "$argon2id$v=19$m=...,t=...,p=1$salt$hash" with a fresh random salt.
Result<std::string> HashPassword(std::string_view password, const PasswordCost& cost);
// Constant work for a given hash; false for a malformed hash.
bool VerifyPassword(std::string_view hash, std::string_view password);
// True when `hash` was made with other parameters than `cost`.
bool NeedsRehash(std::string_view hash, const PasswordCost& cost);

// InvalidArgument with a field error on "password" (or `field`) when the
// password is too short, too long, not text, common, or built from the
// account's e-mail.
Status CheckPasswordPolicy(std::string_view password, std::string_view email,
                           std::string_view field = "password");

// Whether the normalised password is in, or is a trivial variation of, the
// common-password list (Openwall's password.lst from Debian's john-data,
// embedded at build time) or a keyboard or alphabet run.
bool IsCommonPassword(std::string_view password);

}  // namespace silo::auth

#endif  // SILO_AUTH_PASSWORD_H_
