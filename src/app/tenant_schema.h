// The schema of a tenant database: the records module's migrations (1-3),
// then auth's API tokens (4-5), identity (6) and the files catalog (7-9).
// One list, so the server and the tools that open tenant databases on their
// own (tests, benchmarks, fuzz targets) migrate them alike.
#ifndef SILO_APP_TENANT_SCHEMA_H_
#define SILO_APP_TENANT_SCHEMA_H_

#include <span>

#include "storage/migrator.h"

namespace silo::app {

// Lives for the whole program.
std::span<const storage::Migration> TenantSchema();

}  // namespace silo::app

#endif  // SILO_APP_TENANT_SCHEMA_H_
