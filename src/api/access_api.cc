// Users, roles, the permission catalogue and API tokens under the tenant
// prefix. Nobody hands out more than they hold: roles granted or defined,
// and tokens issued, must lie within the caller's own permissions.
#include <boost/json.hpp>

#include "api/auth_handlers.h"
#include "api/handlers.h"
#include "api/json_text.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/time_util.h"
#include "rbac/grant_json.h"
#include "rbac/rbac.h"
#include "records/rules.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;

http::Response Fail(const Status& st, const RequestContext& ctx) {
  return ErrorResponse(st, ctx.request);
}

// Whether the caller holds `permission` now (withheld while the caller must
// still enrol a second factor, as rbac::Authorize decides for routes).
bool May(const RequestContext& ctx, std::string_view permission) {
  return rbac::Authorize({ctx.permissions, ctx.mfa_enrolment_pending}, permission) ==
         rbac::Decision::kAllow;
}

http::Response NoContent() {
  http::Response r;
  r.status = 204;
  return r;
}

json::array Strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

// A list of strings in member `name`; InvalidArgument naming it otherwise.
Result<std::vector<std::string>> StringList(const json::object& body, std::string_view name,
                                            bool required) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr && !required) return std::vector<std::string>();
  auto bad = [&] {
    return InvalidArgument("invalid request")
        .WithFields({{std::string(name), "must be an array of at most 200 strings"}});
  };
  if (v == nullptr || !v->is_array() || v->as_array().size() > 200) return bad();
  std::vector<std::string> out;
  for (const auto& e : v->as_array()) {
    if (!e.is_string()) return bad();
    out.emplace_back(e.as_string());
  }
  return out;
}

bool Holds(const RequestContext& ctx, std::string_view role) {
  if (ctx.session == nullptr) return false;
  const auto& r = ctx.session->user.roles;
  return std::find(r.begin(), r.end(), role) != r.end();
}

json::object RoleJson(const rbac::Role& r) {
  return {{"name", r.name},
          {"description", r.description},
          {"permissions", rbac::PermissionsJson(r)},
          {"require_mfa", rbac::RequiresMfa(r)},  // what applies, not only the flag
          {"built_in", r.built_in}};
}

Result<rbac::Role> ParseRole(const json::object& body, std::string name) {
  rbac::Role r;
  r.name = std::move(name);
  for (const auto& kv : body) {
    if (kv.key() != "name" && kv.key() != "description" && kv.key() != "permissions" &&
        kv.key() != "require_mfa") {
      return InvalidArgument("invalid role")
          .WithFields({{std::string(kv.key()), "unknown member"}});
    }
  }
  if (const json::value* d = body.if_contains("description")) {
    if (!d->is_string())
      return InvalidArgument("invalid role").WithFields({{"description", "must be a string"}});
    r.description = d->as_string();
  }
  const json::value* perms = body.if_contains("permissions");
  if (perms == nullptr) {
    return InvalidArgument("invalid role").WithFields({{"permissions", "is required"}});
  }
  SILO_RETURN_IF_ERROR(rbac::ParsePermissionsJson(*perms, &r));
  if (const json::value* m = body.if_contains("require_mfa")) {
    if (!m->is_bool())
      return InvalidArgument("invalid role").WithFields({{"require_mfa", "must be true or false"}});
    r.require_mfa = m->as_bool();
  }
  return r;
}

// Refuses to hand out permissions the caller lacks (privilege escalation):
// each grant must lie within one of the caller's, a condition narrower or
// equal, fields among its fields (rbac::Covers).
Status WithinCaller(const RequestContext& ctx, const std::vector<rbac::Grant>& grants,
                    std::string_view refusal = "you cannot hand out permissions you do not hold") {
  if (Holds(ctx, rbac::kOwnerRole)) return Status::Ok();
  for (const auto& g : grants) {
    if (!rbac::WithinGrants(ctx.grants, g)) {
      std::string what = g.permission;
      if (!g.where.empty() || !g.fields.empty()) what += " with a wider condition or more fields";
      return PermissionDenied(std::string(refusal) + " (" + what + ")");
    }
  }
  return Status::Ok();
}

// Each grant's condition and fields against the schema of its collection
// (records.* conditions: the system fields every record has). 422 naming
// the grant and the problem.
Status CheckGrantsFit(RequestContext& ctx, const rbac::Role& role) {
  size_t i = role.permissions.size();
  for (const auto& g : role.grants) {
    const std::string where = "permissions[" + std::to_string(i++) + "]";
    std::string_view p = g.permission;
    std::string_view collection = p.substr(8, p.rfind('.') - 8);
    records::CollectionSchema schema;
    schema.name = std::string(collection);
    if (collection != "*") {
      auto c = ctx.store->GetCollection(schema.name);
      if (!c.ok()) {
        return InvalidArgument("invalid role")
            .WithFields({{where, "no collection named " + schema.name}});
      }
      schema = std::move(c->schema);
    }
    auto rule = records::ParseRule(schema, g.where, g.fields, {"x", 0});
    if (!rule.ok()) {
      return InvalidArgument("invalid role").WithFields({{where, rule.status().message()}});
    }
  }
  return Status::Ok();
}

}  // namespace

http::Response ListPermissions(Services& /*s*/, RequestContext& ctx) {
  json::array collections;
  auto list = ctx.store->ListCollections();
  if (!list.ok()) return Fail(list.status(), ctx);
  json::array all = Strings(rbac::SystemPermissions());
  for (const auto& c : *list) {
    collections.emplace_back(c.schema.name);
    for (const auto& a : rbac::RecordActions())
      all.emplace_back("records." + c.schema.name + "." + a);
  }
  for (const auto& a : rbac::RecordActions()) all.emplace_back("records.*." + a);
  json::object conditions{
      {"grant",
       "{\"permission\": \"records.<collection>.<action>\", \"where\": "
       "[<condition>, ...], \"fields\": [<field>, ...]}"},
      {"condition", "<field>:<op>:<value> (the listing filter syntax); every one must hold"},
      {"operators", json::array{"eq", "ne", "lt", "lte", "gt", "gte", "in", "prefix"}},
      {"variables",
       json::object{{"@me", "the caller's user id (on created_by, updated_by: user:<id>)"},
                    {"@now", "the request's time (date-time fields)"}}},
      {"where_actions", json::array{"read", "create", "update", "delete", "history"}},
      {"fields_actions", json::array{"read", "create", "update", "history"}},
      {"combine",
       "a caller may act on a record when any of their grants for the action matches it, on the "
       "fields of the grants that match it"}};
  return http::Json(200, JsonText(json::object{{"system", Strings(rbac::SystemPermissions())},
                                               {"record_actions", Strings(rbac::RecordActions())},
                                               {"collections", std::move(collections)},
                                               {"permissions", std::move(all)},
                                               {"conditions", std::move(conditions)}}));
}

http::Response ListRoles(Services& /*s*/, RequestContext& ctx) {
  auto roles = ctx.identity->ListRoles();
  if (!roles.ok()) return Fail(roles.status(), ctx);
  json::array out;
  for (const auto& r : *roles) out.push_back(RoleJson(r));
  return http::Json(200, JsonText(json::object{{"items", std::move(out)}}));
}

http::Response CreateRole(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  const json::value* name = body->if_contains("name");
  if (name == nullptr || !name->is_string()) {
    return Fail(InvalidArgument("invalid role").WithFields({{"name", "must be a string"}}), ctx);
  }
  auto role = ParseRole(*body, std::string(name->as_string()));
  if (!role.ok()) return Fail(role.status(), ctx);
  if (Status f = CheckGrantsFit(ctx, *role); !f.ok()) return Fail(f, ctx);
  if (Status w = WithinCaller(ctx, rbac::GrantsOf({*role})); !w.ok()) return Fail(w, ctx);
  auto made = ctx.identity->CreateRole(OriginOf(ctx), *role);
  if (!made.ok()) return Fail(made.status(), ctx);
  return http::Json(201, JsonText(RoleJson(*made)));
}

http::Response GetRole(Services& /*s*/, RequestContext& ctx) {
  auto role = ctx.identity->GetRole(ctx.params.at("name"));
  if (!role.ok()) return Fail(role.status(), ctx);
  return http::Json(200, JsonText(RoleJson(*role)));
}

http::Response UpdateRole(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto current = ctx.identity->GetRole(ctx.params.at("name"));
  if (!current.ok()) return Fail(current.status(), ctx);
  json::object merged = *body;
  if (!merged.contains("permissions")) merged["permissions"] = rbac::PermissionsJson(*current);
  if (!merged.contains("description")) merged["description"] = current->description;
  if (!merged.contains("require_mfa")) merged["require_mfa"] = rbac::RequiresMfa(*current);
  merged.erase("name");
  auto role = ParseRole(merged, current->name);
  if (!role.ok()) return Fail(role.status(), ctx);
  if (Status f = CheckGrantsFit(ctx, *role); !f.ok()) return Fail(f, ctx);
  // Nobody changes a role holding a permission they lack: narrowing it takes
  // that permission from its holders, which only someone who has it may do.
  if (Status w = WithinCaller(ctx, rbac::GrantsOf({*current}),
                              "you cannot change a role that holds a permission you do not hold");
      !w.ok()) {
    return Fail(w, ctx);
  }
  if (Status w = WithinCaller(ctx, rbac::GrantsOf({*role})); !w.ok()) return Fail(w, ctx);
  auto updated = ctx.identity->UpdateRole(OriginOf(ctx), *role);
  if (!updated.ok()) return Fail(updated.status(), ctx);
  return http::Json(200, JsonText(RoleJson(*updated)));
}

http::Response DeleteRole(Services& /*s*/, RequestContext& ctx) {
  // The same rule as changing it: only someone holding all it grants.
  auto current = ctx.identity->GetRole(ctx.params.at("name"));
  if (!current.ok()) return Fail(current.status(), ctx);
  if (Status w = WithinCaller(ctx, rbac::GrantsOf({*current}),
                              "you cannot delete a role that holds a permission you do not hold");
      !w.ok()) {
    return Fail(w, ctx);
  }
  if (Status d = ctx.identity->DeleteRole(OriginOf(ctx), ctx.params.at("name")); !d.ok()) {
    return Fail(d, ctx);
  }
  return NoContent();
}

http::Response ListUsers(Services& /*s*/, RequestContext& ctx) {
  auto users = ctx.identity->ListUsers();
  if (!users.ok()) return Fail(users.status(), ctx);
  json::array out;
  for (const auto& u : *users) out.push_back(UserJson(u));
  return http::Json(200, JsonText(json::object{{"items", std::move(out)}}));
}

// Every grant of the named roles (unknown names are left to the store).
std::vector<rbac::Grant> GrantsOfRoles(RequestContext& ctx, const std::vector<std::string>& names) {
  std::vector<rbac::Role> roles;
  for (const auto& n : names) {
    auto r = ctx.identity->GetRole(n);
    if (r.ok()) roles.push_back(std::move(*r));
  }
  return rbac::GrantsOf(roles);
}

// Whether any of the roles requires MFA (owner, admin, security_admin, a
// role with an administrative permission): granting one needs a step-up.
bool AnyAdministrative(RequestContext& ctx, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    auto r = ctx.identity->GetRole(n);
    if (r.ok() && rbac::RequiresMfa(*r)) return true;
  }
  return false;
}

auth::Caller CallerOf(const RequestContext& ctx) {
  return Holds(ctx, rbac::kOwnerRole) ? auth::Caller::kOwner : auth::Caller::kNotOwner;
}

http::Response InviteUser(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  const json::value* email = body->if_contains("email");
  if (email == nullptr || !email->is_string()) {
    return Fail(InvalidArgument("invalid user").WithFields({{"email", "must be a string"}}), ctx);
  }
  auto roles = StringList(*body, "roles", false);
  if (!roles.ok()) return Fail(roles.status(), ctx);
  if (Status w = WithinCaller(ctx, GrantsOfRoles(ctx, *roles)); !w.ok()) return Fail(w, ctx);
  bool grants_owner = std::find(roles->begin(), roles->end(), rbac::kOwnerRole) != roles->end();
  if (grants_owner && !Holds(ctx, rbac::kOwnerRole)) {
    return Fail(PermissionDenied("only an owner grants the owner role"), ctx);
  }
  if (AnyAdministrative(ctx, *roles)) {
    if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  }
  auto made = ctx.identity->InviteUser(OriginOf(ctx), std::string(email->as_string()), *roles);
  if (!made.ok()) return Fail(made.status(), ctx);
  return http::Json(201, JsonText(json::object{{"user", UserJson(made->user)},
                                               {"setup_token", made->setup_token}}));
}

http::Response GetUser(Services& /*s*/, RequestContext& ctx) {
  auto u = ctx.identity->GetUser(ctx.params.at("id"));
  if (!u.ok()) return Fail(u.status(), ctx);
  return http::Json(200, JsonText(UserJson(*u)));
}

http::Response UpdateUser(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  const json::value* disabled = body->if_contains("disabled");
  if (body->size() != 1 || disabled == nullptr || !disabled->is_bool()) {
    return Fail(InvalidArgument("invalid user")
                    .WithFields({{"disabled", "must be true or false (the only member)"}}),
                ctx);
  }
  const std::string& id = ctx.params.at("id");
  auto target = ctx.identity->GetUser(id);
  if (!target.ok()) return Fail(target.status(), ctx);
  if (Status w = WithinCaller(ctx, GrantsOfRoles(ctx, target->roles)); !w.ok()) {
    return Fail(w, ctx);
  }
  Status st = ctx.identity->SetAccountState(
      OriginOf(ctx), id, disabled->as_bool() ? auth::Account::kDisabled : auth::Account::kEnabled,
      CallerOf(ctx));
  if (!st.ok()) return Fail(st, ctx);
  auto u = ctx.identity->GetUser(id);
  if (!u.ok()) return Fail(u.status(), ctx);
  return http::Json(200, JsonText(UserJson(*u)));
}

http::Response SetUserRoles(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto roles = StringList(*body, "roles", true);
  if (!roles.ok()) return Fail(roles.status(), ctx);
  const std::string& id = ctx.params.at("id");
  auto target = ctx.identity->GetUser(id);
  if (!target.ok()) return Fail(target.status(), ctx);
  // Both what is granted and what is taken away must lie within the caller.
  if (Status w = WithinCaller(ctx, GrantsOfRoles(ctx, *roles)); !w.ok()) return Fail(w, ctx);
  if (Status w = WithinCaller(ctx, GrantsOfRoles(ctx, target->roles)); !w.ok()) {
    return Fail(w, ctx);
  }
  std::vector<std::string> added;
  for (const auto& r : *roles) {
    if (std::find(target->roles.begin(), target->roles.end(), r) == target->roles.end()) {
      added.push_back(r);
    }
  }
  if (AnyAdministrative(ctx, added)) {
    if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  }
  Status st = ctx.identity->SetUserRoles(OriginOf(ctx), id, *roles, CallerOf(ctx));
  if (!st.ok()) return Fail(st, ctx);
  auto u = ctx.identity->GetUser(id);
  if (!u.ok()) return Fail(u.status(), ctx);
  return http::Json(200, JsonText(UserJson(*u)));
}

http::Response RevokeUserSessions(Services& s, RequestContext& ctx) {
  const std::string& id = ctx.params.at("id");
  auto target = ctx.identity->GetUser(id);
  if (!target.ok()) return Fail(target.status(), ctx);
  // Like disabling the account: an owner's sessions are an owner's to end.
  bool target_owner = std::find(target->roles.begin(), target->roles.end(), rbac::kOwnerRole) !=
                      target->roles.end();
  if (target_owner && !Holds(ctx, rbac::kOwnerRole)) {
    return Fail(PermissionDenied("only an owner ends an owner's sessions"), ctx);
  }
  if (auto refused = NeedsStepUp(s, ctx)) return *refused;
  Status st = ctx.identity->RevokeSessions(OriginOf(ctx), id, "");
  if (!st.ok()) return Fail(st, ctx);
  return NoContent();
}

namespace {
// operator_access as it holds (the platform's default until an owner sets
// it), and where that comes from.
json::object SettingsJson(const Services& s, const auth::TenantSettings& t) {
  return {{"cors_origins", Strings(t.cors_origins)},
          {"operator_access",
           auth::EffectiveOperatorAccess(t.operator_access, s.security->operator_access_allowed)},
          {"operator_access_source", t.operator_access.empty() ? "platform" : "tenant"}};
}
}  // namespace

http::Response GetSettings(Services& s, RequestContext& ctx) {
  auto settings = ctx.identity->Settings();
  if (!settings.ok()) return Fail(settings.status(), ctx);
  return http::Json(200, JsonText(SettingsJson(s, *settings)));
}

// Only the members given change: cors_origins, and operator_access, which
// only an owner (signed in, proven within the step-up window) sets.
http::Response UpdateSettings(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  for (const auto& kv : *body) {
    if (kv.key() != "cors_origins" && kv.key() != "operator_access") {
      return Fail(InvalidArgument("invalid settings")
                      .WithFields({{std::string(kv.key()),
                                    "is not a setting (cors_origins, operator_access)"}}),
                  ctx);
    }
  }
  const json::value* access = body->if_contains("operator_access");
  if (access != nullptr) {
    if (!Holds(ctx, rbac::kOwnerRole)) {
      return Fail(PermissionDenied("only an owner sets operator_access"), ctx);
    }
    if (auto refused = NeedsStepUp(s, ctx)) return *refused;
    // Checked before anything changes (SetOperatorAccess checks again).
    const std::string why =
        access->is_string()
            ? auth::CheckOperatorAccess(access->as_string(), s.security->operator_access_allowed)
            : "must be a string";
    if (!why.empty()) {
      return Fail(InvalidArgument("invalid settings").WithFields({{"operator_access", why}}), ctx);
    }
  }
  auto settings = ctx.identity->Settings();
  if (!settings.ok()) return Fail(settings.status(), ctx);
  if (body->contains("cors_origins")) {
    auto origins = StringList(*body, "cors_origins", true);
    if (!origins.ok()) return Fail(origins.status(), ctx);
    settings = ctx.identity->SetCorsOrigins(OriginOf(ctx), std::move(*origins));
    if (!settings.ok()) return Fail(settings.status(), ctx);
  }
  if (access != nullptr) {
    settings = ctx.identity->SetOperatorAccess(OriginOf(ctx), std::string(access->as_string()),
                                               s.security->operator_access_allowed);
    if (!settings.ok()) return Fail(settings.status(), ctx);
  }
  return http::Json(200, JsonText(SettingsJson(s, *settings)));
}

http::Response ListApiTokens(Services& /*s*/, RequestContext& ctx) {
  std::optional<std::string> owner = "user:" + ctx.session->user.id;
  if (May(ctx, "tokens.read")) owner.reset();
  auto tokens = ctx.tokens->List(owner);
  if (!tokens.ok()) return Fail(tokens.status(), ctx);
  json::array out;
  for (const auto& t : *tokens) {
    out.push_back(json::object{{"id", t.id},
                               {"name", t.name},
                               {"permissions", Strings(t.permissions)},
                               {"owner", t.owner},
                               {"created_at", FormatRfc3339Micros(t.created_at_us)},
                               {"expires_at", FormatRfc3339Micros(t.expires_at_us)}});
  }
  return http::Json(200, JsonText(json::object{{"items", std::move(out)}}));
}

http::Response CreateApiToken(Services& s, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auth::TokenSpec spec;
  spec.owner = "user:" + ctx.session->user.id;
  spec.max_days = s.security->token_max_days;
  std::vector<FieldError> errors;
  const json::value* name = body->if_contains("name");
  if (name == nullptr || !name->is_string())
    errors.push_back({"name", "must be a string"});
  else
    spec.name = name->as_string();
  auto perms = StringList(*body, "permissions", true);
  if (!perms.ok())
    errors.push_back({"permissions", "must be an array of strings"});
  else
    spec.permissions = *perms;
  const json::value* exp = body->if_contains("expires_at");
  if (exp == nullptr || !exp->is_string() || !ParseRfc3339(exp->as_string()).ok()) {
    errors.push_back({"expires_at", "must be an RFC 3339 date-time"});
  } else {
    spec.expires_at_us = *ParseRfc3339(exp->as_string());
  }
  if (!errors.empty())
    return Fail(InvalidArgument("invalid token").WithFields(std::move(errors)), ctx);
  if (!rbac::IsSubset(spec.permissions, ctx.permissions)) {
    return Fail(PermissionDenied("a token cannot hold permissions you do not hold"), ctx);
  }
  for (const auto& p : rbac::AdministrativePermissions()) {
    if (std::find(spec.permissions.begin(), spec.permissions.end(), p) != spec.permissions.end()) {
      if (auto refused = NeedsStepUp(s, ctx)) return *refused;
      break;
    }
  }
  auto issued =
      ctx.tokens->Create({ctx.actor, ctx.request.request_id, ctx.client, NowMicros()}, spec);
  if (!issued.ok()) return Fail(issued.status(), ctx);
  s.MailQueued(ctx.tenant->id);
  return http::Json(201, JsonText(json::object{{"id", issued->id}, {"token", issued->token}}));
}

http::Response RevokeApiToken(Services& /*s*/, RequestContext& ctx) {
  std::optional<std::string> owner = "user:" + ctx.session->user.id;
  if (May(ctx, "tokens.manage")) owner.reset();
  Status st = ctx.tokens->Revoke({ctx.actor, ctx.request.request_id, ctx.client, NowMicros()},
                                 ctx.params.at("id"), owner);
  if (!st.ok()) return Fail(st, ctx);
  return NoContent();
}

}  // namespace silo::api
