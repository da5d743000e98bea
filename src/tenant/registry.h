// TenantRegistry: the set of tenants, which is the set of tenant directories
// (DESIGN section 1: there is no shared database).
//
// On disk, per tenant:  <data>/tenants/<id>/tenant.meta   (mode 0600)
//   {"format":1,"id":"<32 hex>","slug":"acme","state":"active|suspended",
//    "created_at":"<RFC 3339>","sealed":"<base64>"}
// `sealed` holds {"name","owner_email"} sealed with the tenant's metadata
// sub-key (AD = "silo-tenant-meta-v1:" + id): the slug and lifecycle state are
// routing facts and stay readable; what the customer told us does not.
// The tenant's data key lives wrapped in the keyring.
//
// Thread-safe: every method takes mutex_.
#ifndef SILO_TENANT_REGISTRY_H_
#define SILO_TENANT_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/keyring.h"

namespace silo::tenant {

enum class TenantState { kActive, kSuspended };
const char* TenantStateName(TenantState s);

struct TenantInfo {
  std::string id;
  std::string slug;
  TenantState state = TenantState::kActive;
  std::string created_at;
  std::string name;         // decrypted on load
  std::string owner_email;  // decrypted on load
};

// Slugs across a cluster (issue 21): each node has its own registry, so a
// cluster node reserves a slug in etcd before it creates a tenant with it,
// and no two nodes give one slug to two tenants.
struct SlugReservations {
  // OK (also when `id` holds it already); AlreadyExists when another tenant
  // holds the slug; another status when it cannot tell (etcd down).
  std::function<Status(const std::string& slug, const std::string& id)> reserve;
  std::function<void(const std::string& slug, const std::string& id)> release;
};

class TenantRegistry {
 public:
  // Loads every tenant under <data_dir>/tenants and finishes interrupted
  // deletions. DataLoss when a tenant's metadata fails authentication.
  static Result<std::unique_ptr<TenantRegistry>> Open(const std::string& data_dir,
                                                      crypto::Keyring* keyring);

  // Set once, before the first Create (App::Create, on a cluster node).
  void SetSlugReservations(SlugReservations reservations) {
    reservations_ = std::move(reservations);
  }

  // InvalidArgument (bad slug, name or e-mail), AlreadyExists (slug taken,
  // here or, with SlugReservations, on another node).
  // A restore creates its tenant suspended and resumes it once the data is in.
  Result<TenantInfo> Create(const std::string& slug, const std::string& name,
                            const std::string& owner_email,
                            TenantState state = TenantState::kActive);
  // Adds the tenant whose directory <data>/tenants/<id> was put in place
  // whole (tenant.meta, its database), its key already in the keyring: a
  // cluster follower taking a tenant over. AlreadyExists when the slug
  // names another tenant; DataLoss when the metadata does not open.
  Result<TenantInfo> Adopt(const std::string& id);
  // Takes out a tenant that another cluster node leads now (this one was
  // deposed): its directory is moved to `kept_at` (whole, for the
  // operator), its key stays in the keyring and its slug stays reserved
  // (the tenant lives on, elsewhere). The caller holds the tenant's
  // database closed (TenantDatabases::Exclusive). NotFound if absent.
  Status Relinquish(const std::string& id, const std::string& kept_at);
  std::vector<TenantInfo> List() const;
  std::optional<TenantInfo> Find(const std::string& slug) const;
  // Only an active tenant: what request routing uses.
  std::optional<TenantInfo> FindActive(const std::string& slug) const;
  Status SetState(const std::string& slug, TenantState state);
  // The commit of a re-key (tenant/rekey_files.h): writes the tenant's
  // tenant.meta sealed under `new_dek` beside the current one, runs
  // `commit_key` (which makes `new_dek` the tenant's key in the keyring),
  // then puts it in place; under the registry's lock, so no state change
  // falls between. When `commit_key` fails the sibling is removed and the
  // tenant is as it was. NotFound for an unknown id.
  Status CommitRekey(const std::string& id, const crypto::SecretKey& new_dek,
                     const std::function<Status()>& commit_key);
  // Removes the directory and destroys the wrapped key. NotFound if absent.
  Status Delete(const std::string& slug);
  size_t size() const;

 private:
  TenantRegistry(std::string data_dir, crypto::Keyring* keyring);
  Status LoadAll();
  // Reads and opens <data>/tenants/<dirname>/tenant.meta. NotFound when
  // there is none (not a tenant directory).
  Result<TenantInfo> ReadMeta(const std::string& dirname) const;
  Result<TenantInfo> CreateReserved(const std::string& slug, const std::string& id,
                                    const std::string& name, const std::string& owner_email,
                                    TenantState state);
  // tenant.meta (or `path`) under the tenant's key (or `dek`).
  Status WriteMetaLocked(const TenantInfo& info, const crypto::SecretKey* dek = nullptr,
                         const std::string* path = nullptr) REQUIRES(mutex_);
  std::string TenantDir(const std::string& id) const;

  const std::string data_dir_;
  crypto::Keyring* const keyring_;  // not owned; outlives this
  SlugReservations reservations_;   // set before use; empty: this node alone
  mutable Mutex mutex_;
  std::map<std::string, TenantInfo> by_slug_ GUARDED_BY(mutex_);
};

}  // namespace silo::tenant

#endif  // SILO_TENANT_REGISTRY_H_
