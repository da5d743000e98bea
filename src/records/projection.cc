#include "records/projection.h"

#include <boost/json.hpp>
#include <map>
#include <unordered_map>
#include <vector>

#include "cache/tenant_cache.h"
#include "crypto/crypto.h"

namespace silo::records::projection {
namespace json = boost::json;

const std::string_view kSchema =
    "CREATE TABLE collections ("
    " name TEXT PRIMARY KEY,"
    " schema TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " created_at_us INTEGER NOT NULL,"
    " updated_at_us INTEGER NOT NULL) STRICT;"
    "CREATE TABLE records ("
    " collection TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " data TEXT NOT NULL,"
    " created_at_us INTEGER NOT NULL,"
    " created_by TEXT NOT NULL,"
    " updated_at_us INTEGER NOT NULL,"
    " updated_by TEXT NOT NULL,"
    " PRIMARY KEY (collection, id)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE record_versions ("
    " collection TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " valid_from_us INTEGER NOT NULL,"
    " valid_to_us INTEGER NOT NULL,"
    " deleted INTEGER NOT NULL,"
    " data TEXT,"  // NULL for a deletion
    " created_at_us INTEGER NOT NULL,"
    " created_by TEXT NOT NULL,"
    " updated_at_us INTEGER NOT NULL,"
    " updated_by TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " PRIMARY KEY (collection, id, version)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX record_versions_at ON record_versions (collection, valid_to_us, valid_from_us);"
    "CREATE TABLE unique_values ("
    " collection TEXT NOT NULL,"
    " field TEXT NOT NULL,"
    " value TEXT NOT NULL,"  // canonical JSON
    " id TEXT NOT NULL,"
    " PRIMARY KEY (collection, field, value)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX unique_values_id ON unique_values (collection, id);";

namespace {

std::string ActorText(const events::Actor& a) { return a.kind + ":" + a.id; }

// Field indexes are named rx_<length of collection name>_<collection>_<field>,
// so that no two (collection, field) pairs share a name.
std::string IndexPrefix(const std::string& collection) {
  return "rx_" + std::to_string(collection.size()) + "_" + collection + "_";
}

Result<std::vector<std::string>> IndexesOf(storage::Database& db, const std::string& collection) {
  auto stmt = db.Prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'index' AND substr(name, 1, length(?1)) = ?1");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, IndexPrefix(collection));
  std::vector<std::string> out;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(stmt->ColumnText(0));
  }
}

// Declared indexed, or a single relation: deleting its target looks up the
// records that name it (relation_store.cc).
bool Indexed(const FieldDef& f) {
  return f.indexed || (f.type == FieldType::kRelation && !f.multiple);
}

Status SyncIndexes(storage::Database& db, const CollectionSchema* schema,
                   const std::string& collection) {
  auto existing = IndexesOf(db, collection);
  if (!existing.ok()) return existing.status();
  std::vector<std::string> wanted;
  if (schema != nullptr) {
    for (const auto& f : schema->fields) {
      if (Indexed(f)) wanted.push_back(IndexPrefix(collection) + f.name);
    }
  }
  for (const auto& name : *existing) {
    if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) continue;
    if (Status s = db.Exec("DROP INDEX \"" + name + "\""); !s.ok()) return s;
  }
  if (schema == nullptr) return Status::Ok();
  // Rules like created_by:eq:@me list a user's own records: an index on the
  // actor serves them (and lists in id order, its entries ending with the
  // key). Made here, with the field indexes, because the released schema
  // (migration 3) cannot change: a tenant gets it with its first collection
  // change or rebuild.
  SILO_RETURN_IF_ERROR(
      db.Exec("CREATE INDEX IF NOT EXISTS records_created_by ON records (collection, created_by)"));
  for (const auto& f : schema->fields) {
    if (!Indexed(f)) continue;
    // Names are schema identifiers ([a-z][a-z0-9_]*), safe inside quotes.
    if (Status s = db.Exec("CREATE INDEX IF NOT EXISTS \"" + IndexPrefix(collection) + f.name +
                           "\" ON records (collection, " + FieldExpr(f) + ")");
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Status PutUniqueValues(storage::Database& db, const CollectionSchema& schema,
                       const std::string& collection, const std::string& id,
                       const json::object& data) {
  for (const auto& f : schema.fields) {
    if (!f.unique) continue;
    const json::value* v = data.if_contains(f.name);
    if (v == nullptr) continue;
    auto stmt =
        db.Prepare("INSERT INTO unique_values (collection, field, value, id) VALUES (?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, collection).Bind(2, f.name).Bind(3, json::serialize(*v)).Bind(4, id);
    if (Status s = stmt->Run(); !s.ok()) return s;
  }
  return Status::Ok();
}

Status ApplyCollection(storage::Database& db, const events::Event& e) {
  const std::string& name = e.subject_id;
  if (e.type == "collection.deleted") {
    auto del = db.Prepare("DELETE FROM collections WHERE name = ?");
    if (!del.ok()) return del.status();
    del->Bind(1, name);
    if (Status s = del->Run(); !s.ok()) return s;
    auto uv = db.Prepare("DELETE FROM unique_values WHERE collection = ?");
    if (!uv.ok()) return uv.status();
    uv->Bind(1, name);
    if (Status s = uv->Run(); !s.ok()) return s;
    return SyncIndexes(db, nullptr, name);
  }
  if (e.changes.size() != 1 || e.changes[0].field != "schema" || !e.changes[0].new_json) {
    return DataLoss("event without a schema");
  }
  boost::system::error_code ec;
  json::value v = json::parse(*e.changes[0].new_json, ec);
  if (ec) return DataLoss("event with a malformed schema");
  auto schema = ParseCollection(v);
  if (!schema.ok()) return DataLoss("event with an invalid schema");
  std::string text = json::serialize(schema->ToJson());
  if (e.type == "collection.created") {
    auto ins = db.Prepare(
        "INSERT INTO collections (name, schema, version, created_at_us, updated_at_us)"
        " VALUES (?1, ?2, 1, ?3, ?3)");
    if (!ins.ok()) return ins.status();
    ins->Bind(1, name).Bind(2, text).Bind(3, e.at_us);
    if (Status s = ins->Run(); !s.ok()) return s;
  } else if (e.type == "collection.updated") {
    auto upd = db.Prepare(
        "UPDATE collections SET schema = ?2, version = version + 1, updated_at_us = ?3"
        " WHERE name = ?1");
    if (!upd.ok()) return upd.status();
    upd->Bind(1, name).Bind(2, text).Bind(3, e.at_us);
    if (Status s = upd->Run(); !s.ok()) return s;
    // Unique fields may have come or gone: recompute the collection's values.
    auto clear = db.Prepare("DELETE FROM unique_values WHERE collection = ?");
    if (!clear.ok()) return clear.status();
    clear->Bind(1, name);
    if (Status s = clear->Run(); !s.ok()) return s;
    auto rows = db.Prepare("SELECT id, data FROM records WHERE collection = ?");
    if (!rows.ok()) return rows.status();
    rows->Bind(1, name);
    while (true) {
      auto row = rows->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      json::value data = json::parse(rows->ColumnText(1), ec);
      if (ec || !data.is_object()) return DataLoss("record with malformed data");
      if (Status s = PutUniqueValues(db, *schema, name, rows->ColumnText(0), data.as_object());
          !s.ok()) {
        return s;
      }
    }
  } else {
    return DataLoss("unknown collection event " + e.type);
  }
  return SyncIndexes(db, &*schema, name);
}

Result<Version> ReadVersion(storage::Statement& s) {
  // Columns: version, deleted, data, created_at_us, created_by, updated_at_us, updated_by.
  Version v;
  v.version = s.ColumnInt(0);
  v.deleted = s.ColumnInt(1) != 0;
  if (!s.ColumnIsNull(2)) {
    boost::system::error_code ec;
    json::value data = json::parse(s.ColumnText(2), ec);
    if (ec || !data.is_object()) return DataLoss("record with malformed data");
    v.data = std::move(data.as_object());
  }
  v.created_at_us = s.ColumnInt(3);
  v.created_by = s.ColumnText(4);
  v.updated_at_us = s.ColumnInt(5);
  v.updated_by = s.ColumnText(6);
  return v;
}

constexpr std::string_view kVersionColumns =
    "SELECT version, deleted, data, created_at_us, created_by, updated_at_us, updated_by"
    " FROM record_versions WHERE collection = ?1 AND id = ?2 ";

Result<std::optional<Version>> LoadOne(storage::Database& db, const std::string& collection,
                                       const std::string& id, std::string_view rest,
                                       std::optional<int64_t> arg) {
  auto stmt = db.Prepare(std::string(kVersionColumns) + std::string(rest));
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, collection).Bind(2, id);
  if (arg) stmt->Bind(3, *arg);
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<Version>();
  auto v = ReadVersion(*stmt);
  if (!v.ok()) return v.status();
  return std::optional<Version>(std::move(*v));
}

// The data after an event: `data` with each change set or removed.
Result<json::object> ApplyChanges(json::object data, const std::vector<events::Change>& changes) {
  for (const events::Change& c : changes) {
    if (!c.new_json) {
      data.erase(c.field);
      continue;
    }
    boost::system::error_code ec;
    json::value v = json::parse(*c.new_json, ec);
    if (ec) return DataLoss("event with a malformed value");
    data[c.field] = std::move(v);
  }
  return data;
}

// The version a record event makes, ready to write.
struct NewVersion {
  std::string collection;
  std::string id;
  int64_t version = 1;
  bool deleted = false;
  std::string text;  // the data as JSON text (unused when deleted)
  int64_t created_at_us = 0;
  std::string created_by;
  int64_t at_us = 0;  // the event's time: valid_from and updated_at
  std::string updated_by;
  int64_t seq = 0;
};

// Closes the latest version's validity (if any) at the event's time and
// appends the new one, valid until further notice.
Status AppendVersion(storage::Database& db, const std::optional<Version>& latest,
                     const NewVersion& v) {
  if (latest) {
    auto close = db.Prepare(
        "UPDATE record_versions SET valid_to_us = ?4"
        " WHERE collection = ?1 AND id = ?2 AND version = ?3");
    if (!close.ok()) return close.status();
    close->Bind(1, v.collection).Bind(2, v.id).Bind(3, latest->version).Bind(4, v.at_us);
    SILO_RETURN_IF_ERROR(close->Run());
  }
  auto ins = db.Prepare(
      "INSERT INTO record_versions (collection, id, version, valid_from_us, valid_to_us, deleted,"
      " data, created_at_us, created_by, updated_at_us, updated_by, seq)"
      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!ins.ok()) return ins.status();
  ins->Bind(1, v.collection)
      .Bind(2, v.id)
      .Bind(3, v.version)
      .Bind(4, v.at_us)
      .Bind(5, kForever)
      .Bind(6, int64_t{v.deleted});
  if (v.deleted) {
    ins->BindNull(7);
  } else {
    ins->Bind(7, v.text);
  }
  ins->Bind(8, v.created_at_us)
      .Bind(9, v.created_by)
      .Bind(10, v.at_us)
      .Bind(11, v.updated_by)
      .Bind(12, v.seq);
  return ins->Run();
}

// The current row and its unique values: replaced, or removed on delete.
Status PutCurrent(storage::Database& db, const CollectionSchema& schema, const NewVersion& v,
                  const json::object& data) {
  auto uv = db.Prepare("DELETE FROM unique_values WHERE collection = ? AND id = ?");
  if (!uv.ok()) return uv.status();
  uv->Bind(1, v.collection).Bind(2, v.id);
  SILO_RETURN_IF_ERROR(uv->Run());
  if (v.deleted) {
    auto del = db.Prepare("DELETE FROM records WHERE collection = ? AND id = ?");
    if (!del.ok()) return del.status();
    del->Bind(1, v.collection).Bind(2, v.id);
    return del->Run();
  }
  auto put = db.Prepare(
      "INSERT OR REPLACE INTO records (collection, id, version, data, created_at_us, created_by,"
      " updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (!put.ok()) return put.status();
  put->Bind(1, v.collection)
      .Bind(2, v.id)
      .Bind(3, v.version)
      .Bind(4, v.text)
      .Bind(5, v.created_at_us)
      .Bind(6, v.created_by)
      .Bind(7, v.at_us)
      .Bind(8, v.updated_by);
  SILO_RETURN_IF_ERROR(put->Run());
  return PutUniqueValues(db, schema, v.collection, v.id, data);
}

Status ApplyRecord(storage::Database& db, int64_t seq, const events::Event& e) {
  size_t slash = e.subject_id.find('/');
  if (slash == std::string::npos) return DataLoss("record event without a collection");
  NewVersion v;
  v.collection = e.subject_id.substr(0, slash);
  v.id = e.subject_id.substr(slash + 1);
  auto schema = LoadCollection(db, v.collection);
  if (!schema.ok()) return DataLoss("record event for a missing collection");
  SILO_ASSIGN_OR_RETURN(std::optional<Version> latest, LoadLatest(db, v.collection, v.id));
  v.deleted = e.type == "record.deleted";
  if (!v.deleted && e.type != "record.created" && e.type != "record.updated" &&
      e.type != "record.reverted") {
    return DataLoss("unknown record event " + e.type);
  }
  SILO_ASSIGN_OR_RETURN(
      json::object data,
      ApplyChanges(latest && !latest->deleted ? latest->data : json::object(), e.changes));
  v.version = latest ? latest->version + 1 : 1;
  v.text = json::serialize(data);
  v.created_at_us = latest ? latest->created_at_us : e.at_us;
  v.created_by = latest ? latest->created_by : ActorText(e.actor);
  v.at_us = e.at_us;
  v.updated_by = ActorText(e.actor);
  v.seq = seq;
  SILO_RETURN_IF_ERROR(AppendVersion(db, latest, v));
  return PutCurrent(db, schema->schema, v, data);
}

}  // namespace

std::string FieldExpr(const FieldDef& field) {
  if (!field.column.empty()) return field.column;
  return "json_extract(data, '$." + field.name + "')";
}

Status Apply(storage::Database& db, int64_t seq, const events::Event& event) {
  if (!db.InTransaction()) return FailedPrecondition("projections change inside a transaction");
  if (event.subject_kind == kCollectionSubject) return ApplyCollection(db, event);
  if (event.subject_kind == kRecordSubject) return ApplyRecord(db, seq, event);
  return Status::Ok();  // other subjects have no projection here
}

Result<events::Event> ParseBody(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return DataLoss("event body is not JSON");
  try {
    const json::object& o = v.as_object();
    events::Event e;
    e.at_us = o.at("at_us").as_int64();
    e.actor.kind = o.at("actor").at("kind").as_string();
    e.actor.id = o.at("actor").at("id").as_string();
    e.request_id = o.at("request_id").as_string();
    e.client = o.at("client").as_string();
    e.subject_kind = o.at("subject").at("kind").as_string();
    e.subject_id = o.at("subject").at("id").as_string();
    e.type = o.at("type").as_string();
    for (const json::value& cv : o.at("changes").as_array()) {
      const json::object& c = cv.as_object();
      events::Change change;
      change.field = c.at("field").as_string();
      if (c.contains("changed")) {
        change.secret = true;
      } else {
        if (const json::value* old = c.if_contains("old")) change.old_json = json::serialize(*old);
        if (const json::value* nv = c.if_contains("new")) change.new_json = json::serialize(*nv);
      }
      e.changes.push_back(std::move(change));
    }
    return e;
  } catch (const std::exception&) {
    return DataLoss("event body lacks a member");
  }
}

namespace {

// Parsed schemas by their stored text, in the tenant's cache: parsing is a
// pure function of the text, and every record call loads its collection's
// schema, so a request would otherwise spend more time parsing JSON than
// reading its records (bench/rules_bench). Keyed by the text itself, so an
// entry is right even inside a write transaction that changed the schema.
const cache::Namespace<CollectionSchema> kParsedSchemas{"parsed schemas"};

}  // namespace

Result<StoredCollection> LoadCollection(storage::Database& db, const std::string& name) {
  auto stmt = db.Prepare(
      "SELECT schema, version, created_at_us, updated_at_us FROM collections WHERE name = ?");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, name);
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("no such collection");
  const std::string text = stmt->ColumnText(0);
  cache::TenantCache* cache = db.tenant_cache();
  const uint64_t generation = cache != nullptr ? cache->generation() : 0;
  std::shared_ptr<const CollectionSchema> schema =
      cache != nullptr ? cache->Get(kParsedSchemas, text) : nullptr;
  if (schema == nullptr) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) return DataLoss("stored schema is not JSON");
    auto parsed = ParseCollection(v);
    if (!parsed.ok()) return DataLoss("stored schema is invalid");
    schema = std::make_shared<const CollectionSchema>(std::move(*parsed));
    // The parsed form is some times the text's size.
    if (cache != nullptr) cache->Put(kParsedSchemas, text, generation, schema, 4 * text.size());
  }
  return StoredCollection{*schema, stmt->ColumnInt(1), stmt->ColumnInt(2), stmt->ColumnInt(3)};
}

Result<std::map<std::string, Version>> LoadCurrentMany(storage::Database& db,
                                                       const std::string& collection,
                                                       const std::vector<std::string>& ids) {
  std::map<std::string, Version> out;
  constexpr size_t kChunk = 100;
  for (size_t start = 0; start < ids.size(); start += kChunk) {
    const size_t n = std::min(kChunk, ids.size() - start);
    std::string sql =
        "SELECT version, 0, data, created_at_us, created_by, updated_at_us, updated_by, id"
        " FROM records WHERE collection = ?1 AND id IN (";
    for (size_t i = 0; i < n; ++i) sql += (i ? ", ?" : "?") + std::to_string(i + 2);
    auto stmt = db.Prepare(sql + ")");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, collection);
    for (size_t i = 0; i < n; ++i) stmt->Bind(static_cast<int>(i) + 2, ids[start + i]);
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      auto v = ReadVersion(*stmt);
      if (!v.ok()) return v.status();
      out.emplace(stmt->ColumnText(7), std::move(*v));
    }
  }
  return out;
}

Result<std::optional<Version>> LoadLatest(storage::Database& db, const std::string& collection,
                                          const std::string& id) {
  return LoadOne(db, collection, id, "ORDER BY version DESC LIMIT 1", std::nullopt);
}

Result<std::optional<Version>> LoadVersion(storage::Database& db, const std::string& collection,
                                           const std::string& id, int64_t version) {
  return LoadOne(db, collection, id, "AND version = ?3", version);
}

Result<std::optional<Version>> LoadAt(storage::Database& db, const std::string& collection,
                                      const std::string& id, int64_t at_us) {
  return LoadOne(db, collection, id,
                 "AND valid_from_us <= ?3 AND valid_to_us > ?3 ORDER BY version DESC LIMIT 1",
                 at_us);
}

Result<std::string> Checksum(storage::Database& db) {
  static constexpr std::string_view kDumps[] = {
      "SELECT json_array(name, schema, version, created_at_us, updated_at_us)"
      " FROM collections ORDER BY name",
      "SELECT json_array(collection, id, version, data, created_at_us, created_by,"
      " updated_at_us, updated_by) FROM records ORDER BY collection, id",
      "SELECT json_array(collection, id, version, valid_from_us, valid_to_us, deleted, data,"
      " created_at_us, created_by, updated_at_us, updated_by, seq)"
      " FROM record_versions ORDER BY collection, id, version",
      "SELECT json_array(collection, field, value, id) FROM unique_values"
      " ORDER BY collection, field, value",
      "SELECT json_array(name, sql) FROM sqlite_schema WHERE type = 'index'"
      " AND name LIKE 'rx\\_%' ESCAPE '\\' ORDER BY name"};
  std::string all;
  for (std::string_view sql : kDumps) {
    auto stmt = db.Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    std::string part;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      part = crypto::Sha256Hex(part + stmt->ColumnText(0));
    }
    all += crypto::Sha256Hex(part);
  }
  return crypto::Sha256Hex(all);
}

Status Clear(storage::Database& db) {
  auto names = db.Prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'rx\\_%' ESCAPE '\\'");
  if (!names.ok()) return names.status();
  std::vector<std::string> indexes;
  while (true) {
    auto row = names->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    indexes.push_back(names->ColumnText(0));
  }
  for (const auto& name : indexes) {
    if (Status s = db.Exec("DROP INDEX \"" + name + "\""); !s.ok()) return s;
  }
  return db.Exec(
      "DELETE FROM collections; DELETE FROM records; DELETE FROM record_versions;"
      " DELETE FROM unique_values;");
}

Status ReplayAll(storage::Database& db, int64_t* events) {
  if (Status c = Clear(db); !c.ok()) return c;
  constexpr int kPage = 1000;
  int64_t after = 0;
  *events = 0;
  while (true) {
    auto batch = events::ReadAfter(db, after, kPage);
    if (!batch.ok()) return batch.status();
    if (batch->empty()) return Status::Ok();
    for (const auto& stored : *batch) {
      if (!stored.body) {
        return DataLoss("event " + std::to_string(stored.seq) + " has no body (purged)");
      }
      auto e = ParseBody(*stored.body);
      if (!e.ok()) return e.status();
      if (Status a = Apply(db, stored.seq, *e); !a.ok()) return a;
      after = stored.seq;
      ++*events;
    }
  }
}

}  // namespace silo::records::projection
