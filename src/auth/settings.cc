// Tenant settings: one row per setting in tenant_settings, its value JSON.
#include <algorithm>
#include <boost/json.hpp>

#include "auth/identity.h"
#include "auth/identity_internal.h"
#include "cache/tenant_cache.h"

namespace silo::auth {
namespace json = boost::json;
using storage::Database;

namespace {

const storage::Migration kMigrations[] = {
    {10, "tenant_settings",
     "CREATE TABLE tenant_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL,"
     " updated_at_us INTEGER NOT NULL) STRICT"},
};

const cache::Namespace<TenantSettings> kSettings{"tenant settings"};

Result<TenantSettings> Load(Database& db) {
  TenantSettings out;
  auto st = db.Prepare("SELECT value FROM tenant_settings WHERE name = 'cors_origins'");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (*row) {
    SILO_ASSIGN_OR_RETURN(out.cors_origins,
                          ParsePermissionList(st->ColumnText(0), "cors_origins setting"));
  }
  return out;
}

bool Loopback(std::string_view host) { return host == "localhost" || host == "127.0.0.1"; }

}  // namespace

std::span<const storage::Migration> SettingsMigrations() { return kMigrations; }

std::string CheckCorsOrigin(std::string_view o) {
  std::string_view rest;
  bool https = false;
  if (o.starts_with("https://")) {
    rest = o.substr(8);
    https = true;
  } else if (o.starts_with("http://")) {
    rest = o.substr(7);
  } else {
    return "must start with https:// (or http:// for localhost)";
  }
  if (rest.empty() || o.size() > 253) return "must name a host";
  const size_t colon = rest.find(':');
  std::string_view host = rest.substr(0, colon);
  if (host.empty() ||
      host.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string_view::npos) {
    return "must be an origin: a lower-case host name or address, an optional port, no path";
  }
  if (colon != std::string_view::npos) {
    std::string_view port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos || port[0] == '0' ||
        std::stoi(std::string(port)) > 65535) {
      return "has a port that is not 1 to 65535";
    }
  }
  if (!https && !Loopback(host)) return "plain http:// is allowed only for localhost";
  return "";
}

Result<TenantSettings> Identity::Settings() {
  cache::TenantCache& cache = db_->cache();
  const uint64_t generation = cache.generation();
  if (auto cached = cache.Get(kSettings, "")) return *cached;
  TenantSettings out;
  SILO_RETURN_IF_ERROR(db_->ReadShort([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(out, Load(db));
    return Status::Ok();
  }));
  size_t bytes = 64;
  for (const auto& o : out.cors_origins) bytes += o.size() + 32;
  cache.Put(kSettings, "", generation, std::make_shared<const TenantSettings>(out), bytes);
  return out;
}

Result<TenantSettings> Identity::SetCorsOrigins(const events::Origin& ctx,
                                                std::vector<std::string> origins) {
  if (origins.size() > kMaxCorsOrigins) {
    return InvalidArgument("invalid settings")
        .WithFields({{"cors_origins", "at most " + std::to_string(kMaxCorsOrigins) + " origins"}});
  }
  std::vector<FieldError> errors;
  for (size_t i = 0; i < origins.size(); ++i) {
    if (std::string why = CheckCorsOrigin(origins[i]); !why.empty()) {
      errors.push_back({"cors_origins[" + std::to_string(i) + "]", why});
    }
  }
  if (!errors.empty()) return InvalidArgument("invalid settings").WithFields(std::move(errors));
  std::sort(origins.begin(), origins.end());
  origins.erase(std::unique(origins.begin(), origins.end()), origins.end());
  TenantSettings out;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(TenantSettings before, Load(db));
    SILO_RETURN_IF_ERROR(ExecBound(
        db,
        "INSERT INTO tenant_settings (name, value, updated_at_us) VALUES ('cors_origins', ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " updated_at_us = excluded.updated_at_us",
        [&](storage::Statement& st) {
          st.Bind(1, JsonText(ToArray(origins))).Bind(2, ctx.now_us);
        }));
    out = before;
    out.cors_origins = origins;
    return Audited{"settings.updated",
                   "settings",
                   "cors_origins",
                   {events::Change{"cors_origins", JsonText(ToArray(before.cors_origins)),
                                   JsonText(ToArray(origins))}}};
  }));
  return out;
}

}  // namespace silo::auth
