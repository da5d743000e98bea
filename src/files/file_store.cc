#include "files/file_store.h"

#include <unistd.h>

#include <cstdio>
#include <vector>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "crypto/crypto.h"
#include "files/sniff.h"

namespace silo::files {
namespace {

using storage::Database;

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Removes `path` when destroyed unless kept: what an upload wrote is gone
// whichever way it fails.
class RemoveUnlessKept {
 public:
  explicit RemoveUnlessKept(std::string path) : path_(std::move(path)) {}
  ~RemoveUnlessKept() {
    if (!kept_) ::unlink(path_.c_str());
  }
  void Keep() { kept_ = true; }

 private:
  std::string path_;
  bool kept_ = false;
};

std::string Limit(uint64_t bytes) { return std::to_string(bytes) + " bytes"; }

}  // namespace

FileStores::FileStores(std::shared_ptr<storage::TenantDatabases> databases, KeyFn files_key,
                       std::string data_dir, FileOptions options)
    : databases_(std::move(databases)),
      files_key_(std::move(files_key)),
      data_dir_(std::move(data_dir)),
      options_(options) {}

Result<std::unique_ptr<FileStore>> FileStores::Open(const std::string& tenant_id) {
  SILO_ASSIGN_OR_RETURN(auto db, databases_->Acquire(tenant_id));
  SILO_ASSIGN_OR_RETURN(auto key, files_key_(tenant_id));
  return std::unique_ptr<FileStore>(new FileStore(this, tenant_id, std::move(db), std::move(key)));
}

size_t FileStores::uploads_in_progress() const {
  MutexLock lock(mu_);
  return uploads_;
}

FileStores::Reservation::~Reservation() { stores_->Release(tenant_id_, bytes_); }

Result<std::unique_ptr<FileStores::Reservation>> FileStores::Reserve(const std::string& tenant_id,
                                                                     storage::TenantDatabase& db,
                                                                     uint64_t bytes) {
  MutexLock lock(mu_);
  TenantUse& use = use_[tenant_id];
  if (use.uploads >= options_.uploads_per_tenant) {
    return Unavailable("too many uploads at once for this tenant (" +
                       std::to_string(options_.uploads_per_tenant) + "); retry later");
  }
  if (uploads_ >= options_.uploads_total) {
    return Unavailable("too many uploads at once; retry later");
  }
  if (options_.tenant_quota_bytes != 0) {
    // Read under the lock: an upload that commits meanwhile is then counted
    // either in the database or in its reservation, never in neither.
    Usage usage;
    SILO_RETURN_IF_ERROR(db.Read([&](Database& d) -> Status {
      SILO_ASSIGN_OR_RETURN(usage, LoadUsage(d));
      return Status::Ok();
    }));
    if (usage.live_bytes + use.reserved_bytes + bytes > options_.tenant_quota_bytes) {
      return Status(StatusCode::kResourceExhausted,
                    "the upload would exceed the tenant's file quota "
                    "(SILO_TENANT_FILE_QUOTA_BYTES, " +
                        Limit(options_.tenant_quota_bytes) + ")");
    }
  }
  use.reserved_bytes += bytes;
  ++use.uploads;
  ++uploads_;
  return std::make_unique<Reservation>(this, tenant_id, bytes);
}

void FileStores::Release(const std::string& tenant_id, uint64_t bytes) {
  MutexLock lock(mu_);
  auto it = use_.find(tenant_id);
  if (it == use_.end()) return;
  it->second.reserved_bytes -= bytes;
  --it->second.uploads;
  --uploads_;
  if (it->second.uploads == 0) use_.erase(it);
}

FileStore::FileStore(FileStores* stores, std::string tenant_id,
                     std::shared_ptr<storage::TenantDatabase> db, crypto::SecretKey files_key)
    : stores_(stores),
      tenant_id_(std::move(tenant_id)),
      db_(std::move(db)),
      files_key_(std::move(files_key)) {}

Result<FileRow> FileStore::Upload(const events::Origin& ctx, const UploadSpec& spec,
                                  const ReadFn& read) {
  const FileOptions& o = stores_->options();
  if (spec.size > o.max_file_bytes) {
    return Status(StatusCode::kResourceExhausted,
                  "the file is larger than SILO_MAX_FILE_BYTES (" + Limit(o.max_file_bytes) + ")");
  }
  if (spec.size > spec.limits.max_bytes) {
    return Status(
        StatusCode::kResourceExhausted,
        "the file is larger than the field's max_bytes (" + Limit(spec.limits.max_bytes) + ")");
  }
  SILO_ASSIGN_OR_RETURN(auto reservation, stores_->Reserve(tenant_id_, *db_, spec.size));
  SILO_ASSIGN_OR_RETURN(FileRow row, WriteBlob(ctx, spec, read));
  const std::string blob = layout::TenantBlobFile(stores_->data_dir_, tenant_id_, row.id);
  RemoveUnlessKept blob_guard(blob);
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_RETURN_IF_ERROR(InsertFile(db, row));
    events::Event e;
    e.type = "file.uploaded";
    e.subject_kind = "file";
    e.subject_id = row.id;
    e.at_us = ctx.now_us;
    e.actor = ctx.actor;
    e.request_id = ctx.request_id;
    e.client = ctx.client;
    e.changes = {{"name", std::nullopt, JsonString(row.name), false},
                 {"type", std::nullopt, JsonString(row.type), false},
                 {"size", std::nullopt, std::to_string(row.size), false},
                 {"sha256", std::nullopt, JsonString(row.sha256), false},
                 {"collection", std::nullopt, JsonString(row.collection), false},
                 {"field", std::nullopt, JsonString(row.field), false}};
    SILO_RETURN_IF_ERROR(events::Append(db, e));
    return tx.Commit();
  }));
  blob_guard.Keep();
  return row;
}

Result<FileRow> FileStore::WriteBlob(const events::Origin& ctx, const UploadSpec& spec,
                                     const ReadFn& read) {
  const std::string& data = stores_->data_dir_;
  FileRow row;
  row.id = NewBlobId();
  row.owner = ctx.actor.kind + ":" + ctx.actor.id;
  row.name = CleanFileName(spec.name);
  row.declared_type = spec.declared_type.substr(0, 255);
  row.size = spec.size;
  row.state = FileState::kPending;
  row.collection = spec.collection;
  row.field = spec.field;
  row.created_at_us = ctx.now_us;
  row.expires_at_us = ctx.now_us + stores_->options().upload_expire_us;

  SILO_RETURN_IF_ERROR(MakeDirs(layout::TenantUploadsDir(data, tenant_id_), 0700));
  const std::string part = layout::TenantUploadFile(data, tenant_id_, row.id);
  SILO_ASSIGN_OR_RETURN(auto writer, BlobWriter::Create(part, files_key_, row.id, spec.size));
  RemoveUnlessKept part_guard(part);
  crypto::Sha256Stream digest;
  ActiveContentScanner scanner;
  std::vector<char> piece(kChunkBytes);
  for (uint64_t got = 0; got < spec.size;) {
    SILO_ASSIGN_OR_RETURN(size_t n, read(std::span<char>(piece.data(), piece.size())));
    if (n == 0) return Unavailable("the upload ended before its declared size");
    std::string_view bytes(piece.data(), n);
    if (got == 0) {
      row.type = std::string(SniffType(bytes));
      if (!TypeAllowed(spec.limits.types, row.type)) {
        return InvalidArgument("the file is " + row.type + ", which the field " + spec.field +
                               " does not allow");
      }
    }
    if (row.type == "image/svg+xml") scanner.Feed(bytes);
    if (scanner.found()) return InvalidArgument("the SVG file carries script or active content");
    digest.Update(bytes);
    SILO_RETURN_IF_ERROR(writer->Append(bytes));
    got += n;
  }
  if (spec.size == 0) {
    row.type = std::string(SniffType(""));
    if (!TypeAllowed(spec.limits.types, row.type)) {
      return InvalidArgument("the file is " + row.type + ", which the field " + spec.field +
                             " does not allow");
    }
  }
  SILO_RETURN_IF_ERROR(writer->Finish());
  writer.reset();
  row.sha256 = digest.FinishHex();
  const std::string dir = layout::TenantBlobDir(data, tenant_id_, row.id);
  SILO_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  const std::string blob = layout::TenantBlobFile(data, tenant_id_, row.id);
  if (::rename(part.c_str(), blob.c_str()) != 0) return Internal("cannot move the upload in place");
  part_guard.Keep();
  RemoveUnlessKept blob_guard(blob);
  SILO_RETURN_IF_ERROR(SyncDir(dir));
  SILO_RETURN_IF_ERROR(SyncDir(layout::TenantUploadsDir(data, tenant_id_)));
  blob_guard.Keep();
  return row;
}

Result<FileRow> FileStore::Get(std::string_view id) {
  std::optional<FileRow> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(out, LoadFile(db, id));
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<std::unique_ptr<BlobReader>> FileStore::OpenBlob(const FileRow& row) {
  return BlobReader::Open(layout::TenantBlobFile(stores_->data_dir_, tenant_id_, row.id),
                          files_key_, row.id, row.size);
}

Result<Usage> FileStore::LoadUsage() {
  Usage u;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(u, files::LoadUsage(db));
    return Status::Ok();
  }));
  return u;
}

}  // namespace silo::files
