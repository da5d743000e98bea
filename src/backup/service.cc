#include "backup/service.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "backup/blobs.h"
#include "backup/tenant_key.h"
#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "events/event_log.h"
#include "files/catalog.h"
#include "records/rewind.h"
#include "storage/snapshot.h"

namespace silo::backup {
namespace {

namespace json = boost::json;
using storage::Database;

constexpr auto kSwapWait = std::chrono::seconds(30);

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Result<ChainHead> ReadHead(Database& db, const char* table) {
  ChainHead head;
  auto last =
      db.Prepare(std::string("SELECT seq, hash FROM ") + table + " ORDER BY seq DESC LIMIT 1");
  if (!last.ok()) return last.status();
  auto row = last->Step();
  if (!row.ok()) return row.status();
  if (*row) {
    head.seq = last->ColumnInt(0);
    head.hash = last->ColumnText(1);
  }
  last->Reset();
  auto count = db.Prepare(std::string("SELECT count(*) FROM ") + table);
  if (!count.ok()) return count.status();
  row = count->Step();
  if (!row.ok()) return row.status();
  head.count = count->ColumnInt(0);
  count->Reset();
  return head;
}

std::optional<tenant::TenantInfo> FindById(const tenant::TenantRegistry& tenants,
                                           const std::string& id) {
  for (auto& t : tenants.List()) {
    if (t.id == id) return t;
  }
  return std::nullopt;
}

// What a restored copy must show: an intact file, both chains intact, and
// exactly the events the manifest says the backup holds.
struct CopyCheck {
  std::string integrity;
  bool events_ok = false, audit_ok = false;
  ChainHead events;
  std::string problem;  // empty when all is well
};

Result<CopyCheck> CheckCopy(Database& db, const Manifest& m) {
  CopyCheck c;
  auto integrity = db.IntegrityCheck();
  if (!integrity.ok()) return integrity.status();
  c.integrity = *integrity;
  auto ev = events::Verify(db, events::Log::kEvents);
  if (!ev.ok()) return ev.status();
  auto au = events::Verify(db, events::Log::kAudit);
  if (!au.ok()) return au.status();
  c.events_ok = !ev->first_broken;
  c.audit_ok = !au->first_broken;
  auto head = ReadHead(db, "events");
  if (!head.ok()) return head.status();
  c.events = *head;
  if (c.integrity != "ok") {
    c.problem = "integrity_check: " + c.integrity;
  } else if (!c.events_ok) {
    c.problem =
        "event chain broken at entry " + std::to_string(*ev->first_broken) + ": " + ev->reason;
  } else if (!c.audit_ok) {
    c.problem =
        "audit chain broken at entry " + std::to_string(*au->first_broken) + ": " + au->reason;
  } else if (c.events.count != m.events.count || c.events.seq != m.events.seq ||
             c.events.hash != m.events.hash) {
    c.problem = "the copy's events (" + std::to_string(c.events.count) + ", head " +
                c.events.hash.substr(0, 16) + ") differ from the manifest's (" +
                std::to_string(m.events.count) + ", head " + m.events.hash.substr(0, 16) + ")";
  }
  return c;
}

// The restore's own audit entry, in the copy about to become the tenant.
Status AppendRestored(Database& db, const Manifest& m, const RestoreRequest& request,
                      const RestoreReport& report) {
  json::object details{{"backup_id", m.id},
                       {"backup_taken_at", FormatRfc3339Micros(m.taken_at_us)},
                       {"from_tenant", m.tenant_slug},
                       {"events_dropped", report.events_dropped},
                       {"audit_dropped", report.audit_dropped},
                       {"sessions_ended", report.sessions_ended},
                       {"files", report.files},
                       {"links_dropped", report.links_dropped}};
  if (request.at_us) details["at"] = FormatRfc3339Micros(*request.at_us);
  if (!report.pre_restore_backup_id.empty()) {
    details["pre_restore_backup_id"] = report.pre_restore_backup_id;
    details["audit_kept"] = report.audit_kept;
  }
  events::Origin origin{{"operator", "operator"}, request.request_id, "", NowMicros()};
  return events::AppendAudit(db, origin, "backup.restored", "backup", m.id,
                             events::DetailChanges(details));
}

Status AuditChainIntact(Database& db) {
  auto after = events::Verify(db, events::Log::kAudit);
  if (!after.ok()) return after.status();
  if (after->first_broken) return DataLoss("audit chain broken after the restore entry");
  return Status::Ok();
}

void RemoveDb(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-journal"}) std::remove((path + suffix).c_str());
}

std::string ScratchName(const std::string& dir, const char* suffix) {
  return dir + "/" + crypto::HexEncode(crypto::RandomBytes(8)) + suffix;
}

using File = std::unique_ptr<FILE, int (*)(FILE*)>;

// Seals the image of `copy` into a new file at `path` (the .data object).
Status SealTo(const storage::ImageCopy& copy, const crypto::SecretKey& backup_key, Manifest& m,
              const std::string& path) {
  File f(std::fopen(path.c_str(), "wbx"), &std::fclose);
  if (!f) return Unavailable("cannot write the backup's scratch object").WithCause(path);
  ImageSealer sealer(backup_key, m, [&](std::string_view bytes) -> Status {
    if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
      return Unavailable("cannot write the backup's scratch object").WithCause(path);
    }
    return Status::Ok();
  });
  SILO_RETURN_IF_ERROR(
      copy.Stream(size_t{1} << 20, [&](std::string_view pages) { return sealer.Add(pages); }));
  SILO_RETURN_IF_ERROR(sealer.Finish());
  if (std::fflush(f.get()) != 0) return Unavailable("cannot write the backup's scratch object");
  return Status::Ok();
}

// Opens every chunk of the checked .data object at `path`, in order.
Status OpenDataFile(const std::string& path, const crypto::SecretKey& backup_key, const Manifest& m,
                    const std::function<Status(std::string_view)>& sink) {
  File f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Unavailable("cannot read the backup's data object").WithCause(path);
  return OpenImageChunks(
      [&](size_t n, std::string& out) -> Status {
        out.resize(n);
        if (std::fread(out.data(), 1, n, f.get()) != n) return DataLoss("short read");
        return Status::Ok();
      },
      backup_key, m, sink);
}

}  // namespace

std::string DrillReport::ToJson() const {
  json::object o{{"tenant", tenant_slug},
                 {"tenant_id", tenant_id},
                 {"backup_id", backup_id},
                 {"backup_taken_at", FormatRfc3339Micros(backup_taken_at_us)},
                 {"drilled_at", FormatRfc3339Micros(at_us)},
                 {"ok", ok},
                 {"problem", problem},
                 {"integrity", integrity},
                 {"events_chain_ok", events_chain_ok},
                 {"audit_chain_ok", audit_chain_ok},
                 {"events", events},
                 {"events_expected", events_expected},
                 {"chain_head", chain_head},
                 {"chain_head_expected", chain_head_expected},
                 {"image_bytes", image_bytes},
                 {"files", files},
                 {"files_bytes", files_bytes},
                 {"files_checked", files_checked},
                 {"restore_seconds", restore_seconds}};
  return json::serialize(o);
}

Service::Service(std::unique_ptr<Target> target, tenant::TenantRegistry* tenants,
                 crypto::Keyring* keyring, std::shared_ptr<storage::TenantDatabases> databases,
                 records::TenantStores* stores, std::string data_dir, RetentionPolicy retention,
                 ForgetOnRestore forget)
    : target_(std::move(target)),
      tenants_(tenants),
      keyring_(keyring),
      databases_(std::move(databases)),
      stores_(stores),
      data_dir_(std::move(data_dir)),
      retention_(retention),
      forget_(std::move(forget)) {
  // What a crash left in scratch (sealed bytes and copies under throwaway
  // keys only): no operation runs yet.
  (void)RemoveTree(layout::BackupScratchDir(data_dir_));
}

Stats Service::stats() const {
  MutexLock lock(stats_mu_);
  return stats_;
}

Result<Manifest> Service::Run(const tenant::TenantInfo& tenant) {
  MutexLock lock(mu_);
  return RunLocked(tenant);
}

Result<Manifest> Service::RunLocked(const tenant::TenantInfo& tenant) {
  const auto t0 = std::chrono::steady_clock::now();
  // (Here: the analysis does not see mu_ held inside the lambda.)
  auto tenant_key = TenantKeyLocked(tenant.id, true);
  auto result = [&]() -> Result<Manifest> {
    auto dek = keyring_->GetKey(tenant.id);
    if (!dek.ok()) return dek.status();
    if (!tenant_key.ok()) return tenant_key.status();
    crypto::SecretKey backup_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kBackups);
    auto db = databases_->Acquire(tenant.id);
    if (!db.ok()) return db.status();

    Manifest m;
    m.tenant_id = tenant.id;
    m.tenant_slug = tenant.slug;
    m.wrapped_key = crypto::Base64Encode(WrapDataKey(*tenant_key, tenant.id, *dek));
    m.tenant_key_id = TenantKeyId(*tenant_key);
    const std::string scratch = layout::BackupScratchDir(data_dir_);
    SILO_RETURN_IF_ERROR(MakeDirs(scratch, 0700));
    // The image goes through an encrypted copy and a sealed scratch object:
    // memory stays at a chunk or two whatever the database's size.
    std::optional<storage::ImageCopy> copy;
    std::vector<files::KeptFile> kept;  // the files of exactly this image
    Status s = (*db)->Read([&](Database& d) -> Status {
      auto taken = storage::TakeImageCopy(
          d,
          [&](Database& in) -> Status {
            m.taken_at_us = NowMicros();
            auto ev = ReadHead(in, "events");
            if (!ev.ok()) return ev.status();
            auto au = ReadHead(in, "audit");
            if (!au.ok()) return au.status();
            m.events = *ev;
            m.audit = *au;
            SILO_ASSIGN_OR_RETURN(kept, files::FilesToKeep(in));
            return Status::Ok();
          },
          ScratchName(scratch, ".db"));
      if (!taken.ok()) return taken.status();
      copy.emplace(std::move(taken).value());
      return Status::Ok();
    });
    db->reset();
    if (!s.ok()) return s;
    // An id names a second and 16 random bits: two backups in one second
    // could draw the same one, and the second would overwrite the first.
    for (int tries = 0;; ++tries) {
      m.id = NewBackupId(tenant.id, m.taken_at_us);
      SILO_ASSIGN_OR_RETURN(auto taken, target_->List(tenant.id + "/" + m.id));
      if (taken.empty()) break;
      if (tries == 16) return Internal("no free backup id");
    }
    RemoveOnExit data(ScratchName(scratch, ".data"));
    SILO_RETURN_IF_ERROR(SealTo(*copy, backup_key, m, data.path()));
    copy.reset();
    // Blobs first (shared, so never deleted here), then the data and the
    // files list; the manifest goes last: a listing never shows a backup
    // without its data, its list or a file the list names.
    std::string list;
    if (!kept.empty()) {
      SILO_ASSIGN_OR_RETURN(uint32_t epoch, keyring_->Epoch(tenant.id));
      SILO_ASSIGN_OR_RETURN(auto entries, StoreBlobs(*target_, data_dir_, tenant.id, kept, epoch));
      list = SealFilesList(entries, backup_key, m);
    }
    auto undo = [&] {
      (void)target_->Delete(DataName(m.id));
      (void)target_->Delete(FilesListName(m.id));
      (void)target_->Delete(CheckpointName(m.id));
    };
    Status p = target_->PutFile(DataName(m.id), data.path());
    if (p.ok() && !list.empty()) p = target_->Put(FilesListName(m.id), list);
    if (p.ok() && sign_checkpoint_) {
      auto signed_text = sign_checkpoint_(m);
      p = signed_text.ok() ? target_->Put(CheckpointName(m.id), *signed_text)
                           : signed_text.status();
    }
    if (p.ok()) p = target_->Put(ManifestName(m.id), SerializeManifest(m, backup_key));
    if (!p.ok()) {
      undo();
      return p;
    }
    return m;
  }();
  double seconds = SecondsSince(t0);
  {
    MutexLock stats(stats_mu_);
    if (result.ok()) {
      ++stats_.backups_ok;
      stats_.last_backup_seconds = seconds;
      stats_.last_backup_bytes = result->stored_bytes;
      stats_.last_success_us = NowMicros();
    } else {
      ++stats_.backups_failed;
    }
  }
  if (result.ok()) {
    (void)AuditLive(tenant.id, {"backup.created",
                                "backup",
                                result->id,
                                {{"target", target_->Describe()},
                                 {"image_bytes", result->image_bytes},
                                 {"stored_bytes", result->stored_bytes},
                                 {"files", result->files},
                                 {"files_bytes", result->files_bytes},
                                 {"events_seq", result->events.seq}}});
  }
  return result;
}

Status Service::AuditLive(const std::string& tenant_id, const records::AuditEntry& entry) {
  auto store = stores_->Open(tenant_id);
  if (!store.ok()) return store.status();
  events::Origin ctx;
  ctx.actor = {"operator", "operator"};
  ctx.now_us = NowMicros();
  return (*store)->Audit(ctx, entry);
}

struct Service::TenantKeys {
  std::map<std::string, Status> failed;
  std::map<std::string, crypto::SecretKey> opened;
};

Result<crypto::SecretKey> Service::TenantKeyLocked(const std::string& tenant_id, bool create) {
  auto shredded = target_->List(ShreddedName(tenant_id));
  if (!shredded.ok()) return shredded.status();
  if (!shredded->empty()) {
    return FailedPrecondition("the tenant's backups were crypto-shredded");
  }
  const std::string name = TenantKeyName(tenant_id);
  auto text = target_->Get(name);
  if (!text.ok() && text.status().code() == StatusCode::kNotFound && create) {
    // The tenant's first backup of format 2. One backup runs at a time on a
    // node, and a tenant is backed up by the node that leads it.
    crypto::SecretKey fresh = crypto::SecretKey::Random();
    TenantKeyObject o{tenant_id, keyring_->master_fingerprint(),
                      keyring_->Wrap(tenant_id, fresh, crypto::Keyring::Kind::kBackup)};
    SILO_RETURN_IF_ERROR(target_->Put(name, EncodeTenantKey(o)));
    text = target_->Get(name);  // what is stored is what the backup uses
  }
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return DataLoss("the tenant's backup key is missing from " + target_->Describe());
    }
    return text.status();
  }
  SILO_ASSIGN_OR_RETURN(TenantKeyObject o, DecodeTenantKey(*text));
  if (o.tenant_id != tenant_id) return DataLoss("the tenant's backup key object is another's");
  if (o.master_fingerprint != keyring_->master_fingerprint()) {
    return DataLoss("the backup was made under another master key")
        .WithCause("backup key fingerprint " + o.master_fingerprint + ", this server's " +
                   keyring_->master_fingerprint());
  }
  auto key = keyring_->Unwrap(tenant_id, o.wrapped, crypto::Keyring::Kind::kBackup);
  if (!key.ok()) {
    return DataLoss("the tenant's backup key does not open under this master key (altered)");
  }
  return key;
}

Result<crypto::SecretKey> Service::DataKeyLocked(const Manifest& m, TenantKeys* keys) {
  auto wrapped = crypto::Base64Decode(m.wrapped_key);
  if (!wrapped.ok()) return DataLoss("the backup's wrapped key is not base64");
  if (m.format == 1) {
    if (m.master_fingerprint != keyring_->master_fingerprint()) {
      return DataLoss("the backup was made under another master key")
          .WithCause("backup key fingerprint " + m.master_fingerprint + ", this server's " +
                     keyring_->master_fingerprint());
    }
    auto dek = keyring_->Unwrap(m.tenant_id, *wrapped);
    if (!dek.ok()) {
      return DataLoss(
          "the backup's key does not open under this master key (wrong master key, "
          "or the manifest was altered)");
    }
    return dek;
  }
  std::optional<crypto::SecretKey> tenant_key;
  if (keys != nullptr) {
    if (auto f = keys->failed.find(m.tenant_id); f != keys->failed.end()) return f->second;
    if (auto k = keys->opened.find(m.tenant_id); k != keys->opened.end()) {
      tenant_key = k->second.Clone();
    }
  }
  if (!tenant_key) {
    auto loaded = TenantKeyLocked(m.tenant_id, false);
    if (!loaded.ok()) {
      if (keys != nullptr) keys->failed.emplace(m.tenant_id, loaded.status());
      return loaded.status();
    }
    if (keys != nullptr) keys->opened.emplace(m.tenant_id, loaded->Clone());
    tenant_key = std::move(*loaded);
  }
  if (m.tenant_key_id != TenantKeyId(*tenant_key)) {
    return DataLoss("the backup names another tenant backup key than the target holds");
  }
  auto dek = UnwrapDataKey(*tenant_key, m.tenant_id, *wrapped);
  if (!dek.ok()) return DataLoss("the backup's key does not open (the manifest was altered)");
  return dek;
}

Result<ShredReport> Service::Shred(const std::string& tenant_id, const std::string& slug) {
  MutexLock lock(mu_);
  ShredReport report;
  auto names = target_->List(tenant_id + "/");
  if (!names.ok()) return names.status();
  auto marker = target_->List(ShreddedName(tenant_id));
  if (!marker.ok()) return marker.status();
  // A rerun finds the marker already written; the key may still be there.
  std::optional<crypto::SecretKey> tenant_key;
  if (marker->empty()) {
    auto key = TenantKeyLocked(tenant_id, true);
    if (key.ok()) {
      tenant_key = std::move(*key);
    } else if (key.status().code() != StatusCode::kDataLoss) {
      return key.status();
    }  // else a key object nothing opens: deleted below all the same
  }
  for (const std::string& name : *names) {
    if (!name.ends_with(".json")) continue;
    auto text = target_->Get(name);
    if (!text.ok()) {
      if (text.status().code() == StatusCode::kNotFound) continue;  // pruned meanwhile
      return text.status();
    }
    auto m = ParseManifest(*text);
    if (!m.ok() || ManifestName(m->id) != name) continue;  // not a backup of ours
    ++report.backups;
    if (m->format != 1) continue;
    // Format 1 carries the data key under the master key: move it under the
    // tenant's key (same MAC key: the backup key derives from the data key).
    auto dek = DataKeyLocked(*m);
    Status mac =
        dek.ok() ? CheckManifestMac(*text, crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kBackups))
                 : dek.status();
    if (!mac.ok() || !tenant_key) {
      // Nothing here opens it; its wrapped key is the one thing to destroy.
      SILO_RETURN_IF_ERROR(target_->Delete(name));
      ++report.dropped;
      continue;
    }
    m->format = kFormatVersion;
    m->master_fingerprint.clear();
    m->wrapped_key = crypto::Base64Encode(WrapDataKey(*tenant_key, tenant_id, *dek));
    m->tenant_key_id = TenantKeyId(*tenant_key);
    SILO_RETURN_IF_ERROR(target_->Put(
        name, SerializeManifest(*m, crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kBackups))));
    ++report.rewrapped;
  }
  if (marker->empty()) {
    SILO_RETURN_IF_ERROR(
        target_->Put(ShreddedName(tenant_id), EncodeShredded(tenant_id, slug, NowMicros())));
  }
  SILO_RETURN_IF_ERROR(target_->Delete(TenantKeyName(tenant_id)));
  auto gone = target_->Get(TenantKeyName(tenant_id));
  if (gone.ok() || gone.status().code() != StatusCode::kNotFound) {
    return Internal("the tenant's backup key is still in the target after its delete")
        .WithCause(gone.ok() ? "present" : gone.status().message());
  }
  // Its blobs open under no key now either, and no listing shows them:
  // they go at once (the manifests stay, listed as shredded, until pruned).
  SILO_ASSIGN_OR_RETURN(auto blobs, StoredBlobNames(*target_, tenant_id));
  for (const std::string& name : blobs) {
    SILO_RETURN_IF_ERROR(target_->Delete(name));
    ++report.blobs_deleted;
  }
  return report;
}

Result<Service::Loaded> Service::LoadLocked(const std::string& backup_id, bool open_chunks) {
  auto tenant_id = TenantOfBackupId(backup_id);
  if (!tenant_id.ok()) return InvalidArgument("not a backup id: " + backup_id);
  auto text = target_->Get(ManifestName(backup_id));
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return NotFound("no backup " + backup_id + " in " + target_->Describe());
    }
    return text.status();
  }
  auto m = ParseManifest(*text);
  if (!m.ok()) return m.status();
  if (m->id != backup_id) return DataLoss("the manifest is another backup's (" + m->id + ")");
  auto dek = DataKeyLocked(*m);
  if (!dek.ok()) return dek.status();
  crypto::SecretKey backup_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kBackups);
  if (m->key_id != BackupKeyId(backup_key)) {
    return DataLoss("the backup was sealed with another key than the one it carries");
  }
  if (Status s = CheckManifestMac(*text, backup_key); !s.ok()) return s;
  // The data object is fetched to scratch (sealed bytes only) and checked
  // whole against the manifest before a chunk of it is opened.
  const std::string scratch = layout::BackupScratchDir(data_dir_);
  SILO_RETURN_IF_ERROR(MakeDirs(scratch, 0700));
  Loaded loaded{std::move(*m),
                std::make_unique<RemoveOnExit>(ScratchName(scratch, ".data")),
                backup_key.Clone(),
                {},
                crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kFiles),
                crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kSecretFields)};
  if (Status g = target_->GetFile(DataName(backup_id), loaded.data->path()); !g.ok()) {
    if (g.code() == StatusCode::kNotFound) return DataLoss("the backup's data object is missing");
    return g;
  }
  SILO_ASSIGN_OR_RETURN(crypto::FileDigest digest, crypto::DigestFile(loaded.data->path()));
  SILO_RETURN_IF_ERROR(CheckData(digest.size, digest.sha256, loaded.manifest));
  if (open_chunks) {
    SILO_RETURN_IF_ERROR(OpenDataFile(loaded.data->path(), backup_key, loaded.manifest,
                                      [](std::string_view) { return Status::Ok(); }));
  }
  if (!loaded.manifest.files_list_sha256.empty()) {
    auto list = target_->Get(FilesListName(backup_id));
    if (!list.ok()) {
      if (list.status().code() == StatusCode::kNotFound) {
        return DataLoss("the backup's files list is missing");
      }
      return list.status();
    }
    SILO_ASSIGN_OR_RETURN(loaded.files, OpenFilesList(*list, backup_key, loaded.manifest));
  }
  return loaded;
}

Status Service::WriteImageOf(const Loaded& loaded, const std::string& path,
                             const crypto::SecretKey& key) {
  SILO_ASSIGN_OR_RETURN(auto writer, storage::ImageWriter::Create(path, key));
  SILO_RETURN_IF_ERROR(OpenDataFile(loaded.data->path(), *loaded.backup_key, loaded.manifest,
                                    [&](std::string_view image) { return writer->Append(image); }));
  return writer->Finish();
}

Result<std::vector<FileEntry>> Service::FilesListLocked(const Manifest& m) {
  SILO_ASSIGN_OR_RETURN(crypto::SecretKey dek, DataKeyLocked(m));
  SILO_ASSIGN_OR_RETURN(std::string sealed, target_->Get(FilesListName(m.id)));
  return OpenFilesList(sealed, crypto::DeriveSubkey(dek, crypto::KeyPurpose::kBackups), m);
}

Result<Manifest> Service::Verify(const std::string& backup_id) {
  MutexLock lock(mu_);
  auto loaded = LoadLocked(backup_id, true);
  if (!loaded.ok()) return loaded.status();
  auto blobs = CheckBlobs(*target_, layout::BackupScratchDir(data_dir_), loaded->manifest.tenant_id,
                          loaded->files, nullptr, {});
  if (!blobs.ok()) return blobs.status();
  return std::move(loaded->manifest);
}

Result<std::vector<Listed>> Service::List(const std::optional<std::string>& tenant_id) {
  MutexLock lock(mu_);
  return ListLocked(tenant_id);
}

Result<std::vector<Listed>> Service::ListLocked(const std::optional<std::string>& tenant_id) {
  auto names = target_->List(tenant_id ? *tenant_id + "/" : "");
  if (!names.ok()) return names.status();
  std::set<std::string> present(names->begin(), names->end());
  TenantKeys keys;
  std::vector<Listed> out;
  for (const auto& name : *names) {
    constexpr std::string_view kSuffix = ".json";
    if (name.size() <= kSuffix.size() ||
        name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      continue;
    }
    auto text = target_->Get(name);
    if (!text.ok()) continue;  // deleted meanwhile
    Listed l;
    auto m = ParseManifest(*text);
    if (!m.ok()) continue;  // not ours
    l.manifest = std::move(*m);
    auto dek = DataKeyLocked(l.manifest, &keys);
    if (!dek.ok()) {
      l.shredded = dek.status().code() == StatusCode::kFailedPrecondition;
      l.problem = l.shredded ? "shredded" : dek.status().message();
    } else if (Status s = CheckManifestMac(
                   *text, crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kBackups));
               !s.ok()) {
      l.problem = s.message();
    } else if (present.count(DataName(l.manifest.id)) == 0) {
      l.problem = "data object missing";
    } else {
      l.good = true;
    }
    out.push_back(std::move(l));
  }
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) {
    return a.manifest.taken_at_us < b.manifest.taken_at_us;
  });
  return out;
}

Result<RestoreReport> Service::Restore(const RestoreRequest& request) {
  MutexLock lock(mu_);
  auto report = RestoreLocked(request);
  MutexLock stats(stats_mu_);
  ++(report.ok() ? stats_.restores_ok : stats_.restores_failed);
  return report;
}

// One function on purpose (longer than the 80 lines the style asks for): a
// restore is a narrated sequence of four numbered steps whose order is the
// safety argument (check everything, back up what is replaced, build and
// check the new file, then swap), and each step reads the state the one
// before it left. Split, the order would live in no one place.
Result<RestoreReport> Service::RestoreLocked(const RestoreRequest& request) {
  const auto t0 = std::chrono::steady_clock::now();
  // 1. Everything about the backup is checked before anything is touched.
  auto loaded = LoadLocked(request.backup_id, false);  // chunks open as they are written
  if (!loaded.ok()) return loaded.status();
  const Manifest& m = loaded->manifest;
  RestoreReport report;
  report.backup_id = m.id;
  report.image_bytes = m.image_bytes;

  // 2. Where it goes: the backup's tenant in place, or a new tenant.
  tenant::TenantInfo dest;
  if (request.as_slug) {
    if (tenants_->Find(*request.as_slug)) {
      return AlreadyExists("tenant " + *request.as_slug + " exists; choose a new slug");
    }
    auto created = tenants_->Create(*request.as_slug, "", "", tenant::TenantState::kSuspended);
    if (!created.ok()) return created.status();
    dest = *created;
    report.new_tenant = true;
  } else {
    auto live = FindById(*tenants_, m.tenant_id);
    if (!live) {
      return NotFound("tenant " + m.tenant_slug + " (" + m.tenant_id +
                      ") no longer exists; restore it with --as <new-slug>");
    }
    dest = *live;
    // The state about to be replaced is itself backed up first, so that an
    // in-place restore can be undone (restore this one).
    auto before = RunLocked(dest);
    if (!before.ok()) {
      return before.status().Rephrase(
          "the backup of the current state, taken before restoring in place, failed: " +
          before.status().message());
    }
    report.pre_restore_backup_id = before->id;
  }
  report.tenant_id = dest.id;
  report.tenant_slug = dest.slug;
  auto undo_new = [&] {
    if (report.new_tenant) (void)tenants_->Delete(dest.slug);
  };

  auto dek = keyring_->GetKey(dest.id);
  if (!dek.ok()) {
    undo_new();
    return dek.status();
  }
  crypto::SecretKey page_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kDatabasePages);
  const std::string dir = layout::TenantDir(data_dir_, dest.id);
  const std::string scratch = dir + "/restore-" + crypto::HexEncode(crypto::RandomBytes(4)) + ".db";
  std::map<std::string, uint64_t> kept;  // the copy's files: id -> size

  // 3. A new file, checked, cut back to --at, sessions ended, the restore
  // recorded, all before it replaces anything.
  Status s = [&]() -> Status {
    if (Status w = WriteImageOf(*loaded, scratch, page_key); !w.ok()) return w;
    auto db = Database::Open(scratch, page_key, {.create = false});
    if (!db.ok()) return db.status();
    auto check = CheckCopy(**db, m);
    if (!check.ok()) return check.status();
    if (!check->problem.empty()) return DataLoss("restored copy refused: " + check->problem);
    report.events = check->events.count;
    if (request.at_us) {
      auto rewound = records::RewindTo(**db, *request.at_us);
      if (!rewound.ok()) return rewound.status();
      report.events = rewound->events_kept;
      report.events_dropped = rewound->events_dropped;
      report.audit_dropped = rewound->audit_dropped;
    }
    auto tx = storage::Transaction::Begin(**db);
    if (!tx.ok()) return tx.status();
    // Sessions and one-time links of the past must not come back to life.
    SILO_ASSIGN_OR_RETURN(report.sessions_ended, forget_(**db));
    // Another tenant's key (restore --as): the copy's secrets move to it.
    crypto::SecretKey secrets_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kSecretFields);
    if (reseal_ &&
        crypto::KeyFingerprint(secrets_key) != crypto::KeyFingerprint(*loaded->secrets_key)) {
      SILO_ASSIGN_OR_RETURN(auto moved, reseal_(**db, *loaded->secrets_key, secrets_key));
      report.secrets_resealed = moved.first;
      report.recovery_codes_dropped = moved.second;
    }
    // Files follow the records: those they name (at --at, those of the
    // time) are attached, the rest tombstones; links never come back.
    SILO_ASSIGN_OR_RETURN(auto referenced, records::ReferencedFileIds(**db));
    SILO_ASSIGN_OR_RETURN(auto reset, files::ResetForRestore(**db, referenced, NowMicros()));
    report.links_dropped = reset.links_dropped;
    SILO_ASSIGN_OR_RETURN(auto to_keep, files::FilesToKeep(**db));
    for (const auto& k : to_keep) kept[k.id] = k.size;
    report.files = static_cast<int64_t>(kept.size());
    // In place, the audit entry is written at the swap, after the live
    // audit log it must follow.
    if (report.new_tenant) {
      if (Status a = AppendRestored(**db, m, request, report); !a.ok()) return a;
    }
    if (Status c = tx->Commit(); !c.ok()) return c;
    if (report.new_tenant) {
      if (Status v = AuditChainIntact(**db); !v.ok()) return v;
    }
    return (*db)->Checkpoint();
  }();
  if (s.ok() && report.new_tenant) s = SyncFile(scratch);
  // The blobs the copy's files need, on disk before the copy goes live.
  if (s.ok()) {
    crypto::SecretKey files_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kFiles);
    auto epoch = keyring_->Epoch(dest.id);
    auto blobs = epoch.ok() ? RestoreBlobs(*target_,
                                           {data_dir_, m.tenant_id, &*loaded->files_key, dest.id,
                                            &files_key, *epoch, kept},
                                           loaded->files)
                            : Result<BlobRestoreReport>(epoch.status());
    if (blobs.ok()) {
      report.files_fetched = blobs->fetched;
      report.files_present = blobs->present;
      report.files_resealed = blobs->resealed;
    } else {
      s = blobs.status();
    }
  }

  // 4. The swap: rename is atomic; no connection has the file open meanwhile.
  const std::string live_path = layout::TenantDatabaseFile(data_dir_, dest.id);
  if (s.ok()) {
    auto swap = [&]() -> Status {
      if (!report.new_tenant) {
        // No connection has the live file open now: its audit log, every
        // entry up to this moment, replaces the backup's, then the restore
        // is recorded after it.
        Status kept = [&]() -> Status {
          auto live = Database::Open(live_path, page_key, {.create = false});
          if (!live.ok()) return live.status();
          auto db = Database::Open(scratch, page_key, {.create = false});
          if (!db.ok()) return db.status();
          auto tx = storage::Transaction::Begin(**db);
          if (!tx.ok()) return tx.status();
          auto copied = events::ReplaceWithCopy(**live, **db, events::Log::kAudit);
          if (!copied.ok()) return copied.status();
          report.audit_kept = *copied;
          report.audit_dropped = 0;
          if (Status a = AppendRestored(**db, m, request, report); !a.ok()) return a;
          if (Status c = tx->Commit(); !c.ok()) return c;
          if (Status v = AuditChainIntact(**db); !v.ok()) return v;
          return (*db)->Checkpoint();
        }();
        if (!kept.ok()) return kept;
        if (Status f = SyncFile(scratch); !f.ok()) return f;
        if (before_swap_) SILO_RETURN_IF_ERROR(before_swap_(dest.id));
      }
      // A WAL left beside the old file would be replayed into the new one.
      std::remove((live_path + "-wal").c_str());
      std::remove((live_path + "-journal").c_str());
      if (::rename(scratch.c_str(), live_path.c_str()) != 0) {
        return Internal("cannot replace the tenant database")
            .WithCause("rename " + scratch + " over " + live_path);
      }
      return SyncDir(dir);
    };
    s = report.new_tenant
            ? swap()
            : databases_->Exclusive(dest.id, "the tenant is being restored", kSwapWait, swap);
  }
  if (s.ok() && report.new_tenant) s = tenants_->SetState(dest.slug, tenant::TenantState::kActive);
  if (!s.ok()) {
    RemoveDb(scratch);
    undo_new();
    return s;
  }
  report.seconds = SecondsSince(t0);
  return report;
}

Result<DrillReport> Service::Drill(const tenant::TenantInfo& tenant) {
  MutexLock lock(mu_);
  auto report = DrillLocked(tenant);
  MutexLock stats(stats_mu_);
  if (report.ok() && report->ok) {
    ++stats_.drills_ok;
    stats_.last_drill_seconds = report->restore_seconds;
  } else {
    ++stats_.drills_failed;
  }
  return report;
}

Result<DrillReport> Service::DrillLocked(const tenant::TenantInfo& tenant) {
  auto listed = ListLocked(tenant.id);
  if (!listed.ok()) return listed.status();
  const Listed* newest = nullptr;
  for (const auto& l : *listed) {
    if (l.good) newest = &l;  // oldest first
  }
  if (newest == nullptr) return NotFound("no good backup of " + tenant.slug + " to drill");

  DrillReport r;
  r.tenant_id = tenant.id;
  r.tenant_slug = tenant.slug;
  r.backup_id = newest->manifest.id;
  r.backup_taken_at_us = newest->manifest.taken_at_us;
  r.events_expected = newest->manifest.events.count;
  r.chain_head_expected = newest->manifest.events.hash;
  r.at_us = NowMicros();
  // The scratch copy is encrypted under a throwaway key and lives beside the
  // tenant's own files (same filesystem, same protections).
  const std::string scratch = layout::TenantDir(data_dir_, tenant.id) + "/drill-" +
                              crypto::HexEncode(crypto::RandomBytes(4)) + ".db";
  const auto t0 = std::chrono::steady_clock::now();
  Status s = [&]() -> Status {
    mu_.AssertHeld();                              // the lambda runs here, inside DrillLocked
    auto loaded = LoadLocked(r.backup_id, false);  // chunks open as they are written
    if (!loaded.ok()) return loaded.status();
    r.image_bytes = loaded->manifest.image_bytes;
    crypto::SecretKey scratch_key = crypto::SecretKey::Random();
    if (Status w = WriteImageOf(*loaded, scratch, scratch_key); !w.ok()) return w;
    auto db = Database::Open(scratch, scratch_key, {.create = false});
    if (!db.ok()) return db.status();
    auto check = CheckCopy(**db, loaded->manifest);
    if (!check.ok()) return check.status();
    r.integrity = check->integrity;
    r.events_chain_ok = check->events_ok;
    r.audit_chain_ok = check->audit_ok;
    r.events = check->events.count;
    r.chain_head = check->events.hash;
    if (!check->problem.empty()) return DataLoss(check->problem);
    // Every file the copy keeps must be in the backup, and every listed blob
    // must be there with its bytes and open under the tenant's key.
    r.files = loaded->manifest.files;
    r.files_bytes = loaded->manifest.files_bytes;
    SILO_ASSIGN_OR_RETURN(auto to_keep, files::FilesToKeep(**db));
    std::map<std::string, uint64_t> sizes;
    for (const auto& k : to_keep) sizes[k.id] = k.size;
    for (const auto& e : loaded->files) {
      if (sizes.count(e.blob_id) == 0) {
        return DataLoss("the backup lists file " + e.blob_id + " that its database does not keep");
      }
    }
    if (loaded->files.size() != sizes.size()) {
      return DataLoss("the backup holds " + std::to_string(loaded->files.size()) + " of the " +
                      std::to_string(sizes.size()) + " files its database keeps");
    }
    auto blobs = CheckBlobs(*target_, layout::BackupScratchDir(data_dir_), tenant.id, loaded->files,
                            &*loaded->files_key, sizes);
    if (!blobs.ok()) return blobs.status();
    r.files_checked = blobs->opened;
    return Status::Ok();
  }();
  r.restore_seconds = SecondsSince(t0);
  RemoveDb(scratch);
  r.ok = s.ok();
  if (!s.ok()) r.problem = s.message();

  std::string reports = layout::DrillReportsDir(data_dir_);
  if (MakeDirs(reports, 0700).ok()) {
    (void)WriteFileAtomic(reports + "/" + r.backup_id + "-drill.json", r.ToJson() + "\n", 0600);
  }
  (void)AuditLive(tenant.id, {r.ok ? "backup.drill_passed" : "backup.drill_failed",
                              "backup",
                              r.backup_id,
                              {{"restore_seconds", r.restore_seconds},
                               {"events", r.events},
                               {"files_checked", r.files_checked},
                               {"events_expected", r.events_expected},
                               {"problem", r.problem}}});
  return r;
}

Result<std::vector<std::string>> Service::Prune(int64_t now_us) {
  MutexLock lock(mu_);
  auto listed_backups = ListLocked(std::nullopt);
  if (!listed_backups.ok()) return listed_backups.status();
  std::vector<BackupRef> refs;
  for (const auto& l : *listed_backups) {
    refs.push_back({l.manifest.id, l.manifest.tenant_id, l.manifest.taken_at_us, l.good});
  }
  std::vector<std::string> pruned;
  for (const auto& id : BackupsToPrune(refs, retention_, now_us)) {
    // The manifest first: a listing never shows a backup whose data is gone.
    if (Status s = target_->Delete(ManifestName(id)); !s.ok()) return s;
    if (Status s = target_->Delete(DataName(id)); !s.ok()) return s;
    (void)target_->Delete(FilesListName(id));
    (void)target_->Delete(CheckpointName(id));
    pruned.push_back(id);
  }
  // Blobs are shared: one goes when no backup of its tenant that remains
  // lists it. A tenant with a remaining list that cannot be read keeps all.
  std::set<std::string> touched;
  for (const auto& id : pruned) {
    if (auto t = TenantOfBackupId(id); t.ok()) touched.insert(*t);
  }
  const std::set<std::string> gone(pruned.begin(), pruned.end());
  for (const auto& tenant_id : touched) {
    std::set<std::string> listed;
    bool readable = true;
    for (const auto& l : *listed_backups) {
      if (l.manifest.tenant_id != tenant_id || gone.count(l.manifest.id) > 0) continue;
      if (l.manifest.files_list_sha256.empty()) continue;
      auto entries = FilesListLocked(l.manifest);
      if (!entries.ok()) {
        readable = false;
        break;
      }
      for (const auto& e : *entries) listed.insert(FileBlobName(tenant_id, e.blob_id));
    }
    if (!readable) continue;
    auto names = StoredBlobNames(*target_, tenant_id);
    if (!names.ok()) return names.status();
    for (const auto& name : *names) {
      if (listed.count(name) == 0) SILO_RETURN_IF_ERROR(target_->Delete(name));
    }
  }
  MutexLock stats(stats_mu_);
  stats_.pruned += static_cast<int64_t>(pruned.size());
  return pruned;
}

}  // namespace silo::backup
