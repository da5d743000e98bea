// Test support (dispatcher tests, the HTTP fuzz target): a Config for an App
// that is created but never started, over a fresh data directory. Everything
// a real start would read from the environment is set here: a random master
// key, the given operator token, no backup schedule, backups under the data
// directory. Nothing in it listens; TLS files are never read.
#ifndef SILO_APP_TEST_CONFIG_H_
#define SILO_APP_TEST_CONFIG_H_

#include <string>
#include <utility>

#include "base/data_layout.h"
#include "config/config.h"
#include "crypto/secret_key.h"

namespace silo::app::testing {

inline config::Config ConfigFor(const std::string& data_dir, std::string operator_token) {
  config::Config c;
  c.env = config::Environment::kDevelopment;
  c.data_dir = data_dir;
  c.master_key.emplace(crypto::SecretKey::Random());
  c.operator_token = std::move(operator_token);
  c.tls_cert_file = data_dir + "/unused.crt";  // never read: the App is not started
  c.tls_key_file = data_dir + "/unused.key";
  c.backups.target = layout::DefaultBackupDir(data_dir);
  c.backups.schedule = false;
  return c;
}

}  // namespace silo::app::testing

#endif  // SILO_APP_TEST_CONFIG_H_
