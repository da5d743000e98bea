#include "backup/blobs.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "crypto/crypto.h"
#include "files/blob.h"

namespace silo::backup {
namespace {

// A scratch file under a random id in `dir` (a tenant's uploads directory,
// where the files module's sweep removes what a crash leaves, or the check
// scratch directory), removed when done.
struct Scratch : RemoveOnExit {
  explicit Scratch(const std::string& dir)
      : RemoveOnExit(dir + "/" + files::NewBlobId() + ".part") {}
};

// Fetches `name` into `scratch` and checks it against the list's entry.
Status FetchChecked(Target& target, const std::string& name, const FileEntry& e,
                    const std::string& scratch) {
  std::remove(scratch.c_str());
  if (Status s = target.GetFile(name, scratch); !s.ok()) {
    if (s.code() == StatusCode::kNotFound) {
      return DataLoss("the backup's file " + e.blob_id + " is missing from the target");
    }
    return s;
  }
  SILO_ASSIGN_OR_RETURN(crypto::FileDigest d, crypto::DigestFile(scratch));
  if (d.size != e.sealed_bytes || !crypto::ConstantTimeEquals(d.sha256, e.sha256)) {
    return DataLoss("the backup's file " + e.blob_id +
                    " was altered: its SHA-256 differs from the list's");
  }
  return Status::Ok();
}

// files::CopyBlob, its failure named as the backup's file's.
Status CopyChunks(const std::string& from, const crypto::SecretKey& from_key, const std::string& id,
                  uint64_t size, const std::string* to, const crypto::SecretKey* to_key,
                  uint32_t to_epoch = 0) {
  Status s = files::CopyBlob(from, from_key, id, size, to, to_key, to_epoch);
  if (s.code() == StatusCode::kDataLoss) {
    return DataLoss("the backup's file " + id + " " + s.message());
  }
  return s;
}

// Moves `from` to the blob path of `id` (directories made; synced).
Status Install(const std::string& from, const std::string& data_dir, const std::string& tenant_id,
               const std::string& id) {
  const std::string dir = layout::TenantBlobDir(data_dir, tenant_id, id);
  if (Status s = MakeDirs(dir, 0700); !s.ok()) return s;
  if (std::rename(from.c_str(), layout::TenantBlobFile(data_dir, tenant_id, id).c_str()) != 0) {
    return Internal("cannot put a restored file in place").WithCause(from);
  }
  return SyncDir(dir);
}

}  // namespace

Result<std::vector<std::string>> StoredBlobNames(Target& target, const std::string& tenant_id) {
  return target.List(tenant_id + "/files/");
}

Result<std::vector<FileEntry>> StoreBlobs(Target& target, const std::string& data_dir,
                                          const std::string& tenant_id,
                                          const std::vector<files::KeptFile>& kept,
                                          uint32_t key_epoch) {
  SILO_ASSIGN_OR_RETURN(auto names, StoredBlobNames(target, tenant_id));
  const std::set<std::string> stored(names.begin(), names.end());
  std::vector<FileEntry> out;
  out.reserve(kept.size());
  for (const auto& k : kept) {
    const std::string path = layout::TenantBlobFile(data_dir, tenant_id, k.id);
    // The object is named by the epoch the blob was sealed under; one lost
    // from disk can only be the current key's.
    auto epoch = files::ReadKeyEpoch(path);
    if (!epoch.ok() && epoch.status().code() != StatusCode::kNotFound) return epoch.status();
    const uint32_t blob_epoch = epoch.ok() ? *epoch : key_epoch;
    const std::string name = FileBlobName(tenant_id, k.id, blob_epoch);
    auto digest = crypto::DigestFile(path);
    if (!digest.ok() && digest.status().code() == StatusCode::kNotFound && stored.count(name) > 0) {
      // Lost from disk but held by the target (an earlier backup stored it):
      // the new backup lists the target's copy, so that losing a file does
      // not stop every later backup (the one a restore in place takes first
      // among them).
      SILO_RETURN_IF_ERROR(MakeDirs(layout::TenantUploadsDir(data_dir, tenant_id), 0700));
      Scratch fetched(layout::TenantUploadsDir(data_dir, tenant_id));
      SILO_RETURN_IF_ERROR(target.GetFile(name, fetched.path()));
      digest = crypto::DigestFile(fetched.path());
    } else if (digest.ok() && stored.count(name) == 0) {
      if (Status s = target.PutFile(name, path); !s.ok()) return s;
    }
    if (!digest.ok()) {
      if (digest.status().code() == StatusCode::kNotFound) {
        return DataLoss("file " + k.id + " of the tenant has no bytes on disk or in any backup");
      }
      return digest.status();
    }
    if (static_cast<uint64_t>(digest->size) != files::SealedSize(k.size)) {
      return DataLoss("file " + k.id + " is not as long as its size says");
    }
    out.push_back({k.id, digest->size, digest->sha256, blob_epoch});
  }
  return out;
}

Result<BlobCheck> CheckBlobs(Target& target, const std::string& scratch_dir,
                             const std::string& tenant_id, const std::vector<FileEntry>& list,
                             const crypto::SecretKey* files_key,
                             const std::map<std::string, uint64_t>& sizes) {
  if (!list.empty()) SILO_RETURN_IF_ERROR(MakeDirs(scratch_dir, 0700));
  BlobCheck out;
  Scratch scratch(scratch_dir);
  for (const auto& e : list) {
    SILO_RETURN_IF_ERROR(
        FetchChecked(target, FileBlobName(tenant_id, e.blob_id, e.key_epoch), e, scratch.path()));
    ++out.checked;
    if (files_key == nullptr) continue;
    auto size = sizes.find(e.blob_id);
    if (size == sizes.end()) {
      return DataLoss("the backup lists file " + e.blob_id + " that its database does not know");
    }
    SILO_RETURN_IF_ERROR(
        CopyChunks(scratch.path(), *files_key, e.blob_id, size->second, nullptr, nullptr));
    ++out.opened;
  }
  return out;
}

Result<BlobRestoreReport> RestoreBlobs(Target& target, const BlobRestore& r,
                                       const std::vector<FileEntry>& list) {
  std::map<std::string, const FileEntry*> listed;
  for (const auto& e : list) listed[e.blob_id] = &e;
  // The backup's bytes serve as they are only under the key that sealed
  // them: the same tenant, not re-keyed since.
  const bool same_tenant = r.from_tenant == r.to_tenant;
  const bool same_key =
      same_tenant && crypto::KeyFingerprint(*r.from_key) == crypto::KeyFingerprint(*r.to_key);
  BlobRestoreReport out;
  const std::string scratch_dir = layout::TenantUploadsDir(r.data_dir, r.to_tenant);
  if (!r.kept.empty()) SILO_RETURN_IF_ERROR(MakeDirs(scratch_dir, 0700));
  for (const auto& [id, size] : r.kept) {
    const std::string path = layout::TenantBlobFile(r.data_dir, r.to_tenant, id);
    auto entry = listed.find(id);
    if (!same_key && PathExists(path) &&
        CopyChunks(path, *r.to_key, id, size, nullptr, nullptr).ok()) {
      // Sealed under the live key already (re-keyed since the backup): a
      // blob's bytes never change, only the key they are sealed under.
      ++out.present;
      continue;
    }
    if (same_key && PathExists(path)) {
      // Blobs never change; one on disk is kept when it has the listed bytes
      // (or, for a backup that does not list it, when it opens).
      if (entry != listed.end()) {
        auto d = crypto::DigestFile(path);
        if (d.ok() && d->size == entry->second->sealed_bytes &&
            crypto::ConstantTimeEquals(d->sha256, entry->second->sha256)) {
          ++out.present;
          continue;
        }
      } else {
        SILO_RETURN_IF_ERROR(CopyChunks(path, *r.to_key, id, size, nullptr, nullptr));
        ++out.present;
        continue;
      }
    }
    if (entry == listed.end()) {
      return DataLoss("the backup does not hold file " + id + ", which its records name");
    }
    Scratch fetched(scratch_dir);
    if (same_tenant && !same_key) {
      // An earlier backup may hold this blob under the live key: one id and
      // epoch name one byte string, so that object is the one to put back
      // (the blob is then sealed anew only when no backup has it).
      const std::string live_name = FileBlobName(r.to_tenant, id, r.to_epoch);
      if (target.GetFile(live_name, fetched.path()).ok() &&
          CopyChunks(fetched.path(), *r.to_key, id, size, nullptr, nullptr).ok()) {
        SILO_RETURN_IF_ERROR(Install(fetched.path(), r.data_dir, r.to_tenant, id));
        ++out.fetched;
        continue;
      }
    }
    SILO_RETURN_IF_ERROR(FetchChecked(target,
                                      FileBlobName(r.from_tenant, id, entry->second->key_epoch),
                                      *entry->second, fetched.path()));
    if (same_key) {
      SILO_RETURN_IF_ERROR(Install(fetched.path(), r.data_dir, r.to_tenant, id));
      ++out.fetched;
      continue;
    }
    Scratch resealed(scratch_dir);
    SILO_RETURN_IF_ERROR(
        CopyChunks(fetched.path(), *r.from_key, id, size, &resealed.path(), r.to_key, r.to_epoch));
    SILO_RETURN_IF_ERROR(Install(resealed.path(), r.data_dir, r.to_tenant, id));
    ++out.fetched;
    ++out.resealed;
  }
  return out;
}

}  // namespace silo::backup
