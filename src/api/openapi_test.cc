// The OpenAPI documents against the route tables: every route is described
// and every description routed, each operation carries its route's access,
// and a tenant's collections become typed paths only for what the caller may
// do.
#include "api/openapi.h"

#include <gtest/gtest.h>

#include <boost/algorithm/string/case_conv.hpp>
#include <boost/json.hpp>

#include "api/routes.h"
#include "records/schema.h"

namespace silo::api {
namespace {

namespace json = boost::json;

TEST(OpenApiTest, EveryRouteIsDescribedAndEveryDescriptionRouted) {
  const auto defects = RouteDocumentationDefects();
  EXPECT_TRUE(defects.empty()) << defects.front();
}

TEST(OpenApiTest, AMissingOrStrayDescriptionIsAnError) {
  auto ok = [](Services&, RequestContext&) { return http::Json(200, "{}"); };
  Router r;
  r.Add(Get("/described", ok).Allow(Access::Public()));
  r.Add(Post("/undescribed", ok).Allow(Access::Public()));
  const std::vector<RouteDoc> docs = {
      {"GET", "/described", "a", "t", "s", {{200, "Status", "ok"}}},
      {"GET", "/stray", "a", "t", "s", {{200, "NoSuchSchema", "ok"}}},
  };
  EXPECT_EQ(
      DocumentationDefects({&r}, docs),
      (std::vector<std::string>{
          "POST /undescribed: no description", "GET /stray: described but not routed",
          "GET /stray: operation id a used twice", "GET /stray: no schema named NoSuchSchema"}));
}

// Each document has exactly its listener's routes, with the access the route
// declares: no operation without security unless the route is public.
TEST(OpenApiTest, TheDocumentsHoldEveryRouteWithItsAccess) {
  const Router platform = BuildPlatformRouter(), tenant = BuildTenantRouter();
  const Router op = BuildOperatorRouter();
  struct Case {
    json::object doc;
    std::vector<const Router*> routers;
  };
  for (const auto& [doc, routers] :
       {Case{PublicOpenApi(platform, tenant, "/t/{tenant}"), {&platform, &tenant}},
        Case{OperatorOpenApi(op), {&op}}}) {
    EXPECT_EQ(doc.at("openapi"), "3.1.0");
    const json::object& paths = doc.at("paths").as_object();
    size_t operations = 0, routes = 0;
    for (const auto& [path, item] : paths) {
      for (const auto& [method, operation] : item.as_object()) {
        if (method != "servers") ++operations;
      }
    }
    for (const Router* router : routers) {
      for (const Route& r : router->routes()) {
        ++routes;
        const json::value* item = paths.if_contains(r.pattern);
        ASSERT_NE(item, nullptr) << r.pattern;
        const json::value* o =
            item->as_object().if_contains(boost::algorithm::to_lower_copy(r.method));
        ASSERT_NE(o, nullptr) << r.method << " " << r.pattern;
        EXPECT_EQ(o->at("x-silo-access"), json::value(r.access.ToString()));
        const bool open = o->at("security").as_array().empty();
        EXPECT_EQ(open, r.access.kind == Access::Kind::kPublic) << r.method << " " << r.pattern;
        EXPECT_TRUE(o->at("responses").as_object().contains("4XX")) << r.pattern;
      }
    }
    EXPECT_EQ(operations, routes);
    // Every schema it names is in it.
    const std::string text = json::serialize(doc);
    const json::object& schemas = doc.at("components").at("schemas").as_object();
    for (size_t at = text.find("#/components/schemas/"); at != std::string::npos;
         at = text.find("#/components/schemas/", at + 1)) {
      size_t start = at + 21;
      std::string name = text.substr(start, text.find('"', start) - start);
      EXPECT_TRUE(schemas.contains(name)) << name;
    }
  }
}

records::CollectionSchema Notes() {
  auto parsed = records::ParseCollection(json::parse(R"({"name": "notes", "fields": [
      {"name": "title", "type": "string", "required": true},
      {"name": "done", "type": "boolean"},
      {"name": "level", "type": "enum", "values": ["low", "high"]}]})"));
  EXPECT_TRUE(parsed.ok());
  return *parsed;
}

TEST(OpenApiTest, ACollectionBecomesTypedPathsForWhatTheCallerMayDo) {
  json::object doc = PublicOpenApi(BuildPlatformRouter(), BuildTenantRouter(), "/t/acme");
  AddCollection(&doc, Notes(), {.read = true, .create = true});
  const json::object& paths = doc.at("paths").as_object();
  const json::object& list = paths.at("/api/collections/notes/records").as_object();
  EXPECT_TRUE(list.contains("get"));
  EXPECT_TRUE(list.contains("post"));
  EXPECT_EQ(list.at("get").at("operationId"), "list_notes");
  const json::object& one = paths.at("/api/collections/notes/records/{id}").as_object();
  EXPECT_TRUE(one.contains("get"));
  EXPECT_FALSE(one.contains("patch"));  // no update
  EXPECT_FALSE(one.contains("delete"));
  const json::object& schemas = doc.at("components").at("schemas").as_object();
  const json::value& input = schemas.at("RecordInput_notes");
  EXPECT_EQ(input.at("required"), json::parse(R"(["title"])"));
  EXPECT_EQ(input.at("additionalProperties"), json::value(false));
  EXPECT_EQ(input.at("properties").at("level").at("enum"), json::parse(R"(["low", "high"])"));
  EXPECT_EQ(input.at("properties").at("done").at("type"), json::parse(R"(["boolean", "null"])"));
  EXPECT_TRUE(schemas.at("Record_notes").at("properties").as_object().contains("created_by"));

  json::object none = PublicOpenApi(BuildPlatformRouter(), BuildTenantRouter(), "/t/acme");
  AddCollection(&none, Notes(), {});
  EXPECT_FALSE(none.at("paths").as_object().contains("/api/collections/notes/records"));
  EXPECT_FALSE(none.at("components").at("schemas").as_object().contains("Record_notes"));
}

}  // namespace
}  // namespace silo::api
