// Sends one plain-text mail through an SMTP relay with libcurl.
//
// smtps:// is TLS from the start; smtp:// upgrades with STARTTLS. With
// require_tls (every environment but development, ASVS 9.2.2) a relay that
// does not offer STARTTLS is refused before any mail is sent; without it
// the mail goes in clear to such a relay (a sink on loopback). The relay's
// certificate is verified against the system's CAs or ca_file. Credentials,
// if any, come from the URL's user-info (smtp://user:password@host:587) and
// are never logged.
#ifndef SILO_MAIL_SMTP_H_
#define SILO_MAIL_SMTP_H_

#include <string>

#include "base/status.h"

namespace silo::mail {

struct Message {
  std::string from;
  std::string to;
  std::string subject;
  std::string body;  // lines ending in \r\n
};

struct Relay {
  std::string url;  // smtp:// or smtps://; secret when it carries credentials
  bool require_tls = true;
  std::string ca_file;  // empty: the system's CAs
};

// Unavailable with libcurl's reason on any failure (the caller retries).
Status Send(const Relay& relay, const Message& message);

}  // namespace silo::mail

#endif  // SILO_MAIL_SMTP_H_
