// `silo keys rotate-master` (issue 22): the steps and their order, so that an
// interruption anywhere leaves a state a rerun finishes and the server never
// runs on a half-rotated keyring:
//   1. the data directory's lock (the server must be stopped);
//   2. the keyring's header names the rotation (Open refuses it from here),
//      and each tenant key file is re-wrapped (crypto::Keyring::RotateKeys);
//   3. each backup manifest in the target is re-wrapped
//      (backup::RewrapManifests), so the new key alone restores every backup;
//   4. the header names the new key alone (FinishRotation): the old key is
//      refused from now on;
//   5. in development, dev/master.key becomes the new key.
#include <cstdio>

#include "app/app.h"
#include "app/data_dir_lock.h"
#include "app/dev_secrets.h"
#include "backup/rewrap.h"
#include "backup/target.h"
#include "base/data_layout.h"
#include "base/file_util.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"

namespace silo::app {
namespace {

int Fail(const std::string& what, const Status& why) {
  std::fprintf(stderr, "silo: %s: %s\n", what.c_str(), why.message().c_str());
  return 1;
}

}  // namespace

int RotateMasterKey(const config::GetEnv& getenv) {
  config::LoadResult loaded = config::Load(getenv);
  if (!loaded.problems.empty()) {
    std::fprintf(stderr,
                 "silo: refused: the configuration has problems (run with the server's "
                 "environment):\n");
    for (const auto& p : loaded.problems) std::fprintf(stderr, "  - %s\n", p.c_str());
    return 1;
  }
  config::Config& c = loaded.config;
  if (!c.new_master_key) {
    std::fprintf(stderr,
                 "silo: refused: set SILO_NEW_MASTER_KEY or SILO_NEW_MASTER_KEY_FILE "
                 "(base64 of 32 random bytes)\n");
    return 1;
  }
  auto lock = DataDirLock::Acquire(c.data_dir);
  if (!lock.ok()) return Fail("refused (stop silo serve first)", lock.status());
  // In development the current key may come from dev/master.key.
  const bool dev_key = c.env == config::Environment::kDevelopment && !c.master_key;
  if (c.env == config::Environment::kDevelopment) {
    if (Status s = EnsureDevSecrets(c); !s.ok()) return Fail("refused", s);
  }
  const crypto::SecretKey& old_master = *c.master_key;
  const crypto::SecretKey& new_master = *c.new_master_key;
  const std::string keyring = layout::KeyringFile(c.data_dir);

  auto keys = crypto::Keyring::RotateKeys(keyring, old_master, new_master);
  if (!keys.ok()) return Fail("tenant keys not rotated", keys.status());
  auto target = BackupTargetOf(c);
  if (!target.ok())
    return Fail("backups not rewrapped (rerun when the target works)", target.status());
  auto backups = backup::RewrapManifests(**target, old_master, new_master);
  if (!backups.ok()) {
    return Fail("backups not all rewrapped (rerun with the same two keys to finish)",
                backups.status());
  }
  if (Status s = crypto::Keyring::FinishRotation(keyring, new_master); !s.ok()) {
    return Fail("rotation not finished (rerun with the same two keys)", s);
  }
  if (dev_key) {
    std::string text = crypto::Base64Encode(
        std::string_view(reinterpret_cast<const char*>(new_master.data()), new_master.size()));
    Status s = WriteFileAtomic(layout::DevDir(c.data_dir) + "/master.key", text + "\n", 0600);
    crypto::WipeString(text);
    if (!s.ok()) return Fail("dev/master.key not replaced (rerun to write it)", s);
  }
  std::printf(
      "master key rotated to %s: %lld tenant keys re-wrapped, %lld backups re-wrapped "
      "(%lld tenant backup keys, %lld format 1 manifests; %lld were already); the old key (%s) "
      "opens nothing here any more%s\n",
      crypto::KeyFingerprint(new_master).c_str(), static_cast<long long>(*keys),
      static_cast<long long>(backups->tenant_keys + backups->rewrapped),
      static_cast<long long>(backups->tenant_keys), static_cast<long long>(backups->rewrapped),
      static_cast<long long>(backups->already), crypto::KeyFingerprint(old_master).c_str(),
      dev_key ? " (dev/master.key holds the new key)"
              : "; start silo serve with SILO_MASTER_KEY set to the new key");
  return 0;
}

}  // namespace silo::app
