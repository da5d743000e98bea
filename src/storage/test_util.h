// Helpers shared by the storage tests (not part of the library).
#ifndef SILO_STORAGE_TEST_UTIL_H_
#define SILO_STORAGE_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/secret_key.h"
#include "storage/database.h"
#include "storage/tenant_databases.h"

namespace silo::storage::testing {

namespace fs = std::filesystem;

inline std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void Spit(const fs::path& p, const std::string& bytes) {
  std::fstream out(p, std::ios::binary | std::ios::in | std::ios::out);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Every file under `dir` whose bytes contain `needle`.
inline std::string FilesContaining(const fs::path& dir, const std::string& needle) {
  std::string found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && Slurp(entry.path()).find(needle) != std::string::npos) {
      found += entry.path().string() + " ";
    }
  }
  return found;
}

// Builds one group commit on purpose, so its size does not depend on
// timing: an exclusive Write holds the writer while `writes.size()` threads
// queue WriteGrouped calls behind it; once all are queued it lets go, and
// the next leader takes them together (up to the group limit). Returns
// each write's status, in the order of `writes`.
inline std::vector<Status> GroupRound(TenantDatabase& db,
                                      const std::vector<std::function<Status(Database&)>>& writes) {
  std::promise<void> holding, release;
  std::shared_future<void> released = release.get_future().share();
  std::thread holder([&] {
    (void)db.Write([&](Database&) {
      holding.set_value();
      released.wait();
      return Status::Ok();
    });
  });
  holding.get_future().wait();
  std::vector<Status> out(writes.size(), Status::Ok());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < writes.size(); ++i) {
    threads.emplace_back([&, i] { out[i] = db.WriteGrouped(writes[i]); });
  }
  while (db.queued_writes() < writes.size()) std::this_thread::yield();
  release.set_value();
  holder.join();
  for (auto& t : threads) t.join();
  return out;
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/silo-storage-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::unique_ptr<Database> MustOpen(const std::string& path, const crypto::SecretKey& key,
                                     const OpenOptions& options = {}) {
    auto db = Database::Open(path, key, options);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return db.ok() ? std::move(db).value() : nullptr;
  }

  std::string dir_;
};

}  // namespace silo::storage::testing

#endif  // SILO_STORAGE_TEST_UTIL_H_
