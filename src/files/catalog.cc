#include "files/catalog.h"

#include <algorithm>

namespace silo::files {
namespace {

using storage::Database;

const storage::Migration kMigrations[] = {
    {7, "files",
     "CREATE TABLE files ("
     " id TEXT PRIMARY KEY,"
     " owner TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " declared_type TEXT NOT NULL,"
     " type TEXT NOT NULL,"
     " size INTEGER NOT NULL,"
     " sha256 TEXT NOT NULL,"
     " state TEXT NOT NULL CHECK (state IN ('pending', 'attached', 'deleted')),"
     " collection TEXT NOT NULL,"
     " field TEXT NOT NULL,"
     " record_id TEXT NOT NULL DEFAULT '',"
     " created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL DEFAULT 0,"
     " deleted_at_us INTEGER NOT NULL DEFAULT 0) STRICT;"
     "CREATE INDEX files_by_record ON files (collection, record_id);"
     "CREATE INDEX files_by_state ON files (state, expires_at_us);"},
    {8, "uploads",
     "CREATE TABLE uploads ("
     " id TEXT PRIMARY KEY,"
     " owner TEXT NOT NULL,"
     " collection TEXT NOT NULL,"
     " field TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " declared_type TEXT NOT NULL,"
     " length INTEGER NOT NULL,"
     " created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL) STRICT"},
    {9, "file_links",
     "CREATE TABLE file_links ("
     " id TEXT PRIMARY KEY,"
     " hash TEXT NOT NULL UNIQUE,"  // SHA-256 of the token (256 random bits)
     " file_id TEXT NOT NULL,"
     " created_by TEXT NOT NULL,"
     " created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL,"
     " revoked_at_us INTEGER NOT NULL DEFAULT 0) STRICT"},
};

constexpr char kColumns[] =
    "id, owner, name, declared_type, type, size, sha256, state, collection, field, record_id,"
    " created_at_us, expires_at_us, deleted_at_us";

FileState ParseState(const std::string& s) {
  if (s == "attached") return FileState::kAttached;
  if (s == "deleted") return FileState::kDeleted;
  return FileState::kPending;
}

FileRow ReadRow(const storage::Statement& st) {
  FileRow r;
  r.id = st.ColumnText(0);
  r.owner = st.ColumnText(1);
  r.name = st.ColumnText(2);
  r.declared_type = st.ColumnText(3);
  r.type = st.ColumnText(4);
  r.size = static_cast<uint64_t>(st.ColumnInt(5));
  r.sha256 = st.ColumnText(6);
  r.state = ParseState(st.ColumnText(7));
  r.collection = st.ColumnText(8);
  r.field = st.ColumnText(9);
  r.record_id = st.ColumnText(10);
  r.created_at_us = st.ColumnInt(11);
  r.expires_at_us = st.ColumnInt(12);
  r.deleted_at_us = st.ColumnInt(13);
  return r;
}

Status SetState(Database& db, const std::string& id, FileState state, const std::string& record_id,
                int64_t deleted_at_us) {
  auto st = db.Prepare(
      "UPDATE files SET state = ?1, record_id = ?2, expires_at_us = 0, deleted_at_us = ?3"
      " WHERE id = ?4");
  if (!st.ok()) return st.status();
  st->Bind(1, FileStateName(state)).Bind(2, record_id).Bind(3, deleted_at_us).Bind(4, id);
  return st->Run();
}

// Why the file `id` cannot be attached to `holder`'s field, or "" when it
// can. A file that is not this caller's to give reads like one that does
// not exist.
std::string AttachProblem(Database& db, const Holder& holder, const std::string& actor,
                          const FieldLimits& limits, const std::string& id, int64_t now_us,
                          Status* failure) {
  auto row = LoadFile(db, id);
  if (!row.ok()) {
    if (row.status().code() != StatusCode::kNotFound) *failure = row.status();
    return "no such file " + id;
  }
  if (row->collection != holder.collection || row->field != holder.field) {
    return "no such file " + id;
  }
  if (row->state == FileState::kPending) {
    if (row->owner != actor) return "no such file " + id;
    if (row->expires_at_us <= now_us) return "the upload " + id + " has expired";
  } else if (row->record_id != holder.record_id) {
    return "no such file " + id;
  }
  if (row->size > limits.max_bytes) {
    return "file " + id + " is larger than the field's max_bytes";
  }
  if (!TypeAllowed(limits.types, row->type)) {
    return "file " + id + " is " + row->type + ", which the field does not allow";
  }
  return "";
}

}  // namespace

std::span<const storage::Migration> CatalogMigrations() { return kMigrations; }

std::string_view FileStateName(FileState state) {
  switch (state) {
    case FileState::kPending: return "pending";
    case FileState::kAttached: return "attached";
    case FileState::kDeleted: return "deleted";
  }
  return "pending";
}

bool TypeAllowed(const std::vector<std::string>& allowed, std::string_view type) {
  if (allowed.empty()) return true;
  for (const auto& a : allowed) {
    if (a == type) return true;
    if (a.size() > 2 && a.ends_with("/*") &&
        type.substr(0, a.size() - 1) == std::string_view(a).substr(0, a.size() - 1)) {
      return true;
    }
  }
  return false;
}

std::string CleanFileName(std::string_view name) {
  if (size_t slash = name.find_last_of("/\\"); slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  std::string out;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') continue;
    out += static_cast<char>(c);
  }
  if (out.size() > 255) {
    size_t cut = 255;
    // Back up over UTF-8 continuation bytes so no character is split.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  if (out.empty() || out == "." || out == "..") return "file";
  return out;
}

Result<FileRow> LoadFile(Database& db, std::string_view id) {
  auto st = db.Prepare(std::string("SELECT ") + kColumns + " FROM files WHERE id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return NotFound("no such file");
  return ReadRow(*st);
}

Status InsertFile(Database& db, const FileRow& r) {
  auto st = db.Prepare(std::string("INSERT INTO files (") + kColumns +
                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
  if (!st.ok()) return st.status();
  st->Bind(1, r.id)
      .Bind(2, r.owner)
      .Bind(3, r.name)
      .Bind(4, r.declared_type)
      .Bind(5, r.type)
      .Bind(6, static_cast<int64_t>(r.size))
      .Bind(7, r.sha256)
      .Bind(8, FileStateName(r.state))
      .Bind(9, r.collection)
      .Bind(10, r.field)
      .Bind(11, r.record_id)
      .Bind(12, r.created_at_us)
      .Bind(13, r.expires_at_us)
      .Bind(14, r.deleted_at_us);
  return st->Run();
}

Result<Usage> LoadUsage(Database& db) {
  auto st = db.Prepare(
      "SELECT coalesce(sum(CASE WHEN state != 'deleted' THEN size END), 0),"
      " coalesce(sum(CASE WHEN state = 'deleted' THEN size END), 0), count(*),"
      " (SELECT coalesce(sum(length), 0) FROM uploads), (SELECT count(*) FROM uploads)"
      " FROM files");
  if (!st.ok()) return st.status();
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  Usage u;
  if (found) {
    u.live_bytes = static_cast<uint64_t>(st->ColumnInt(0));
    u.retained_bytes = static_cast<uint64_t>(st->ColumnInt(1));
    u.files = st->ColumnInt(2);
    u.upload_bytes = static_cast<uint64_t>(st->ColumnInt(3));
    u.uploads = st->ColumnInt(4);
  }
  return u;
}

Status InsertUpload(Database& db, const UploadRow& r) {
  auto st = db.Prepare(
      "INSERT INTO uploads (id, owner, collection, field, name, declared_type, length,"
      " created_at_us, expires_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!st.ok()) return st.status();
  st->Bind(1, r.id)
      .Bind(2, r.owner)
      .Bind(3, r.collection)
      .Bind(4, r.field)
      .Bind(5, r.name)
      .Bind(6, r.declared_type)
      .Bind(7, static_cast<int64_t>(r.length))
      .Bind(8, r.created_at_us)
      .Bind(9, r.expires_at_us);
  return st->Run();
}

Result<UploadRow> LoadUpload(Database& db, std::string_view id) {
  auto st = db.Prepare(
      "SELECT id, owner, collection, field, name, declared_type, length, created_at_us,"
      " expires_at_us FROM uploads WHERE id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return NotFound("no such upload");
  UploadRow r;
  r.id = st->ColumnText(0);
  r.owner = st->ColumnText(1);
  r.collection = st->ColumnText(2);
  r.field = st->ColumnText(3);
  r.name = st->ColumnText(4);
  r.declared_type = st->ColumnText(5);
  r.length = static_cast<uint64_t>(st->ColumnInt(6));
  r.created_at_us = st->ColumnInt(7);
  r.expires_at_us = st->ColumnInt(8);
  return r;
}

Status InsertLink(Database& db, const LinkRow& r, std::string_view token_hash) {
  auto st = db.Prepare(
      "INSERT INTO file_links (id, hash, file_id, created_by, created_at_us, expires_at_us)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!st.ok()) return st.status();
  st->Bind(1, r.id)
      .Bind(2, token_hash)
      .Bind(3, r.file_id)
      .Bind(4, r.created_by)
      .Bind(5, r.created_at_us)
      .Bind(6, r.expires_at_us);
  return st->Run();
}

Result<LinkRow> LoadLinkByHash(Database& db, std::string_view token_hash) {
  auto st = db.Prepare(
      "SELECT id, file_id, created_by, created_at_us, expires_at_us, revoked_at_us"
      " FROM file_links WHERE hash = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, token_hash);
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return NotFound("no such link");
  return LinkRow{st->ColumnText(0), st->ColumnText(1), st->ColumnText(2),
                 st->ColumnInt(3),  st->ColumnInt(4),  st->ColumnInt(5)};
}

Status RevokeLink(Database& db, std::string_view file_id, std::string_view id, int64_t now_us) {
  auto st = db.Prepare(
      "UPDATE file_links SET revoked_at_us = ?1 WHERE id = ?2 AND file_id = ?3"
      " AND revoked_at_us = 0");
  if (!st.ok()) return st.status();
  st->Bind(1, now_us).Bind(2, id).Bind(3, file_id);
  SILO_RETURN_IF_ERROR(st->Run());
  if (db.Changes() == 0) return NotFound("no such link");
  return Status::Ok();
}

namespace {

// The ids `sql` selects with ?1 = `at_us` and ?2 = `limit`.
Result<std::vector<std::string>> Ids(Database& db, const char* sql, int64_t at_us, int limit) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  st->Bind(1, at_us).Bind(2, int64_t{limit});
  std::vector<std::string> out;
  for (;;) {
    SILO_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(st->ColumnText(0));
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> ExpiredPending(Database& db, int64_t now_us, int limit) {
  return Ids(db,
             "SELECT id FROM files WHERE state = 'pending' AND expires_at_us <= ?1"
             " ORDER BY expires_at_us LIMIT ?2",
             now_us, limit);
}

Result<std::vector<std::string>> ExpiredUploads(Database& db, int64_t now_us, int limit) {
  return Ids(db, "SELECT id FROM uploads WHERE expires_at_us <= ?1 ORDER BY expires_at_us LIMIT ?2",
             now_us, limit);
}

Status DeletePendingFile(Database& db, std::string_view id) {
  auto st = db.Prepare("DELETE FROM files WHERE id = ? AND state = 'pending'");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_RETURN_IF_ERROR(st->Run());
  if (db.Changes() == 0) return FailedPrecondition("not a pending file");
  return Status::Ok();
}

Result<std::vector<std::string>> TombstonesBefore(Database& db, int64_t cutoff_us, int limit) {
  return Ids(db,
             "SELECT id FROM files WHERE state = 'deleted' AND deleted_at_us <= ?1"
             " ORDER BY deleted_at_us LIMIT ?2",
             cutoff_us, limit);
}

Status DeleteTombstone(Database& db, std::string_view id) {
  auto st = db.Prepare("DELETE FROM files WHERE id = ? AND state = 'deleted'");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_RETURN_IF_ERROR(st->Run());
  if (db.Changes() == 0) return FailedPrecondition("not a tombstone");
  return Status::Ok();
}

Result<bool> IdKnown(Database& db, std::string_view id) {
  auto st = db.Prepare(
      "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1)"
      " OR EXISTS (SELECT 1 FROM uploads WHERE id = ?1)");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  SILO_ASSIGN_OR_RETURN(bool row, st->Step());
  return row && st->ColumnInt(0) != 0;
}

Status DeleteUpload(Database& db, std::string_view id) {
  auto st = db.Prepare("DELETE FROM uploads WHERE id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  return st->Run();
}

Status Reconcile(Database& db, const Holder& holder, const std::string& actor,
                 const FieldLimits& limits, const std::vector<std::string>& before,
                 const std::vector<std::string>& after, int64_t now_us,
                 std::vector<FieldError>* errors) {
  auto has = [](const std::vector<std::string>& v, const std::string& id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  Status failure;
  for (const auto& id : after) {
    if (has(before, id)) continue;
    std::string why = AttachProblem(db, holder, actor, limits, id, now_us, &failure);
    if (!failure.ok()) return failure;
    if (!why.empty()) {
      errors->push_back({holder.field, why});
      continue;
    }
    SILO_RETURN_IF_ERROR(SetState(db, id, FileState::kAttached, holder.record_id, 0));
  }
  if (!errors->empty()) return Status::Ok();
  for (const auto& id : before) {
    if (has(after, id)) continue;
    SILO_RETURN_IF_ERROR(SetState(db, id, FileState::kDeleted, holder.record_id, now_us));
  }
  return Status::Ok();
}

namespace {

// The (id, size) rows `sql` selects.
Result<std::vector<KeptFile>> SelectKept(Database& db, std::string_view sql) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  std::vector<KeptFile> out;
  for (;;) {
    SILO_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->ColumnText(0), static_cast<uint64_t>(st->ColumnInt(1))});
  }
  return out;
}

}  // namespace

Result<std::vector<KeptFile>> FilesToKeep(Database& db) {
  return SelectKept(
      db, "SELECT id, size FROM files WHERE state IN ('attached', 'deleted') ORDER BY id");
}

Result<std::vector<KeptFile>> FilesWithBytes(Database& db) {
  return SelectKept(db, "SELECT id, size FROM files ORDER BY id");
}

Result<int64_t> UploadsInProgress(Database& db) {
  auto st = db.Prepare("SELECT count(*) FROM uploads");
  if (!st.ok()) return st.status();
  SILO_ASSIGN_OR_RETURN(bool row, st->Step());
  return row ? st->ColumnInt(0) : 0;
}

Result<RestoredFiles> ResetForRestore(Database& db, const std::vector<std::string>& referenced,
                                      int64_t now_us) {
  if (!db.InTransaction()) return FailedPrecondition("ResetForRestore outside a transaction");
  RestoredFiles out;
  auto count_and_run = [&](const char* sql, int64_t* changed) -> Status {
    SILO_RETURN_IF_ERROR(db.Exec(sql));
    *changed = db.Changes();
    return Status::Ok();
  };
  SILO_RETURN_IF_ERROR(count_and_run("DELETE FROM file_links", &out.links_dropped));
  SILO_RETURN_IF_ERROR(count_and_run("DELETE FROM uploads", &out.uploads_dropped));
  SILO_RETURN_IF_ERROR(
      count_and_run("DELETE FROM files WHERE state = 'pending'", &out.pending_dropped));
  // Mark the referenced ids in a temporary table, then set every state from it.
  SILO_RETURN_IF_ERROR(
      db.Exec("CREATE TEMP TABLE IF NOT EXISTS restore_referenced (id TEXT PRIMARY KEY);"
              "DELETE FROM temp.restore_referenced"));
  auto insert = db.Prepare("INSERT OR IGNORE INTO temp.restore_referenced (id) VALUES (?)");
  if (!insert.ok()) return insert.status();
  for (const auto& id : referenced) {
    insert->Reset();
    insert->Bind(1, id);
    SILO_RETURN_IF_ERROR(insert->Run());
  }
  auto attach = db.Prepare(
      "UPDATE files SET state = 'attached', deleted_at_us = 0"
      " WHERE id IN (SELECT id FROM temp.restore_referenced)");
  if (!attach.ok()) return attach.status();
  SILO_RETURN_IF_ERROR(attach->Run());
  auto bury = db.Prepare(
      "UPDATE files SET state = 'deleted', deleted_at_us = ?1"
      " WHERE state = 'attached' AND id NOT IN (SELECT id FROM temp.restore_referenced)");
  if (!bury.ok()) return bury.status();
  bury->Bind(1, now_us);
  SILO_RETURN_IF_ERROR(bury->Run());
  SILO_RETURN_IF_ERROR(db.Exec("DROP TABLE temp.restore_referenced"));
  auto counts = db.Prepare(
      "SELECT count(*) FILTER (WHERE state = 'attached'),"
      " count(*) FILTER (WHERE state = 'deleted') FROM files");
  if (!counts.ok()) return counts.status();
  SILO_RETURN_IF_ERROR(counts->Step().status());
  out.attached = counts->ColumnInt(0);
  out.tombstones = counts->ColumnInt(1);
  return out;
}

}  // namespace silo::files
