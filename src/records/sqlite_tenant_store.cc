// The SQLite implementation of the tenant store: validation and the write
// protocol (stamp the time, append the event, apply it to the projections,
// all in one transaction) live here; projection.cc owns the tables.
#include <boost/json.hpp>
#include <map>
#include <set>

#include "base/time_util.h"
#include "crypto/crypto.h"
#include "rbac/rbac.h"
#include "records/list_sql.h"
#include "records/projection.h"
#include "records/tenant_store.h"
#include "storage/migrator.h"
#include "storage/tenant_databases.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

namespace {

// The tenant schema. Append only: a released migration never changes (the
// migrator refuses a database whose history differs).
const storage::Migration kTenantMigrations[] = {
    {1, "tenant_meta",
     "CREATE TABLE tenant_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT"},
    {2, "event_and_audit_logs", events::kEventLogSchema},
    {3, "record_projections", proj::kSchema},
    {4, "api_tokens",
     "CREATE TABLE api_tokens ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " hash TEXT NOT NULL UNIQUE,"  // SHA-256 of the token (256 random bits)
     " permissions TEXT NOT NULL,"
     " created_at_us INTEGER NOT NULL,"
     " expires_at_us INTEGER NOT NULL) STRICT"},
    {5, "api_token_owners",
     // Who issued the token: "operator" or "user:<id>" (whose permissions
     // then bound the token's for as long as it lives).
     "ALTER TABLE api_tokens ADD COLUMN owner TEXT NOT NULL DEFAULT 'operator'"},
};

constexpr std::string_view kTokenPrefix = "silo_";

constexpr size_t kMaxOffendingIds = 100;
constexpr int kMaxEventsPage = 1000;

events::Actor ParseActor(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos) return {text, ""};
  return {text.substr(0, colon), text.substr(colon + 1)};
}

constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

// A generated record id: 11 base-36 digits of the creation time in
// microseconds, then 5 random characters. Why time first: new records land at
// the end of every B-tree keyed by id instead of on random pages, which keeps
// a create to a few dirty pages however large the collection grows (the
// creation time is no secret: created_at says the same).
std::string NewRecordId(int64_t now_us) {
  std::string time(11, '0');
  uint64_t t = static_cast<uint64_t>(std::max<int64_t>(0, now_us));
  for (int i = 10; i >= 0 && t > 0; --i, t /= 36) time[i] = kBase36[t % 36];
  return time + crypto::RandomId(5);
}

std::optional<std::string> Text(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  return json::serialize(*v);
}

// Changes from `before` to `after`, in schema order.
std::vector<events::Change> Diff(const CollectionSchema& schema, const json::object& before,
                                 const json::object& after) {
  std::vector<events::Change> out;
  for (const auto& f : schema.fields) {
    const json::value* a = before.if_contains(f.name);
    const json::value* b = after.if_contains(f.name);
    if (a == nullptr && b == nullptr) continue;
    if (a != nullptr && b != nullptr && *a == *b) continue;
    out.push_back({f.name, Text(a), Text(b), false});
  }
  return out;
}

Record ToRecord(const std::string& id, proj::Version v) {
  return Record{id,
                v.version,
                v.created_at_us,
                std::move(v.created_by),
                v.updated_at_us,
                std::move(v.updated_by),
                std::move(v.data)};
}

Collection ToCollection(proj::StoredCollection c) {
  return Collection{std::move(c.schema), c.version, c.created_at_us, c.updated_at_us};
}

// Rejects values another record already holds in a unique field.
Status CheckUnique(Database& db, const CollectionSchema& schema, const std::string& collection,
                   const std::string& id, const json::object& data) {
  std::vector<FieldError> taken;
  for (const auto& f : schema.fields) {
    const json::value* v = f.unique ? data.if_contains(f.name) : nullptr;
    if (v == nullptr) continue;
    auto stmt =
        db.Prepare("SELECT id FROM unique_values WHERE collection = ? AND field = ? AND value = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, collection).Bind(2, f.name).Bind(3, json::serialize(*v));
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (*row && stmt->ColumnText(0) != id) {
      taken.push_back({f.name, "already used by another record"});
    }
  }
  if (taken.empty()) return Status::Ok();
  return AlreadyExists("a unique value is already used").WithFields(std::move(taken));
}

Status CheckVersion(int64_t current, std::optional<int64_t> expected) {
  if (expected && *expected != current) {
    return VersionMismatch("the record is at version " + std::to_string(current));
  }
  return Status::Ok();
}

class SqliteTenantStore : public TenantStore {
 public:
  explicit SqliteTenantStore(std::shared_ptr<storage::TenantDatabase> db) : db_(std::move(db)) {}

  Result<TenantStoreInfo> Info() override {
    TenantStoreInfo info;
    Status s = db_->Read([&](Database& db) -> Status {
      auto version = storage::SchemaVersion(db);
      if (!version.ok()) return version.status();
      info.schema_version = *version;
      auto stmt = db.Prepare("SELECT value FROM tenant_meta WHERE key = 'created_at'");
      if (!stmt.ok()) return stmt.status();
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (*row) info.created_at = stmt->ColumnText(0);
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return info;
  }

  // --- API tokens ---

  Result<IssuedToken> CreateToken(const events::Origin& ctx, const TokenSpec& spec) override {
    std::vector<FieldError> errors;
    if (spec.name.empty() || spec.name.size() > 100) {
      errors.push_back({"name", "must be 1 to 100 bytes"});
    }
    if (spec.permissions.empty() || spec.permissions.size() > 100) {
      errors.push_back({"permissions", "must list 1 to 100 permissions"});
    }
    for (const auto& p : spec.permissions) {
      if (!rbac::ValidPermission(p)) errors.push_back({"permissions", "unknown permission " + p});
    }
    if (spec.expires_at_us <= ctx.now_us) errors.push_back({"expires_at", "must be in the future"});
    if (spec.max_days > 0 &&
        spec.expires_at_us - ctx.now_us > int64_t{spec.max_days} * 86400 * 1'000'000) {
      errors.push_back({"expires_at", "must be at most " + std::to_string(spec.max_days) +
                                          " days ahead (SILO_TOKEN_MAX_DAYS)"});
    }
    if (!errors.empty()) return InvalidArgument("invalid token").WithFields(std::move(errors));
    IssuedToken issued{crypto::RandomId(16), std::string(kTokenPrefix) + crypto::RandomToken(32)};
    json::array perms;
    for (const auto& p : spec.permissions) perms.push_back(json::string(p));
    std::string perms_text = json::serialize(perms);
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto ins = db.Prepare(
              "INSERT INTO api_tokens (id, name, hash, permissions, created_at_us, expires_at_us,"
              " owner) VALUES (?, ?, ?, ?, ?, ?, ?)");
          if (!ins.ok()) return ins.status();
          ins->Bind(1, issued.id)
              .Bind(2, spec.name)
              .Bind(3, crypto::Sha256Hex(issued.token))
              .Bind(4, perms_text)
              .Bind(5, ctx.now_us)
              .Bind(6, spec.expires_at_us)
              .Bind(7, spec.owner);
          if (Status r = ins->Run(); !r.ok()) return r;
          e.type = "token.created";
          e.subject_kind = "token";
          e.subject_id = issued.id;
          e.changes = {
              {"name", std::nullopt, json::serialize(json::string(spec.name)), false},
              {"permissions", std::nullopt, perms_text, false},
              {"expires_at", std::nullopt,
               json::serialize(json::string(FormatRfc3339Micros(spec.expires_at_us))), false},
              {"secret", std::nullopt, std::nullopt, true}};
          return Status::Ok();
        },
        nullptr);
    if (!s.ok()) return s;
    return issued;
  }

  Result<Principal> Authenticate(std::string_view token, int64_t now_us) override {
    auto refused = [] { return Status(StatusCode::kUnauthenticated, "invalid or expired token"); };
    if (token.size() != kTokenPrefix.size() + 43 ||
        token.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
      return refused();
    }
    std::optional<Principal> out;
    Status s = db_->Read([&](Database& db) -> Status {
      auto stmt =
          db.Prepare("SELECT id, permissions, expires_at_us, owner FROM api_tokens WHERE hash = ?");
      if (!stmt.ok()) return stmt.status();
      stmt->Bind(1, crypto::Sha256Hex(token));
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row || stmt->ColumnInt(2) <= now_us) return refused();
      Principal p;
      p.token_id = stmt->ColumnText(0);
      p.owner = stmt->ColumnText(3);
      boost::system::error_code ec;
      json::value perms = json::parse(stmt->ColumnText(1), ec);
      if (ec || !perms.is_array()) return DataLoss("token with malformed permissions");
      for (const auto& v : perms.as_array()) {
        if (v.is_string()) p.permissions.emplace_back(v.as_string());
      }
      out = std::move(p);
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<std::vector<TokenInfo>> ListTokens(std::optional<std::string> owner) override {
    std::vector<TokenInfo> out;
    Status s = db_->Read([&](Database& db) -> Status {
      auto stmt = db.Prepare(
          "SELECT id, name, permissions, created_at_us, expires_at_us, owner FROM api_tokens"
          " WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at_us, id");
      if (!stmt.ok()) return stmt.status();
      if (owner)
        stmt->Bind(1, *owner);
      else
        stmt->BindNull(1);
      while (true) {
        auto row = stmt->Step();
        if (!row.ok()) return row.status();
        if (!*row) return Status::Ok();
        TokenInfo t;
        t.id = stmt->ColumnText(0);
        t.name = stmt->ColumnText(1);
        boost::system::error_code ec;
        json::value perms = json::parse(stmt->ColumnText(2), ec);
        if (ec || !perms.is_array()) return DataLoss("token with malformed permissions");
        for (const auto& v : perms.as_array()) {
          if (v.is_string()) t.permissions.emplace_back(v.as_string());
        }
        t.created_at_us = stmt->ColumnInt(3);
        t.expires_at_us = stmt->ColumnInt(4);
        t.owner = stmt->ColumnText(5);
        out.push_back(std::move(t));
      }
    });
    if (!s.ok()) return s;
    return out;
  }

  Status RevokeToken(const events::Origin& ctx, const std::string& id,
                     std::optional<std::string> owner) override {
    bool found = false;
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto del =
              db.Prepare("DELETE FROM api_tokens WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)");
          if (!del.ok()) return del.status();
          del->Bind(1, id);
          if (owner)
            del->Bind(2, *owner);
          else
            del->BindNull(2);
          if (Status r = del->Run(); !r.ok()) return r;
          found = db.Changes() > 0;
          if (!found) return NotFound("no such token");
          e.type = "token.revoked";
          e.subject_kind = "token";
          e.subject_id = id;
          return Status::Ok();
        },
        nullptr);
    return s;
  }

  // --- collections ---

  Result<std::vector<Collection>> ListCollections() override {
    std::vector<Collection> out;
    Status s = db_->Read([&](Database& db) -> Status {
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

  Result<Collection> GetCollection(const std::string& name) override {
    std::optional<Collection> out;
    Status s = db_->Read([&](Database& db) { return LoadCollectionInto(db, name, &out); });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<Collection> CreateCollection(const events::Origin& ctx,
                                      const CollectionSchema& schema) override {
    std::optional<Collection> out;
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          if (proj::LoadCollection(db, schema.name).ok()) {
            return AlreadyExists("a collection with this name exists");
          }
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

  Result<Collection> UpdateCollection(const events::Origin& ctx,
                                      const CollectionSchema& schema) override {
    std::optional<Collection> out;
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto old = proj::LoadCollection(db, schema.name);
          if (!old.ok()) return old.status();
          std::string old_text = json::serialize(old->schema.ToJson());
          std::string new_text = json::serialize(schema.ToJson());
          if (old_text == new_text) return Status::Ok();  // nothing to record
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

  Status DeleteCollection(const events::Origin& ctx, const std::string& name) override {
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
          e.type = "collection.deleted";
          e.subject_kind = proj::kCollectionSubject;
          e.subject_id = name;
          e.changes = {{"schema", json::serialize(old->schema.ToJson()), std::nullopt, false}};
          return Status::Ok();
        },
        nullptr);
  }

  // --- records ---

  Result<Record> CreateRecord(const events::Origin& ctx, const std::string& collection,
                              const json::object& input) override {
    std::string id;
    std::optional<Record> out;
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
          auto existing = proj::LoadLatest(db, collection, id);
          if (!existing.ok()) return existing.status();
          if (*existing) return AlreadyExists("a record with this id exists or existed");
          if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
          e.type = "record.created";
          e.subject_kind = proj::kRecordSubject;
          e.subject_id = collection + "/" + id;
          e.changes = Diff(c->schema, {}, *valid);
          return Status::Ok();
        },
        [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<Record> GetRecord(const std::string& collection, const std::string& id,
                           std::optional<int64_t> at_us) override {
    std::optional<Record> out;
    Status s = db_->Read([&](Database& db) -> Status {
      if (auto c = proj::LoadCollection(db, collection); !c.ok()) return c.status();
      auto v =
          at_us ? proj::LoadAt(db, collection, id, *at_us) : proj::LoadLatest(db, collection, id);
      if (!v.ok()) return v.status();
      if (!*v || (*v)->deleted)
        return NotFound(at_us ? "no such record at that time" : "no such record");
      out = ToRecord(id, std::move(**v));
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<Record> UpdateRecord(const events::Origin& ctx, const std::string& collection,
                              const std::string& id, const json::object& patch,
                              std::optional<int64_t> if_version) override {
    std::optional<Record> out;
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto c = proj::LoadCollection(db, collection);
          if (!c.ok()) return c.status();
          auto latest = proj::LoadLatest(db, collection, id);
          if (!latest.ok()) return latest.status();
          if (!*latest || (*latest)->deleted) return NotFound("no such record");
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
          if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
          e.changes = Diff(c->schema, (*latest)->data, *valid);
          if (e.changes.empty()) return Status::Ok();  // nothing changed: no event
          e.type = "record.updated";
          e.subject_kind = proj::kRecordSubject;
          e.subject_id = collection + "/" + id;
          return Status::Ok();
        },
        [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Status DeleteRecord(const events::Origin& ctx, const std::string& collection,
                      const std::string& id, std::optional<int64_t> if_version) override {
    return WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto c = proj::LoadCollection(db, collection);
          if (!c.ok()) return c.status();
          auto latest = proj::LoadLatest(db, collection, id);
          if (!latest.ok()) return latest.status();
          if (!*latest || (*latest)->deleted) return NotFound("no such record");
          if (Status v = CheckVersion((*latest)->version, if_version); !v.ok()) return v;
          e.type = "record.deleted";
          e.subject_kind = proj::kRecordSubject;
          e.subject_id = collection + "/" + id;
          e.changes = Diff(c->schema, (*latest)->data, {});
          return Status::Ok();
        },
        nullptr);
  }

  Result<Record> RevertRecord(const events::Origin& ctx, const std::string& collection,
                              const std::string& id, const RevertTarget& target,
                              std::optional<int64_t> if_version) override {
    std::optional<Record> out;
    Status s = WriteEvent(
        ctx,
        [&](Database& db, events::Event& e) -> Status {
          auto c = proj::LoadCollection(db, collection);
          if (!c.ok()) return c.status();
          auto latest = proj::LoadLatest(db, collection, id);
          if (!latest.ok()) return latest.status();
          if (!*latest) return NotFound("no such record");
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
          if (Status u = CheckUnique(db, c->schema, collection, id, *valid); !u.ok()) return u;
          json::object current = (*latest)->deleted ? json::object() : (*latest)->data;
          e.changes = Diff(c->schema, current, *valid);
          if (e.changes.empty() && !(*latest)->deleted) return Status::Ok();  // already so
          e.type = "record.reverted";
          e.subject_kind = proj::kRecordSubject;
          e.subject_id = collection + "/" + id;
          return Status::Ok();
        },
        [&](Database& db) { return LoadCurrent(db, collection, id, &out); });
    if (!s.ok()) return s;
    return std::move(*out);
  }

  Result<RecordPage> ListRecords(const std::string& collection, const ListQuery& q) override {
    RecordPage page;
    Status s = db_->Read([&](Database& db) -> Status {
      if (auto c = proj::LoadCollection(db, collection); !c.ok()) return c.status();
      return List(db, collection, q, &page);
    });
    if (!s.ok()) return s;
    return page;
  }

  Result<std::vector<HistoryEntry>> History(const std::string& collection,
                                            const std::string& id) override {
    std::vector<HistoryEntry> out;
    Status s = db_->Read([&](Database& db) -> Status {
      if (auto c = proj::LoadCollection(db, collection); !c.ok()) return c.status();
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

  Result<std::vector<events::StoredEvent>> Events(int64_t after, int limit) override {
    std::vector<events::StoredEvent> out;
    Status s = db_->Read([&](Database& db) -> Status {
      auto r = events::ReadAfter(db, after, std::clamp(limit, 1, kMaxEventsPage));
      if (!r.ok()) return r.status();
      out = std::move(*r);
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return out;
  }

  // --- audit ---

  Status Audit(const events::Origin& ctx, const AuditEntry& entry) override {
    return db_->Write([&](Database& db) -> Status {
      auto tx = storage::Transaction::Begin(db);
      if (!tx.ok()) return tx.status();
      if (Status s = AppendAudit(db, ctx, entry); !s.ok()) return s;
      return tx->Commit();
    });
  }

  Result<std::vector<events::StoredEvent>> QueryAudit(const AuditQuery& q) override {
    std::vector<events::StoredEvent> out;
    Status s = db_->Read([&](Database& db) -> Status {
      auto r = events::Query(db, events::Log::kAudit,
                             "seq > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR type = ?3)"
                             " AND (?4 IS NULL OR at_us >= ?4) AND (?5 IS NULL OR at_us <= ?5)"
                             " ORDER BY seq LIMIT ?6",
                             [&](Statement& st) {
                               st.Bind(1, q.after);
                               q.actor ? (void)st.Bind(2, *q.actor) : (void)st.BindNull(2);
                               q.type ? (void)st.Bind(3, *q.type) : (void)st.BindNull(3);
                               q.from_us ? (void)st.Bind(4, *q.from_us) : (void)st.BindNull(4);
                               q.to_us ? (void)st.Bind(5, *q.to_us) : (void)st.BindNull(5);
                               st.Bind(6, int64_t{std::clamp(q.limit, 1, kMaxEventsPage)});
                             });
      if (!r.ok()) return r.status();
      out = std::move(*r);
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return out;
  }

  Result<int64_t> PurgeAudit(int64_t before_us) override {
    int64_t purged = 0;
    Status s = db_->Write([&](Database& db) -> Status {
      auto tx = storage::Transaction::Begin(db);
      if (!tx.ok()) return tx.status();
      SILO_ASSIGN_OR_RETURN(auto last, events::LastSeqBefore(db, before_us, events::Log::kAudit));
      if (!last) return Status::Ok();
      auto n = events::PurgeBodies(db, *last, events::Log::kAudit);
      if (!n.ok()) return n.status();
      purged = *n;
      return tx->Commit();
    });
    if (!s.ok()) return s;
    return purged;
  }

  Result<ChainReport> VerifyChains() override {
    ChainReport report;
    Status s = db_->Read([&](Database& db) -> Status {
      if (Status b = db.Exec("BEGIN"); !b.ok()) return b;  // one snapshot for both logs
      auto ev = events::Verify(db, events::Log::kEvents);
      auto au = events::Verify(db, events::Log::kAudit);
      auto integrity = db.IntegrityCheck();
      (void)db.Exec("COMMIT");
      report.integrity = integrity.ok() ? *integrity : integrity.status().message();
      if (!ev.ok()) return ev.status();
      if (!au.ok()) return au.status();
      report.events_checked = ev->checked;
      report.events_first_broken = ev->first_broken;
      report.audit_checked = au->checked;
      report.audit_first_broken = au->first_broken;
      report.reason = ev->first_broken ? ev->reason : au->reason;
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return report;
  }

  Result<RebuildReport> Rebuild() override {
    RebuildReport report;
    Status s = db_->Write([&](Database& db) -> Status {
      auto tx = storage::Transaction::Begin(db);
      if (!tx.ok()) return tx.status();
      auto verify = events::Verify(db, events::Log::kEvents);
      if (!verify.ok()) return verify.status();
      if (verify->first_broken) {
        return DataLoss("the event log is broken at entry " +
                        std::to_string(*verify->first_broken) + " (" + verify->reason +
                        "); nothing was rebuilt");
      }
      auto before = proj::Checksum(db);
      if (!before.ok()) return before.status();
      report.checksum_before = *before;
      if (Status r = proj::ReplayAll(db, &report.events); !r.ok()) {
        return r.code() == StatusCode::kDataLoss ? DataLoss(r.message() + "; nothing was rebuilt")
                                                 : r;
      }
      auto rebuilt = proj::Checksum(db);
      if (!rebuilt.ok()) return rebuilt.status();
      report.checksum_after = *rebuilt;
      if (!report.equal()) return Status::Ok();  // rolled back: the old state stays
      return tx->Commit();
    });
    if (!s.ok()) return s;
    return report;
  }

  Status Export(std::optional<int64_t> at_us,
                const std::function<Status(const std::string&, const Record&)>& sink) override {
    return db_->Read([&](Database& db) -> Status {
      if (Status b = db.Exec("BEGIN"); !b.ok()) return b;  // one snapshot throughout
      Status s = ExportIn(db, at_us, sink);
      (void)db.Exec("COMMIT");
      return s;
    });
  }

 private:
  // The write protocol. `prepare` checks the request and fills the event;
  // leaving its type empty means "nothing to change". Then, in the same
  // transaction: stamp the time, append, apply; `done` reads the result back.
  Status WriteEvent(const events::Origin& ctx,
                    const std::function<Status(Database&, events::Event&)>& prepare,
                    const std::function<Status(Database&)>& done) {
    return db_->Write([&](Database& db) -> Status {
      auto tx = storage::Transaction::Begin(db);
      if (!tx.ok()) return tx.status();
      events::Event e;
      if (Status s = prepare(db, e); !s.ok()) return s;
      if (!e.type.empty()) {
        e.at_us = ctx.now_us;  // Append moves it past the last event's time
        e.actor = ctx.actor;
        e.request_id = ctx.request_id;
        e.client = ctx.client;
        auto seq = events::Append(db, e);
        if (!seq.ok()) return seq.status();
        if (Status s = proj::Apply(db, *seq, e); !s.ok()) return s;
        if (e.subject_kind == proj::kCollectionSubject || e.subject_kind == "token") {
          // Schema changes and token issues are security relevant: also in
          // the audit log.
          AuditEntry audit{e.type, e.subject_kind, e.subject_id, {}};
          if (Status s = AppendAudit(db, ctx, audit); !s.ok()) return s;
        }
      }
      if (done) {
        if (Status s = done(db); !s.ok()) return s;
      }
      return tx->Commit();
    });
  }

  static Status AppendAudit(Database& db, const events::Origin& ctx, const AuditEntry& entry) {
    return events::AppendAudit(db, ctx, entry.type, entry.subject_kind, entry.subject_id,
                               events::DetailChanges(entry.details));
  }

  static Result<std::vector<std::string>> CollectionNames(Database& db) {
    auto stmt = db.Prepare("SELECT name FROM collections ORDER BY name");
    if (!stmt.ok()) return stmt.status();
    std::vector<std::string> names;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) return names;
      names.push_back(stmt->ColumnText(0));
    }
  }

  static Status LoadCollectionInto(Database& db, const std::string& name,
                                   std::optional<Collection>* out) {
    auto c = proj::LoadCollection(db, name);
    if (!c.ok()) return c.status();
    *out = ToCollection(std::move(*c));
    return Status::Ok();
  }

  static Status LoadCurrent(Database& db, const std::string& collection, const std::string& id,
                            std::optional<Record>* out) {
    auto v = proj::LoadLatest(db, collection, id);
    if (!v.ok()) return v.status();
    if (!*v || (*v)->deleted) return Internal("record missing after its write");
    *out = ToRecord(id, std::move(**v));
    return Status::Ok();
  }

  // FailedPrecondition naming the records that the new schema would refuse.
  static Status CheckRecordsFit(Database& db, const CollectionSchema& schema) {
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

  static Status List(Database& db, const std::string& collection, const ListQuery& q,
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
        const json::value* v = q.sort ? last.data.if_contains(q.sort->name) : nullptr;
        page->next_cursor = EncodeCursor({v ? *v : json::value(nullptr), last.id});
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

  static Status ExportIn(Database& db, std::optional<int64_t> at_us,
                         const std::function<Status(const std::string&, const Record&)>& sink) {
    auto names = CollectionNames(db);
    if (!names.ok()) return names.status();
    for (const auto& name : *names) {
      ListQuery q;
      q.at_us = at_us;
      q.limit = kMaxPageSize;
      while (true) {
        RecordPage page;
        if (Status s = List(db, name, q, &page); !s.ok()) return s;
        for (const Record& r : page.records) {
          if (Status s = sink(name, r); !s.ok()) return s;
        }
        if (!page.next_cursor) break;
        q.after = Cursor{json::value(nullptr), page.records.back().id};
      }
    }
    return Status::Ok();
  }

  std::shared_ptr<storage::TenantDatabase> db_;
};

class SqliteTenantStores : public TenantStores {
 public:
  explicit SqliteTenantStores(std::shared_ptr<storage::TenantDatabases> databases)
      : databases_(std::move(databases)) {}

  Status Create(const std::string& tenant_id) override {
    auto db = databases_->Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return (*db)->Write([](Database& d) {
      return d.Exec(
          "INSERT OR IGNORE INTO tenant_meta (key, value) "
          "VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))");
    });
  }

  Result<std::unique_ptr<TenantStore>> Open(const std::string& tenant_id) override {
    auto db = databases_->Acquire(tenant_id);
    if (!db.ok()) return db.status();
    return std::unique_ptr<TenantStore>(new SqliteTenantStore(std::move(db).value()));
  }

  void Close(const std::string& tenant_id) override { databases_->Close(tenant_id); }
  size_t open_count() const override { return databases_->open_count(); }

 private:
  std::shared_ptr<storage::TenantDatabases> databases_;
};

storage::TenantDatabasesOptions DatabaseOptions(const SqliteStoresOptions& o) {
  return {.max_open_tenants = o.max_open_tenants,
          .readers_per_tenant = o.readers_per_tenant,
          .open = {.synchronous = o.synchronous_full ? storage::Synchronous::kFull
                                                     : storage::Synchronous::kNormal}};
}

}  // namespace

std::span<const storage::Migration> TenantMigrations() { return kTenantMigrations; }

std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::shared_ptr<storage::TenantDatabases> databases) {
  return std::make_unique<SqliteTenantStores>(std::move(databases));
}

std::unique_ptr<TenantStores> NewSqliteTenantStores(
    std::function<Result<crypto::SecretKey>(const std::string&)> key_fn,
    std::function<std::string(const std::string&)> path_fn, SqliteStoresOptions options) {
  return NewSqliteTenantStores(std::make_shared<storage::TenantDatabases>(
      std::move(key_fn), std::move(path_fn), kTenantMigrations, DatabaseOptions(options)));
}

}  // namespace silo::records
