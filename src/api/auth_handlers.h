// Handlers for identity, access and abuse protection (auth_api.cc,
// access_api.cc, public_api.cc). Tenant handlers get ctx.store and
// ctx.identity bound to the request's tenant; kSession routes also
// ctx.session.
#ifndef SILO_API_AUTH_HANDLERS_H_
#define SILO_API_AUTH_HANDLERS_H_

#include <boost/json/object.hpp>
#include <optional>

#include "api/context.h"
#include "api/services.h"

namespace silo::auth {
struct User;
}

namespace silo::api {

boost::json::object UserJson(const auth::User& user);

// Step-up (ASVS 4.3.3): nullopt when the caller proved their identity in
// this session within SILO_STEP_UP_MINUTES (at sign-in or with POST
// /api/auth/step-up), else the 401 problem with "step_up_required": true. A
// bearer token's caller has no session to step up; its own permissions and
// expiry bound it (docs/threat_model.md).
std::optional<http::Response> NeedsStepUp(const Services& s, const RequestContext& ctx);

// auth_api.cc
http::Response AuthSetup(Services& s, RequestContext& ctx);
http::Response AuthLogin(Services& s, RequestContext& ctx);
http::Response AuthMfa(Services& s, RequestContext& ctx);
http::Response AuthLogout(Services& s, RequestContext& ctx);
http::Response AuthMe(Services& s, RequestContext& ctx);
http::Response AuthChangePassword(Services& s, RequestContext& ctx);
http::Response AuthListSessions(Services& s, RequestContext& ctx);
http::Response AuthRevokeOtherSessions(Services& s, RequestContext& ctx);
http::Response AuthRevokeSession(Services& s, RequestContext& ctx);
http::Response AuthStepUp(Services& s, RequestContext& ctx);
http::Response TotpEnroll(Services& s, RequestContext& ctx);
http::Response TotpConfirm(Services& s, RequestContext& ctx);
http::Response TotpDisable(Services& s, RequestContext& ctx);
http::Response PasswordReset(Services& s, RequestContext& ctx);
http::Response PasswordResetConfirm(Services& s, RequestContext& ctx);

// access_api.cc
http::Response ListPermissions(Services& s, RequestContext& ctx);
http::Response ListRoles(Services& s, RequestContext& ctx);
http::Response CreateRole(Services& s, RequestContext& ctx);
http::Response GetRole(Services& s, RequestContext& ctx);
http::Response UpdateRole(Services& s, RequestContext& ctx);
http::Response DeleteRole(Services& s, RequestContext& ctx);
http::Response ListUsers(Services& s, RequestContext& ctx);
http::Response InviteUser(Services& s, RequestContext& ctx);
http::Response GetUser(Services& s, RequestContext& ctx);
http::Response UpdateUser(Services& s, RequestContext& ctx);
http::Response SetUserRoles(Services& s, RequestContext& ctx);
http::Response RevokeUserSessions(Services& s, RequestContext& ctx);
http::Response GetSettings(Services& s, RequestContext& ctx);
http::Response UpdateSettings(Services& s, RequestContext& ctx);
http::Response ListApiTokens(Services& s, RequestContext& ctx);
http::Response CreateApiToken(Services& s, RequestContext& ctx);
http::Response RevokeApiToken(Services& s, RequestContext& ctx);

// access_requests_api.cc: the tenant's side (kPermission
// access_requests.manage; approve and deny also need a signed-in user and a
// TOTP code) and the operator's.
http::Response ListAccessRequests(Services& s, RequestContext& ctx);
http::Response ApproveAccessRequest(Services& s, RequestContext& ctx);
http::Response DenyAccessRequest(Services& s, RequestContext& ctx);
http::Response RevokeAccessRequest(Services& s, RequestContext& ctx);
http::Response CreateAccessRequest(Services& s, RequestContext& ctx);
http::Response ListOperatorAccessRequests(Services& s, RequestContext& ctx);
http::Response GetOperatorAccessRequest(Services& s, RequestContext& ctx);

// public_api.cc
http::Response PublicSubmit(Services& s, RequestContext& ctx);
http::Response SecurityTxt(Services& s, RequestContext& ctx);

}  // namespace silo::api

#endif  // SILO_API_AUTH_HANDLERS_H_
