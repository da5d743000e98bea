// The OpenAPI 3.1 documents of Silo's two listeners, generated from the route
// tables (routes.cc) and the routes' descriptions (route_docs.h), so that a
// route cannot exist without its document entry, nor an entry without its
// route. The route supplies method, path, path and query captures, who may
// call it (security and x-silo-access), body limit and rate rule; the
// description supplies the operation's id, summary, body and answers; the
// schemas are src/api/openapi/components.json. Every refusal is a Problem
// (application/problem+json) under "4XX" and "5XX".
#ifndef SILO_API_OPENAPI_H_
#define SILO_API_OPENAPI_H_

#include <boost/json/object.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/route.h"
#include "api/route_docs.h"

namespace silo::records {
struct CollectionSchema;
}

namespace silo::api {

// "METHOD pattern: why" for every route without a description, description
// without a route, and operation id used twice. `silo serve` refuses to start
// unless it is empty.
std::vector<std::string> DocumentationDefects(const std::vector<const Router*>& routers,
                                              const std::vector<RouteDoc>& docs);

// The public listener's document: the tenant routes under the server
// `tenant_prefix` ("/t/{tenant}" with a variable, or a concrete "/t/acme"
// or "" for a tenant by host) and the platform routes under "/".
boost::json::object PublicOpenApi(const Router& platform, const Router& tenant,
                                  std::string_view tenant_prefix);
// The operator listener's document.
boost::json::object OperatorOpenApi(const Router& operator_routes);

// Which record operations on one collection a caller may use.
struct CollectionOperations {
  bool read = false;
  bool create = false;
  bool update = false;
  bool remove = false;
};
// Adds a collection's concrete paths ("/api/collections/<name>/records" and
// ".../{id}", only the operations in `ops`) and its typed schemas
// ("Record_<name>", "RecordInput_<name>") to a public document.
void AddCollection(boost::json::object* doc, const records::CollectionSchema& schema,
                   const CollectionOperations& ops);

}  // namespace silo::api

#endif  // SILO_API_OPENAPI_H_
