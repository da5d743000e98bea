#include "app/dev_secrets.h"

#include <tuple>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "crypto/self_signed_cert.h"

namespace silo::app {

std::string DevDir(const std::string& data_dir) { return layout::DevDir(data_dir); }

Status EnsureDevSecrets(config::Config& c) {
  const std::string dir = DevDir(c.data_dir);
  if (Status s = MakeDirs(dir, 0700); !s.ok()) return s;

  for (auto [key, file, what] :
       {std::tuple{&c.master_key, "master.key", "master key"},
        std::tuple{&c.signing_key, "signing.key", "signing key (checkpoints)"}}) {
    if (*key) continue;
    const std::string path = dir + "/" + file;
    if (!PathExists(path)) {
      crypto::SecretKey k = crypto::SecretKey::Random();
      std::string text =
          crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
      Status s = WriteFileAtomic(path, text + "\n", 0600);
      crypto::WipeString(text);
      if (!s.ok()) return s;
    }
    auto text = ReadFile(path);
    if (!text.ok()) return text.status();
    while (!text->empty() && std::isspace(static_cast<unsigned char>(text->back())))
      text->pop_back();
    auto raw = crypto::Base64Decode(*text);
    crypto::WipeString(*text);
    if (!raw.ok()) return FailedPrecondition(std::string("dev ") + what + " file is damaged");
    auto parsed = crypto::SecretKey::FromBytes(*raw);
    crypto::WipeString(*raw);
    if (!parsed.ok()) return parsed.status();
    key->emplace(std::move(*parsed));
    log::Warn(std::string("DEVELOPMENT MODE: using a generated ") + what +
                  " stored in the data directory; never run production like this",
              {{"file", path}});
  }

  if (c.operator_token.empty()) {
    const std::string path = dir + "/operator.token";
    if (!PathExists(path)) {
      if (Status s = WriteFileAtomic(path, crypto::RandomToken(32) + "\n", 0600); !s.ok()) return s;
    }
    auto text = ReadFile(path);
    if (!text.ok()) return text.status();
    while (!text->empty() && std::isspace(static_cast<unsigned char>(text->back())))
      text->pop_back();
    c.operator_token = *text;
    log::Warn("DEVELOPMENT MODE: using a generated operator token", {{"file", path}});
  }

  if (c.tls_cert_file.empty()) {
    c.tls_cert_file = dir + "/tls.crt";
    c.tls_key_file = dir + "/tls.key";
    if (!PathExists(c.tls_cert_file) || !PathExists(c.tls_key_file)) {
      auto pem = crypto::GenerateSelfSignedCert({"localhost"}, {"127.0.0.1", "::1"});
      if (!pem.ok()) return pem.status();
      if (Status s = WriteFileAtomic(c.tls_key_file, pem->key_pem, 0600); !s.ok()) return s;
      if (Status s = WriteFileAtomic(c.tls_cert_file, pem->cert_pem, 0600); !s.ok()) return s;
    }
    log::Warn("DEVELOPMENT MODE: using a self-signed TLS certificate", {{"file", c.tls_cert_file}});
  }
  return Status::Ok();
}

}  // namespace silo::app
