// Development conveniences: when SILO_ENV=development and a secret is missing
// from the environment, generate it into <data>/dev/ (mode 0600) and warn.
// Never used in staging or production (config refuses to start there).
#ifndef SILO_APP_DEV_SECRETS_H_
#define SILO_APP_DEV_SECRETS_H_

#include "base/status.h"
#include "config/config.h"

namespace silo::app {

// Fills config.master_key, operator_token and the TLS files from <data>/dev/,
// creating whatever is missing. REQUIRES: config.env is development.
Status EnsureDevSecrets(config::Config& config);

std::string DevDir(const std::string& data_dir);

}  // namespace silo::app

#endif  // SILO_APP_DEV_SECRETS_H_
