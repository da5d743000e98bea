// The SQLite tenant store: referential integrity of relation fields (see
// sqlite_tenant_store_internal.h). A relation names live records only: a
// write naming a missing target is refused, and deleting a record first
// follows each referring field's on_delete, in the delete's transaction.
#include <boost/json.hpp>
#include <functional>
#include <map>
#include <set>

#include "records/sqlite_tenant_store_internal.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

namespace {

Result<bool> IsLive(Database& db, const std::string& collection, const std::string& id) {
  auto stmt = db.Prepare("SELECT 1 FROM records WHERE collection = ?1 AND id = ?2");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, collection).Bind(2, id);
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row;
}

// The current records of `collection` whose relation field `f` names `id`,
// in id order. A single relation's field has an index (projection.cc); a
// multiple one is scanned.
Result<std::vector<std::string>> Referrers(Database& db, const std::string& collection,
                                           const FieldDef& f, const std::string& id) {
  std::string sql = f.multiple
                        ? "SELECT id FROM records WHERE collection = ?1 AND EXISTS (SELECT 1 FROM "
                          "json_each(data, '$." +
                              f.name + "') AS j WHERE j.value = ?2) ORDER BY id"
                        : "SELECT id FROM records WHERE collection = ?1 AND " + proj::FieldExpr(f) +
                              " = ?2 ORDER BY id";
  auto stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, collection).Bind(2, id);
  return FirstColumn(*stmt);
}

}  // namespace

Result<std::map<std::string, CollectionSchema>> SqliteTenantStore::AllSchemas(Database& db) {
  SILO_ASSIGN_OR_RETURN(std::vector<std::string> names, CollectionNames(db));
  std::map<std::string, CollectionSchema> out;
  for (const auto& name : names) {
    auto c = proj::LoadCollection(db, name);
    if (!c.ok()) return c.status();
    out.emplace(name, std::move(c->schema));
  }
  return out;
}

Status CheckRelations(Database& db, const CollectionSchema& schema, const json::object& before,
                      const json::object& after, const RulesProvider* rules) {
  std::vector<FieldError> errors;
  for (const FieldDef& f : schema.fields) {
    if (f.type != FieldType::kRelation) continue;
    auto old_ids = RelatedIds(before.if_contains(f.name));
    std::set<std::string> known(old_ids.begin(), old_ids.end());
    std::optional<RecordRules> read;  // the target's, looked up at the first new id
    bool looked_up = false;
    for (const std::string& id : RelatedIds(after.if_contains(f.name))) {
      if (known.count(id)) continue;  // named before this write: still live
      if (rules != nullptr && !looked_up) {
        looked_up = true;
        SILO_ASSIGN_OR_RETURN(proj::StoredCollection target,
                              proj::LoadCollection(db, f.collection));
        SILO_ASSIGN_OR_RETURN(read, (*rules)(target.schema, "read"));
        if (read->Unrestricted()) read.reset();
      }
      bool visible = false;
      if (!read) {
        SILO_ASSIGN_OR_RETURN(visible, IsLive(db, f.collection, id));
      } else {
        SILO_ASSIGN_OR_RETURN(auto v, proj::LoadLatest(db, f.collection, id));
        visible = v && !v->deleted && read->Admits(ToRecord(id, std::move(*v)));
      }
      if (!visible) {
        errors.push_back({f.name, "no record " + id + " in " + f.collection});
        break;
      }
    }
  }
  if (!errors.empty()) return InvalidArgument("invalid record").WithFields(std::move(errors));
  return Status::Ok();
}

Status SqliteTenantStore::CheckSchemaRelations(Database& db, const CollectionSchema& schema) {
  auto all = AllSchemas(db);
  if (!all.ok()) return all.status();
  (*all)[schema.name] = schema;
  std::vector<FieldError> errors;
  for (const FieldDef& f : schema.fields) {
    if (f.type == FieldType::kRelation && !all->count(f.collection)) {
      errors.push_back({"fields." + f.name, "no collection named " + f.collection});
    }
  }
  if (!errors.empty()) return InvalidArgument("invalid collection").WithFields(std::move(errors));
  // Cascades run from a deleted record's collection to the collections whose
  // relations cascade from it; a cycle (a relation cascading to its own
  // collection included) would make one delete reach back to where it began.
  std::map<std::string, std::vector<std::string>> cascades_to;
  for (const auto& [name, s] : *all) {
    for (const FieldDef& f : s.fields) {
      if (f.type == FieldType::kRelation && f.on_delete == OnDelete::kCascade) {
        cascades_to[f.collection].push_back(name);
      }
    }
  }
  std::map<std::string, int> state;  // 1: on the path, 2: done
  std::vector<std::string> path;
  std::function<bool(const std::string&)> cyclic = [&](const std::string& c) {
    if (state[c] == 1) {
      path.push_back(c);
      return true;
    }
    if (state[c] == 2) return false;
    state[c] = 1;
    path.push_back(c);
    for (const auto& next : cascades_to[c]) {
      if (cyclic(next)) return true;
    }
    path.pop_back();
    state[c] = 2;
    return false;
  };
  for (const auto& [name, s] : *all) {
    if (!cyclic(name)) continue;
    std::string cycle;
    for (const auto& c : path) cycle += (cycle.empty() ? "" : " -> ") + c;
    return InvalidArgument("invalid collection")
        .WithFields({{"fields", "on_delete cascade forms a cycle: " + cycle}});
  }
  return Status::Ok();
}

Status SqliteTenantStore::CheckNotRelatedTo(Database& db, const std::string& name) {
  auto all = AllSchemas(db);
  if (!all.ok()) return all.status();
  for (const auto& [other, s] : *all) {
    if (other == name) continue;
    for (const FieldDef& f : s.fields) {
      if (f.type == FieldType::kRelation && f.collection == name) {
        return FailedPrecondition("the relation " + other + "." + f.name +
                                  " names this collection; change it first");
      }
    }
  }
  return Status::Ok();
}

Status SqliteTenantStore::AppendRecordEvent(Database& db, const events::Origin& ctx,
                                            std::string type, const CollectionSchema& schema,
                                            const std::string& id, const json::object& before,
                                            const json::object& after) {
  events::Event e;
  e.type = std::move(type);
  e.subject_kind = proj::kRecordSubject;
  e.subject_id = schema.name + "/" + id;
  e.changes = Diff(schema, before, after);
  return AppendEvent(db, ctx, e);
}

Status SqliteTenantStore::FollowOnDelete(Database& db, const events::Origin& ctx,
                                         const std::string& collection, const std::string& id,
                                         DeleteClosure* closure) {
  closure->gone.insert(collection + "/" + id);
  for (const auto& [name, schema] : closure->schemas) {
    for (const FieldDef& f : schema.fields) {
      if (f.type != FieldType::kRelation || f.collection != collection) continue;
      auto referrers = Referrers(db, name, f, id);
      if (!referrers.ok()) return referrers.status();
      for (const std::string& rid : *referrers) {
        const std::string key = name + "/" + rid;
        if (closure->gone.count(key)) continue;  // deleted by this write anyway
        if (f.on_delete == OnDelete::kRestrict) {
          closure->restricted.emplace_back(key, f.name);
          continue;
        }
        auto latest = proj::LoadLatest(db, name, rid);
        if (!latest.ok()) return latest.status();
        if (!*latest || (*latest)->deleted) return Internal("referring record vanished");
        const json::object before = (*latest)->data;
        if (f.on_delete == OnDelete::kCascade) {
          SILO_RETURN_IF_ERROR(FollowOnDelete(db, ctx, name, rid, closure));
          SILO_RETURN_IF_ERROR(ReconcileFiles(db, ctx, schema, name, rid, before, {}));
          SILO_RETURN_IF_ERROR(
              AppendRecordEvent(db, ctx, "record.deleted", schema, rid, before, {}));
          continue;
        }
        // set_null: the id leaves the field (a multiple one keeps the rest).
        json::object after = before;
        json::array kept;
        if (f.multiple) {
          for (const auto& v : before.at(f.name).as_array()) {
            if (v != json::value(id)) kept.push_back(v);
          }
        }
        if (kept.empty()) {
          after.erase(f.name);
        } else {
          after[f.name] = std::move(kept);
        }
        SILO_RETURN_IF_ERROR(
            AppendRecordEvent(db, ctx, "record.updated", schema, rid, before, after));
      }
    }
  }
  return Status::Ok();
}

Result<std::vector<Record>> SqliteTenantStore::GetRecords(const std::string& collection,
                                                          const std::vector<std::string>& ids,
                                                          std::optional<int64_t> at_us) {
  std::vector<Record> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto c = proj::LoadCollection(db, collection);
    if (!c.ok()) return c.status();
    SILO_ASSIGN_OR_RETURN(RecordRules read, RulesFor(c->schema, "read"));
    if (!at_us) {  // the current rows, 100 ids a statement
      SILO_ASSIGN_OR_RETURN(auto current, proj::LoadCurrentMany(db, collection, ids));
      for (const std::string& id : ids) {
        auto it = current.find(id);
        if (it == current.end()) continue;
        if (auto r = Visible(read, ToRecord(id, std::move(it->second))))
          out.push_back(std::move(*r));
      }
      return Status::Ok();
    }
    for (const std::string& id : ids) {
      auto v = proj::LoadAt(db, collection, id, *at_us);
      if (!v.ok()) return v.status();
      if (!*v || (*v)->deleted) continue;
      if (auto r = Visible(read, ToRecord(id, std::move(**v)))) out.push_back(std::move(*r));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace silo::records
