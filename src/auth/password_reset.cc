// Identity, password reset by mail, and the keyed values that recognise an
// address without revealing it: e-mail tags and device cookies (behind
// identity.h).
#include <boost/json.hpp>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "crypto/crypto.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

// An e-mail address in the audit log: keyed BLAKE2b, 16 bytes, hex.
std::string EmailTagUnder(const crypto::SecretKey& key, const std::string& address) {
  return crypto::HexEncode(crypto::KeyedHash(key, "email:" + address, 16));
}

// A device cookie's MAC over the address and nonce, hex.
std::string DeviceMac(const crypto::SecretKey& key, const std::string& address,
                      const std::string& nonce) {
  return crypto::HexEncode(crypto::KeyedHash(key, "device:" + address + ":" + nonce, 32));
}

}  // namespace

Status Identity::RequestReset(
    const events::Origin& ctx, const std::string& email,
    const std::function<std::pair<std::string, std::string>(const std::string&)>& compose) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  auto normal = NormaliseEmail(email);
  std::string address = normal.ok() ? *normal : "";
  return AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    std::optional<LoginRecord> user;
    if (!address.empty()) {
      SILO_ASSIGN_OR_RETURN(user, LoadUser(db, "email", address));
    }
    if (user && user->user.status == "active") {
      const std::string& id = user->user.id;
      // A new request replaces older tokens of the user.
      SILO_RETURN_IF_ERROR(
          ExecBound(db, "DELETE FROM one_time_tokens WHERE user_id = ? AND purpose = 'reset'",
                    [&](storage::Statement& q) { q.Bind(1, id); }));
      std::string token = crypto::RandomToken(32);
      SILO_RETURN_IF_ERROR(
          InsertToken(db, token, "reset", id, ctx.now_us + timeouts_.reset_token_us));
      const auto mail = compose(token);
      SILO_RETURN_IF_ERROR(QueueMail(db, address, mail.first, mail.second, ctx.now_us));
    }
    // The same entry either way, so known and unknown addresses cost the same
    // write; the address is kept as a keyed hash so the log does not become a
    // list of guessed addresses.
    return Audited{"password.reset_requested", "email", EmailTagUnder(*key, address), {}};
  });
}

Result<User> Identity::ConfirmReset(const events::Origin& ctx, const std::string& token,
                                    const std::string& password_hash) {
  return SetPasswordWithToken(ctx, token, "reset", password_hash);
}

Result<std::string> Identity::EmailTag(const std::string& normalised_email) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  return EmailTagUnder(*key, normalised_email);
}

Result<std::string> Identity::IssueDeviceCookie(const std::string& normalised_email) {
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey* key, SecretFields());
  std::string nonce = crypto::HexEncode(crypto::RandomBytes(16));
  return nonce + "." + DeviceMac(*key, normalised_email, nonce);
}

Result<std::optional<std::string>> Identity::DeviceOf(std::string_view cookie,
                                                      const std::string& normalised_email) {
  size_t dot = cookie.find('.');
  if (dot != 32 || cookie.size() != 32 + 1 + 64) return std::optional<std::string>();
  auto key = SecretFields();
  if (!key.ok()) return key.status();
  std::string nonce(cookie.substr(0, dot));
  if (!crypto::ConstantTimeEquals(cookie.substr(dot + 1),
                                  DeviceMac(**key, normalised_email, nonce))) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(nonce);
}

}  // namespace silo::auth
