// The SQLite tenant store: collections (see sqlite_tenant_store_internal.h).
#include <boost/json.hpp>
#include <map>
#include <set>

#include "records/sqlite_tenant_store_internal.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

Result<std::vector<Collection>> SqliteTenantStore::ListCollections() {
  std::vector<Collection> out;
  Status s = db_->ReadShort([&](Database& db) -> Status {
    auto names = CollectionNames(db);
    if (!names.ok()) return names.status();
    for (const auto& name : *names) {
      auto c = proj::LoadCollection(db, name);
      if (!c.ok()) return c.status();
      out.push_back(ToCollection(std::move(*c)));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<Collection> SqliteTenantStore::GetCollection(const std::string& name) {
  std::optional<Collection> out;
  Status s = db_->ReadShort([&](Database& db) { return LoadCollectionInto(db, name, &out); });
  if (!s.ok()) return s;
  return std::move(*out);
}

Result<Collection> SqliteTenantStore::CreateCollection(const events::Origin& ctx,
                                                       const CollectionSchema& schema) {
  std::optional<Collection> out;
  Status s = WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        if (proj::LoadCollection(db, schema.name).ok()) {
          return AlreadyExists("a collection with this name exists");
        }
        SILO_RETURN_IF_ERROR(CheckSchemaRelations(db, schema));
        e.type = "collection.created";
        e.subject_kind = proj::kCollectionSubject;
        e.subject_id = schema.name;
        e.changes = {{"schema", std::nullopt, json::serialize(schema.ToJson()), false}};
        return Status::Ok();
      },
      [&](Database& db) { return LoadCollectionInto(db, schema.name, &out); });
  if (!s.ok()) return s;
  return std::move(*out);
}

Result<Collection> SqliteTenantStore::UpdateCollection(const events::Origin& ctx,
                                                       const CollectionSchema& schema) {
  std::optional<Collection> out;
  Status s = WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto old = proj::LoadCollection(db, schema.name);
        if (!old.ok()) return old.status();
        std::string old_text = json::serialize(old->schema.ToJson());
        std::string new_text = json::serialize(schema.ToJson());
        if (old_text == new_text) return Status::Ok();  // nothing to record
        SILO_RETURN_IF_ERROR(CheckSchemaRelations(db, schema));
        if (Status v = CheckRecordsFit(db, schema); !v.ok()) return v;
        e.type = "collection.updated";
        e.subject_kind = proj::kCollectionSubject;
        e.subject_id = schema.name;
        e.changes = {{"schema", old_text, new_text, false}};
        return Status::Ok();
      },
      [&](Database& db) { return LoadCollectionInto(db, schema.name, &out); });
  if (!s.ok()) return s;
  return std::move(*out);
}

Status SqliteTenantStore::DeleteCollection(const events::Origin& ctx, const std::string& name) {
  return WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto old = proj::LoadCollection(db, name);
        if (!old.ok()) return old.status();
        auto count = db.Prepare("SELECT count(*) FROM records WHERE collection = ?");
        if (!count.ok()) return count.status();
        count->Bind(1, name);
        if (auto row = count->Step(); !row.ok()) return row.status();
        if (int64_t n = count->ColumnInt(0); n > 0) {
          return FailedPrecondition("the collection still holds " + std::to_string(n) +
                                    " records; delete them first");
        }
        SILO_RETURN_IF_ERROR(CheckNotRelatedTo(db, name));
        e.type = "collection.deleted";
        e.subject_kind = proj::kCollectionSubject;
        e.subject_id = name;
        e.changes = {{"schema", json::serialize(old->schema.ToJson()), std::nullopt, false}};
        return Status::Ok();
      },
      nullptr);
}

Result<std::vector<std::string>> SqliteTenantStore::CollectionNames(Database& db) {
  auto stmt = db.Prepare("SELECT name FROM collections ORDER BY name");
  if (!stmt.ok()) return stmt.status();
  return FirstColumn(*stmt);
}

Status SqliteTenantStore::LoadCollectionInto(Database& db, const std::string& name,
                                             std::optional<Collection>* out) {
  auto c = proj::LoadCollection(db, name);
  if (!c.ok()) return c.status();
  *out = ToCollection(std::move(*c));
  return Status::Ok();
}

Status SqliteTenantStore::CheckRecordsFit(Database& db, const CollectionSchema& schema) {
  auto rows = db.Prepare("SELECT id, data FROM records WHERE collection = ? ORDER BY id");
  if (!rows.ok()) return rows.status();
  rows->Bind(1, schema.name);
  std::vector<FieldError> offending;
  size_t count = 0;
  std::map<std::pair<std::string, std::string>, std::string> unique_seen;
  while (true) {
    auto row = rows->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::string id = rows->ColumnText(0);
    json::object data = json::parse(rows->ColumnText(1)).as_object();
    std::string problem;
    auto valid = ValidateRecord(schema, data);
    if (!valid.ok()) {
      FieldError first = valid.status().fields().front();
      problem = first.field + ": " + first.message;
    } else if (*valid != data) {
      problem = "values would change form";
    } else if (Status r = CheckRelations(db, schema, {}, data); !r.ok()) {
      FieldError first = r.fields().front();
      problem = first.field + ": " + first.message;
    } else {
      for (const auto& f : schema.fields) {
        const json::value* v = f.unique ? data.if_contains(f.name) : nullptr;
        if (v == nullptr) continue;
        auto [it, fresh] = unique_seen.emplace(std::pair{f.name, json::serialize(*v)}, id);
        if (!fresh) problem = f.name + ": same value as record " + it->second;
      }
    }
    if (problem.empty()) continue;
    if (++count <= kMaxOffendingIds) offending.push_back({id, problem});
  }
  if (count == 0) return Status::Ok();
  return FailedPrecondition(std::to_string(count) + " records do not fit the new schema")
      .WithFields(std::move(offending));
}

}  // namespace silo::records
