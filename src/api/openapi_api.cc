// GET /api/openapi.json and GET /v1/openapi.json.
#include <boost/json.hpp>
#include <set>

#include "api/handlers.h"
#include "api/json_text.h"
#include "api/openapi.h"
#include "api/routes.h"
#include "rbac/rbac.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;

const Router& PlatformRoutes() {
  static const Router r = BuildPlatformRouter();
  return r;
}
const Router& TenantRoutes() {
  static const Router r = BuildTenantRouter();
  return r;
}

// Whether the caller holds `permission`, and in `fields` the fields its
// grants limit it to (empty: every field). ctx.grants holds every permission
// of the caller, a plain one as a grant without conditions or fields.
bool Holds(const RequestContext& ctx, const std::string& permission,
           std::set<std::string>* fields) {
  bool any = false;
  bool limited = true;
  for (const rbac::Grant& g : ctx.grants) {
    if (!rbac::Grants({g.permission}, permission)) continue;
    any = true;
    if (g.fields.empty()) limited = false;
    if (fields != nullptr) fields->insert(g.fields.begin(), g.fields.end());
  }
  if (any && !limited && fields != nullptr) fields->clear();
  return any;
}

}  // namespace

// The caller's collections are typed only for the record operations it may
// use, and only with the fields it may read: the document tells nobody more
// than the collections' own routes would.
http::Response TenantOpenApi(Services& /*s*/, RequestContext& ctx) {
  std::string_view path = ctx.request.path;
  std::string prefix(path.substr(0, path.rfind("/api/openapi.json")));
  json::object doc = PublicOpenApi(PlatformRoutes(), TenantRoutes(), prefix.empty() ? "/" : prefix);
  auto list = ctx.store->ListCollections();
  if (!list.ok()) return ErrorResponse(list.status(), ctx.request);
  for (const auto& c : *list) {
    const std::string base = "records." + c.schema.name + ".";
    std::set<std::string> readable;
    CollectionOperations ops{
        Holds(ctx, base + "read", &readable), Holds(ctx, base + "create", nullptr),
        Holds(ctx, base + "update", nullptr), Holds(ctx, base + "delete", nullptr)};
    records::CollectionSchema shown = c.schema;
    if (!readable.empty()) {
      std::erase_if(shown.fields, [&](const auto& f) { return !readable.contains(f.name); });
    }
    AddCollection(&doc, shown, ops);
  }
  return http::Json(200, JsonText(doc));
}

http::Response OperatorOpenApiDocument(Services& /*s*/, RequestContext& /*ctx*/) {
  static const std::string text = JsonText(OperatorOpenApi(BuildOperatorRouter()));
  return http::Json(200, text);
}

}  // namespace silo::api
