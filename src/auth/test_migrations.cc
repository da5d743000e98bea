#include "auth/test_migrations.h"

#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "files/catalog.h"
#include "records/tenant_store.h"

namespace silo::auth::testing {

std::vector<storage::Migration> AllMigrations() {
  std::vector<storage::Migration> all;
  for (const auto& m : records::TenantMigrations()) all.push_back(m);
  for (const auto& m : ApiTokenMigrations()) all.push_back(m);
  for (const auto& m : IdentityMigrations()) all.push_back(m);
  for (const auto& m : files::CatalogMigrations()) all.push_back(m);
  for (const auto& m : SettingsMigrations()) all.push_back(m);
  for (const auto& m : AccountMigrations()) all.push_back(m);
  for (const auto& m : AccessRequestMigrations()) all.push_back(m);
  return all;
}

}  // namespace silo::auth::testing
