// CORS for API-token clients: a page on an origin the tenant's admins listed
// (PATCH /api/settings {"cors_origins": [...]}) may call the tenant API with
// an API token. Preflights are answered from the route table (the methods
// that exist on the path, the request headers Silo reads); an answer to a
// listed origin names it in Access-Control-Allow-Origin. Credentials are
// never allowed: no Access-Control-Allow-Credentials, and a session cookie
// that comes with a foreign Origin is refused (CheckCsrf, tenant_access.h).
#ifndef SILO_API_CORS_H_
#define SILO_API_CORS_H_

#include <string>
#include <string_view>

#include "api/route.h"
#include "http/message.h"

namespace silo::api {

// A CORS preflight: OPTIONS with Access-Control-Request-Method.
bool IsPreflight(const http::Request& request);

// The answer to a preflight from `origin` for the path `tenant_path` (relative
// to the tenant): 204 with the CORS headers when the origin is listed, the
// requested method has a route there and every requested header is one Silo
// reads; otherwise 403 without them (the browser then refuses the call).
http::Response Preflight(const http::Request& request, const Router& tenant_routes,
                         std::string_view tenant_path, const std::string& origin, bool listed);

// Adds the CORS headers of an actual answer: Vary: Origin always (the answer
// depends on it), and for a listed origin Access-Control-Allow-Origin and the
// response headers a client may read.
void AddCorsHeaders(http::Response* response, const std::string& origin, bool listed);

}  // namespace silo::api

#endif  // SILO_API_CORS_H_
