// Handlers for identity, access and abuse protection (auth_api.cc,
// access_api.cc, public_api.cc). Tenant handlers get ctx.store and
// ctx.identity bound to the request's tenant; kSession routes also
// ctx.session.
#ifndef SILO_API_AUTH_HANDLERS_H_
#define SILO_API_AUTH_HANDLERS_H_

#include <boost/json/object.hpp>

#include "api/context.h"
#include "api/services.h"

namespace silo::auth {
struct User;
}

namespace silo::api {

boost::json::object UserJson(const auth::User& user);
// The 403 for a session that must enrol TOTP before anything else.
http::Response EnrolFirst(const RequestContext& ctx);

// auth_api.cc
http::Response AuthSetup(Services& s, RequestContext& ctx);
http::Response AuthLogin(Services& s, RequestContext& ctx);
http::Response AuthMfa(Services& s, RequestContext& ctx);
http::Response AuthLogout(RequestContext& ctx);
http::Response AuthMe(RequestContext& ctx);
http::Response AuthChangePassword(Services& s, RequestContext& ctx);
http::Response AuthListSessions(RequestContext& ctx);
http::Response AuthRevokeSession(RequestContext& ctx);
http::Response TotpEnroll(Services& s, RequestContext& ctx);
http::Response TotpConfirm(Services& s, RequestContext& ctx);
http::Response TotpDisable(Services& s, RequestContext& ctx);
http::Response PasswordReset(Services& s, RequestContext& ctx);
http::Response PasswordResetConfirm(Services& s, RequestContext& ctx);

// access_api.cc
http::Response ListPermissions(RequestContext& ctx);
http::Response ListRoles(RequestContext& ctx);
http::Response CreateRole(RequestContext& ctx);
http::Response GetRole(RequestContext& ctx);
http::Response UpdateRole(RequestContext& ctx);
http::Response DeleteRole(RequestContext& ctx);
http::Response ListUsers(RequestContext& ctx);
http::Response InviteUser(RequestContext& ctx);
http::Response GetUser(RequestContext& ctx);
http::Response UpdateUser(RequestContext& ctx);
http::Response SetUserRoles(RequestContext& ctx);
http::Response ListApiTokens(RequestContext& ctx);
http::Response CreateApiToken(Services& s, RequestContext& ctx);
http::Response RevokeApiToken(RequestContext& ctx);

// public_api.cc
http::Response PublicSubmit(Services& s, RequestContext& ctx);
http::Response SecurityTxt(Services& s, RequestContext& ctx);

}  // namespace silo::api

#endif  // SILO_API_AUTH_HANDLERS_H_
