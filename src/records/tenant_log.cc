// The SQLite tenant store: the change feed, the audit log and log
// maintenance (verify, purge, rebuild, export; see
// sqlite_tenant_store_internal.h).
#include <algorithm>
#include <boost/json.hpp>

#include "base/time_util.h"
#include "records/list_sql.h"
#include "records/sqlite_tenant_store_internal.h"

namespace silo::records {
namespace json = boost::json;
using storage::Database;
using storage::Statement;
namespace proj = projection;

Result<std::vector<events::StoredEvent>> SqliteTenantStore::Events(int64_t after, int limit) {
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

Result<int64_t> SqliteTenantStore::LastSeq(events::Log log, const std::vector<std::string>& types) {
  int64_t out = 0;
  SILO_RETURN_IF_ERROR(db_->Read([&](Database& db) -> Status {
    boost::json::array wanted(types.begin(), types.end());
    auto r = events::Query(
        db, log,
        "(?1 IS NULL OR type IN (SELECT value FROM json_each(?1))) ORDER BY seq DESC LIMIT 1",
        [&](Statement& st) {
          types.empty() ? (void)st.BindNull(1) : (void)st.Bind(1, boost::json::serialize(wanted));
        });
    if (!r.ok()) return r.status();
    if (!r->empty()) out = r->front().seq;
    return Status::Ok();
  }));
  return out;
}

Status SqliteTenantStore::Audit(const events::Origin& ctx, const AuditEntry& entry) {
  return db_->WriteGrouped([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (Status s = AppendAudit(db, ctx, entry); !s.ok()) return s;
    return tx->Commit();
  });
}

Result<std::vector<events::StoredEvent>> SqliteTenantStore::QueryAudit(const AuditQuery& q) {
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

Result<int64_t> SqliteTenantStore::PurgeAudit(int64_t before_us) {
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

Result<ChainReport> SqliteTenantStore::VerifyChains() {
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

Result<RebuildReport> SqliteTenantStore::Rebuild() {
  RebuildReport report;
  Status s = db_->Write([&](Database& db) -> Status {
    auto tx = storage::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    auto verify = events::Verify(db, events::Log::kEvents);
    if (!verify.ok()) return verify.status();
    if (verify->first_broken) {
      return DataLoss("the event log is broken at entry " + std::to_string(*verify->first_broken) +
                      " (" + verify->reason + "); nothing was rebuilt");
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

Status SqliteTenantStore::Export(
    std::optional<int64_t> at_us,
    const std::function<Status(const std::string&, const Record&)>& sink) {
  return db_->Read([&](Database& db) -> Status {
    if (Status b = db.Exec("BEGIN"); !b.ok()) return b;  // one snapshot throughout
    Status s = ExportIn(db, at_us, sink);
    (void)db.Exec("COMMIT");
    return s;
  });
}

Status SqliteTenantStore::ExportIn(
    Database& db, std::optional<int64_t> at_us,
    const std::function<Status(const std::string&, const Record&)>& sink) {
  auto names = CollectionNames(db);
  if (!names.ok()) return names.status();
  for (const auto& name : *names) {
    SILO_RETURN_IF_ERROR(
        ExportCollectionIn(db, name, at_us, [&](const Record& r) { return sink(name, r); }));
  }
  return Status::Ok();
}

Status SqliteTenantStore::ExportCollection(const std::string& collection,
                                           std::optional<int64_t> at_us,
                                           const std::function<Status(const Record&)>& sink) {
  return db_->Read([&](Database& db) -> Status {
    if (Status b = db.Exec("BEGIN"); !b.ok()) return b;  // one snapshot throughout
    auto names = CollectionNames(db);
    Status s = !names.ok() ? names.status()
               : std::find(names->begin(), names->end(), collection) == names->end()
                   ? NotFound("no such collection")
                   : ExportCollectionIn(db, collection, at_us, sink);
    (void)db.Exec("COMMIT");
    return s;
  });
}

Status SqliteTenantStore::ExportCollectionIn(Database& db, const std::string& collection,
                                             std::optional<int64_t> at_us,
                                             const std::function<Status(const Record&)>& sink) {
  ListQuery q;
  q.at_us = at_us;
  q.limit = kMaxPageSize;
  while (true) {
    RecordPage page;
    SILO_RETURN_IF_ERROR(List(db, collection, q, &page));
    for (const Record& r : page.records) SILO_RETURN_IF_ERROR(sink(r));
    if (!page.next_cursor) return Status::Ok();
    q.after = Cursor{json::value(nullptr), page.records.back().id};
  }
}

}  // namespace silo::records
