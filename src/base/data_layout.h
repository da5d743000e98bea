// Where things live under the data directory: the one place that names these
// paths (the tree is drawn in docs/architecture.md, "Data directory"). Pure
// string functions; nothing here touches the disk.
#ifndef SILO_BASE_DATA_LAYOUT_H_
#define SILO_BASE_DATA_LAYOUT_H_

#include <string>
#include <string_view>

namespace silo::layout {

// flock held by the one serving process.
inline std::string LockFile(const std::string& data) { return data + "/silo.lock"; }
// Development only: generated master key, operator token, TLS pair.
inline std::string DevDir(const std::string& data) { return data + "/dev"; }
inline std::string PlatformDir(const std::string& data) { return data + "/platform"; }
inline std::string KeyringFile(const std::string& data) { return PlatformDir(data) + "/keyring"; }
inline std::string SecurityLogFile(const std::string& data) {
  return PlatformDir(data) + "/security.log";
}
// The addresses a running server bound (removed at exit).
inline std::string ServerInfoFile(const std::string& data) {
  return PlatformDir(data) + "/server.json";
}
// The newest signed checkpoint of each tenant's chains (checkpoint/book.h).
inline std::string CheckpointsDir(const std::string& data) {
  return PlatformDir(data) + "/checkpoints";
}
inline std::string DrillReportsDir(const std::string& data) {
  return PlatformDir(data) + "/drills";
}
// The backup target when SILO_BACKUP_TARGET is not set.
// Sealed blobs fetched from a backup target to be checked (verify, drill):
// only ciphertext; emptied before each use.
inline std::string BackupScratchDir(const std::string& data) {
  return PlatformDir(data) + "/backup-scratch";
}
inline std::string DefaultBackupDir(const std::string& data) { return data + "/backups"; }
inline std::string TenantsDir(const std::string& data) { return data + "/tenants"; }
// A cluster node's keyless copies of the tenants other nodes lead, one
// directory per tenant id (replication/follower.h).
inline std::string ReplicasDir(const std::string& data) { return data + "/replicas"; }
// Tenant directories a cluster node stopped serving because another node
// took the tenant over while this one was cut off: kept whole, for the
// operator (they may hold commits never acknowledged), never served.
inline std::string DeposedDir(const std::string& data) { return data + "/deposed"; }
// Where a tenant's directory goes when the node leading it under `term`
// takes it from this one.
inline std::string DeposedTenantDir(const std::string& data, const std::string& tenant_id,
                                    int64_t term) {
  return DeposedDir(data) + "/" + tenant_id + "." + std::to_string(term);
}
inline std::string TenantDir(const std::string& data, const std::string& tenant_id) {
  return TenantsDir(data) + "/" + tenant_id;
}
// A tenant directory's database and files, wherever the directory is (its
// place under tenants/, or a deposed one).
inline std::string DatabaseFileIn(const std::string& tenant_dir) {
  return tenant_dir + "/tenant.db";
}
inline std::string FilesDirIn(const std::string& tenant_dir) { return tenant_dir + "/files"; }
inline std::string TenantDatabaseFile(const std::string& data, const std::string& tenant_id) {
  return DatabaseFileIn(TenantDir(data, tenant_id));
}
inline std::string TenantMetaFile(const std::string& data, const std::string& tenant_id) {
  return TenantDir(data, tenant_id) + "/tenant.meta";
}
inline std::string TenantFilesDir(const std::string& data, const std::string& tenant_id) {
  return FilesDirIn(TenantDir(data, tenant_id));
}
// A blob id is 32 lowercase hex digits (random: files/blob.h), so it names
// no path but its own; checked before one is made into a path.
inline bool ValidBlobId(std::string_view id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}
// A sealed blob: files/b/<first two hex digits of its id>/<id>.sf. The id is
// random (files/blob.h): no user byte is ever part of a path. The same
// layout under a follower's copy (replicas/<tenant-id>/files/).
inline std::string BlobDirIn(const std::string& files_dir, const std::string& blob_id) {
  return files_dir + "/b/" + blob_id.substr(0, 2);
}
inline std::string BlobFileIn(const std::string& files_dir, const std::string& blob_id) {
  return BlobDirIn(files_dir, blob_id) + "/" + blob_id + ".sf";
}
inline std::string TenantBlobDir(const std::string& data, const std::string& tenant_id,
                                 const std::string& blob_id) {
  return BlobDirIn(TenantFilesDir(data, tenant_id), blob_id);
}
inline std::string TenantBlobFile(const std::string& data, const std::string& tenant_id,
                                  const std::string& blob_id) {
  return BlobFileIn(TenantFilesDir(data, tenant_id), blob_id);
}
// Uploads in progress, sealed like blobs: files/u/<upload-id>.part.
inline std::string TenantUploadsDir(const std::string& data, const std::string& tenant_id) {
  return TenantFilesDir(data, tenant_id) + "/u";
}
inline std::string UploadFileIn(const std::string& files_dir, const std::string& upload_id) {
  return files_dir + "/u/" + upload_id + ".part";
}
inline std::string TenantUploadFile(const std::string& data, const std::string& tenant_id,
                                    const std::string& upload_id) {
  return UploadFileIn(TenantFilesDir(data, tenant_id), upload_id);
}

}  // namespace silo::layout

#endif  // SILO_BASE_DATA_LAYOUT_H_
