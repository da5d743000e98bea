#include "rbac/grant_json.h"

#include <boost/json.hpp>

namespace silo::rbac {
namespace json = boost::json;
namespace {

constexpr size_t kMaxEntries = 200;

json::array Strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

// A string, or an array of strings; false otherwise.
bool StringOrStrings(const json::value& v, std::vector<std::string>* out) {
  if (v.is_string()) {
    out->emplace_back(v.as_string());
    return true;
  }
  if (!v.is_array()) return false;
  for (const auto& e : v.as_array()) {
    if (!e.is_string()) return false;
    out->emplace_back(e.as_string());
  }
  return true;
}

}  // namespace

json::array PermissionsJson(const Role& role) {
  json::array out = Strings(role.permissions);
  for (const Grant& g : role.grants) {
    json::object o{{"permission", g.permission}};
    if (!g.where.empty()) o["where"] = Strings(g.where);
    if (!g.fields.empty()) o["fields"] = Strings(g.fields);
    out.push_back(std::move(o));
  }
  return out;
}

Status ParsePermissionsJson(const json::value& list, Role* role) {
  auto bad = [](std::string field, std::string message) {
    return InvalidArgument("invalid role").WithFields({{std::move(field), std::move(message)}});
  };
  if (!list.is_array() || list.as_array().size() > kMaxEntries) {
    return bad("permissions", "must be an array of at most 200 permissions or grants");
  }
  role->permissions.clear();
  role->grants.clear();
  size_t i = 0;
  for (const json::value& e : list.as_array()) {
    std::string where = "permissions[" + std::to_string(i++) + "]";
    if (e.is_string()) {
      role->permissions.emplace_back(e.as_string());
      continue;
    }
    const json::object* o = e.if_object();
    if (o == nullptr)
      return bad(where, "must be a permission or {\"permission\", \"where\", \"fields\"}");
    Grant g;
    for (const auto& kv : *o) {
      if (kv.key() != "permission" && kv.key() != "where" && kv.key() != "fields") {
        return bad(where, "unknown member (permission, where, fields)");
      }
    }
    const json::value* p = o->if_contains("permission");
    if (p == nullptr || !p->is_string()) return bad(where, "permission must be a string");
    g.permission = p->as_string();
    if (const json::value* w = o->if_contains("where"); w && !StringOrStrings(*w, &g.where)) {
      return bad(where, "where must be a condition or an array of them");
    }
    if (const json::value* f = o->if_contains("fields"); f && !StringOrStrings(*f, &g.fields)) {
      return bad(where, "fields must be an array of field names");
    }
    if (std::string problem = CheckGrant(g); !problem.empty()) return bad(where, problem);
    role->grants.push_back(std::move(g));
  }
  return Status::Ok();
}

}  // namespace silo::rbac
