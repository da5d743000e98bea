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
      " coalesce(sum(CASE WHEN state = 'deleted' THEN size END), 0), count(*) FROM files");
  if (!st.ok()) return st.status();
  SILO_ASSIGN_OR_RETURN(bool found, st->Step());
  Usage u;
  if (found) {
    u.live_bytes = static_cast<uint64_t>(st->ColumnInt(0));
    u.retained_bytes = static_cast<uint64_t>(st->ColumnInt(1));
    u.files = st->ColumnInt(2);
  }
  return u;
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

}  // namespace silo::files
