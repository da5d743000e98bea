#include "mail/smtp.h"

#include <curl/curl.h>

#include <cstring>
#include <ctime>
#include <memory>

#include "crypto/crypto.h"

namespace silo::mail {
namespace {

struct Reader {
  std::string data;
  size_t pos = 0;
};

size_t ReadPayload(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* r = static_cast<Reader*>(userdata);
  size_t n = std::min(size * nitems, r->data.size() - r->pos);
  std::memcpy(buffer, r->data.data() + r->pos, n);
  r->pos += n;
  return n;
}

// Header values must not break lines (header injection).
bool OneLine(const std::string& s) { return s.find_first_of("\r\n") == std::string::npos; }

std::string DateHeader() {
  char buf[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

}  // namespace

Status Send(const Relay& relay, const Message& m) {
  if (!OneLine(m.from) || !OneLine(m.to) || !OneLine(m.subject)) {
    return InvalidArgument("mail header with a line break");
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Unavailable("cannot start libcurl");
  std::string domain = m.from.substr(m.from.find('@') + 1);
  Reader reader;
  reader.data = "Date: " + DateHeader() + "\r\nTo: <" + m.to + ">\r\nFrom: <" + m.from +
                ">\r\nSubject: " + m.subject + "\r\nMessage-ID: <" + crypto::RandomToken(16) + "@" +
                domain +
                ">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" +
                m.body;
  std::string from = "<" + m.from + ">";
  std::string to = "<" + m.to + ">";
  curl_slist* rcpt = curl_slist_append(nullptr, to.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> rcpt_guard(rcpt, curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, relay.url.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadPayload);
  curl_easy_setopt(c, CURLOPT_READDATA, &reader);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_USE_SSL,
                   static_cast<long>(relay.require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  if (!relay.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, relay.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_USE_SSL_FAILED) {
    return Unavailable("SMTP: the relay offers no STARTTLS and TLS is required");
  }
  if (rc != CURLE_OK) return Unavailable(std::string("SMTP: ") + curl_easy_strerror(rc));
  return Status::Ok();
}

}  // namespace silo::mail
