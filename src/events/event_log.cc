#include "events/event_log.h"

#include <boost/json.hpp>

#include "crypto/crypto.h"

namespace silo::events {
namespace json = boost::json;

const std::string_view kEventLogSchema =
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY,"
    " at_us INTEGER NOT NULL,"
    " type TEXT NOT NULL,"
    " subject_kind TEXT NOT NULL,"
    " subject_id TEXT NOT NULL,"
    " body TEXT,"  // NULL once purged
    " body_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL) STRICT;"
    "CREATE INDEX events_subject ON events (subject_kind, subject_id, seq);";

namespace {

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

Result<std::string> LastHash(storage::Database& db, int64_t* last_seq) {
  auto stmt = db.Prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1");
  if (!stmt.ok()) return stmt.status();
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    *last_seq = 0;
    return kGenesis;
  }
  *last_seq = stmt->ColumnInt(0);
  return stmt->ColumnText(1);
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
  return num("seq") == e.seq && num("at_us") == e.at_us && str(&v, "type") == e.type &&
         str(subject, "kind") == e.subject_kind && str(subject, "id") == e.subject_id;
}

}  // namespace

Result<int64_t> Append(storage::Database& db, const Event& event) {
  if (!db.InTransaction()) return FailedPrecondition("events are appended inside a transaction");
  int64_t last = 0;
  auto prev = LastHash(db, &last);
  if (!prev.ok()) return prev.status();
  int64_t seq = last + 1;
  auto body = Body(seq, event);
  if (!body.ok()) return body.status();
  std::string body_hash = crypto::Sha256Hex(*body);
  auto insert = db.Prepare(
      "INSERT INTO events (seq, at_us, type, subject_kind, subject_id, body, body_hash, hash)"
      " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, seq)
      .Bind(2, event.at_us)
      .Bind(3, event.type)
      .Bind(4, event.subject_kind)
      .Bind(5, event.subject_id)
      .Bind(6, *body)
      .Bind(7, body_hash)
      .Bind(8, ChainHash(*prev, body_hash));
  if (Status s = insert->Run(); !s.ok()) return s;
  return seq;
}

Result<std::vector<StoredEvent>> ReadAfter(storage::Database& db, int64_t after, int limit) {
  auto stmt = db.Prepare(
      "SELECT seq, at_us, type, subject_kind, subject_id, body, body_hash, hash FROM events"
      " WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, after).Bind(2, int64_t{limit});
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
    out.push_back(std::move(e));
  }
}

Result<VerifyResult> Verify(storage::Database& db) {
  VerifyResult result;
  std::string prev = kGenesis;
  int64_t after = 0;
  while (true) {
    auto batch = ReadAfter(db, after, 1000);
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

Result<int64_t> PurgeBodies(storage::Database& db, int64_t up_to) {
  auto stmt = db.Prepare("UPDATE events SET body = NULL WHERE seq <= ? AND body IS NOT NULL");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, up_to);
  if (Status s = stmt->Run(); !s.ok()) return s;
  return int64_t{db.Changes()};
}

}  // namespace silo::events
