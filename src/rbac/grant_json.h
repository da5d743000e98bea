// A role's permission list as JSON, the form the roles API takes and
// answers and the roles table stores: a plain permission as its string, a
// conditional grant (rbac::Grant) as an object:
//   ["records.tickets.create",
//    {"permission": "records.tickets.read", "where": "assignee:eq:@me"},
//    {"permission": "records.tickets.update", "where": ["assignee:eq:@me",
//     "state:ne:closed"], "fields": ["state", "note"]}]
#ifndef SILO_RBAC_GRANT_JSON_H_
#define SILO_RBAC_GRANT_JSON_H_

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "base/status.h"
#include "rbac/rbac.h"

namespace silo::rbac {

// The plain permissions, then the grants.
boost::json::array PermissionsJson(const Role& role);

// Fills role->permissions and role->grants from `list`. InvalidArgument
// naming the entry ("permissions[<i>]") that is not a string or a valid
// grant object (CheckGrant), or when there are more than 200.
Status ParsePermissionsJson(const boost::json::value& list, Role* role);

}  // namespace silo::rbac

#endif  // SILO_RBAC_GRANT_JSON_H_
