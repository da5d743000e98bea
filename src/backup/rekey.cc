// Service::Rekey: a tenant's new data key (issue 22; docs/architecture.md
// "Tenant rekey"). In the backup service because it shares its lock (a
// backup or restore never sees half a re-key) and everything it touches.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "backup/service.h"
#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "events/event_log.h"
#include "files/blob.h"
#include "files/catalog.h"
#include "storage/snapshot.h"
#include "tenant/rekey_files.h"

namespace silo::backup {
namespace {

namespace json = boost::json;
using storage::Database;

// How long the swap waits for requests still holding the tenant.
constexpr auto kRekeySwapWait = std::chrono::seconds(30);
// What a write is told from the pause to the swap's end (then "; retry ...").
constexpr char kRekeyRefusal[] = "the tenant's data key is being changed";
// The live copy: pages per step (1 MiB: a write waits at most that long),
// and what is left for the pause (1 MiB).
constexpr int64_t kStepPages = 256;
constexpr int64_t kLeavePages = 256;

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Status NoUploadsInProgress(Database& db) {
  SILO_ASSIGN_OR_RETURN(int64_t uploads, files::UploadsInProgress(db));
  if (uploads == 0) return Status::Ok();
  return FailedPrecondition(std::to_string(uploads) +
                            " resumable uploads of the tenant are in progress (their parts are "
                            "sealed under the current key): retry once they finish or expire");
}

// The copy's part of the re-key, in one transaction: the secrets moved to
// the new key, and the re-key recorded at the end of the audit log.
Status FinishCopy(const std::string& path, const crypto::SecretKey& page_key,
                  const ResealOnRestore& reseal, const crypto::SecretKey& old_secrets,
                  const crypto::SecretKey& new_secrets, const std::string& request_id,
                  RekeyReport& report) {
  SILO_ASSIGN_OR_RETURN(auto db, Database::Open(path, page_key, {.create = false}));
  SILO_ASSIGN_OR_RETURN(auto tx, storage::Transaction::Begin(*db));
  if (reseal) {
    SILO_ASSIGN_OR_RETURN(auto moved, reseal(*db, old_secrets, new_secrets));
    report.secrets_resealed = moved.first;
    report.recovery_codes_dropped = moved.second;
  }
  json::object details{{"key_epoch", static_cast<int64_t>(report.key_epoch)},
                       {"files", report.files},
                       {"secrets_resealed", report.secrets_resealed},
                       {"recovery_codes_dropped", report.recovery_codes_dropped}};
  events::Origin origin{{"operator", "operator"}, request_id, "", NowMicros()};
  SILO_RETURN_IF_ERROR(events::AppendAudit(*db, origin, "tenant.rekeyed", "tenant",
                                           report.tenant_id, events::DetailChanges(details)));
  SILO_RETURN_IF_ERROR(tx.Commit());
  // No quick_check here (it would read the whole file in the pause): the
  // copy is the source's pages as SQLite read them, each authenticated.
  return db->Checkpoint();
}

}  // namespace

Result<RekeyReport> Service::Rekey(const tenant::TenantInfo& tenant,
                                   const std::string& request_id) {
  MutexLock lock(mu_);
  return RekeyLocked(tenant, request_id);
}

Result<RekeyReport> Service::RekeyLocked(const tenant::TenantInfo& tenant,
                                         const std::string& request_id) {
  const auto t0 = std::chrono::steady_clock::now();
  RekeyReport report;
  report.tenant_id = tenant.id;
  report.tenant_slug = tenant.slug;
  bool crashed = false;  // tests (SetRekeyStopForTest)
  auto step = [&](std::string_view name) -> Status {
    if (name != rekey_stop_) return Status::Ok();
    crashed = rekey_stop_as_crash_;
    return Internal("re-key stopped at " + std::string(name) + " (test)");
  };
  // A re-key of this tenant that failed here and could not end itself:
  // ended first, as at start.
  SILO_RETURN_IF_ERROR(tenant::ResolveRekey(data_dir_, *keyring_, tenant.id).status());
  SILO_ASSIGN_OR_RETURN(const crypto::SecretKey old_dek, keyring_->GetKey(tenant.id));
  SILO_ASSIGN_OR_RETURN(auto db, databases_->Acquire(tenant.id));
  std::vector<files::KeptFile> blobs;
  SILO_RETURN_IF_ERROR(db->Read([&](Database& d) -> Status {
    SILO_RETURN_IF_ERROR(NoUploadsInProgress(d));
    SILO_ASSIGN_OR_RETURN(blobs, files::FilesWithBytes(d));
    return Status::Ok();
  }));

  SILO_RETURN_IF_ERROR(tenant::MarkRekey(data_dir_, tenant.id));
  auto staging = keyring_->StageKey(tenant.id);
  if (!staging.ok()) {
    (void)tenant::UnmarkRekey(data_dir_, tenant.id);
    return staging.status();
  }
  const crypto::Keyring::Staged staged = std::move(*staging);
  report.key_epoch = staged.epoch;
  const crypto::SecretKey old_files = crypto::DeriveSubkey(old_dek, crypto::KeyPurpose::kFiles);
  const crypto::SecretKey new_files = crypto::DeriveSubkey(staged.key, crypto::KeyPurpose::kFiles);
  const crypto::SecretKey new_pages =
      crypto::DeriveSubkey(staged.key, crypto::KeyPurpose::kDatabasePages);
  const std::string db_path = layout::TenantDatabaseFile(data_dir_, tenant.id);
  const std::string copy_path = db_path + std::string(tenant::kRekeySuffix);

  std::set<std::string> sealed, missing;  // blob ids: with a sibling; without a blob on disk
  auto seal = [&](const files::KeptFile& f) -> Status {
    const std::string path = layout::TenantBlobFile(data_dir_, tenant.id, f.id);
    const std::string sibling = path + std::string(tenant::kRekeySuffix);
    std::remove(sibling.c_str());
    if (!PathExists(path)) {
      missing.insert(f.id);
      return Status::Ok();
    }
    Status s = files::CopyBlob(path, old_files, f.id, f.size, &sibling, &new_files, staged.epoch);
    if (!s.ok()) return s.Rephrase("file " + f.id + ": " + s.message());
    sealed.insert(f.id);
    return Status::Ok();
  };

  bool committed = false;
  std::vector<std::string> unsynced;   // blob directories, synced after the pause
  std::vector<std::string> set_aside;  // originals, removed after the pause
  std::chrono::steady_clock::time_point pause_start;
  Status s = [&]() -> Status {
    SILO_RETURN_IF_ERROR(step("staged"));
    // Blobs never change: they are sealed again while the tenant runs.
    for (const auto& f : blobs) SILO_RETURN_IF_ERROR(seal(f));
    SILO_RETURN_IF_ERROR(step("blobs"));
    // The database is copied under the new key a step at a time, writes
    // going on between the steps (each holds the writer for a few MiB):
    // the pause copies only what is left. The copy lives on the writer
    // connection, so it is only touched, and ended, inside a Write.
    std::unique_ptr<storage::LiveCopy> copy;
    struct EndCopy {
      storage::TenantDatabase* db;
      std::unique_ptr<storage::LiveCopy>* copy;
      ~EndCopy() {
        if (*copy)
          (void)db->Write([this](Database&) {
            copy->reset();
            return Status::Ok();
          });
      }
    } end_copy{db.get(), &copy};
    storage::RemoveDatabaseFiles(copy_path);
    SILO_RETURN_IF_ERROR(db->Write([&](Database& d) -> Status {
      SILO_ASSIGN_OR_RETURN(copy, storage::LiveCopy::Start(d, copy_path, new_pages));
      return Status::Ok();
    }));
    SILO_RETURN_IF_ERROR(step("copying"));
    for (int64_t left = kLeavePages + 1; left > kLeavePages;) {
      SILO_RETURN_IF_ERROR(db->Write([&](Database&) -> Status {
        SILO_ASSIGN_OR_RETURN(left, copy->Step(kStepPages, kLeavePages));
        return Status::Ok();
      }));
    }
    // What was copied goes to disk before the pause, which then syncs only
    // the rest.
    SILO_RETURN_IF_ERROR(SyncFile(copy_path));
    // The pause: from here this open database takes no write (reads go on),
    // and the next one opened is the re-keyed copy.
    SILO_RETURN_IF_ERROR(db->Write([&](Database& d) -> Status {
      db->RefuseWrites(Unavailable(std::string(kRekeyRefusal) + "; retry in a moment"));
      pause_start = std::chrono::steady_clock::now();
      Status paused = [&]() -> Status {
        SILO_RETURN_IF_ERROR(NoUploadsInProgress(d));
        SILO_ASSIGN_OR_RETURN(auto now, files::FilesWithBytes(d));
        std::set<std::string> ids;
        for (const auto& f : now) {
          ids.insert(f.id);
          if (sealed.count(f.id) == 0 && missing.count(f.id) == 0) SILO_RETURN_IF_ERROR(seal(f));
        }
        // Files removed meanwhile: no sibling may bring their bytes back.
        for (auto it = sealed.begin(); it != sealed.end();) {
          if (ids.count(*it) != 0) {
            ++it;
            continue;
          }
          const std::string sibling =
              layout::TenantBlobFile(data_dir_, tenant.id, *it) + std::string(tenant::kRekeySuffix);
          std::remove(sibling.c_str());
          it = sealed.erase(it);
        }
        for (const auto& id : missing) {
          if (ids.count(id) != 0) ++report.files_missing;
        }
        return copy->Finish();
      }();
      copy.reset();  // here, on the writer: after the pause no Write runs
      return paused;
    }));
    report.files = static_cast<int64_t>(sealed.size());
    SILO_RETURN_IF_ERROR(FinishCopy(
        copy_path, new_pages, reseal_,
        crypto::DeriveSubkey(old_dek, crypto::KeyPurpose::kSecretFields),
        crypto::DeriveSubkey(staged.key, crypto::KeyPurpose::kSecretFields), request_id, report));
    SILO_RETURN_IF_ERROR(SyncFile(copy_path));
    std::error_code ec;
    report.database_bytes = static_cast<int64_t>(std::filesystem::file_size(copy_path, ec));
    SILO_RETURN_IF_ERROR(step("copied"));
    db.reset();
    return databases_->Exclusive(tenant.id, kRekeyRefusal, kRekeySwapWait, [&]() -> Status {
      if (before_swap_) SILO_RETURN_IF_ERROR(before_swap_(tenant.id));
      SILO_RETURN_IF_ERROR(tenants_->CommitRekey(
          tenant.id, staged.key, [&] { return keyring_->CommitStaged(tenant.id); }));
      committed = true;  // from here on, forward only
      SILO_RETURN_IF_ERROR(step("committed"));
      return tenant::InstallRekeySiblings(data_dir_, tenant.id, &unsynced, &set_aside).status();
    });
  }();
  if (pause_start != std::chrono::steady_clock::time_point{}) {
    report.pause_seconds = SecondsSince(pause_start);
  }
  if (!s.ok()) {
    if (crashed) return s;  // the tests' crash: everything as it is
    if (committed) {
      return Internal(
                 "the tenant's new key is committed but not all of its files are in place: "
                 "restart silo serve, which puts them in place before it opens the tenant")
          .WithCause(s.message());
    }
    // The open database refuses writes once the pause began: the next
    // request opens it afresh.
    db.reset();
    databases_->Close(tenant.id);
    Status undone = tenant::ResolveRekey(data_dir_, *keyring_, tenant.id).status();
    if (!undone.ok())
      return s.Rephrase(s.message() + " (and undoing it: " + undone.message() + ")");
    return s;
  }
  for (const auto& path : set_aside) std::remove(path.c_str());  // or at the next start
  for (const auto& dir : unsynced) {
    // Not synced, a rename may be lost in a crash: the sibling is then still
    // there, and the next start puts it in place again.
    if (Status synced = SyncDir(dir); !synced.ok()) {
      log::Warn("tenant.rekey_sync_failed", {{"dir", dir}, {"cause", synced.ToString()}});
    }
  }
  if (Status unmarked = tenant::UnmarkRekey(data_dir_, tenant.id); !unmarked.ok()) {
    // Done; the next start finds nothing left to do and removes the mark.
    log::Warn("tenant.rekey_unmark_failed", {{"cause", unmarked.ToString()}});
  }
  report.seconds = SecondsSince(t0);
  return report;
}

}  // namespace silo::backup
