#include <boost/json.hpp>

#include "api/handlers.h"
#include "api/json_text.h"

namespace silo::api {

http::Response TenantRoot(Services& /*s*/, RequestContext& ctx) {
  boost::json::object o;
  o["tenant"] = ctx.tenant->slug;
  return http::Json(200, JsonText(o));
}

}  // namespace silo::api
