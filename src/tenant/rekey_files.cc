#include "tenant/rekey_files.h"

#include <unistd.h>

#include <algorithm>
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

// The tenant's files whose names end in `suffix`: the database's and
// tenant.meta's siblings when present, and every blob's under files/b/.
Result<std::vector<std::string>> Siblings(const std::string& data_dir, const std::string& tenant_id,
                                          std::string_view suffix = kRekeySuffix) {
  std::vector<std::string> out;
  const std::string db = layout::TenantDatabaseFile(data_dir, tenant_id);
  std::vector<std::string> files = {db, layout::TenantMetaFile(data_dir, tenant_id)};
  if (suffix == kOldSuffix) {  // the old database's log is set aside too
    files.push_back(db + "-wal");
    files.push_back(db + "-journal");
  }
  for (const std::string& file : files) {
    const std::string sibling = file + std::string(suffix);
    if (PathExists(sibling)) out.push_back(sibling);
  }
  const fs::path blobs = layout::TenantFilesDir(data_dir, tenant_id) + "/b";
  std::error_code ec;
  if (!fs::exists(blobs, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(blobs, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file() && name.ends_with(suffix)) out.push_back(it->path().string());
  }
  if (ec) return Internal("cannot list the tenant's files").WithCause(ec.message());
  return out;
}

std::string MarkFile(const std::string& data_dir, const std::string& tenant_id) {
  return layout::TenantDir(data_dir, tenant_id) + "/rekey.pending";
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

Result<int64_t> InstallRekeySiblings(const std::string& data_dir, const std::string& tenant_id,
                                     std::vector<std::string>* unsynced,
                                     std::vector<std::string>* kept_old) {
  SILO_ASSIGN_OR_RETURN(auto siblings, Siblings(data_dir, tenant_id));
  const std::string db = layout::TenantDatabaseFile(data_dir, tenant_id);
  const std::string tenant_dir = layout::TenantDir(data_dir, tenant_id);
  // With `kept_old`, an original is first linked aside: the rename then
  // frees no blocks (freeing a GiB takes a good part of a second), the
  // caller's unlink does, later.
  auto set_aside = [&](const std::string& original, bool move) -> Status {
    if (kept_old == nullptr) return Unlink(original);
    const std::string old = original + std::string(kOldSuffix);
    SILO_RETURN_IF_ERROR(Unlink(old));
    int rc =
        move ? std::rename(original.c_str(), old.c_str()) : ::link(original.c_str(), old.c_str());
    if (rc != 0) {
      if (errno == ENOENT) return Status::Ok();
      return Internal("cannot set a re-keyed file's original aside")
          .WithCause(original + ": " + std::strerror(errno));
    }
    kept_old->push_back(old);
    return Status::Ok();
  };
  std::set<std::string> dirs;
  int64_t installed = 0;
  for (const auto& sibling : siblings) {
    const std::string original = sibling.substr(0, sibling.size() - kRekeySuffix.size());
    if (original == db) {
      // The old file's log would be replayed into the new one (and fail
      // under its key): it goes first.
      for (const char* suffix : {"-wal", "-journal"}) {
        SILO_RETURN_IF_ERROR(set_aside(db + suffix, true));
      }
    }
    if (PathExists(original)) SILO_RETURN_IF_ERROR(set_aside(original, false));
    if (std::rename(sibling.c_str(), original.c_str()) != 0) {
      return Internal("cannot put a re-keyed file in place")
          .WithCause(sibling + ": " + std::strerror(errno));
    }
    dirs.insert(fs::path(original).parent_path().string());
    ++installed;
  }
  for (const auto& dir : dirs) {
    if (unsynced != nullptr && dir != tenant_dir) {
      unsynced->push_back(dir);
    } else {
      SILO_RETURN_IF_ERROR(SyncDir(dir));
    }
  }
  return installed;
}

Status MarkRekey(const std::string& data_dir, const std::string& tenant_id) {
  return WriteFileAtomic(MarkFile(data_dir, tenant_id), "", 0600);
}

Status UnmarkRekey(const std::string& data_dir, const std::string& tenant_id) {
  SILO_RETURN_IF_ERROR(Unlink(MarkFile(data_dir, tenant_id)));
  const std::string dir = layout::TenantDir(data_dir, tenant_id);
  return PathExists(dir) ? SyncDir(dir) : Status::Ok();
}

Result<RekeyResolution> ResolveRekey(const std::string& data_dir, crypto::Keyring& keyring,
                                     const std::string& tenant_id) {
  const std::vector<std::string> staged = keyring.StagedIds();
  if (std::find(staged.begin(), staged.end(), tenant_id) != staged.end()) {
    SILO_RETURN_IF_ERROR(RemoveRekeySiblings(data_dir, tenant_id));
    SILO_RETURN_IF_ERROR(keyring.DiscardStaged(tenant_id));
    SILO_RETURN_IF_ERROR(UnmarkRekey(data_dir, tenant_id));
    return RekeyResolution::kRolledBack;
  }
  if (!PathExists(MarkFile(data_dir, tenant_id))) return RekeyResolution::kNone;
  SILO_ASSIGN_OR_RETURN(int64_t installed, InstallRekeySiblings(data_dir, tenant_id));
  // Originals a re-key set aside and a crash kept: sealed under a key that
  // is gone.
  SILO_ASSIGN_OR_RETURN(auto old, Siblings(data_dir, tenant_id, kOldSuffix));
  for (const auto& path : old) SILO_RETURN_IF_ERROR(Unlink(path));
  SILO_RETURN_IF_ERROR(UnmarkRekey(data_dir, tenant_id));
  return installed > 0 ? RekeyResolution::kRolledForward : RekeyResolution::kNone;
}

Result<RekeyRecovery> RecoverRekeys(const std::string& data_dir, crypto::Keyring& keyring) {
  RekeyRecovery out;
  const std::vector<std::string> staged = keyring.StagedIds();
  for (const auto& id : keyring.TenantIds()) {
    if (!PathExists(MarkFile(data_dir, id)) &&
        std::find(staged.begin(), staged.end(), id) == staged.end()) {
      continue;  // no re-key of this tenant under way: its files are not read
    }
    SILO_ASSIGN_OR_RETURN(RekeyResolution r, ResolveRekey(data_dir, keyring, id));
    if (r == RekeyResolution::kRolledBack) ++out.rolled_back;
    if (r == RekeyResolution::kRolledForward) ++out.rolled_forward;
  }
  return out;
}

}  // namespace silo::tenant
