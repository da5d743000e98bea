// What a route's caller sends and gets back, for the OpenAPI documents
// (openapi.h): one description per route of the tables in routes.cc, keyed by
// method and pattern. Everything the route table already says (access, path
// captures, query captures, body limit, rate rule) is read from the route, not
// repeated here. A route without a description, or a description without a
// route, is a defect that `silo serve` refuses and a unit test catches.
#ifndef SILO_API_ROUTE_DOCS_H_
#define SILO_API_ROUTE_DOCS_H_

#include <string_view>
#include <vector>

namespace silo::api {

// One answer. `schema` names a schema of src/api/openapi/components.json;
// empty: the answer has no body (or, with a media type other than JSON, any
// bytes of that type).
struct ResponseDoc {
  int status;
  std::string_view schema;
  std::string_view description;
  std::string_view media = "application/json";
};

// A query parameter the route reads (its query captures are added from the
// route). `schema` is a JSON Schema text.
struct ParamDoc {
  std::string_view name;
  std::string_view schema;
  std::string_view description;
};

struct RouteDoc {
  std::string_view method;
  std::string_view pattern;
  std::string_view operation_id;  // unique across both documents
  std::string_view tag;
  std::string_view summary;
  std::vector<ResponseDoc> responses;  // the successes; errors are Problems
  std::string_view request = {};       // body schema name; "" none
  std::string_view request_media = "application/json";
  std::vector<ParamDoc> query = {};
  std::vector<std::string_view> headers = {};  // request headers it reads: "If-Match"
};

// The descriptions of the public listener's routes (platform and tenant) and
// of the operator listener's.
const std::vector<RouteDoc>& PublicRouteDocs();
const std::vector<RouteDoc>& OperatorRouteDocs();

}  // namespace silo::api

#endif  // SILO_API_ROUTE_DOCS_H_
