#include "events/event_log.h"

#include <algorithm>
#include <boost/json.hpp>

#include "crypto/crypto.h"

namespace silo::events {
namespace json = boost::json;

#define SILO_LOG_TABLE(name)           \
  "CREATE TABLE " name                 \
  " ("                                 \
  " seq INTEGER PRIMARY KEY,"          \
  " at_us INTEGER NOT NULL,"           \
  " actor TEXT NOT NULL,"              \
  " type TEXT NOT NULL,"               \
  " subject_kind TEXT NOT NULL,"       \
  " subject_id TEXT NOT NULL,"         \
  " body TEXT," /* NULL once purged */ \
  " body_hash TEXT NOT NULL,"          \
  " hash TEXT NOT NULL) STRICT;"

const std::string_view kEventLogSchema =
    SILO_LOG_TABLE("events")
    "CREATE INDEX events_subject ON events (subject_kind, subject_id, seq);"
    SILO_LOG_TABLE("audit")
    "CREATE INDEX audit_at ON audit (at_us);";

#undef SILO_LOG_TABLE

namespace {

const char* Table(Log log) { return log == Log::kAudit ? "audit" : "events"; }

std::string ActorText(const Actor& a) { return a.kind + ":" + a.id; }

const std::string kGenesis(64, '0');

std::string ChainHash(const std::string& prev, const std::string& body_hash) {
  return crypto::Sha256Hex(prev + body_hash);
}

Result<std::string> Body(int64_t seq, const Event& e) {
  json::object o;
  o["v"] = 1;
  o["seq"] = seq;
  o["at_us"] = e.at_us;
  o["actor"] = json::object{{"kind", e.actor.kind}, {"id", e.actor.id}};
  o["request_id"] = e.request_id;
  o["client"] = e.client;
  o["subject"] = json::object{{"kind", e.subject_kind}, {"id", e.subject_id}};
  o["type"] = e.type;
  json::array changes;
  for (const Change& c : e.changes) {
    json::object change;
    change["field"] = c.field;
    if (c.secret) {
      change["changed"] = true;  // never the values
    } else {
      for (const auto& [key, text] :
           {std::pair{"old", &c.old_json}, std::pair{"new", &c.new_json}}) {
        if (!text->has_value()) continue;
        boost::system::error_code ec;
        json::value v = json::parse(**text, ec);
        if (ec) return InvalidArgument("change of " + c.field + ": " + key + " is not JSON");
        change[key] = std::move(v);
      }
    }
    changes.push_back(std::move(change));
  }
  o["changes"] = std::move(changes);
  return json::serialize(o);
}

// The last entry's seq, time and hash; 0, 0 and the genesis hash when empty.
Result<std::string> LastEntry(storage::Database& db, Log log, int64_t* last_seq,
                              int64_t* last_at_us) {
  auto stmt = db.Prepare(std::string("SELECT seq, at_us, hash FROM ") + Table(log) +
                         " ORDER BY seq DESC LIMIT 1");
  if (!stmt.ok()) return stmt.status();
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    *last_seq = 0;
    *last_at_us = 0;
    return kGenesis;
  }
  *last_seq = stmt->ColumnInt(0);
  *last_at_us = stmt->ColumnInt(1);
  return stmt->ColumnText(2);
}

// Whether the indexed columns say what the body says.
bool ColumnsMatchBody(const StoredEvent& e) {
  boost::system::error_code ec;
  json::value v = json::parse(*e.body, ec);
  if (ec || !v.is_object()) return false;
  const json::object& o = v.as_object();
  const json::value* subject = o.if_contains("subject");
  auto str = [](const json::value* v, std::string_view key) -> std::string {
    if (v == nullptr || !v->is_object()) return "\x01";
    const json::value* s = v->as_object().if_contains(key);
    return s != nullptr && s->is_string() ? std::string(s->as_string()) : "\x01";
  };
  auto num = [&](std::string_view key) -> int64_t {
    const json::value* n = o.if_contains(key);
    return n != nullptr && n->is_int64() ? n->as_int64() : -1;
  };
  const json::value* actor = o.if_contains("actor");
  return num("seq") == e.seq && num("at_us") == e.at_us && str(&v, "type") == e.type &&
         str(actor, "kind") + ":" + str(actor, "id") == e.actor &&
         str(subject, "kind") == e.subject_kind && str(subject, "id") == e.subject_id;
}

}  // namespace

Result<int64_t> Append(storage::Database& db, Event& event, Log log) {
  if (!db.InTransaction()) return FailedPrecondition("events are appended inside a transaction");
  int64_t last = 0, last_at = 0;
  auto prev = LastEntry(db, log, &last, &last_at);
  if (!prev.ok()) return prev.status();
  event.at_us = std::max(event.at_us, last_at + 1);
  int64_t seq = last + 1;
  auto body = Body(seq, event);
  if (!body.ok()) return body.status();
  std::string body_hash = crypto::Sha256Hex(*body);
  auto insert = db.Prepare(std::string("INSERT INTO ") + Table(log) +
                           " (seq, at_us, type, subject_kind, subject_id, body, body_hash, hash,"
                           " actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, seq)
      .Bind(2, event.at_us)
      .Bind(3, event.type)
      .Bind(4, event.subject_kind)
      .Bind(5, event.subject_id)
      .Bind(6, *body)
      .Bind(7, body_hash)
      .Bind(8, ChainHash(*prev, body_hash))
      .Bind(9, ActorText(event.actor));
  if (Status s = insert->Run(); !s.ok()) return s;
  return seq;
}

Result<std::vector<StoredEvent>> ReadAfter(storage::Database& db, int64_t after, int limit,
                                           Log log) {
  return Query(db, log, "seq > ?1 ORDER BY seq LIMIT ?2",
               [&](storage::Statement& s) { s.Bind(1, after).Bind(2, int64_t{limit}); });
}

Result<std::vector<StoredEvent>> Query(storage::Database& db, Log log, std::string_view where,
                                       const std::function<void(storage::Statement&)>& bind) {
  auto stmt = db.Prepare(
      std::string("SELECT seq, at_us, type, subject_kind, subject_id, body, body_hash, hash, actor"
                  " FROM ") +
      Table(log) + " WHERE " + std::string(where));
  if (!stmt.ok()) return stmt.status();
  bind(*stmt);
  std::vector<StoredEvent> out;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    StoredEvent e;
    e.seq = stmt->ColumnInt(0);
    e.at_us = stmt->ColumnInt(1);
    e.type = stmt->ColumnText(2);
    e.subject_kind = stmt->ColumnText(3);
    e.subject_id = stmt->ColumnText(4);
    if (!stmt->ColumnIsNull(5)) e.body = stmt->ColumnText(5);
    e.body_hash = stmt->ColumnText(6);
    e.hash = stmt->ColumnText(7);
    e.actor = stmt->ColumnText(8);
    out.push_back(std::move(e));
  }
}

Result<VerifyResult> Verify(storage::Database& db, Log log) {
  VerifyResult result;
  std::string prev = kGenesis;
  int64_t after = 0;
  while (true) {
    auto batch = ReadAfter(db, after, 1000, log);
    if (!batch.ok()) return batch.status();
    if (batch->empty()) return result;
    for (const StoredEvent& e : *batch) {
      auto broken = [&](std::string reason) {
        result.first_broken = e.seq;
        result.reason = std::move(reason);
        return result;
      };
      if (e.seq != after + 1) return broken("sequence gap before this entry");
      if (e.body && crypto::Sha256Hex(*e.body) != e.body_hash) return broken("body altered");
      if (e.body && !ColumnsMatchBody(e)) return broken("columns disagree with the body");
      if (ChainHash(prev, e.body_hash) != e.hash) return broken("chain broken");
      prev = e.hash;
      after = e.seq;
      ++result.checked;
    }
  }
}

Status AppendAudit(storage::Database& db, const Origin& origin, std::string type,
                   std::string subject_kind, std::string subject_id, std::vector<Change> changes) {
  Event e;
  e.at_us = origin.now_us;
  e.actor = origin.actor;
  e.request_id = origin.request_id;
  e.client = origin.client;
  e.type = std::move(type);
  e.subject_kind = std::move(subject_kind);
  e.subject_id = std::move(subject_id);
  e.changes = std::move(changes);
  return Append(db, e, Log::kAudit).status();
}

std::vector<Change> DetailChanges(const boost::json::object& details) {
  std::vector<Change> changes;
  changes.reserve(details.size());
  for (const auto& kv : details) {
    changes.push_back({std::string(kv.key()), std::nullopt, json::serialize(kv.value()), false});
  }
  return changes;
}

Result<std::optional<int64_t>> LastSeqBefore(storage::Database& db, int64_t at_us, Log log) {
  auto last = db.Prepare(std::string("SELECT max(seq) FROM ") + Table(log) + " WHERE at_us < ?");
  if (!last.ok()) return last.status();
  last->Bind(1, at_us);
  if (auto row = last->Step(); !row.ok()) return row.status();
  if (last->ColumnIsNull(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(last->ColumnInt(0));
}

Result<ChainPoint> LastPoint(storage::Database& db, Log log) {
  auto last =
      db.Prepare(std::string("SELECT seq, hash FROM ") + Table(log) + " ORDER BY seq DESC LIMIT 1");
  if (!last.ok()) return last.status();
  SILO_ASSIGN_OR_RETURN(bool found, last->Step());
  if (!found) return ChainPoint{};
  return ChainPoint{last->ColumnInt(0), last->ColumnText(1)};
}

Result<std::optional<std::string>> HashAt(storage::Database& db, int64_t seq, Log log) {
  auto at = db.Prepare(std::string("SELECT hash FROM ") + Table(log) + " WHERE seq = ?");
  if (!at.ok()) return at.status();
  at->Bind(1, seq);
  SILO_ASSIGN_OR_RETURN(bool found, at->Step());
  if (!found) return std::optional<std::string>();
  return std::optional<std::string>(at->ColumnText(0));
}

Result<int64_t> TruncateAfter(storage::Database& db, int64_t at_us, Log log) {
  if (!db.InTransaction()) return FailedPrecondition("truncating a log needs a transaction");
  auto drop = db.Prepare(std::string("DELETE FROM ") + Table(log) + " WHERE at_us > ?");
  if (!drop.ok()) return drop.status();
  drop->Bind(1, at_us);
  if (Status s = drop->Run(); !s.ok()) return s;
  return static_cast<int64_t>(db.Changes());
}

Result<int64_t> PurgeBodies(storage::Database& db, int64_t up_to, Log log) {
  auto stmt = db.Prepare(std::string("UPDATE ") + Table(log) +
                         " SET body = NULL WHERE seq <= ? AND body IS NOT NULL");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, up_to);
  if (Status s = stmt->Run(); !s.ok()) return s;
  return int64_t{db.Changes()};
}

Result<int64_t> ReplaceWithCopy(storage::Database& from, storage::Database& to, Log log) {
  const std::string table = Table(log);
  if (Status d = to.Exec("DELETE FROM " + table); !d.ok()) return d;
  auto read = from.Prepare(
      "SELECT seq, at_us, actor, type, subject_kind, subject_id, body,"
      " body_hash, hash FROM " +
      table + " ORDER BY seq");
  if (!read.ok()) return read.status();
  auto write = to.Prepare("INSERT INTO " + table +
                          " (seq, at_us, actor, type, subject_kind, subject_id, body, body_hash,"
                          " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!write.ok()) return write.status();
  int64_t copied = 0;
  for (;;) {
    auto row = read->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    write->Bind(1, read->ColumnInt(0)).Bind(2, read->ColumnInt(1));
    for (int c = 2; c <= 5; ++c) write->Bind(c + 1, read->ColumnText(c));
    if (read->ColumnIsNull(6)) {
      write->BindNull(7);
    } else {
      write->Bind(7, read->ColumnText(6));
    }
    write->Bind(8, read->ColumnText(7)).Bind(9, read->ColumnText(8));
    if (Status w = write->Run(); !w.ok()) return w;
    write->Reset();
    ++copied;
  }
  return copied;
}

}  // namespace silo::events
