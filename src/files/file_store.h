// A tenant's files: uploads streamed into sealed blobs (blob.h) and their
// rows in the tenant database (catalog.h), with the limits that keep one
// upload or one tenant from taking the disk.
//
// An upload never holds more than one 64 KiB chunk of plaintext in memory
// and never writes one: it is sealed chunk by chunk into
// tenants/<id>/files/u/<upload-id>.part, checked against the field's type
// allow-list on its sniffed type (and, for SVG, for script) as it streams,
// then synced, renamed to tenants/<id>/files/b/<aa>/<id>.sf and recorded as
// a pending file with a `file.uploaded` event. Any failure removes what it
// wrote and releases its reservation: nothing partial is kept.
//
// Thread-safe: FileStores is shared; a FileStore is one request's.
#ifndef SILO_FILES_FILE_STORE_H_
#define SILO_FILES_FILE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/secret_key.h"
#include "events/event_log.h"
#include "files/blob.h"
#include "files/catalog.h"
#include "storage/tenant_databases.h"

namespace silo::files {

struct FileOptions {
  uint64_t max_file_bytes = uint64_t{5} << 30;         // SILO_MAX_FILE_BYTES
  uint64_t tenant_quota_bytes = uint64_t{10} << 30;    // SILO_TENANT_FILE_QUOTA_BYTES; 0: none
  int64_t upload_expire_us = 24LL * 3600 * 1'000'000;  // SILO_UPLOAD_EXPIRE_HOURS
  size_t uploads_per_tenant = 4;                       // at once
  size_t uploads_total = 32;                           // at once, all tenants
};

// What one upload is for and what it declares.
struct UploadSpec {
  std::string collection, field;
  FieldLimits limits;
  std::string name;           // as the client gave it; cleaned before it is kept
  std::string declared_type;  // the client's Content-Type; kept, never trusted
  uint64_t size = 0;          // exactly this many bytes will be read
};

// Reads the next bytes of the upload into `out`, filling it unless the
// upload ends (http::BodyStream::Read).
using ReadFn = std::function<Result<size_t>(std::span<char> out)>;

class FileStores;

class FileStore {
 public:
  // Streams `spec.size` bytes from `read` into a new pending file owned by
  // `ctx.actor`. Refusals, each naming its limit and each decided before a
  // byte is read unless it depends on the bytes:
  //   ResourceExhausted: larger than the field's max_bytes or
  //     SILO_MAX_FILE_BYTES, or over SILO_TENANT_FILE_QUOTA_BYTES;
  //   Unavailable: too many uploads at once (for the tenant or in all);
  //   InvalidArgument: the sniffed type is not in the field's allow-list, or
  //     an SVG carries script;
  //   what `read` failed with (DeadlineExceeded for a stalled client).
  Result<FileRow> Upload(const events::Origin& ctx, const UploadSpec& spec, const ReadFn& read);
  // NotFound when there is no such file.
  Result<FileRow> Get(std::string_view id);
  // The file's bytes, every chunk verified as it is read.
  Result<std::unique_ptr<BlobReader>> OpenBlob(const FileRow& row);
  Result<Usage> LoadUsage();

  // Resumable uploads (the tus protocol is the API's; the state is here).
  // Creates upload `spec` with no bytes yet, after the same size and quota
  // checks as Upload; its length stays reserved against the quota until it
  // completes, is terminated or expires.
  Result<UploadRow> CreateUpload(const events::Origin& ctx, const UploadSpec& spec);
  struct UploadState {
    UploadRow row;
    uint64_t offset = 0;  // bytes durable in whole chunks
  };
  // The caller's upload `id` and its offset (a torn tail left by a crash is
  // cut first; every whole chunk is read to find it). NotFound for no such
  // upload or another caller's; FailedPrecondition once expired (it is
  // removed then); VersionMismatch while another request writes it.
  Result<UploadState> GetUpload(const events::Origin& ctx, std::string_view id);
  // The caller's upload `id` without its offset: its row only, no byte read
  // (what a request that goes on to AppendUpload or TerminateUpload needs).
  // NotFound as GetUpload; FailedPrecondition once expired.
  Result<UploadRow> FindUpload(const events::Origin& ctx, std::string_view id);
  struct AppendResult {
    uint64_t offset = 0;               // the new offset
    std::optional<FileRow> completed;  // the pending file, when the last byte came
  };
  // Appends the `body_length` bytes `read` gives at `offset`. Refusals:
  //   as GetUpload; VersionMismatch when `offset` is not the upload's or
  //   another request is writing it; InvalidArgument when the bytes would
  //   pass its length, or (complete) its sniffed type is not in `limits` or
  //   an SVG carries script (the upload is then removed); DataLoss when the
  //   bytes do not match `sha256` (32 raw bytes; none of them is kept);
  //   Unavailable when too many uploads run at once; what `read` failed
  //   with (the whole chunks that arrived are kept).
  // A body that ends mid-chunk keeps its whole chunks: the offset returned
  // is what is durable, and the client resends from there.
  Result<AppendResult> AppendUpload(const events::Origin& ctx, std::string_view id, uint64_t offset,
                                    const FieldLimits& limits, uint64_t body_length,
                                    const ReadFn& read, const std::optional<std::string>& sha256);
  // Removes the caller's upload and its bytes (NotFound as GetUpload).
  Status TerminateUpload(const events::Origin& ctx, std::string_view id);

  // Links (the caller checked that `ctx.actor` may read `file`). The token
  // is returned once; an audit entry records the link (never the token).
  struct IssuedLink {
    LinkRow row;
    std::string token;
  };
  Result<IssuedLink> CreateLink(const events::Origin& ctx, const FileRow& file,
                                int64_t lifetime_us);
  // NotFound unless `link_id` is a live link of `file_id`; audited.
  Status RevokeLink(const events::Origin& ctx, std::string_view file_id, std::string_view link_id);
  // The file a link token opens: NotFound for a token no link has,
  // FailedPrecondition for one that expired or was revoked, or whose file
  // is no longer attached.
  Result<FileRow> ResolveLink(std::string_view token, int64_t now_us);

  // Orphans by construction: removes pending files and resumable uploads
  // whose expiry passed (rows and bytes; each pending file a
  // `file.collected` event), and files under files/ that no row names and
  // that were not written for `stale_us` (what a crash between writing a
  // blob and recording it leaves; an upload still being written is younger).
  struct Collected {
    int64_t pending_files = 0;
    int64_t uploads = 0;
    int64_t orphans = 0;
  };
  Result<Collected> CollectExpired(int64_t now_us, int64_t stale_us);

  // Removed files whose bytes no longer need keeping: tombstones deleted at
  // or before `cutoff_us` (the caller passes now minus the backup
  // retention, so every backup that still lists one holds its bytes). Row
  // and blob go, each with a `file.purged` event; history keeps the id (a
  // download or revert of it is then "no such file"). Returns how many.
  Result<int64_t> PurgeTombstones(int64_t now_us, int64_t cutoff_us);

 private:
  friend class FileStores;
  std::string PartPath(std::string_view id) const;
  // FileStores::BlobReplication::part_written, when set.
  void PartWritten(std::string_view id, uint64_t from);
  // Rows removed in batches of kBatch, one transaction each.
  static constexpr int kBatch = 500;
  // In one transaction: removes each id `select` returns with `remove`, each
  // with an `event_type` event by the system; returns the ids.
  Result<std::vector<std::string>> RemoveRows(
      int64_t now_us, const char* event_type,
      const std::function<Result<std::vector<std::string>>(storage::Database&)>& select,
      Status (*remove)(storage::Database&, std::string_view));
  // The caller's upload reopened for writing (nullptr when its bytes are
  // all there), for a caller that holds its claim: an expired one is
  // removed; a torn tail is cut.
  struct Opened {
    UploadRow row;
    std::unique_ptr<BlobWriter> writer;
  };
  Result<Opened> OpenClaimedUpload(const events::Origin& ctx, std::string_view id);
  // Removes an upload's row and part.
  Status RemoveUpload(std::string_view id);
  // Unlinks blob `id` (the file `path`, when given: an orphan, perhaps an
  // upload's part), then tells BlobReplication::removed of a blob. True when
  // it was there.
  bool UnlinkBlob(std::string_view id, const std::string& path = "");
  // Checks a complete part (type, SVG, digest), moves it into place and
  // records it as a pending file, in place of the upload.
  Result<FileRow> CompleteUpload(const events::Origin& ctx, const UploadRow& row,
                                 const FieldLimits& limits);
  // Moves a finished part to its blob path (synced) and records `row` with
  // its file.uploaded event; `upload_id` (when set) is deleted in the same
  // transaction.
  Status Commit(const events::Origin& ctx, const FileRow& row, const std::string& part,
                std::optional<std::string_view> upload_id);
  FileStore(FileStores* stores, std::string tenant_id, std::shared_ptr<storage::TenantDatabase> db,
            crypto::SecretKey files_key, uint32_t key_epoch);
  // Seals the upload into its part file (finished and synced); returns its
  // row, not yet in the database. Commit moves it into place or removes it.
  Result<FileRow> WriteBlob(const events::Origin& ctx, const UploadSpec& spec, const ReadFn& read);

  FileStores* const stores_;
  const std::string tenant_id_;
  const std::shared_ptr<storage::TenantDatabase> db_;
  const crypto::SecretKey files_key_;
  const uint32_t key_epoch_;  // of the tenant key files_key_ comes from; new blobs carry it
};

class FileStores {
 public:
  // The tenant's files sub-key (crypto::KeyPurpose::kFiles).
  using KeyFn = std::function<Result<crypto::SecretKey>(const std::string& tenant_id)>;
  FileStores(std::shared_ptr<storage::TenantDatabases> databases, KeyFn files_key,
             std::string data_dir, FileOptions options);

  // The epoch of the tenant's data key (crypto::Keyring::Epoch), which new
  // blobs carry in their header; unset: 0. Before the first Open.
  using EpochFn = std::function<Result<uint32_t>(const std::string& tenant_id)>;
  void SetKeyEpochFn(EpochFn fn) { key_epoch_ = std::move(fn); }

  // Where a tenant's blobs go besides this disk: a cluster node's followers
  // (replication::Shipper::ShipBlob, RemoveBlob). `stored` runs once a new
  // blob is in place and synced, before the commit that records it; its
  // failure fails the upload (the blob is removed). `from_part`: the blob
  // is a resumable upload's part, every byte of which went through
  // `part_written` first. `removed` runs after a
  // blob is unlinked. `part_written` runs once a resumable upload's part
  // (files/u/<id>.part) is durable from byte `from` of that file on, before
  // the request is answered (best effort: nothing fails with it);
  // `part_removed` after a part is unlinked. Any may be empty. Before the
  // first Open.
  struct BlobReplication {
    std::function<Status(const std::string& tenant_id, const std::string& blob_id, bool from_part)>
        stored;
    std::function<void(const std::string& tenant_id, const std::string& blob_id)> removed;
    std::function<void(const std::string& tenant_id, const std::string& upload_id, uint64_t from)>
        part_written;
    std::function<void(const std::string& tenant_id, const std::string& upload_id)> part_removed;
  };
  void SetBlobReplication(BlobReplication replication) { replication_ = std::move(replication); }

  Result<std::unique_ptr<FileStore>> Open(const std::string& tenant_id);
  const FileOptions& options() const { return options_; }
  // Uploads in progress now (all tenants).
  size_t uploads_in_progress() const;

 private:
  friend class FileStore;
  // Holds bytes of the tenant's quota and one upload slot until destroyed.
  class Reservation {
   public:
    Reservation(FileStores* stores, std::string tenant_id, uint64_t bytes)
        : stores_(stores), tenant_id_(std::move(tenant_id)), bytes_(bytes) {}
    ~Reservation();
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;

   private:
    FileStores* stores_;
    std::string tenant_id_;
    uint64_t bytes_;
  };
  struct TenantUse {
    uint64_t reserved_bytes = 0;
    size_t uploads = 0;
  };
  // Checks the upload slots and the quota (live bytes in the database plus
  // what uploads in progress reserved) and reserves; under one lock, so
  // parallel uploads cannot together overshoot.
  // `check_quota` false: a slot only (a resumable upload's bytes were
  // reserved when it was created).
  Result<std::unique_ptr<Reservation>> Reserve(const std::string& tenant_id,
                                               storage::TenantDatabase& db, uint64_t bytes,
                                               bool check_quota = true);
  void Release(const std::string& tenant_id, uint64_t bytes);
  // One request at a time writes (or reads the offset of) a resumable
  // upload: it holds the upload's claim while it does.
  class UploadClaim {
   public:
    UploadClaim(FileStores* stores, std::string key) : stores_(stores), key_(std::move(key)) {}
    ~UploadClaim();
    UploadClaim(const UploadClaim&) = delete;
    UploadClaim& operator=(const UploadClaim&) = delete;

   private:
    FileStores* stores_;
    std::string key_;
  };
  // The claim on `tenant_id`'s upload `id`; nullptr while another holds it.
  std::unique_ptr<UploadClaim> ClaimUpload(const std::string& tenant_id, std::string_view id);

  const std::shared_ptr<storage::TenantDatabases> databases_;
  const KeyFn files_key_;
  EpochFn key_epoch_;  // set before use; may be empty
  BlobReplication replication_;
  const std::string data_dir_;
  const FileOptions options_;
  mutable Mutex mu_;
  std::map<std::string, TenantUse> use_ GUARDED_BY(mu_);
  size_t uploads_ GUARDED_BY(mu_) = 0;
  std::set<std::string> writing_ GUARDED_BY(mu_);  // "<tenant>/<upload>" being appended to
};

}  // namespace silo::files

#endif  // SILO_FILES_FILE_STORE_H_
