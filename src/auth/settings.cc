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
  auto st = db.Prepare("SELECT name, value FROM tenant_settings");
  if (!st.ok()) return st.status();
  while (true) {
    SILO_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return out;
    const std::string name = st->ColumnText(0);
    if (name == "cors_origins") {
      SILO_ASSIGN_OR_RETURN(out.cors_origins,
                            ParsePermissionList(st->ColumnText(1), "cors_origins setting"));
    } else if (name == "operator_access") {
      boost::system::error_code ec;
      json::value v = json::parse(st->ColumnText(1), ec);
      if (ec || !v.is_string() || !ValidOperatorAccess(v.as_string())) {
        return DataLoss("malformed operator_access setting");
      }
      out.operator_access = v.as_string();
    }
  }
}

// Writes one setting's JSON value.
Status Store(Database& db, const events::Origin& ctx, std::string_view name,
             const std::string& value_json) {
  return ExecBound(db,
                   "INSERT INTO tenant_settings (name, value, updated_at_us) VALUES (?, ?, ?)"
                   " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                   " updated_at_us = excluded.updated_at_us",
                   [&](storage::Statement& st) {
                     st.Bind(1, std::string(name)).Bind(2, value_json).Bind(3, ctx.now_us);
                   });
}

bool Loopback(std::string_view host) { return host == "localhost" || host == "127.0.0.1"; }

}  // namespace

std::span<const storage::Migration> SettingsMigrations() { return kMigrations; }

bool ValidOperatorAccess(std::string_view value) {
  return value == "approval" || value == "never" || value == "allowed";
}

std::string EffectiveOperatorAccess(const std::string& stored, bool platform_permits) {
  if (stored.empty()) return platform_permits ? "allowed" : "approval";
  if (stored == "allowed" && !platform_permits) return "approval";
  return stored;
}

std::string CheckOperatorAccess(std::string_view value, bool platform_permits) {
  if (value == "allowed" && !platform_permits) {
    return "must be approval or never (allowed is not permitted on this platform: "
           "SILO_OPERATOR_ACCESS)";
  }
  if (!ValidOperatorAccess(value)) {
    return platform_permits ? "must be approval, never or allowed" : "must be approval or never";
  }
  return "";
}

Result<std::string> LoadOperatorAccess(Database& db) {
  SILO_ASSIGN_OR_RETURN(TenantSettings settings, Load(db));
  return settings.operator_access;
}

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
    SILO_RETURN_IF_ERROR(Store(db, ctx, "cors_origins", JsonText(ToArray(origins))));
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

Result<TenantSettings> Identity::SetOperatorAccess(const events::Origin& ctx,
                                                   const std::string& value,
                                                   bool platform_permits) {
  if (std::string why = CheckOperatorAccess(value, platform_permits); !why.empty()) {
    return InvalidArgument("invalid settings").WithFields({{"operator_access", why}});
  }
  TenantSettings out;
  SILO_RETURN_IF_ERROR(AuditedWrite(ctx, [&](Database& db) -> Result<Audited> {
    SILO_ASSIGN_OR_RETURN(TenantSettings before, Load(db));
    SILO_RETURN_IF_ERROR(Store(db, ctx, "operator_access", JsonText(json::string(value))));
    out = before;
    out.operator_access = value;
    return Audited{
        "settings.updated",
        "settings",
        "operator_access",
        {events::Change{"operator_access", JsonText(json::string(before.operator_access)),
                        JsonText(json::string(value))}}};
  }));
  return out;
}

}  // namespace silo::auth
