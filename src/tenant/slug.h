// Tenant slugs: the name a tenant is reached by (`<slug>.<base domain>` or
// `/t/<slug>/`). A slug is a lowercase DNS label of 3 to 63 characters
// ([a-z0-9-], no leading or trailing hyphen, no "xn--" punycode prefix) and not
// a reserved name (names that would impersonate the platform: www, api, admin...).
#ifndef SILO_TENANT_SLUG_H_
#define SILO_TENANT_SLUG_H_

#include <string_view>

#include "base/status.h"

namespace silo::tenant {

// Ok, or InvalidArgument with a message fit to show the operator.
Status ValidateSlug(std::string_view slug);
bool IsReservedSlug(std::string_view slug);

}  // namespace silo::tenant

#endif  // SILO_TENANT_SLUG_H_
