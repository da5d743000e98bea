#include "files/file_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "files/sniff.h"

namespace silo::files {
namespace {

using storage::Database;

// `s` as a JSON string (event changes hold JSON text).
std::string JsonString(std::string_view s) { return "\"" + log::JsonEscape(s) + "\""; }

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

// The limits an upload's declared size meets before a byte is read.
Status CheckSize(const FileOptions& o, const UploadSpec& spec) {
  if (spec.size > o.max_file_bytes) {
    return Status(StatusCode::kResourceExhausted,
                  "the file is larger than SILO_MAX_FILE_BYTES (" + Limit(o.max_file_bytes) + ")");
  }
  if (spec.size > spec.limits.max_bytes) {
    return Status(
        StatusCode::kResourceExhausted,
        "the file is larger than the field's max_bytes (" + Limit(spec.limits.max_bytes) + ")");
  }
  return Status::Ok();
}

}  // namespace

FileStores::FileStores(std::shared_ptr<storage::TenantDatabases> databases, KeyFn files_key,
                       std::string data_dir, FileOptions options)
    : databases_(std::move(databases)),
      files_key_(std::move(files_key)),
      data_dir_(std::move(data_dir)),
      options_(options) {}

Result<std::unique_ptr<FileStore>> FileStores::Open(const std::string& tenant_id) {
  SILO_ASSIGN_OR_RETURN(auto db, databases_->Acquire(tenant_id));
  // Both read while `db` is held: a re-key commits only once no one holds
  // the tenant's database, so key and epoch are those `db` was made under.
  SILO_ASSIGN_OR_RETURN(auto key, files_key_(tenant_id));
  uint32_t epoch = 0;
  if (key_epoch_) {
    SILO_ASSIGN_OR_RETURN(epoch, key_epoch_(tenant_id));
  }
  return std::unique_ptr<FileStore>(
      new FileStore(this, tenant_id, std::move(db), std::move(key), epoch));
}

size_t FileStores::uploads_in_progress() const {
  MutexLock lock(mu_);
  return uploads_;
}

FileStores::Reservation::~Reservation() { stores_->Release(tenant_id_, bytes_); }

Result<std::unique_ptr<FileStores::Reservation>> FileStores::Reserve(const std::string& tenant_id,
                                                                     storage::TenantDatabase& db,
                                                                     uint64_t bytes,
                                                                     bool check_quota) {
  MutexLock lock(mu_);
  TenantUse& use = use_[tenant_id];
  // A refusal leaves no entry behind for a tenant with nothing in progress.
  struct Tidy {
    std::map<std::string, TenantUse>& use;
    const std::string& tenant_id;
    ~Tidy() {
      auto it = use.find(tenant_id);
      if (it != use.end() && it->second.uploads == 0) use.erase(it);
    }
  } tidy{use_, tenant_id};
  if (use.uploads >= options_.uploads_per_tenant) {
    return Unavailable("too many uploads at once for this tenant (" +
                       std::to_string(options_.uploads_per_tenant) + "); retry later");
  }
  if (uploads_ >= options_.uploads_total) {
    return Unavailable("too many uploads at once; retry later");
  }
  if (check_quota && options_.tenant_quota_bytes != 0) {
    // Read under the lock: an upload that commits meanwhile is then counted
    // either in the database or in its reservation, never in neither.
    Usage usage;
    SILO_RETURN_IF_ERROR(db.Read([&](Database& d) -> Status {
      SILO_ASSIGN_OR_RETURN(usage, LoadUsage(d));
      return Status::Ok();
    }));
    if (usage.live_bytes + usage.upload_bytes + use.reserved_bytes + bytes >
        options_.tenant_quota_bytes) {
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

std::unique_ptr<FileStores::UploadClaim> FileStores::ClaimUpload(const std::string& tenant_id,
                                                                 std::string_view id) {
  std::string key = tenant_id + "/" + std::string(id);
  MutexLock lock(mu_);
  if (!writing_.insert(key).second) return nullptr;
  return std::make_unique<UploadClaim>(this, std::move(key));
}

FileStores::UploadClaim::~UploadClaim() {
  MutexLock lock(stores_->mu_);
  stores_->writing_.erase(key_);
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
                     std::shared_ptr<storage::TenantDatabase> db, crypto::SecretKey files_key,
                     uint32_t key_epoch)
    : stores_(stores),
      tenant_id_(std::move(tenant_id)),
      db_(std::move(db)),
      files_key_(std::move(files_key)),
      key_epoch_(key_epoch) {}

Result<FileRow> FileStore::Upload(const events::Origin& ctx, const UploadSpec& spec,
                                  const ReadFn& read) {
  SILO_RETURN_IF_ERROR(CheckSize(stores_->options(), spec));
  SILO_ASSIGN_OR_RETURN(auto reservation, stores_->Reserve(tenant_id_, *db_, spec.size));
  SILO_ASSIGN_OR_RETURN(FileRow row, WriteBlob(ctx, spec, read));
  SILO_RETURN_IF_ERROR(Commit(ctx, row, PartPath(row.id), std::nullopt));
  return row;
}

Status FileStore::Commit(const events::Origin& ctx, const FileRow& row, const std::string& part,
                         std::optional<std::string_view> upload_id) {
  const std::string& data = stores_->data_dir_;
  const std::string dir = layout::TenantBlobDir(data, tenant_id_, row.id);
  SILO_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  const std::string blob = layout::TenantBlobFile(data, tenant_id_, row.id);
  if (::rename(part.c_str(), blob.c_str()) != 0) {
    ::unlink(part.c_str());
    return Internal("cannot move the upload in place");
  }
  RemoveUnlessKept blob_guard(blob);
  SILO_RETURN_IF_ERROR(SyncDir(dir));
  SILO_RETURN_IF_ERROR(SyncDir(layout::TenantUploadsDir(data, tenant_id_)));
  // On the followers before the commit that names it.
  if (stores_->replication_.stored) {
    SILO_RETURN_IF_ERROR(stores_->replication_.stored(tenant_id_, row.id, upload_id.has_value()));
  }
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    if (upload_id) SILO_RETURN_IF_ERROR(DeleteUpload(db, *upload_id));
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
  return Status::Ok();
}

std::string FileStore::PartPath(std::string_view id) const {
  return layout::TenantUploadFile(stores_->data_dir_, tenant_id_, std::string(id));
}

Result<FileRow> FileStore::WriteBlob(const events::Origin& ctx, const UploadSpec& spec,
                                     const ReadFn& read) {
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

  SILO_RETURN_IF_ERROR(MakeDirs(layout::TenantUploadsDir(stores_->data_dir_, tenant_id_), 0700));
  const std::string part = PartPath(row.id);
  SILO_ASSIGN_OR_RETURN(auto writer,
                        BlobWriter::Create(part, files_key_, row.id, spec.size, key_epoch_));
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
  part_guard.Keep();  // Commit moves it into place, or removes it
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

Result<UploadRow> FileStore::CreateUpload(const events::Origin& ctx, const UploadSpec& spec) {
  SILO_RETURN_IF_ERROR(CheckSize(stores_->options(), spec));
  // The reservation covers the check and the insert: from then on the
  // upload's row holds its bytes against the quota.
  SILO_ASSIGN_OR_RETURN(auto reservation, stores_->Reserve(tenant_id_, *db_, spec.size));
  UploadRow row;
  row.id = NewBlobId();
  row.owner = ctx.actor.kind + ":" + ctx.actor.id;
  row.collection = spec.collection;
  row.field = spec.field;
  row.name = CleanFileName(spec.name);
  row.declared_type = spec.declared_type.substr(0, 255);
  row.length = spec.size;
  row.created_at_us = ctx.now_us;
  row.expires_at_us = ctx.now_us + stores_->options().upload_expire_us;
  SILO_RETURN_IF_ERROR(MakeDirs(layout::TenantUploadsDir(stores_->data_dir_, tenant_id_), 0700));
  const std::string part = PartPath(row.id);
  SILO_ASSIGN_OR_RETURN(auto writer,
                        BlobWriter::Create(part, files_key_, row.id, spec.size, key_epoch_));
  RemoveUnlessKept part_guard(part);
  SILO_RETURN_IF_ERROR(writer->Sync());
  writer.reset();
  PartWritten(row.id, 0);  // on the followers before the row that names it
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) { return InsertUpload(db, row); }));
  part_guard.Keep();
  return row;
}

Status FileStore::RemoveUpload(std::string_view id) {
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) { return DeleteUpload(db, id); }));
  if (::unlink(PartPath(id).c_str()) == 0 && stores_->replication_.part_removed) {
    stores_->replication_.part_removed(tenant_id_, std::string(id));
  }
  return Status::Ok();
}

void FileStore::PartWritten(std::string_view id, uint64_t from) {
  if (stores_->replication_.part_written) {
    stores_->replication_.part_written(tenant_id_, std::string(id), from);
  }
}

Result<UploadRow> FileStore::FindUpload(const events::Origin& ctx, std::string_view id) {
  if (!ValidBlobId(id)) return NotFound("no such upload");
  std::optional<UploadRow> row;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(row, LoadUpload(db, id));
    return Status::Ok();
  }));
  if (row->owner != ctx.actor.kind + ":" + ctx.actor.id) return NotFound("no such upload");
  if (row->expires_at_us <= ctx.now_us) return FailedPrecondition("the upload has expired");
  return std::move(*row);
}

Result<FileStore::UploadState> FileStore::GetUpload(const events::Origin& ctx,
                                                    std::string_view id) {
  // Claimed like a write: reading the offset may cut a torn tail, which
  // must never happen under a request still writing it.
  auto claim = stores_->ClaimUpload(tenant_id_, id);
  if (!claim) return VersionMismatch("another request is writing this upload");
  SILO_ASSIGN_OR_RETURN(Opened opened, OpenClaimedUpload(ctx, id));
  const uint64_t offset = opened.writer ? opened.writer->appended() : opened.row.length;
  return UploadState{std::move(opened.row), offset};  // the claim ends here
}

Result<FileStore::Opened> FileStore::OpenClaimedUpload(const events::Origin& ctx,
                                                       std::string_view id) {
  auto row = FindUpload(ctx, id);
  if (!row.ok()) {
    if (row.status().code() == StatusCode::kFailedPrecondition) {
      SILO_RETURN_IF_ERROR(RemoveUpload(id));
    }
    return row.status();
  }
  // Resume verifies the whole chunks and cuts a torn tail (a crash).
  auto writer = BlobWriter::Resume(PartPath(id), files_key_, row->id, row->length);
  if (!writer.ok()) {
    if (writer.status().code() == StatusCode::kAlreadyExists)
      return Opened{std::move(*row), nullptr};
    return writer.status();
  }
  return Opened{std::move(*row), std::move(*writer)};
}

Result<FileStore::AppendResult> FileStore::AppendUpload(const events::Origin& ctx,
                                                        std::string_view id, uint64_t offset,
                                                        const FieldLimits& limits,
                                                        uint64_t body_length, const ReadFn& read,
                                                        const std::optional<std::string>& sha256) {
  auto claim = stores_->ClaimUpload(tenant_id_, id);
  if (!claim) return VersionMismatch("another request is writing this upload");
  SILO_ASSIGN_OR_RETURN(Opened opened, OpenClaimedUpload(ctx, id));
  // All bytes there but not yet a file: a completion that failed.
  if (!opened.writer) return AlreadyExists("the upload is complete");
  const uint64_t current = opened.writer->appended();
  UploadState state{std::move(opened.row), current};
  if (offset != state.offset) {
    return VersionMismatch("Upload-Offset is " + std::to_string(state.offset));
  }
  if (body_length > state.row.length - offset) {
    return InvalidArgument("the bytes would pass the upload's length");
  }
  SILO_ASSIGN_OR_RETURN(auto slot, stores_->Reserve(tenant_id_, *db_, 0, false));
  const std::string part = PartPath(id);
  // Where this request's bytes begin in the part: a chunk boundary, since
  // offsets are acknowledged in whole chunks.
  const uint64_t start = kHeaderBytes + (offset / kChunkBytes) * kSealedChunkBytes;
  std::unique_ptr<BlobWriter> writer = std::move(opened.writer);
  crypto::Sha256Stream digest;
  std::vector<char> piece(kChunkBytes);
  Status failed;
  for (uint64_t got = 0; got < body_length;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(piece.size(), body_length - got));
    auto n = read(std::span<char>(piece.data(), want));
    if (!n.ok() || *n == 0) {
      failed = n.ok() ? Unavailable("the request body ended early") : n.status();
      break;
    }
    std::string_view bytes(piece.data(), *n);
    if (offset == 0 && got == 0) {
      // The type is known from the first bytes: refuse early rather than
      // after the whole file.
      const std::string type(SniffType(bytes));
      if (!TypeAllowed(limits.types, type)) {
        SILO_RETURN_IF_ERROR(RemoveUpload(id));
        return InvalidArgument("the file is " + type + ", which the field " + state.row.field +
                               " does not allow");
      }
    }
    digest.Update(bytes);
    SILO_RETURN_IF_ERROR(writer->Append(bytes));
    got += *n;
  }
  const std::string received = crypto::HexDecode(digest.FinishHex()).value();
  if (sha256 && (!failed.ok() || !crypto::ConstantTimeEquals(received, *sha256))) {
    // None of this request's bytes is kept (bytes that did not all arrive
    // cannot be checked either): back to where it started.
    writer.reset();
    if (::truncate(part.c_str(), static_cast<off_t>(start)) != 0) {
      return Internal("cannot cut the upload back");
    }
    if (!failed.ok()) return failed;
    return DataLoss("the bytes do not match Upload-Checksum");
  }
  // This request's bytes go to the followers once durable (whole chunks;
  // for the last request, everything), before it is answered.
  if (failed.ok() && writer->appended() == state.row.length) {
    SILO_RETURN_IF_ERROR(writer->Finish());
    writer.reset();
    PartWritten(id, start);  // then the blob is made of the part there
    SILO_ASSIGN_OR_RETURN(FileRow file, CompleteUpload(ctx, state.row, limits));
    return AppendResult{file.size, std::move(file)};
  }
  writer->DiscardPartialChunk();
  SILO_RETURN_IF_ERROR(writer->Sync());
  PartWritten(id, start);  // even a failed request's: its client resumes from them
  if (!failed.ok()) return failed;
  return AppendResult{writer->durable_bytes(), std::nullopt};
}

Result<FileRow> FileStore::CompleteUpload(const events::Origin& ctx, const UploadRow& up,
                                          const FieldLimits& limits) {
  const std::string part = PartPath(up.id);
  FileRow row;
  row.id = up.id;
  row.owner = up.owner;
  row.name = up.name;
  row.declared_type = up.declared_type;
  row.size = up.length;
  row.state = FileState::kPending;
  row.collection = up.collection;
  row.field = up.field;
  row.created_at_us = ctx.now_us;
  row.expires_at_us = ctx.now_us + stores_->options().upload_expire_us;
  // Read back whole: every chunk verified, the digest of the whole file,
  // its type and (SVG) its script, as a single request would have seen them.
  SILO_ASSIGN_OR_RETURN(auto reader, BlobReader::Open(part, files_key_, up.id, up.length));
  crypto::Sha256Stream digest;
  ActiveContentScanner scanner;
  Status refused;
  for (uint64_t i = 0; i < reader->chunk_count(); ++i) {
    SILO_ASSIGN_OR_RETURN(std::string chunk, reader->ReadChunk(i));
    if (i == 0) row.type = std::string(SniffType(chunk));
    if (row.type == "image/svg+xml") scanner.Feed(chunk);
    digest.Update(chunk);
    crypto::WipeString(chunk);
  }
  reader.reset();
  if (!TypeAllowed(limits.types, row.type)) {
    refused = InvalidArgument("the file is " + row.type + ", which the field " + up.field +
                              " does not allow");
  } else if (scanner.found()) {
    refused = InvalidArgument("the SVG file carries script or active content");
  }
  if (!refused.ok()) {
    SILO_RETURN_IF_ERROR(RemoveUpload(up.id));
    return refused;
  }
  row.sha256 = digest.FinishHex();
  SILO_RETURN_IF_ERROR(Commit(ctx, row, part, up.id));
  return row;
}

Result<FileStore::IssuedLink> FileStore::CreateLink(const events::Origin& ctx, const FileRow& file,
                                                    int64_t lifetime_us) {
  IssuedLink out;
  out.token = crypto::RandomToken(32);
  out.row.id = crypto::RandomId(16);
  out.row.file_id = file.id;
  out.row.created_by = ctx.actor.kind + ":" + ctx.actor.id;
  out.row.created_at_us = ctx.now_us;
  out.row.expires_at_us = ctx.now_us + lifetime_us;
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_RETURN_IF_ERROR(InsertLink(db, out.row, crypto::Sha256Hex(out.token)));
    SILO_RETURN_IF_ERROR(events::AppendAudit(
        db, ctx, "file.link_created", "file", file.id,
        {{"link", std::nullopt, JsonString(out.row.id), false},
         {"expires_at_us", std::nullopt, std::to_string(out.row.expires_at_us), false}}));
    return tx.Commit();
  }));
  return out;
}

Status FileStore::RevokeLink(const events::Origin& ctx, std::string_view file_id,
                             std::string_view link_id) {
  return db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_RETURN_IF_ERROR(files::RevokeLink(db, file_id, link_id, ctx.now_us));
    SILO_RETURN_IF_ERROR(events::AppendAudit(db, ctx, "file.link_revoked", "file",
                                             std::string(file_id),
                                             {{"link", std::nullopt, JsonString(link_id), false}}));
    return tx.Commit();
  });
}

Result<FileRow> FileStore::ResolveLink(std::string_view token, int64_t now_us) {
  std::optional<FileRow> out;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(LinkRow link, LoadLinkByHash(db, crypto::Sha256Hex(token)));
    if (link.revoked_at_us != 0 || link.expires_at_us <= now_us) {
      return FailedPrecondition("the link has expired or was revoked");
    }
    SILO_ASSIGN_OR_RETURN(out, LoadFile(db, link.file_id));
    if (out->state != FileState::kAttached) {
      return FailedPrecondition("the link's file is no longer attached");
    }
    return Status::Ok();
  }));
  return std::move(*out);
}

Result<FileStore::Collected> FileStore::CollectExpired(int64_t now_us, int64_t stale_us) {
  Collected out;
  for (;;) {  // pending files past their expiry, a batch per transaction
    SILO_ASSIGN_OR_RETURN(
        auto ids,
        RemoveRows(
            now_us, "file.collected",
            [&](Database& db) { return ExpiredPending(db, now_us, kBatch); }, &DeletePendingFile));
    for (const auto& id : ids) {
      UnlinkBlob(id);
    }
    out.pending_files += static_cast<int64_t>(ids.size());
    if (ids.size() < kBatch) break;
  }
  for (;;) {  // resumable uploads past their expiry
    std::vector<std::string> ids;
    SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
      SILO_ASSIGN_OR_RETURN(ids, ExpiredUploads(db, now_us, kBatch));
      return Status::Ok();
    }));
    for (const auto& id : ids) {
      // One still being written (its expiry passed mid-request) waits for
      // the next pass.
      auto claim = stores_->ClaimUpload(tenant_id_, id);
      if (!claim) continue;
      SILO_RETURN_IF_ERROR(RemoveUpload(id));
      ++out.uploads;
    }
    if (ids.size() < kBatch) break;
  }
  // Files no row names, untouched for stale_us: a crash's leftovers.
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = layout::TenantFilesDir(stores_->data_dir_, tenant_id_);
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    const std::string id = name.substr(0, name.find('.'));
    if (!ValidBlobId(id)) continue;
    struct stat st;
    if (::stat(it->path().c_str(), &st) != 0) continue;
    const int64_t modified_us = int64_t{st.st_mtim.tv_sec} * 1'000'000 + st.st_mtim.tv_nsec / 1000;
    if (now_us - modified_us < stale_us) continue;
    bool known = true;
    SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
      SILO_ASSIGN_OR_RETURN(known, IdKnown(db, id));
      return Status::Ok();
    }));
    if (!known && UnlinkBlob(id, it->path().string())) ++out.orphans;
  }
  return out;
}

Result<std::vector<std::string>> FileStore::RemoveRows(
    int64_t now_us, const char* event_type,
    const std::function<Result<std::vector<std::string>>(Database&)>& select,
    Status (*remove)(Database&, std::string_view)) {
  std::vector<std::string> ids;
  SILO_RETURN_IF_ERROR(db_->Write([&](Database& db) -> Status {
    SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(db));
    SILO_ASSIGN_OR_RETURN(ids, select(db));
    for (const auto& id : ids) {
      SILO_RETURN_IF_ERROR(remove(db, id));
      events::Event e;
      e.type = event_type;
      e.subject_kind = "file";
      e.subject_id = id;
      e.at_us = now_us;
      e.actor = {"system", "files"};
      SILO_RETURN_IF_ERROR(events::Append(db, e));
    }
    return tx.Commit();
  }));
  return ids;
}

Result<int64_t> FileStore::PurgeTombstones(int64_t now_us, int64_t cutoff_us) {
  int64_t purged = 0;
  for (;;) {
    SILO_ASSIGN_OR_RETURN(auto ids,
                          RemoveRows(
                              now_us, "file.purged",
                              [&](Database& db) { return TombstonesBefore(db, cutoff_us, kBatch); },
                              &DeleteTombstone));
    // The rows are gone first: a crash here leaves blobs without a row,
    // which CollectExpired removes.
    for (const auto& id : ids) {
      UnlinkBlob(id);
    }
    purged += static_cast<int64_t>(ids.size());
    if (ids.size() < kBatch) break;
  }
  return purged;
}

bool FileStore::UnlinkBlob(std::string_view id, const std::string& path) {
  const std::string file =
      path.empty() ? layout::TenantBlobFile(stores_->data_dir_, tenant_id_, std::string(id)) : path;
  if (::unlink(file.c_str()) != 0) return false;
  if (stores_->replication_.removed && file.ends_with(".sf")) {
    stores_->replication_.removed(tenant_id_, std::string(id));
  } else if (stores_->replication_.part_removed && file.ends_with(".part")) {
    stores_->replication_.part_removed(tenant_id_, std::string(id));
  }
  return true;
}

Status FileStore::TerminateUpload(const events::Origin& ctx, std::string_view id) {
  auto claim = stores_->ClaimUpload(tenant_id_, id);
  if (!claim) return VersionMismatch("another request is writing this upload");
  auto row = FindUpload(ctx, id);
  if (!row.ok()) {
    if (row.status().code() == StatusCode::kFailedPrecondition) {
      SILO_RETURN_IF_ERROR(RemoveUpload(id));  // expired: gone either way
    }
    return row.status();
  }
  return RemoveUpload(id);
}

}  // namespace silo::files
