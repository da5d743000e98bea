// The SQLite tenant store: records, their history and listings (see
// sqlite_tenant_store_internal.h).
#include <boost/json.hpp>

#include "base/time_util.h"
#include "files/catalog.h"
#include "records/list_sql.h"
#include "records/sqlite_tenant_store_internal.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

namespace {

// The value of the list's sort field in `r`, for the next page's cursor.
json::value SortValue(const ListQuery& q, const Record& r) {
  if (!q.sort) return nullptr;
  const std::string& column = q.sort->column;
  if (column == "id") return json::string(r.id);
  if (column == "created_by") return json::string(r.created_by);
  if (column == "updated_by") return json::string(r.updated_by);
  if (column == "created_at_us") return r.created_at_us;
  if (column == "updated_at_us") return r.updated_at_us;
  const json::value* v = r.data.if_contains(q.sort->name);
  return v ? *v : json::value(nullptr);
}

std::string ActorText(const events::Origin& ctx) { return ctx.actor.kind + ":" + ctx.actor.id; }

// The record a write leaves, as its rules see it: the system fields as the
// write stamps them (the time is the request's; the log may move it on by a
// few microseconds).
Record Prospective(const std::string& id, const json::object& data, const events::Origin& ctx,
                   const std::optional<proj::Version>& latest) {
  Record r;
  r.id = id;
  r.version = latest ? latest->version + 1 : 1;
  r.created_at_us = latest ? latest->created_at_us : ctx.now_us;
  r.created_by = latest ? latest->created_by : ActorText(ctx);
  r.updated_at_us = ctx.now_us;
  r.updated_by = ActorText(ctx);
  r.data = data;
  return r;
}

// The newest live state of a record (a deleted one's last live version), for
// rules that decide on a record as it is or was.
Result<Record> LastLive(Database& db, const std::string& collection, const std::string& id,
                        const proj::Version& latest) {
  proj::Version v = latest;
  if (latest.deleted && latest.version > 1) {
    SILO_ASSIGN_OR_RETURN(auto before, proj::LoadVersion(db, collection, id, latest.version - 1));
    if (before) v = std::move(*before);
  }
  return ToRecord(id, std::move(v));
}

// OK when some rule admits `after` and gives every changed field;
// PermissionDenied otherwise, naming the field when that is the reason.
Status CheckWrite(const RecordRules& rules, const Record& after,
                  const std::vector<events::Change>& changes, std::string_view action) {
  if (rules.Unrestricted()) return Status::Ok();
  bool admitted = false;
  std::string field;
  for (const Rule& rule : rules.rules) {
    if (!Matches(rule.where, after)) continue;
    admitted = true;
    if (!rule.fields) return Status::Ok();
    auto it = std::find_if(changes.begin(), changes.end(),
                           [&](const events::Change& c) { return !rule.fields->count(c.field); });
    if (it == changes.end()) return Status::Ok();
    if (field.empty()) field = it->field;
  }
  if (!admitted) {
    return PermissionDenied("the record would fall outside your " + std::string(action) + " rule");
  }
  return PermissionDenied("you may not write the field " + field)
      .WithFields({{field, "not writable by you"}});
}

}  // namespace

Status ReconcileFiles(Database& db, const events::Origin& ctx, const CollectionSchema& schema,
                      const std::string& collection, const std::string& id,
                      const json::object& before, const json::object& after) {
  std::vector<FieldError> errors;
  for (const FieldDef& f : schema.fields) {
    if (f.type != FieldType::kFile) continue;
    auto old_ids = FileIds(before.if_contains(f.name));
    auto new_ids = FileIds(after.if_contains(f.name));
    if (old_ids == new_ids) continue;
    files::FieldLimits limits{f.max_bytes, f.types, f.max_files};
    SILO_RETURN_IF_ERROR(files::Reconcile(db, {collection, f.name, id},
                                          ctx.actor.kind + ":" + ctx.actor.id, limits, old_ids,
                                          new_ids, ctx.now_us, &errors));
  }
  if (!errors.empty()) return InvalidArgument("invalid record").WithFields(std::move(errors));
  return Status::Ok();
}

Result<RecordRules> SqliteTenantStore::RulesFor(const CollectionSchema& schema,
                                                std::string_view action) const {
  if (!rules_) return AllowAll();
  return rules_(schema, action);
}

std::optional<Record> SqliteTenantStore::Visible(const RecordRules& read, Record r) {
  if (read.Unrestricted()) return r;
  if (!read.Admits(r)) return std::nullopt;
  KeepFields(read.FieldsFor(r), &r.data);
  return r;
}

Record SqliteTenantStore::Shown(const RecordRules& read, Record r) {
  if (auto visible = Visible(read, r)) return std::move(*visible);
  r.data.clear();
  return r;
}

Result<Record> SqliteTenantStore::CreateRecord(const events::Origin& ctx,
                                               const std::string& collection,
                                               const json::object& input) {
  std::string id;
  std::optional<Record> out;
  RecordRules read;
  Status s = WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto c = proj::LoadCollection(db, collection);
        if (!c.ok()) return c.status();
        json::object data = input;
        if (const json::value* given = data.if_contains("id")) {
          if (!given->is_string() || !ValidRecordId(given->as_string())) {
            return InvalidArgument("invalid record")
                .WithFields({{"id", "must match [A-Za-z0-9_-]{1,64}"}});
          }
          id = given->as_string();
          data.erase("id");
        } else {
          id = NewRecordId(ctx.now_us);
        }
        auto valid = ValidateRecord(c->schema, data);
        if (!valid.ok()) return valid.status();
        // The rules before anything that looks at other records: a create
        // the caller may not make learns nothing about ids or unique values.
        e.changes = Diff(c->schema, {}, *valid);
        SILO_ASSIGN_OR_RETURN(RecordRules create, RulesFor(c->schema, "create"));
        SILO_RETURN_IF_ERROR(
            CheckWrite(create, Prospective(id, *valid, ctx, std::nullopt), e.changes, "create"));
        auto existing = proj::LoadLatest(db, collection, id);
        if (!existing.ok()) return existing.status();
        if (*existing) return AlreadyExists("a record with this id exists or existed");
        if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
        SILO_RETURN_IF_ERROR(CheckRelations(db, c->schema, {}, *valid, provider()));
        SILO_RETURN_IF_ERROR(ReconcileFiles(db, ctx, c->schema, collection, id, {}, *valid));
        SILO_ASSIGN_OR_RETURN(read, RulesFor(c->schema, "read"));
        e.type = "record.created";
        e.subject_kind = proj::kRecordSubject;
        e.subject_id = collection + "/" + id;
        return Status::Ok();
      },
      [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
  if (!s.ok()) return s;
  return Shown(read, std::move(*out));
}

Result<Record> SqliteTenantStore::GetRecord(const std::string& collection, const std::string& id,
                                            std::optional<int64_t> at_us) {
  std::optional<Record> out;
  Status s = db_->ReadShort([&](Database& db) -> Status {
    auto c = proj::LoadCollection(db, collection);
    if (!c.ok()) return c.status();
    SILO_ASSIGN_OR_RETURN(RecordRules read, RulesFor(c->schema, "read"));
    auto v =
        at_us ? proj::LoadAt(db, collection, id, *at_us) : proj::LoadLatest(db, collection, id);
    if (!v.ok()) return v.status();
    if (*v && !(*v)->deleted) out = Visible(read, ToRecord(id, std::move(**v)));
    if (!out) return NotFound(at_us ? "no such record at that time" : "no such record");
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return std::move(*out);
}

Result<Record> SqliteTenantStore::UpdateRecord(const events::Origin& ctx,
                                               const std::string& collection, const std::string& id,
                                               const json::object& patch,
                                               std::optional<int64_t> if_version) {
  std::optional<Record> out;
  RecordRules read;
  Status s = WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto c = proj::LoadCollection(db, collection);
        if (!c.ok()) return c.status();
        auto latest = proj::LoadLatest(db, collection, id);
        if (!latest.ok()) return latest.status();
        SILO_ASSIGN_OR_RETURN(RecordRules update, RulesFor(c->schema, "update"));
        if (!*latest || (*latest)->deleted || !update.Admits(ToRecord(id, **latest))) {
          return NotFound("no such record");
        }
        if (Status v = CheckVersion((*latest)->version, if_version); !v.ok()) return v;
        json::object merged = (*latest)->data;
        for (const auto& kv : patch) {
          if (kv.key() == "id") {
            return InvalidArgument("invalid record").WithFields({{"id", "cannot be changed"}});
          }
          if (kv.value().is_null()) {
            merged.erase(kv.key());
          } else {
            merged[kv.key()] = kv.value();
          }
        }
        auto valid = ValidateRecord(c->schema, merged);
        if (!valid.ok()) return valid.status();
        e.changes = Diff(c->schema, (*latest)->data, *valid);
        SILO_ASSIGN_OR_RETURN(read, RulesFor(c->schema, "read"));
        if (e.changes.empty()) return Status::Ok();  // nothing changed: no event
        SILO_RETURN_IF_ERROR(
            CheckWrite(update, Prospective(id, *valid, ctx, *latest), e.changes, "update"));
        if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
        SILO_RETURN_IF_ERROR(CheckRelations(db, c->schema, (*latest)->data, *valid, provider()));
        SILO_RETURN_IF_ERROR(
            ReconcileFiles(db, ctx, c->schema, collection, id, (*latest)->data, *valid));
        e.type = "record.updated";
        e.subject_kind = proj::kRecordSubject;
        e.subject_id = collection + "/" + id;
        return Status::Ok();
      },
      [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
  if (!s.ok()) return s;
  return Shown(read, std::move(*out));
}

Status SqliteTenantStore::DeleteRecord(const events::Origin& ctx, const std::string& collection,
                                       const std::string& id, std::optional<int64_t> if_version) {
  return WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto c = proj::LoadCollection(db, collection);
        if (!c.ok()) return c.status();
        auto latest = proj::LoadLatest(db, collection, id);
        if (!latest.ok()) return latest.status();
        SILO_ASSIGN_OR_RETURN(RecordRules del, RulesFor(c->schema, "delete"));
        if (!*latest || (*latest)->deleted || !del.Admits(ToRecord(id, **latest))) {
          return NotFound("no such record");
        }
        if (Status v = CheckVersion((*latest)->version, if_version); !v.ok()) return v;
        // Referrers first: their events come before this one, so at every
        // time the log describes, relations name live records only.
        DeleteClosure closure;
        SILO_ASSIGN_OR_RETURN(closure.schemas, AllSchemas(db));
        SILO_RETURN_IF_ERROR(FollowOnDelete(db, ctx, collection, id, &closure));
        std::vector<FieldError> blocking;
        size_t count = 0;
        for (const auto& [record, field] : closure.restricted) {
          if (closure.gone.count(record)) continue;
          if (++count <= kMaxOffendingIds) {
            blocking.push_back({record + " (" + field + ")", "refers to this record"});
          }
        }
        if (count > 0) {
          return FailedPrecondition(std::to_string(count) +
                                    " records refer to this record (on_delete restrict)")
              .WithFields(std::move(blocking));
        }
        SILO_RETURN_IF_ERROR(
            ReconcileFiles(db, ctx, c->schema, collection, id, (*latest)->data, {}));
        e.type = "record.deleted";
        e.subject_kind = proj::kRecordSubject;
        e.subject_id = collection + "/" + id;
        e.changes = Diff(c->schema, (*latest)->data, {});
        return Status::Ok();
      },
      nullptr);
}

Result<Record> SqliteTenantStore::RevertRecord(const events::Origin& ctx,
                                               const std::string& collection, const std::string& id,
                                               const RevertTarget& target,
                                               std::optional<int64_t> if_version) {
  std::optional<Record> out;
  RecordRules read;
  Status s = WriteEvent(
      ctx,
      [&](Database& db, events::Event& e) -> Status {
        auto c = proj::LoadCollection(db, collection);
        if (!c.ok()) return c.status();
        auto latest = proj::LoadLatest(db, collection, id);
        if (!latest.ok()) return latest.status();
        SILO_ASSIGN_OR_RETURN(RecordRules update, RulesFor(c->schema, "update"));
        if (!*latest) return NotFound("no such record");
        SILO_ASSIGN_OR_RETURN(Record last, LastLive(db, collection, id, **latest));
        if (!update.Admits(last)) return NotFound("no such record");
        if (Status v = CheckVersion((*latest)->version, if_version); !v.ok()) return v;
        auto old = target.version ? proj::LoadVersion(db, collection, id, *target.version)
                                  : proj::LoadAt(db, collection, id, *target.at_us);
        if (!old.ok()) return old.status();
        if (!*old || (*old)->deleted) {
          return InvalidArgument(target.version ? "the record has no such version"
                                                : "the record did not exist at that time");
        }
        auto valid = ValidateRecord(c->schema, (*old)->data);
        if (!valid.ok()) {
          return InvalidArgument("the old state does not fit the current schema")
              .WithFields(valid.status().fields());
        }
        json::object current = (*latest)->deleted ? json::object() : (*latest)->data;
        e.changes = Diff(c->schema, current, *valid);
        SILO_ASSIGN_OR_RETURN(read, RulesFor(c->schema, "read"));
        if (e.changes.empty() && !(*latest)->deleted) return Status::Ok();  // already so
        SILO_RETURN_IF_ERROR(
            CheckWrite(update, Prospective(id, *valid, ctx, *latest), e.changes, "update"));
        if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
        SILO_RETURN_IF_ERROR(CheckRelations(db, c->schema, current, *valid, provider()));
        SILO_RETURN_IF_ERROR(ReconcileFiles(db, ctx, c->schema, collection, id, current, *valid));
        e.type = "record.reverted";
        e.subject_kind = proj::kRecordSubject;
        e.subject_id = collection + "/" + id;
        return Status::Ok();
      },
      [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
  if (!s.ok()) return s;
  return Shown(read, std::move(*out));
}

Result<RecordPage> SqliteTenantStore::ListRecords(const std::string& collection,
                                                  const ListQuery& q) {
  RecordPage page;
  Status s = db_->Read([&](Database& db) -> Status {
    auto c = proj::LoadCollection(db, collection);
    if (!c.ok()) return c.status();
    SILO_ASSIGN_OR_RETURN(RecordRules read, RulesFor(c->schema, "read"));
    ListQuery scoped = q;
    SILO_RETURN_IF_ERROR(ScopeQuery(db, read, &scoped));
    SILO_RETURN_IF_ERROR(List(db, collection, scoped, &page));
    if (read.Unrestricted()) return Status::Ok();
    for (Record& r : page.records) KeepFields(read.FieldsFor(r), &r.data);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return page;
}

Result<std::vector<HistoryEntry>> SqliteTenantStore::History(const std::string& collection,
                                                             const std::string& id) {
  std::vector<HistoryEntry> out;
  Status s = db_->Read([&](Database& db) -> Status {
    auto c = proj::LoadCollection(db, collection);
    if (!c.ok()) return c.status();
    SILO_ASSIGN_OR_RETURN(RecordRules history, RulesFor(c->schema, "history"));
    FieldSet fields;
    if (!history.Unrestricted()) {
      auto latest = proj::LoadLatest(db, collection, id);
      if (!latest.ok()) return latest.status();
      if (!*latest) return NotFound("no such record");
      SILO_ASSIGN_OR_RETURN(Record last, LastLive(db, collection, id, **latest));
      if (!history.Admits(last)) return NotFound("no such record");
      fields = history.FieldsFor(last);
    }
    auto evs = events::Query(
        db, events::Log::kEvents, "subject_kind = ?1 AND subject_id = ?2 ORDER BY seq",
        [&](Statement& st) { st.Bind(1, proj::kRecordSubject).Bind(2, collection + "/" + id); });
    if (!evs.ok()) return evs.status();
    if (evs->empty()) return NotFound("no such record");
    int64_t version = 0;
    for (const auto& ev : *evs) {
      HistoryEntry h;
      h.version = ++version;
      h.seq = ev.seq;
      h.at_us = ev.at_us;
      h.type = ev.type;
      h.actor = ParseActor(ev.actor);
      if (ev.body) {
        auto parsed = proj::ParseBody(*ev.body);
        if (!parsed.ok()) return parsed.status();
        h.request_id = parsed->request_id;
        json::object changes;
        for (const auto& c : parsed->changes) {
          if (fields && !fields->count(c.field)) continue;
          auto side = [](const std::optional<std::string>& t) -> json::value {
            return t ? json::parse(*t) : json::value(nullptr);
          };
          changes[c.field] = json::array{side(c.old_json), side(c.new_json)};
        }
        h.changes = std::move(changes);
      }
      out.push_back(std::move(h));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status SqliteTenantStore::ScopeQuery(Database& db, const RecordRules& read, ListQuery* q) const {
  const FieldSet readable = read.FieldsOfEveryRule();
  // A filter or sort on a field some listed record may hide would tell its
  // value by bisection.
  auto refuse = [&](const FieldDef& f, std::string_view use) -> Status {
    if (!f.column.empty() || !readable || readable->count(f.name)) return Status::Ok();
    return PermissionDenied("you may not " + std::string(use) + " on " + f.name +
                            ": your rules do not let you read it on every record");
  };
  if (!read.AllRows()) {  // no rule at all included: "0", no record
    q->scope.emplace();
    for (const Rule& r : read.rules) q->scope->push_back(r.where);
  }
  if (q->sort) SILO_RETURN_IF_ERROR(refuse(*q->sort, "sort"));
  for (Filter& f : q->filters) {
    if (!f.relation) {
      SILO_RETURN_IF_ERROR(refuse(f.field, "filter"));
      continue;
    }
    SILO_RETURN_IF_ERROR(refuse(*f.relation, "filter"));
    SILO_ASSIGN_OR_RETURN(proj::StoredCollection target,
                          proj::LoadCollection(db, f.relation->collection));
    SILO_ASSIGN_OR_RETURN(RecordRules target_read, RulesFor(target.schema, "read"));
    if (target_read.rules.empty()) {
      return PermissionDenied("filter through " + f.relation->name + ": you may not read " +
                              f.relation->collection);
    }
    if (target_read.Unrestricted()) continue;
    const FieldSet target_readable = target_read.FieldsOfEveryRule();
    if (f.field.column.empty() && target_readable && !target_readable->count(f.field.name)) {
      return PermissionDenied("you may not filter on " + f.relation->name + "." + f.field.name +
                              ": your rules do not let you read it on every record");
    }
    if (!target_read.AllRows()) {
      f.target_scope.emplace();
      for (const Rule& r : target_read.rules) f.target_scope->push_back(r.where);
    }
  }
  return Status::Ok();
}

Status SqliteTenantStore::LoadCurrent(Database& db, const std::string& collection,
                                      const std::string& id, std::optional<Record>* out) {
  auto v = proj::LoadLatest(db, collection, id);
  if (!v.ok()) return v.status();
  if (!*v || (*v)->deleted) return Internal("record missing after its write");
  *out = ToRecord(id, std::move(**v));
  return Status::Ok();
}

Status SqliteTenantStore::List(Database& db, const std::string& collection, const ListQuery& q,
                               RecordPage* page) {
  const ListSql built = BuildListSql(q);
  auto stmt = db.Prepare(built.sql);
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, collection);
  for (size_t i = 0; i < built.args.size(); ++i) {
    BindJson(*stmt, static_cast<int>(i) + 2, built.args[i]);
  }
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (page->records.size() == static_cast<size_t>(q.limit)) {
      const Record& last = page->records.back();
      page->next_cursor = EncodeCursor({SortValue(q, last), last.id});
      break;
    }
    Record r;
    r.id = stmt->ColumnText(0);
    r.version = stmt->ColumnInt(1);
    boost::system::error_code ec;
    json::value data = json::parse(stmt->ColumnText(2), ec);
    if (ec || !data.is_object()) return DataLoss("record with malformed data");
    r.data = std::move(data.as_object());
    r.created_at_us = stmt->ColumnInt(3);
    r.created_by = stmt->ColumnText(4);
    r.updated_at_us = stmt->ColumnInt(5);
    r.updated_by = stmt->ColumnText(6);
    page->records.push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace silo::records
