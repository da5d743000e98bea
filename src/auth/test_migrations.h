// For auth's unit tests (test_migrations.cc, linked into auth_test only):
// the tenant schema as far as auth's tables need it (records' logs and
// projections, API tokens, identity, the files catalogue, settings,
// accounts, access requests), in order. The running server's list is
// app::TenantSchema(); auth cannot depend on app.
#ifndef SILO_AUTH_TEST_MIGRATIONS_H_
#define SILO_AUTH_TEST_MIGRATIONS_H_

#include <vector>

#include "storage/migrator.h"

namespace silo::auth::testing {

std::vector<storage::Migration> AllMigrations();

}  // namespace silo::auth::testing

#endif  // SILO_AUTH_TEST_MIGRATIONS_H_
