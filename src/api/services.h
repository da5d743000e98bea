// The narrow set of services handlers may use. Not a god object: each field is
// a reference to one service, owned by app::App, which outlives every handler.
#ifndef SILO_API_SERVICES_H_
#define SILO_API_SERVICES_H_

#include <atomic>
#include <string>

namespace silo::http {
class Metrics;
}
namespace silo::tenant {
class TenantRegistry;
}
namespace silo::platform {
class SecurityLog;
}
namespace silo::records {
class TenantStores;
}

namespace silo::api {

struct Services {
  tenant::TenantRegistry* tenants = nullptr;
  records::TenantStores* stores = nullptr;  // each tenant's encrypted database
  platform::SecurityLog* security_log = nullptr;
  http::Metrics* metrics = nullptr;
  const std::atomic<bool>* ready = nullptr;  // false until started, and while draining
};

}  // namespace silo::api

#endif  // SILO_API_SERVICES_H_
