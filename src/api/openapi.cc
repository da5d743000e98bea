#include "api/openapi.h"

#include <algorithm>
#include <boost/algorithm/string/case_conv.hpp>
#include <boost/json.hpp>
#include <set>
#include <utility>

#include "api/tenant_access.h"
#include "http/message.h"
#include "records/schema.h"

namespace silo::api {
namespace {

namespace json = boost::json;

// src/api/openapi/components.json, embedded at configure time (CMakeLists).
constexpr std::string_view kComponents =
#include "api/openapi_components.inc"
    ;

std::string Key(std::string_view method, std::string_view pattern) {
  return std::string(method) + " " + std::string(pattern);
}

const json::object& Components() {
  static const json::object parsed = json::parse(kComponents).as_object();
  return parsed;
}

json::value Ref(std::string_view schema) {
  return json::object{{"$ref", "#/components/schemas/" + std::string(schema)}};
}

bool IsJson(std::string_view media) {
  return media == "application/json" || media == "application/problem+json";
}

// The schema of a body that is not JSON.
json::value BytesSchema(std::string_view media) {
  if (media == "*/*") return json::object{};
  return json::object{{"type", "string"}, {"contentMediaType", media}};
}

json::object Problems() {
  json::object problem{{"content", json::object{{"application/problem+json",
                                                 json::object{{"schema", Ref("Problem")}}}}}};
  json::object client = problem, server = problem;
  client["description"] = "Refused: the problem says why.";
  server["description"] = "Failed or unavailable; the request id finds the log lines.";
  return {{"4XX", std::move(client)}, {"5XX", std::move(server)}};
}

bool Unsafe(std::string_view method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

json::array Security(const Route& r) {
  const bool unsafe = Unsafe(r.method);
  auto session = [&] {
    json::object s{{"session", json::array{}}};
    if (unsafe) s["csrf"] = json::array{};
    return s;
  };
  switch (r.access.kind) {
    case Access::Kind::kPublic: return {};
    case Access::Kind::kOperator: return {json::object{{"operator", json::array{}}}};
    case Access::Kind::kSession: return {session()};
    case Access::Kind::kPermission:
    case Access::Kind::kAuthenticated: return {session(), json::object{{"bearer", json::array{}}}};
    case Access::Kind::kUnset: break;
  }
  return {};
}

json::object Parameter(std::string_view name, std::string_view in, bool required,
                       json::value schema, std::string_view description) {
  json::object p{{"name", name}, {"in", in}, {"required", required}, {"schema", std::move(schema)}};
  if (!description.empty()) p["description"] = description;
  return p;
}

json::object Operation(const Route& r, const RouteDoc& d, bool tenant_route) {
  json::object op;
  op["operationId"] = d.operation_id;
  op["summary"] = d.summary;
  op["tags"] = json::array{json::string(d.tag)};
  op["security"] = Security(r);
  op["x-silo-access"] = r.access.ToString();
  if (r.rate != nullptr) op["x-silo-rate-limit"] = r.rate->name;
  if (r.body_limit > 0) op["x-silo-body-limit"] = static_cast<int64_t>(r.body_limit);

  json::array params;
  std::set<std::string, std::less<>> seen;
  for (auto seg : http::SplitPath(r.pattern)) {
    if (seg.size() < 3 || seg.front() != '{' || seg.back() != '}') continue;
    std::string name(seg.substr(1, seg.size() - 2));
    seen.insert(name);
    params.push_back(Parameter(name, "path", true, json::object{{"type", "string"}}, ""));
  }
  for (auto q : r.query_captures) {
    seen.insert(std::string(q));
    params.push_back(Parameter(q, "query", true, json::object{{"type", "string"}}, ""));
  }
  for (const ParamDoc& q : d.query) {
    if (seen.contains(q.name)) continue;
    params.push_back(Parameter(q.name, "query", false, json::parse(q.schema), q.description));
  }
  for (auto h : d.headers) {
    params.push_back(Parameter(h, "header", false, json::object{{"type", "string"}}, ""));
  }
  if (!params.empty()) op["parameters"] = std::move(params);

  // A body: a named schema ("Name?" when it may be left out), or the bytes
  // of a streamed route.
  std::string_view schema = d.request;
  const bool optional = !schema.empty() && schema.back() == '?';
  if (optional) schema.remove_suffix(1);
  if (!schema.empty() || (r.streamed && !IsJson(d.request_media))) {
    json::value s = schema.empty() ? BytesSchema(d.request_media) : Ref(schema);
    op["requestBody"] = json::object{
        {"required", !optional},
        {"content", json::object{{d.request_media, json::object{{"schema", std::move(s)}}}}}};
  }

  json::object responses;
  for (const ResponseDoc& a : d.responses) {
    json::object resp{{"description", a.description.empty()
                                          ? std::string(http::StatusText(a.status))
                                          : std::string(a.description)}};
    if (!a.schema.empty()) {
      resp["content"] = json::object{{a.media, json::object{{"schema", Ref(a.schema)}}}};
    } else if (!IsJson(a.media)) {
      resp["content"] = json::object{{a.media, json::object{{"schema", BytesSchema(a.media)}}}};
    }
    responses[std::to_string(a.status)] = std::move(resp);
  }
  if (tenant_route) {
    // A cluster node that does not lead the tenant (docs/architecture.md
    // "Replication").
    responses["307"] = json::object{
        {"description",
         "The tenant is led by another node of the cluster: send the same request there."},
        {"headers",
         json::object{{"Location", json::object{{"description", "The same request's URL there."},
                                                {"schema", json::object{{"type", "string"},
                                                                        {"format", "uri"}}}}}}}};
  }
  for (auto& [k, v] : Problems()) responses[k] = v;
  op["responses"] = std::move(responses);
  return op;
}

const RouteDoc* Find(const std::vector<RouteDoc>& docs, const Route& r) {
  for (const RouteDoc& d : docs) {
    if (d.method == r.method && d.pattern == r.pattern) return &d;
  }
  return nullptr;
}

// Adds every route of `router` to `paths`, with `servers` on each path item
// when given (platform routes live outside the tenant's prefix).
void AddRoutes(json::object* paths, const Router& router, const std::vector<RouteDoc>& docs,
               const json::array* servers, bool tenant_routes) {
  for (const Route& r : router.routes()) {
    const RouteDoc* d = Find(docs, r);
    if (d == nullptr) continue;  // DocumentationDefects reports it
    json::value& v = (*paths)[r.pattern];
    if (!v.is_object()) v.emplace_object();
    json::object& item = v.as_object();
    if (item.empty() && servers != nullptr) item["servers"] = *servers;
    item[boost::algorithm::to_lower_copy(r.method)] = Operation(r, *d, tenant_routes);
  }
}

json::object Document(std::string_view title, std::string_view description, json::array servers,
                      json::object paths, json::object security_schemes) {
  // Only the schemas the document names (the operator's and the tenant's
  // share one file).
  const std::string text = json::serialize(paths);
  json::object schemas;
  std::vector<std::string> todo;
  auto want = [&](const std::string& body) {
    static constexpr std::string_view kPrefix = "#/components/schemas/";
    for (size_t at = body.find(kPrefix); at != std::string::npos; at = body.find(kPrefix, at + 1)) {
      size_t start = at + kPrefix.size();
      size_t end = body.find('"', start);
      std::string name = body.substr(start, end - start);
      if (!schemas.contains(name) && std::find(todo.begin(), todo.end(), name) == todo.end()) {
        todo.push_back(std::move(name));
      }
    }
  };
  want(text);
  while (!todo.empty()) {
    std::string name = std::move(todo.back());
    todo.pop_back();
    if (schemas.contains(name)) continue;
    const json::value* s = Components().if_contains(name);
    if (s == nullptr) continue;  // DocumentationDefects reports it
    schemas[name] = *s;
    want(json::serialize(*s));
  }
  return {{"openapi", "3.1.0"},
          {"info", json::object{{"title", title},
                                {"version", "1"},
                                {"description", description},
                                {"license", json::object{{"name", "Proprietary"},
                                                         {"identifier", "LicenseRef-Silo"}}}}},
          {"servers", std::move(servers)},
          {"paths", std::move(paths)},
          {"components", json::object{{"schemas", std::move(schemas)},
                                      {"securitySchemes", std::move(security_schemes)}}}};
}

// A field's value as JSON Schema (null: not set, unless required).
json::object FieldSchema(const records::FieldDef& f) {
  using records::FieldType;
  json::object s;
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kText: s["type"] = "string"; break;
    case FieldType::kInteger: s["type"] = "integer"; break;
    case FieldType::kNumber: s["type"] = "number"; break;
    case FieldType::kBoolean: s["type"] = "boolean"; break;
    case FieldType::kDateTime: s = {{"type", "string"}, {"format", "date-time"}}; break;
    case FieldType::kEmail: s = {{"type", "string"}, {"format", "email"}}; break;
    case FieldType::kEnum: {
      json::array values;
      for (const auto& v : f.values) values.emplace_back(v);
      s = {{"type", "string"}, {"enum", std::move(values)}};
      break;
    }
    case FieldType::kJson: break;  // any JSON value
    case FieldType::kFile:
      s = f.max_files > 1 ? json::object{{"type", "array"},
                                         {"items", json::object{{"type", "string"}}},
                                         {"maxItems", static_cast<int64_t>(f.max_files)}}
                          : json::object{{"type", "string"}};
      s["description"] = "File id(s) from POST /api/files.";
      break;
    case FieldType::kRelation:
      s = f.multiple ? json::object{{"type", "array"}, {"items", json::object{{"type", "string"}}}}
                     : json::object{{"type", "string"}};
      s["description"] = "Record id(s) of " + f.collection + ".";
      break;
  }
  if (!f.required && s.contains("type")) {
    json::string t = s["type"].as_string();
    s["type"] = json::array{t, "null"};
  }
  return s;
}

}  // namespace

std::vector<std::string> DocumentationDefects(const std::vector<const Router*>& routers,
                                              const std::vector<RouteDoc>& docs) {
  std::vector<std::string> out;
  std::set<std::string> routes;
  for (const Router* router : routers) {
    for (const Route& r : router->routes()) {
      routes.insert(Key(r.method, r.pattern));
      if (Find(docs, r) == nullptr) out.push_back(Key(r.method, r.pattern) + ": no description");
    }
  }
  std::set<std::string_view> ids;
  for (const RouteDoc& d : docs) {
    const std::string key = Key(d.method, d.pattern);
    if (!routes.contains(key)) out.push_back(key + ": described but not routed");
    if (!ids.insert(d.operation_id).second) {
      out.push_back(key + ": operation id " + std::string(d.operation_id) + " used twice");
    }
    std::string_view schema = d.request;
    if (!schema.empty() && schema.back() == '?') schema.remove_suffix(1);
    std::vector<std::string_view> names{schema};
    for (const ResponseDoc& a : d.responses) names.push_back(a.schema);
    for (auto n : names) {
      if (!n.empty() && !Components().contains(n)) {
        out.push_back(key + ": no schema named " + std::string(n));
      }
    }
    for (const ParamDoc& q : d.query) {
      boost::system::error_code ec;
      json::value v = json::parse(q.schema, ec);
      if (ec || !v.is_object()) out.push_back(key + ": the schema of " + std::string(q.name));
    }
  }
  return out;
}

json::object PublicOpenApi(const Router& platform, const Router& tenant,
                           std::string_view tenant_prefix) {
  json::object paths;
  json::array root{json::object{{"url", "/"}, {"description", "The listener's root."}}};
  AddRoutes(&paths, tenant, PublicRouteDocs(), nullptr, true);
  AddRoutes(&paths, platform, PublicRouteDocs(), &root, false);
  json::object server{{"url", tenant_prefix},
                      {"description", "A tenant: /t/<slug>, or the root of <slug>.<base domain>."}};
  if (tenant_prefix.find("{tenant}") != std::string_view::npos) {
    server["variables"] =
        json::object{{"tenant", json::object{{"default", "acme"}, {"description", "Its slug."}}}};
  }
  json::object schemes{
      {"session",
       json::object{{"type", "apiKey"},
                    {"in", "cookie"},
                    {"name", std::string(kSessionCookiePrefix) + "{tenant}"},
                    {"description",
                     "The session of a signed-in user (POST /api/auth/login): the cookie "
                     "__Host-silo_session_<slug> of the tenant."}}},
      {"csrf", json::object{{"type", "apiKey"},
                            {"in", "header"},
                            {"name", "X-CSRF-Token"},
                            {"description",
                             "With the session cookie, on every unsafe request: the session's "
                             "csrf_token (sign-in, or GET /api/auth/me)."}}},
      {"bearer", json::object{{"type", "http"},
                              {"scheme", "bearer"},
                              {"description", "An API token (POST /api/tokens)."}}}};
  return Document("Silo tenant API",
                  "A tenant's API: sign-in, users and roles, collections and records with "
                  "history, files, realtime channels, and the audit log.",
                  json::array{std::move(server)}, std::move(paths), std::move(schemes));
}

json::object OperatorOpenApi(const Router& operator_routes) {
  json::object paths;
  AddRoutes(&paths, operator_routes, OperatorRouteDocs(), nullptr, false);
  json::object schemes{{"operator", json::object{{"type", "http"},
                                                 {"scheme", "bearer"},
                                                 {"description", "SILO_OPERATOR_TOKEN."}}}};
  return Document(
      "Silo operator API",
      "The operator listener (loopback): tenants, backups and integrity checks. It "
      "holds no way to read a tenant's data.",
      json::array{json::object{{"url", "/"}, {"description", "The operator listener."}}},
      std::move(paths), std::move(schemes));
}

void AddCollection(json::object* doc, const records::CollectionSchema& schema,
                   const CollectionOperations& ops) {
  if (!ops.read && !ops.create && !ops.update && !ops.remove) return;
  const std::string& name = schema.name;
  json::object& schemas = (*doc)["components"].as_object()["schemas"].as_object();
  // The record as answered: the metadata, and the fields the caller may read
  // (a grant may withhold some, so none is required).
  json::object props = Components().at("Record").at("properties").as_object();
  json::object input_props;
  json::array input_required;
  for (const auto& f : schema.fields) {
    props[f.name] = FieldSchema(f);
    input_props[f.name] = FieldSchema(f);
    if (f.required) input_required.emplace_back(f.name);
  }
  schemas["Record_" + name] = json::object{{"type", "object"},
                                           {"required", Components().at("Record").at("required")},
                                           {"properties", std::move(props)},
                                           {"additionalProperties", false}};
  json::object input{
      {"type", "object"}, {"properties", std::move(input_props)}, {"additionalProperties", false}};
  json::object patch = input;
  if (!input_required.empty()) input["required"] = std::move(input_required);
  schemas["RecordInput_" + name] = std::move(input);
  schemas["RecordPatch_" + name] = std::move(patch);
  schemas["RecordPage_" + name] = json::object{
      {"type", "object"},
      {"required", json::array{"items", "next_cursor"}},
      {"properties",
       json::object{{"items", json::object{{"type", "array"}, {"items", Ref("Record_" + name)}}},
                    {"next_cursor", json::object{{"type", json::array{"string", "null"}}}}}}};

  // The generic operations, narrowed to this collection.
  json::object& paths = (*doc)["paths"].as_object();
  const json::object& list_item = paths.at("/api/collections/{name}/records").as_object();
  const json::object& one_item = paths.at("/api/collections/{name}/records/{id}").as_object();
  auto narrow = [&](const json::object& generic, std::string_view verb, std::string_view body,
                    std::string_view answer) {
    json::object op = generic;
    op["operationId"] = std::string(verb) + "_" + name;
    op["tags"] = json::array{json::string("collection " + name)};
    json::array params;
    if (auto* ps = op.if_contains("parameters")) {
      for (const auto& p : ps->as_array()) {
        if (p.at("name") != "name" || p.at("in") != "path") params.push_back(p);
      }
    }
    if (params.empty()) {
      op.erase("parameters");
    } else {
      op["parameters"] = std::move(params);
    }
    if (!body.empty()) {
      op["requestBody"].as_object()["content"] =
          json::object{{"application/json", json::object{{"schema", Ref(body)}}}};
    }
    for (auto& [status, resp] : op["responses"].as_object()) {
      if (status.starts_with("2") && !answer.empty()) {
        resp.as_object()["content"] =
            json::object{{"application/json", json::object{{"schema", Ref(answer)}}}};
      }
    }
    return op;
  };
  json::object list, one;
  if (ops.read)
    list["get"] = narrow(list_item.at("get").as_object(), "list", "", "RecordPage_" + name);
  if (ops.create) {
    list["post"] =
        narrow(list_item.at("post").as_object(), "create", "RecordInput_" + name, "Record_" + name);
  }
  if (ops.read) one["get"] = narrow(one_item.at("get").as_object(), "get", "", "Record_" + name);
  if (ops.update) {
    one["patch"] =
        narrow(one_item.at("patch").as_object(), "update", "RecordPatch_" + name, "Record_" + name);
  }
  if (ops.remove) one["delete"] = narrow(one_item.at("delete").as_object(), "delete", "", "");
  if (!list.empty()) paths["/api/collections/" + name + "/records"] = std::move(list);
  if (!one.empty()) paths["/api/collections/" + name + "/records/{id}"] = std::move(one);
}

}  // namespace silo::api
