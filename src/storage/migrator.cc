#include "storage/migrator.h"

#include <map>
#include <string>

#include "crypto/crypto.h"

namespace silo::storage {
namespace {

constexpr std::string_view kCreateTable =
    "CREATE TABLE IF NOT EXISTS silo_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))";

std::string Checksum(const Migration& m) {
  return crypto::Sha256Hex(std::string(m.name) + "\n" + std::string(m.sql));
}

Result<std::map<int, std::string>> Applied(Database& db) {
  auto stmt = db.Prepare("SELECT version, checksum FROM silo_migrations ORDER BY version");
  if (!stmt.ok()) return stmt.status();
  std::map<int, std::string> applied;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return applied;
    applied[static_cast<int>(stmt->ColumnInt(0))] = stmt->ColumnText(1);
  }
}

}  // namespace

Status Migrate(Database& db, std::span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i) + 1) {
      return InvalidArgument("migrations must be numbered 1, 2, 3, ... without gaps");
    }
  }
  if (Status s = db.Exec(kCreateTable); !s.ok()) return s;
  auto applied = Applied(db);
  if (!applied.ok()) return applied.status();
  int known = static_cast<int>(migrations.size());
  for (const auto& [version, checksum] : *applied) {
    if (version > known) {
      return FailedPrecondition("the database was written by a newer silo (schema " +
                                std::to_string(applied->rbegin()->first) + ", this build knows " +
                                std::to_string(known) + ")")
          .WithCause(db.path());
    }
    if (checksum != Checksum(migrations[version - 1])) {
      return DataLoss("migration " + std::to_string(version) + " (" +
                      std::string(migrations[version - 1].name) +
                      ") differs from the one applied to the database")
          .WithCause(db.path());
    }
  }
  // Every missing migration in one transaction: one durable commit (one WAL
  // sync) for a new database's whole schema instead of one per migration,
  // and an upgrade is applied entirely or not at all.
  if (applied->size() == migrations.size()) return Status::Ok();
  auto txn = Transaction::Begin(db);
  if (!txn.ok()) return txn.status();
  for (const Migration& m : migrations) {
    if (applied->count(m.version) != 0) continue;
    if (Status s = db.Exec(m.sql); !s.ok()) {
      return s.Rephrase("migration " + std::to_string(m.version) + ": " + s.message());
    }
    auto insert =
        db.Prepare("INSERT INTO silo_migrations (version, name, checksum) VALUES (?,?,?)");
    if (!insert.ok()) return insert.status();
    insert->Bind(1, int64_t{m.version}).Bind(2, m.name).Bind(3, Checksum(m));
    if (Status s = insert->Run(); !s.ok()) return s;
    if (Status s = db.Exec("PRAGMA user_version=" + std::to_string(m.version)); !s.ok()) return s;
  }
  return txn->Commit();
}

Result<int> SchemaVersion(Database& db) {
  auto stmt = db.Prepare("PRAGMA user_version");
  if (!stmt.ok()) return stmt.status();
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(stmt->ColumnInt(0));
}

}  // namespace silo::storage
