// Sends one plain-text mail through an SMTP relay with libcurl.
//
// smtps:// is TLS from the start; smtp:// upgrades with STARTTLS when the
// server offers it (and sends in clear when it does not: a relay on
// loopback, as in the tests). Credentials, if any, come from the URL's
// user-info (smtp://user:password@host:587) and are never logged.
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

// Unavailable with libcurl's reason on any failure (the caller retries).
Status Send(const std::string& smtp_url, const Message& message);

}  // namespace silo::mail

#endif  // SILO_MAIL_SMTP_H_
