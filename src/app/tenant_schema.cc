#include "app/tenant_schema.h"

#include <vector>

#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "files/catalog.h"
#include "records/tenant_store.h"

namespace silo::app {

std::span<const storage::Migration> TenantSchema() {
  static const std::vector<storage::Migration>* all = [] {
    auto* v = new std::vector<storage::Migration>;
    for (const auto& m : records::TenantMigrations()) v->push_back(m);
    for (const auto& m : auth::ApiTokenMigrations()) v->push_back(m);
    for (const auto& m : auth::IdentityMigrations()) v->push_back(m);
    for (const auto& m : files::CatalogMigrations()) v->push_back(m);
    for (const auto& m : auth::SettingsMigrations()) v->push_back(m);
    for (const auto& m : auth::AccountMigrations()) v->push_back(m);
    for (const auto& m : auth::AccessRequestMigrations()) v->push_back(m);
    return v;
  }();
  return *all;
}

}  // namespace silo::app
