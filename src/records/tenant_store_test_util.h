// The fixture of the tenant store's tests: two tenants' stores ("a", "b")
// over encrypted files in a temporary directory, simulated time from kT0.
#ifndef SILO_RECORDS_TENANT_STORE_TEST_UTIL_H_
#define SILO_RECORDS_TENANT_STORE_TEST_UTIL_H_

#include <boost/json.hpp>
#include <map>
#include <memory>
#include <string>

#include "base/status_matchers.h"
#include "crypto/crypto.h"
#include "records/tenant_store.h"
#include "storage/test_util.h"

namespace silo::records::testing {

inline constexpr int64_t kT0 = 1'780'000'000'000'000;  // 2026-05-28, simulated time

class TenantStoreTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    keys_["a"] = crypto::RandomBytes(crypto::SecretKey::kSize);
    keys_["b"] = crypto::RandomBytes(crypto::SecretKey::kSize);
    stores_ = NewSqliteTenantStores(
        [this](const std::string& id) { return crypto::SecretKey::FromBytes(keys_[id]); },
        [this](const std::string& id) { return Path(id + ".db"); },
        {.max_open_tenants = 4, .readers_per_tenant = 2, .synchronous_full = false});
    ASSERT_OK(stores_->Create("a"));
    ASSERT_OK(stores_->Create("b"));
    a_ = std::move(stores_->Open("a")).value();
    b_ = std::move(stores_->Open("b")).value();
  }

  events::Origin Ctx(int64_t now, std::string user = "u1") {
    return {{"user", std::move(user)}, "req-" + std::to_string(now), "127.0.0.1", now};
  }

  static CollectionSchema Schema(const std::string& text) {
    auto s = ParseCollection(boost::json::parse(text));
    EXPECT_OK(s) << s.status().ToString();
    return *s;
  }

  static CollectionSchema Tickets() {
    return Schema(R"({"name":"tickets","fields":[
        {"name":"title","type":"string","required":true},
        {"name":"score","type":"number","indexed":true},
        {"name":"state","type":"enum","values":["open","closed"]},
        {"name":"code","type":"string","unique":true}]})");
  }

  std::unique_ptr<storage::Database> RawConnection(const std::string& tenant) {
    return MustOpen(Path(tenant + ".db"), *crypto::SecretKey::FromBytes(keys_[tenant]));
  }

  std::map<std::string, std::string> keys_;
  std::unique_ptr<TenantStores> stores_;
  std::unique_ptr<TenantStore> a_, b_;
};

}  // namespace silo::records::testing

#endif  // SILO_RECORDS_TENANT_STORE_TEST_UTIL_H_
