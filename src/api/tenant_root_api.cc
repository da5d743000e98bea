#include <boost/json.hpp>

#include "api/handlers.h"

namespace silo::api {

http::Response TenantRoot(RequestContext& ctx) {
  boost::json::object o;
  o["tenant"] = ctx.tenant->slug;
  return http::Json(200, boost::json::serialize(o));
}

}  // namespace silo::api
