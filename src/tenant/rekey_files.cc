#include "tenant/rekey_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "base/data_layout.h"
#include "base/file_util.h"

namespace silo::tenant {
namespace {

namespace fs = std::filesystem;

// The tenant's siblings: the database's and tenant.meta's when present, and
// every blob's under files/b/.
Result<std::vector<std::string>> Siblings(const std::string& data_dir,
                                          const std::string& tenant_id) {
  std::vector<std::string> out;
  for (const std::string& file : {layout::TenantDatabaseFile(data_dir, tenant_id),
                                  layout::TenantMetaFile(data_dir, tenant_id)}) {
    const std::string sibling = file + std::string(kRekeySuffix);
    if (PathExists(sibling)) out.push_back(sibling);
  }
  const fs::path blobs = layout::TenantFilesDir(data_dir, tenant_id) + "/b";
  std::error_code ec;
  if (!fs::exists(blobs, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(blobs, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file() && name.ends_with(kRekeySuffix)) out.push_back(it->path().string());
  }
  if (ec) return Internal("cannot list the tenant's files").WithCause(ec.message());
  return out;
}

Status Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove a re-key file").WithCause(path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Status RemoveRekeySiblings(const std::string& data_dir, const std::string& tenant_id) {
  SILO_ASSIGN_OR_RETURN(auto siblings, Siblings(data_dir, tenant_id));
  const std::string db =
      layout::TenantDatabaseFile(data_dir, tenant_id) + std::string(kRekeySuffix);
  for (const char* suffix : {"-wal", "-journal"}) SILO_RETURN_IF_ERROR(Unlink(db + suffix));
  std::set<std::string> dirs;
  for (const auto& path : siblings) {
    SILO_RETURN_IF_ERROR(Unlink(path));
    dirs.insert(fs::path(path).parent_path().string());
  }
  for (const auto& dir : dirs) SILO_RETURN_IF_ERROR(SyncDir(dir));
  return Status::Ok();
}

Result<int64_t> InstallRekeySiblings(const std::string& data_dir, const std::string& tenant_id) {
  SILO_ASSIGN_OR_RETURN(auto siblings, Siblings(data_dir, tenant_id));
  const std::string db = layout::TenantDatabaseFile(data_dir, tenant_id);
  std::set<std::string> dirs;
  int64_t installed = 0;
  for (const auto& sibling : siblings) {
    const std::string original = sibling.substr(0, sibling.size() - kRekeySuffix.size());
    if (original == db) {
      // The old file's log would be replayed into the new one (and fail
      // under its key): it goes first.
      for (const char* suffix : {"-wal", "-journal"}) SILO_RETURN_IF_ERROR(Unlink(db + suffix));
    }
    if (std::rename(sibling.c_str(), original.c_str()) != 0) {
      return Internal("cannot put a re-keyed file in place")
          .WithCause(sibling + ": " + std::strerror(errno));
    }
    dirs.insert(fs::path(original).parent_path().string());
    ++installed;
  }
  for (const auto& dir : dirs) SILO_RETURN_IF_ERROR(SyncDir(dir));
  return installed;
}

Result<RekeyRecovery> RecoverRekeys(const std::string& data_dir, crypto::Keyring& keyring) {
  RekeyRecovery out;
  for (const auto& id : keyring.StagedIds()) {
    SILO_RETURN_IF_ERROR(RemoveRekeySiblings(data_dir, id));
    SILO_RETURN_IF_ERROR(keyring.DiscardStaged(id));
    ++out.rolled_back;
  }
  for (const auto& id : keyring.TenantIds()) {
    if (!PathExists(layout::TenantDir(data_dir, id))) continue;
    SILO_ASSIGN_OR_RETURN(int64_t installed, InstallRekeySiblings(data_dir, id));
    if (installed > 0) ++out.rolled_forward;
  }
  return out;
}

}  // namespace silo::tenant
