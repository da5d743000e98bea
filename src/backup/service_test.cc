#include "backup/service.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <atomic>
#include <boost/json.hpp>
#include <fstream>
#include <thread>

#include "app/tenant_schema.h"
#include "auth/identity.h"
#include "backup/archive.h"
#include "backup/rewrap.h"
#include "base/data_layout.h"
#include "base/status_matchers.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "files/blob.h"
#include "files/catalog.h"
#include "records/schema.h"
#include "storage/test_util.h"
#include "tenant/rekey_files.h"

namespace silo::backup {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using storage::testing::FilesContaining;
using storage::testing::Slurp;

constexpr char kMarker[] = "PLAINTEXT-MARKER-7f3a";

// A data directory as `silo serve` lays it out, with a backup service on it.
struct Installation {
  Installation(const std::string& dir, crypto::SecretKey master, const std::string& backups)
      : dir(dir) {
    fs::create_directories(dir + "/platform");
    keyring =
        std::move(crypto::Keyring::Open(dir + "/platform/keyring", std::move(master))).value();
    recovered = tenant::RecoverRekeys(dir, *keyring).value();  // as App::Create does
    registry = std::move(tenant::TenantRegistry::Open(dir, keyring.get())).value();
    crypto::Keyring* ring = keyring.get();
    databases = std::make_shared<storage::TenantDatabases>(
        [ring](const std::string& id) -> Result<crypto::SecretKey> {
          auto dek = ring->GetKey(id);
          if (!dek.ok()) return dek.status();
          return crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kDatabasePages);
        },
        [dir](const std::string& id) { return layout::TenantDatabaseFile(dir, id); },
        app::TenantSchema(),
        storage::TenantDatabasesOptions{.max_open_tenants = 8,
                                        .readers_per_tenant = 2,
                                        .open = {.synchronous = storage::Synchronous::kNormal}});
    stores = records::NewSqliteTenantStores(databases);
    service = std::make_unique<Service>(NewDirectoryTarget(backups), registry.get(), keyring.get(),
                                        databases, stores.get(), dir, RetentionPolicy{},
                                        auth::EndSessionsAndOneTimeTokens);
  }
  std::string dir;
  std::unique_ptr<crypto::Keyring> keyring;
  tenant::RekeyRecovery recovered;
  std::unique_ptr<tenant::TenantRegistry> registry;
  std::shared_ptr<storage::TenantDatabases> databases;
  std::unique_ptr<records::TenantStores> stores;
  std::unique_ptr<Service> service;
};

class BackupServiceTest : public storage::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    master_bytes_ = crypto::RandomBytes(32);
    backups_ = dir_ + "/backups";
    silo_ = std::make_unique<Installation>(dir_ + "/data", Master(), backups_);
  }
  crypto::SecretKey Master() { return crypto::SecretKey::FromBytes(master_bytes_).value(); }

  tenant::TenantInfo NewTenant(const std::string& slug) {
    auto t = silo_->registry->Create(slug, "", "");
    EXPECT_OK(t) << t.status().ToString();
    EXPECT_OK(silo_->stores->Create(t->id));
    return *t;
  }
  std::unique_ptr<records::TenantStore> Store(const tenant::TenantInfo& t) {
    auto s = silo_->stores->Open(t.id);
    EXPECT_OK(s) << s.status().ToString();
    return std::move(s).value();
  }
  static events::Origin Ctx(int64_t now) { return {{"user", "u1"}, "req", "127.0.0.1", now}; }

  // A tenant with a collection, records created, updated, deleted, reverted.
  void Fill(records::TenantStore& s, int64_t t0, int n) {
    auto schema = records::ParseCollection(json::parse(
        R"({"name":"notes","fields":[{"name":"title","type":"string","required":true},
            {"name":"n","type":"integer","indexed":true}]})"));
    ASSERT_OK(s.CreateCollection(Ctx(t0), *schema));
    for (int i = 0; i < n; ++i) {
      auto r = s.CreateRecord(
          Ctx(t0 + 1000 * (i + 1)), "notes",
          {{"title", std::string(kMarker) + " note " + std::to_string(i)}, {"n", i}});
      ASSERT_OK(r) << r.status().ToString();
      if (i % 3 == 0) {
        ASSERT_OK(s.UpdateRecord(Ctx(t0 + 1000 * (i + 1) + 1), "notes", r->id, {{"n", i * 10}},
                                 std::nullopt));
      }
      if (i % 5 == 0) {
        ASSERT_OK(s.DeleteRecord(Ctx(t0 + 1000 * (i + 1) + 2), "notes", r->id, std::nullopt));
      }
    }
    ASSERT_OK(s.Audit(Ctx(t0 + 5), {"test.entry", "test", "x", {{"k", "v"}}}));
  }

  // Every record with every history entry, every event, every audit entry.
  static std::string Dump(records::TenantStore& s, bool with_audit = true) {
    std::string out;
    (void)s.Export(std::nullopt, [&](const std::string& c, const records::Record& r) {
      out +=
          c + "/" + r.id + " v" + std::to_string(r.version) + " " + json::serialize(r.data) + "\n";
      auto h = s.History(c, r.id);
      for (const auto& e : *h) out += "  " + std::to_string(e.seq) + " " + e.type + "\n";
      return Status::Ok();
    });
    auto events = s.Events(0, 1000);
    for (const auto& e : *events)
      out += "E " + std::to_string(e.seq) + " " + e.type + " " + e.hash + "\n";
    if (with_audit) {
      records::AuditQuery q;
      q.limit = 1000;
      auto audit = s.QueryAudit(q);
      for (const auto& e : *audit)
        out += "A " + std::to_string(e.seq) + " " + e.type + " " + e.hash + "\n";
    }
    return out;
  }
  static std::vector<std::string> AuditTypes(records::TenantStore& s) {
    records::AuditQuery q;
    q.limit = 1000;
    std::vector<std::string> types;
    auto audit = s.QueryAudit(q);
    EXPECT_OK(audit);
    for (const auto& e : *audit) types.push_back(e.type);
    return types;
  }
  // Rewrites backup `m` as a backup of format 1 was (before issue 22):
  // its data key wrapped under the master key itself.
  void MakeFormatOne(Manifest m) {
    m.format = 1;
    m.master_fingerprint = silo_->keyring->master_fingerprint();
    m.tenant_key_id.clear();
    m.wrapped_key = crypto::Base64Encode(silo_->keyring->Wrapped(m.tenant_id).value());
    auto dek = silo_->keyring->GetKey(m.tenant_id).value();
    std::ofstream(ManifestPath(m.id), std::ios::trunc)
        << SerializeManifest(m, crypto::DeriveSubkey(dek, crypto::KeyPurpose::kBackups));
  }
  std::string DataPath(const std::string& id) { return backups_ + "/" + DataName(id); }
  std::string ManifestPath(const std::string& id) { return backups_ + "/" + ManifestName(id); }

  std::string master_bytes_, backups_;
  std::unique_ptr<Installation> silo_;
};

TEST_F(BackupServiceTest, BackupWipeRestoreGivesBackEveryRecordHistoryAndAuditEntry) {
  auto acme = NewTenant("acme");
  const int64_t t0 = NowMicros() - 3'600'000'000;
  Fill(*Store(acme), t0, 40);
  const std::string before = Dump(*Store(acme), false);
  const auto audit_before = AuditTypes(*Store(acme));

  auto m = silo_->service->Run(acme);
  ASSERT_OK(m) << m.status().ToString();
  EXPECT_EQ(m->tenant_slug, "acme");
  EXPECT_GT(m->events.count, 40);
  EXPECT_EQ(m->events.count, m->events.seq);
  EXPECT_OK(silo_->service->Verify(m->id));

  // Damage after the backup: every record deleted.
  {
    auto s = Store(acme);
    auto page = s->ListRecords("notes", {});
    ASSERT_OK(page);
    for (const auto& r : page->records)
      ASSERT_OK(s->DeleteRecord(Ctx(NowMicros()), "notes", r.id, std::nullopt));
    ASSERT_NE(Dump(*s, false), before);
  }
  auto restored = silo_->service->Restore({m->id, std::nullopt, std::nullopt, "req-1"});
  ASSERT_OK(restored) << restored.status().ToString();
  EXPECT_FALSE(restored->new_tenant);
  EXPECT_EQ(restored->tenant_id, acme.id);
  auto s = Store(acme);
  EXPECT_EQ(Dump(*s, false), before);
  // The audit log is never rolled back: every entry up to the restore stays
  // (the backup's own entry and that of the backup the restore took of the
  // state it replaced, both written after the snapshot), then the restore.
  EXPECT_FALSE(restored->pre_restore_backup_id.empty());
  EXPECT_NE(restored->pre_restore_backup_id, m->id);
  EXPECT_OK(silo_->service->Verify(restored->pre_restore_backup_id));
  auto audit_after = AuditTypes(*s);
  ASSERT_EQ(audit_after.size(), audit_before.size() + 3);
  EXPECT_EQ(restored->audit_kept, static_cast<int64_t>(audit_before.size() + 2));
  EXPECT_TRUE(std::equal(audit_before.begin(), audit_before.end(), audit_after.begin()));
  EXPECT_EQ(std::vector<std::string>(audit_after.end() - 3, audit_after.end()),
            (std::vector<std::string>{"backup.created", "backup.created", "backup.restored"}));
  auto chains = s->VerifyChains();
  ASSERT_OK(chains);
  EXPECT_FALSE(chains->events_first_broken || chains->audit_first_broken);
  EXPECT_TRUE(s->Rebuild()->equal());
  // The restored tenant takes writes.
  EXPECT_OK(s->CreateRecord(Ctx(NowMicros()), "notes", {{"title", "after"}, {"n", 1}}));
  // No scratch file left.
  for (const auto& e : fs::directory_iterator(silo_->dir + "/tenants/" + acme.id)) {
    EXPECT_EQ(e.path().filename().string().rfind("restore-", 0), std::string::npos) << e.path();
  }

  // The tenant deleted for good (directory and key gone): the backup still
  // restores under a new slug, because it carries the key wrapped by the master key.
  s.reset();
  silo_->stores->Close(acme.id);
  ASSERT_OK(silo_->registry->Delete("acme"));
  EXPECT_EQ(silo_->service->Restore({m->id, std::nullopt, std::nullopt, ""}).status().code(),
            StatusCode::kNotFound);
  auto again = silo_->service->Restore({m->id, std::string("acme-restored"), std::nullopt, ""});
  ASSERT_OK(again) << again.status().ToString();
  EXPECT_TRUE(again->new_tenant);
  auto t = silo_->registry->FindActive("acme-restored");
  ASSERT_TRUE(t);
  EXPECT_EQ(Dump(*Store(*t), false), before);
}

TEST_F(BackupServiceTest,
       TamperedTruncatedWrongKeyAndWrongTenantBackupsAreRefusedAndTheLiveTenantIsUntouched) {
  auto acme = NewTenant("acme");
  auto globex = NewTenant("globex");
  Fill(*Store(acme), NowMicros() - 1'000'000'000, 12);
  Fill(*Store(globex), NowMicros() - 1'000'000'000, 7);
  auto a = silo_->service->Run(acme);
  auto g = silo_->service->Run(globex);
  ASSERT_OK(a);
  ASSERT_OK(g);
  const std::string live = Dump(*Store(acme));
  auto refused = [&](const std::string& id, const std::string& why) {
    auto v = silo_->service->Verify(id);
    EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << why;
    EXPECT_NE(v.status().message().find(why), std::string::npos)
        << why << ": " << v.status().message();
    auto r = silo_->service->Restore({id, std::nullopt, std::nullopt, ""});
    EXPECT_STATUS(StatusCode::kDataLoss, r) << why;
    auto r2 = silo_->service->Restore({id, std::string("copy"), std::nullopt, ""});
    EXPECT_STATUS(StatusCode::kDataLoss, r2) << why;
    EXPECT_FALSE(silo_->registry->Find("copy")) << "a refused restore left a tenant behind";
    EXPECT_EQ(Dump(*Store(acme)), live) << why;
  };
  const std::string data = Slurp(DataPath(a->id));
  const std::string manifest = Slurp(ManifestPath(a->id));
  auto put = [](const std::string& path, const std::string& bytes) {
    fs::remove(path);
    std::ofstream(path, std::ios::binary) << bytes;
  };

  // One bit flipped in the data, deep inside a chunk.
  std::string flipped = data;
  flipped[data.size() / 2] ^= 0x01;
  put(DataPath(a->id), flipped);
  refused(a->id, "altered");
  // A truncated upload.
  put(DataPath(a->id), data.substr(0, data.size() - 100));
  refused(a->id, "truncated");
  put(DataPath(a->id), data);
  // The manifest edited (claims fewer events): its MAC fails.
  std::string edited = manifest;
  size_t at = edited.find("\"count\":");
  ASSERT_NE(at, std::string::npos);
  size_t end = edited.find_first_not_of("0123456789", at + 8);
  edited.replace(at, end - at, "\"count\":1");
  ASSERT_NE(edited, manifest);
  put(ManifestPath(a->id), edited);
  refused(a->id, "manifest failed authentication");
  put(ManifestPath(a->id), manifest);
  // Another tenant's data under this backup's name.
  put(DataPath(a->id), Slurp(DataPath(g->id)));
  refused(a->id, "backup data");  // truncated or altered, depending on its size
  put(DataPath(a->id), data);
  // Another tenant's whole backup renamed to this tenant.
  std::string fake_id = acme.id + g->id.substr(32);
  fs::create_directories(fs::path(DataPath(fake_id)).parent_path());
  put(DataPath(fake_id), Slurp(DataPath(g->id)));
  put(ManifestPath(fake_id), Slurp(ManifestPath(g->id)));
  refused(fake_id, "another backup");
  EXPECT_OK(silo_->service->Verify(a->id)) << "the original must still verify";

  // Another installation with another master key, reading the same backups.
  Installation other(dir_ + "/other", crypto::SecretKey::Random(), backups_);
  auto v = other.service->Verify(a->id);
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(v.status().message().find("another master key"), std::string::npos);
  EXPECT_STATUS(StatusCode::kDataLoss,
                other.service->Restore({a->id, std::string("stolen"), std::nullopt, ""}));
  EXPECT_FALSE(other.registry->Find("stolen"));
  // The same master key elsewhere (disaster recovery) restores it.
  Installation twin(dir_ + "/twin", Master(), backups_);
  auto dr = twin.service->Restore({a->id, std::string("acme"), std::nullopt, ""});
  ASSERT_OK(dr) << dr.status().ToString();
}

TEST_F(BackupServiceTest, ChunksAreBoundToTheirBackupAndPlace) {
  auto key = crypto::SecretKey::Random();
  std::string image = crypto::RandomBytes(kChunkBytes) + std::string(kChunkBytes / 2, 'a');
  Manifest m;
  m.id = std::string(32, 'a') + "-20261124T020000Z-0001";
  std::string data = SealImage(image, key, m);
  EXPECT_EQ(m.chunks, 2);
  auto opened = OpenImage(data, key, m);
  ASSERT_OK(opened);
  EXPECT_EQ(*opened, image);
  // Same bytes, same hash, other id: every chunk's AD differs.
  Manifest other = m;
  other.id = std::string(32, 'a') + "-20261124T020000Z-0002";
  EXPECT_EQ(OpenImage(data, key, other).status().code(), StatusCode::kDataLoss);
  // The first chunk alone, with a manifest that agrees on size and hash:
  // the chunk is not the last one, so it does not open as the end.
  uint32_t len = (static_cast<unsigned char>(data[8]) << 24) |
                 (static_cast<unsigned char>(data[9]) << 16) |
                 (static_cast<unsigned char>(data[10]) << 8) | static_cast<unsigned char>(data[11]);
  std::string first = data.substr(0, 12 + len);
  Manifest cut = m;
  cut.image_bytes = kChunkBytes;
  cut.chunks = 1;
  cut.stored_bytes = static_cast<int64_t>(first.size());
  cut.sha256 = crypto::Sha256Hex(first);
  EXPECT_EQ(OpenImage(first, key, cut).status().code(), StatusCode::kDataLoss);
  // Wrong key.
  EXPECT_EQ(OpenImage(data, crypto::SecretKey::Random(), m).status().code(), StatusCode::kDataLoss);
}

TEST_F(BackupServiceTest, NoPlaintextInBackupsOrScratchAndBackupsLookRandom) {
  auto acme = NewTenant("acme");
  Fill(*Store(acme), NowMicros() - 1'000'000'000, 60);
  auto m = silo_->service->Run(acme);
  ASSERT_OK(m);
  ASSERT_OK(silo_->service->Drill(acme));
  ASSERT_OK(silo_->service->Restore({m->id, std::string("copy"), std::nullopt, ""}));
  EXPECT_EQ(FilesContaining(dir_, kMarker), "");
  EXPECT_EQ(FilesContaining(dir_, "notes"), "");
  // zstd output that was not sealed would still compress; sealed bytes do not.
  std::string data = Slurp(DataPath(m->id));
  std::string again(ZSTD_compressBound(data.size()), '\0');
  size_t c = ZSTD_compress(again.data(), again.size(), data.data(), data.size(), 3);
  EXPECT_GT(static_cast<double>(c), 0.99 * static_cast<double>(data.size()));
  // A backup is much smaller than the database (compression happened before sealing).
  EXPECT_LT(m->stored_bytes, m->image_bytes / 2);
}

TEST_F(BackupServiceTest, BackupsTakenWhileWritesContinueAreConsistent) {
  auto acme = NewTenant("acme");
  Fill(*Store(acme), NowMicros() - 1'000'000'000, 5);
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    auto s = Store(acme);
    while (!stop) {
      if (s->CreateRecord(Ctx(NowMicros()), "notes", {{"title", "w"}, {"n", writes.load()}}).ok())
        ++writes;
    }
  });
  while (writes < 100) std::this_thread::yield();
  std::vector<Manifest> taken;
  for (int i = 0; i < 4; ++i) {
    auto m = silo_->service->Run(acme);
    ASSERT_OK(m) << m.status().ToString();
    taken.push_back(*m);
  }
  int before = writes;
  while (writes < before + 50) std::this_thread::yield();  // writes never stopped
  stop = true;
  writer.join();
  for (size_t i = 0; i < taken.size(); ++i) {
    std::string slug = "copy" + std::to_string(i);
    auto r = silo_->service->Restore({taken[i].id, slug, std::nullopt, ""});
    ASSERT_OK(r) << r.status().ToString();
    EXPECT_EQ(r->events, taken[i].events.count);
    auto s = Store(*silo_->registry->Find(slug));
    EXPECT_TRUE(s->Rebuild()->equal()) << "projections and events of one instant";
    auto events = s->Events(taken[i].events.seq - 1, 10);
    ASSERT_OK(events);
    ASSERT_EQ(events->size(), 1u) << "no event after the manifest's last";
    EXPECT_EQ(events->back().hash, taken[i].events.hash);
  }
  EXPECT_LT(taken.front().events.seq, taken.back().events.seq);
}

// A restore in place runs the swap hook (a cluster node ends the tenant's
// replication chain there) before it replaces the file, and a refusal
// there leaves the live tenant as it was; a restore as a new tenant
// replaces nothing and does not run it.
TEST_F(BackupServiceTest, ARestoreInPlaceRunsTheSwapHookFirstAndItsRefusalChangesNothing) {
  auto acme = NewTenant("acme");
  Fill(*Store(acme), NowMicros() - 3'600'000'000, 10);
  const std::string before = Dump(*Store(acme), false);
  auto m = silo_->service->Run(acme);
  ASSERT_OK(m) << m.status().ToString();
  {
    auto s = Store(acme);
    auto page = s->ListRecords("notes", {});
    ASSERT_OK(page);
    for (const auto& r : page->records)
      ASSERT_OK(s->DeleteRecord(Ctx(NowMicros()), "notes", r.id, std::nullopt));
  }
  const std::string damaged = Dump(*Store(acme), false);
  ASSERT_NE(damaged, before);

  std::vector<std::string> swapped;
  bool refuse = true;
  silo_->service->SetBeforeSwap([&](const std::string& tenant_id) -> Status {
    swapped.push_back(tenant_id);
    return refuse ? Unavailable("etcd did not answer") : Status::Ok();
  });
  auto refused = silo_->service->Restore({m->id, std::nullopt, std::nullopt, "req-1"});
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(swapped, std::vector<std::string>{acme.id});
  EXPECT_EQ(Dump(*Store(acme), false), damaged);

  refuse = false;
  auto restored = silo_->service->Restore({m->id, std::nullopt, std::nullopt, "req-2"});
  ASSERT_OK(restored) << restored.status().ToString();
  EXPECT_EQ(swapped, (std::vector<std::string>{acme.id, acme.id}));
  EXPECT_EQ(Dump(*Store(acme), false), before);

  auto copy = silo_->service->Restore({m->id, std::string("acme-copy"), std::nullopt, "req-3"});
  ASSERT_OK(copy) << copy.status().ToString();
  EXPECT_TRUE(copy->new_tenant);
  EXPECT_EQ(swapped.size(), 2u);
}

TEST_F(BackupServiceTest, RestoreAtATimeDropsLaterEventsAndRebuildsProjections) {
  auto acme = NewTenant("acme");
  const int64_t t0 = NowMicros() - 10'000'000'000;
  Fill(*Store(acme), t0, 20);  // record i created at t0 + 1000 (i + 1)
  auto m = silo_->service->Run(acme);
  ASSERT_OK(m);
  const int64_t at = t0 + 1000 * 10 + 500;  // after record 9's create, update and delete
  auto r = silo_->service->Restore({m->id, std::string("past"), at, ""});
  ASSERT_OK(r) << r.status().ToString();
  EXPECT_GT(r->events_dropped, 0);
  auto past = Store(*silo_->registry->Find("past"));
  auto now = Store(acme);
  // The restored tenant now equals the live tenant read "as of" that time.
  std::string want, got;
  (void)now->Export(at, [&](const std::string& c, const records::Record& rec) {
    want += rec.id + json::serialize(rec.data) + "\n";
    return Status::Ok();
  });
  (void)past->Export(std::nullopt, [&](const std::string& c, const records::Record& rec) {
    got += rec.id + json::serialize(rec.data) + "\n";
    return Status::Ok();
  });
  EXPECT_EQ(got, want);
  EXPECT_FALSE(got.empty());
  auto kept = past->Events(0, 1000);
  ASSERT_OK(kept);
  for (const auto& e : *kept) EXPECT_LE(e.at_us, at);
  EXPECT_EQ(r->events + r->events_dropped, m->events.count);
  EXPECT_TRUE(past->Rebuild()->equal());
  auto types = AuditTypes(*past);
  EXPECT_EQ(types.back(), "backup.restored");
}

TEST_F(BackupServiceTest, DrillRestoresTheNewestGoodBackupChecksItAndReports) {
  auto acme = NewTenant("acme");
  Fill(*Store(acme), NowMicros() - 1'000'000'000, 10);
  EXPECT_EQ(silo_->service->Drill(acme).status().code(), StatusCode::kNotFound);
  auto old = silo_->service->Run(acme);
  auto m = silo_->service->Run(acme);
  ASSERT_OK(old);
  ASSERT_OK(m);
  auto d = silo_->service->Drill(acme);
  ASSERT_OK(d) << d.status().ToString();
  EXPECT_TRUE(d->ok) << d->problem;
  EXPECT_EQ(d->backup_id, m->id);
  EXPECT_EQ(d->integrity, "ok");
  EXPECT_EQ(d->events, m->events.count);
  EXPECT_EQ(d->chain_head, m->events.hash);
  EXPECT_GT(d->restore_seconds, 0);
  EXPECT_TRUE(fs::exists(silo_->dir + "/platform/drills/" + m->id + "-drill.json"));
  EXPECT_EQ(AuditTypes(*Store(acme)).back(), "backup.drill_passed");

  // A damaged newest backup: the drill says so (and names the reason).
  std::string data = Slurp(DataPath(m->id));
  data[data.size() - 10] ^= 1;
  fs::remove(DataPath(m->id));
  std::ofstream(DataPath(m->id), std::ios::binary) << data;
  auto bad = silo_->service->Drill(acme);
  ASSERT_OK(bad);
  EXPECT_FALSE(bad->ok);
  EXPECT_NE(bad->problem.find("altered"), std::string::npos) << bad->problem;
  EXPECT_EQ(AuditTypes(*Store(acme)).back(), "backup.drill_failed");
  EXPECT_EQ(silo_->service->stats().drills_failed, 2);  // no backup yet, then the damaged one
  EXPECT_EQ(silo_->service->stats().drills_ok, 1);
  // Nothing of the scratch copies is left.
  for (const auto& e : fs::directory_iterator(silo_->dir + "/tenants/" + acme.id)) {
    EXPECT_EQ(e.path().filename().string().rfind("drill-", 0), std::string::npos) << e.path();
  }
}

TEST_F(BackupServiceTest, PruneDeletesWhatThePolicyDropsAndKeepsTheNewest) {
  auto acme = NewTenant("acme");
  auto globex = NewTenant("globex");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(silo_->service->Run(acme)->id);
  ids.push_back(silo_->service->Run(globex)->id);
  auto none = silo_->service->Prune(NowMicros());
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  // 200 days later only the newest of each tenant survives.
  auto pruned = silo_->service->Prune(NowMicros() + int64_t{200} * 86'400'000'000);
  ASSERT_OK(pruned);
  EXPECT_EQ(pruned->size(), 2u);
  auto left = silo_->service->List(std::nullopt);
  ASSERT_OK(left);
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].manifest.id, ids[2]);
  EXPECT_EQ((*left)[1].manifest.id, ids[3]);
  EXPECT_FALSE(fs::exists(DataPath(ids[0])));
  EXPECT_FALSE(fs::exists(ManifestPath(ids[1])));
}

// Crypto-shredding (issue 22): after Shred no backup of the tenant opens
// under any key this installation or a new one with the same master key
// holds, a backup of format 1 (data key under the master key) included;
// another tenant's backups are untouched.
TEST_F(BackupServiceTest, ShredLeavesNoBackupOfTheTenantThatAnyKeyOpens) {
  auto acme = NewTenant("acme");
  auto globex = NewTenant("globex");
  Fill(*Store(acme), NowMicros() - 3'600'000'000, 6);
  Fill(*Store(globex), NowMicros() - 3'600'000'000, 4);
  auto first = silo_->service->Run(acme);
  auto second = silo_->service->Run(acme);
  auto theirs = silo_->service->Run(globex);
  ASSERT_OK(first);
  ASSERT_OK(second);
  ASSERT_OK(theirs);
  EXPECT_EQ(second->format, 2);
  EXPECT_TRUE(second->master_fingerprint.empty());
  ASSERT_TRUE(fs::exists(backups_ + "/" + acme.id + "/tenant.key"));
  // `first` made into a backup of format 1, as backups were before: its data
  // key wrapped under the master key. It still verifies.
  MakeFormatOne(*first);
  ASSERT_OK(silo_->service->Verify(first->id));

  auto report = silo_->service->Shred(acme.id, "acme");
  ASSERT_OK(report) << report.status().ToString();
  EXPECT_EQ(report->backups, 2);
  EXPECT_EQ(report->rewrapped, 1);
  EXPECT_EQ(report->dropped, 0);
  EXPECT_FALSE(fs::exists(backups_ + "/" + acme.id + "/tenant.key"));
  EXPECT_TRUE(fs::exists(backups_ + "/" + acme.id + "/tenant.shredded"));
  // The converted manifest no longer carries a key the master key opens.
  auto converted = ParseManifest(Slurp(ManifestPath(first->id)));
  ASSERT_OK(converted);
  EXPECT_EQ(converted->format, 2);
  EXPECT_TRUE(converted->master_fingerprint.empty());
  EXPECT_FALSE(
      silo_->keyring->Unwrap(acme.id, crypto::Base64Decode(converted->wrapped_key).value()).ok());

  for (const auto& id : {first->id, second->id}) {
    EXPECT_EQ(silo_->service->Verify(id).status().code(), StatusCode::kFailedPrecondition) << id;
    EXPECT_FALSE(silo_->service->Restore({id, std::string("acme-back"), std::nullopt, ""}).ok());
  }
  EXPECT_EQ(silo_->service->Run(acme).status().code(), StatusCode::kFailedPrecondition);
  auto listed = silo_->service->List(std::nullopt);
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 3u);
  for (const auto& l : *listed) {
    const bool ours = l.manifest.tenant_id == acme.id;
    EXPECT_EQ(l.shredded, ours) << l.manifest.id;
    EXPECT_EQ(l.good, !ours) << l.manifest.id << " " << l.problem;
  }
  // A rerun (an interrupted shred finished) changes nothing more.
  auto again = silo_->service->Shred(acme.id, "acme");
  ASSERT_OK(again);
  EXPECT_EQ(again->rewrapped, 0);

  // A new installation with the same master key and target, and the marker
  // removed (anyone with the target can): no key is left to open them.
  ASSERT_OK(silo_->registry->Delete("acme"));
  ASSERT_TRUE(fs::remove(backups_ + "/" + acme.id + "/tenant.shredded"));
  Installation fresh(dir_ + "/fresh", Master(), backups_);
  for (const auto& id : {first->id, second->id}) {
    auto r = fresh.service->Restore({id, std::string("acme-back"), std::nullopt, ""});
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << id;
    EXPECT_FALSE(fresh.service->Verify(id).ok()) << id;
  }
  EXPECT_OK(fresh.service->Restore({theirs->id, std::string("globex-back"), std::nullopt, ""}));
}

// A master-key rotation's part in the target (silo keys rotate-master): the
// tenant's backup key and a format 1 manifest are re-wrapped; afterwards the
// new master key alone opens both kinds of backup, and a rerun has nothing
// left to do.
TEST_F(BackupServiceTest, RotationRewrapsTenantKeysAndFormatOneManifests) {
  auto acme = NewTenant("acme");
  Fill(*Store(acme), NowMicros() - 3'600'000'000, 4);
  auto old_style = silo_->service->Run(acme);
  auto current = silo_->service->Run(acme);
  ASSERT_OK(old_style);
  ASSERT_OK(current);
  MakeFormatOne(*old_style);
  const std::string new_bytes = crypto::RandomBytes(32);
  auto new_master = [&] { return crypto::SecretKey::FromBytes(new_bytes).value(); };
  auto target = NewDirectoryTarget(backups_);
  auto report = RewrapManifests(*target, Master(), new_master());
  ASSERT_OK(report) << report.status().ToString();
  EXPECT_EQ(report->tenant_keys, 1);
  EXPECT_EQ(report->rewrapped, 1);
  auto rerun = RewrapManifests(*target, Master(), new_master());
  ASSERT_OK(rerun);
  EXPECT_EQ(rerun->tenant_keys + rerun->rewrapped, 0);
  EXPECT_EQ(rerun->already, 2);

  Installation with_new(dir_ + "/new", new_master(), backups_);
  Installation with_old(dir_ + "/old", Master(), backups_);
  for (const auto& id : {old_style->id, current->id}) {
    EXPECT_OK(with_new.service->Verify(id)) << id;
    EXPECT_EQ(with_old.service->Verify(id).status().code(), StatusCode::kDataLoss) << id;
  }
}

// ---- Files in backups (issue 17) -------------------------------------------

constexpr char kFileMarker[] = "FILE-CONTENT-CANARY-91c4";

class BackupFilesTest : public BackupServiceTest {
 protected:
  crypto::SecretKey FilesKey(const tenant::TenantInfo& t) {
    return crypto::DeriveSubkey(silo_->keyring->GetKey(t.id).value(), crypto::KeyPurpose::kFiles);
  }
  std::string BlobPath(const tenant::TenantInfo& t, const std::string& id) {
    return layout::TenantBlobFile(silo_->dir, t.id, id);
  }
  // A pending upload of `content` by user u1 for docs.doc, as the files
  // module leaves one: a sealed blob and its row.
  std::string Upload(const tenant::TenantInfo& t, const std::string& content, int64_t now) {
    const std::string id = files::NewBlobId();
    fs::create_directories(layout::TenantBlobDir(silo_->dir, t.id, id));
    auto w = files::BlobWriter::Create(BlobPath(t, id), FilesKey(t), id, content.size());
    EXPECT_OK(w);
    EXPECT_OK((*w)->Append(content));
    EXPECT_OK((*w)->Finish());
    files::FileRow row;
    row.id = id;
    row.owner = "user:u1";
    row.name = "a.txt";
    row.declared_type = row.type = "text/plain";
    row.size = content.size();
    row.sha256 = crypto::Sha256Hex(content);
    row.collection = "docs";
    row.field = "doc";
    row.created_at_us = now;
    row.expires_at_us = now + int64_t{3600} * 1'000'000;
    auto db = silo_->databases->Acquire(t.id);
    EXPECT_OK(db);
    EXPECT_OK((*db)->Write([&](storage::Database& d) { return files::InsertFile(d, row); }));
    return id;
  }
  // The plaintext of blob `id` of tenant `t`, opened under its key.
  std::string Read(const tenant::TenantInfo& t, const std::string& id, size_t size) {
    auto r = files::BlobReader::Open(BlobPath(t, id), FilesKey(t), id, size);
    if (!r.ok()) return "<" + r.status().ToString() + ">";
    auto bytes = (*r)->Read(0, size);
    return bytes.ok() ? *bytes : "<" + bytes.status().ToString() + ">";
  }
  files::FileRow Row(const tenant::TenantInfo& t, const std::string& id) {
    files::FileRow row;
    auto db = silo_->databases->Acquire(t.id);
    EXPECT_OK(db);
    EXPECT_OK((*db)->Read([&](storage::Database& d) -> Status {
      SILO_ASSIGN_OR_RETURN(row, files::LoadFile(d, id));
      return Status::Ok();
    }));
    return row;
  }
  void DocsCollection(records::TenantStore& s, int64_t now) {
    auto schema = records::ParseCollection(json::parse(
        R"({"name":"docs","fields":[{"name":"title","type":"string"},
            {"name":"doc","type":"file","max_bytes":1048576}]})"));
    ASSERT_OK(schema);
    ASSERT_OK(s.CreateCollection(Ctx(now), *schema));
  }
  std::string BlobObject(const tenant::TenantInfo& t, const std::string& id) {
    return backups_ + "/" + FileBlobName(t.id, id);
  }
  static std::string Content(int i) {
    return std::string(kFileMarker) + " file " + std::to_string(i) + " " +
           std::string(70'000 + i, static_cast<char>('a' + i));  // two chunks
  }
};

TEST_F(BackupFilesTest, BlobsAreStoredOnceListedAndReadableInATenantRestoredAsAnother) {
  auto acme = NewTenant("acme");
  auto store = Store(acme);
  const int64_t t0 = NowMicros();
  DocsCollection(*store, t0);
  const std::string f1 = Upload(acme, Content(1), t0);
  auto r = store->CreateRecord(Ctx(t0 + 10), "docs", {{"title", "one"}, {"doc", f1}});
  ASSERT_OK(r) << r.status().ToString();
  const std::string f3 = Upload(acme, Content(3), t0 + 15);
  ASSERT_OK(store->CreateRecord(Ctx(t0 + 16), "docs", {{"title", "three"}, {"doc", f3}}));
  const std::string pending = Upload(acme, Content(2), t0 + 20);  // never attached

  auto b1 = silo_->service->Run(acme);
  ASSERT_OK(b1) << b1.status().ToString();
  EXPECT_EQ(b1->files, 2);
  EXPECT_EQ(b1->files_bytes, static_cast<int64_t>(files::SealedSize(Content(1).size()) +
                                                  files::SealedSize(Content(3).size())));
  EXPECT_EQ(Slurp(BlobObject(acme, f1)), Slurp(BlobPath(acme, f1)));  // the sealed bytes
  EXPECT_FALSE(fs::exists(BlobObject(acme, pending)));
  EXPECT_TRUE(fs::exists(backups_ + "/" + FilesListName(b1->id)));
  // A second backup lists the same blob and stores nothing new.
  auto mtime = fs::last_write_time(BlobObject(acme, f1));
  auto b2 = silo_->service->Run(acme);
  ASSERT_OK(b2);
  EXPECT_EQ(b2->files, 2);
  EXPECT_EQ(fs::last_write_time(BlobObject(acme, f1)), mtime);
  ASSERT_OK(silo_->service->Verify(b2->id));

  auto restored = silo_->service->Restore({b1->id, "copy", std::nullopt, "req"});
  ASSERT_OK(restored) << restored.status().ToString();
  EXPECT_EQ(restored->files, 2);
  EXPECT_EQ(restored->files_resealed, 2);
  auto copy = silo_->registry->Find("copy");
  ASSERT_TRUE(copy.has_value());
  // Sealed again under the new tenant's key: its bytes open there, and the
  // blob is not the old one copied (a blob never opens under another key).
  EXPECT_EQ(Read(*copy, f1, Content(1).size()), Content(1));
  EXPECT_EQ(Read(*copy, f3, Content(3).size()), Content(3));
  EXPECT_NE(Slurp(BlobPath(*copy, f1)), Slurp(BlobPath(acme, f1)));
  EXPECT_EQ(Row(*copy, f1).state, files::FileState::kAttached);
  EXPECT_FALSE(fs::exists(BlobPath(*copy, pending)));
  // The pending upload's row is not in the copy either.
  auto db = silo_->databases->Acquire(copy->id);
  ASSERT_OK(db);
  ASSERT_OK((*db)->Read([&](storage::Database& d) -> Status {
    EXPECT_EQ(files::LoadFile(d, pending).status().code(), StatusCode::kNotFound);
    return Status::Ok();
  }));
  db->reset();
  // No file content in the clear anywhere: data directory or backups.
  EXPECT_EQ(FilesContaining(dir_, kFileMarker), "");
}

TEST_F(BackupFilesTest, RestoreAtBringsBackExactlyTheFilesOfTheTime) {
  auto acme = NewTenant("acme");
  auto store = Store(acme);
  const int64_t t0 = NowMicros();
  DocsCollection(*store, t0);
  const std::string f1 = Upload(acme, Content(1), t0);
  auto r = store->CreateRecord(Ctx(t0 + 1000), "docs", {{"title", "one"}, {"doc", f1}});
  ASSERT_OK(r);
  const std::string f2 = Upload(acme, Content(2), t0 + 2000);
  ASSERT_OK(store->UpdateRecord(Ctx(t0 + 3000), "docs", r->id, {{"doc", f2}}, std::nullopt));
  EXPECT_EQ(Row(acme, f1).state, files::FileState::kDeleted);
  auto b = silo_->service->Run(acme);
  ASSERT_OK(b);
  EXPECT_EQ(b->files, 2);  // the tombstone too: time travel needs it
  // The tombstone's bytes are lost from the live tenant: the backup has them.
  fs::remove(BlobPath(acme, f1));
  store.reset();  // an in-place restore waits for the tenant's connections

  auto restored = silo_->service->Restore({b->id, std::nullopt, t0 + 2500, "req"});
  ASSERT_OK(restored) << restored.status().ToString();
  EXPECT_EQ(restored->files_fetched, 1);
  EXPECT_EQ(restored->files_present, 1);
  EXPECT_EQ(Row(acme, f1).state, files::FileState::kAttached);
  EXPECT_EQ(Row(acme, f2).state, files::FileState::kDeleted);
  EXPECT_EQ(Read(acme, f1, Content(1).size()), Content(1));
  auto rec = Store(acme)->GetRecord("docs", r->id, std::nullopt);
  ASSERT_OK(rec);
  EXPECT_EQ(json::serialize(rec->data.at("doc")), "\"" + f1 + "\"");
}

TEST_F(BackupFilesTest, AnAlteredOrMissingBlobFailsVerifyDrillAndRestore) {
  auto acme = NewTenant("acme");
  auto store = Store(acme);
  const int64_t t0 = NowMicros();
  DocsCollection(*store, t0);
  const std::string f1 = Upload(acme, Content(1), t0);
  ASSERT_OK(store->CreateRecord(Ctx(t0 + 10), "docs", {{"doc", f1}}));
  auto b = silo_->service->Run(acme);
  ASSERT_OK(b);
  auto drill = silo_->service->Drill(acme);
  ASSERT_OK(drill);
  EXPECT_TRUE(drill->ok) << drill->problem;
  EXPECT_EQ(drill->files_checked, 1);

  // One flipped byte in the blob object.
  const std::string object = BlobObject(acme, f1);
  std::string bytes = Slurp(object);
  bytes[bytes.size() / 2] ^= 0x01;
  { std::ofstream(object, std::ios::binary | std::ios::trunc) << bytes; }
  auto verified = silo_->service->Verify(b->id);
  EXPECT_EQ(verified.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(verified.status().message().find("altered"), std::string::npos)
      << verified.status().ToString();
  drill = silo_->service->Drill(acme);
  ASSERT_OK(drill);
  EXPECT_FALSE(drill->ok);
  EXPECT_NE(drill->problem.find(f1), std::string::npos) << drill->problem;
  auto restored = silo_->service->Restore({b->id, "copy", std::nullopt, "req"});
  EXPECT_EQ(restored.status().code(), StatusCode::kDataLoss);
  EXPECT_FALSE(silo_->registry->Find("copy").has_value());  // nothing left behind

  fs::remove(object);
  verified = silo_->service->Verify(b->id);
  EXPECT_EQ(verified.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(verified.status().message().find("missing"), std::string::npos);
  // The files list is bound to its backup: another backup's list is refused.
  auto b2 = silo_->service->Run(acme);
  ASSERT_OK(b2);
  fs::copy_file(backups_ + "/" + FilesListName(b2->id), backups_ + "/" + FilesListName(b->id),
                fs::copy_options::overwrite_existing);
  verified = silo_->service->Verify(b->id);
  EXPECT_EQ(verified.status().code(), StatusCode::kDataLoss);
}

TEST_F(BackupFilesTest, RestoreNeverBringsBackALinkAndPruneDropsBlobsNoBackupLists) {
  auto acme = NewTenant("acme");
  auto store = Store(acme);
  const int64_t t0 = NowMicros();
  DocsCollection(*store, t0);
  const std::string f1 = Upload(acme, Content(1), t0);
  ASSERT_OK(store->CreateRecord(Ctx(t0 + 10), "docs", {{"doc", f1}}));
  {
    auto db = silo_->databases->Acquire(acme.id);
    ASSERT_OK(db);
    files::LinkRow link;
    link.id = "l1";
    link.file_id = f1;
    link.created_by = "user:u1";
    link.created_at_us = t0;
    link.expires_at_us = t0 + int64_t{3600} * 1'000'000;
    ASSERT_OK((*db)->Write(
        [&](storage::Database& d) { return files::InsertLink(d, link, std::string(64, 'a')); }));
  }
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(silo_->service->Run(acme)->id);
  store.reset();  // an in-place restore waits for the tenant's connections
  auto restored = silo_->service->Restore({ids[0], std::nullopt, std::nullopt, "req"});
  ASSERT_OK(restored) << restored.status().ToString();
  EXPECT_EQ(restored->links_dropped, 1);
  EXPECT_EQ(restored->files_present, 1);
  {
    auto db = silo_->databases->Acquire(acme.id);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Read([&](storage::Database& d) -> Status {
      EXPECT_EQ(files::LoadLinkByHash(d, std::string(64, 'a')).status().code(),
                StatusCode::kNotFound);
      return Status::Ok();
    }));
  }
  // A blob object no backup lists (a failed run's) goes with the next prune.
  const std::string stray = BlobObject(acme, files::NewBlobId());
  fs::copy_file(BlobObject(acme, f1), stray);
  auto pruned = silo_->service->Prune(NowMicros() + int64_t{200} * 86'400'000'000);
  ASSERT_OK(pruned);
  EXPECT_FALSE(pruned->empty());
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_TRUE(fs::exists(BlobObject(acme, f1)));  // the newest backup lists it
  for (const auto& id : *pruned) EXPECT_FALSE(fs::exists(backups_ + "/" + FilesListName(id)));
}

// ---- Tenant rekey (issue 22) ------------------------------------------------

class RekeyTest : public BackupFilesTest {
 protected:
  struct Before {
    tenant::TenantInfo t;
    std::string f1, dump, key_fp;
    std::string db_bytes, blob_bytes, meta;
  };
  Before Prepare() {
    Before b;
    b.t = NewTenant("acme");
    auto store = Store(b.t);
    const int64_t t0 = NowMicros();
    Fill(*store, t0, 12);
    DocsCollection(*store, t0 + 100'000);
    b.f1 = Upload(b.t, Content(1), t0 + 100'010);
    EXPECT_OK(store->CreateRecord(Ctx(t0 + 100'020), "docs", {{"title", "one"}, {"doc", b.f1}}));
    b.dump = Dump(*store);
    store.reset();
    b.key_fp = KeyFp(b.t);
    silo_->databases->Close(b.t.id);
    b.db_bytes = Slurp(layout::TenantDatabaseFile(silo_->dir, b.t.id));
    b.blob_bytes = Slurp(BlobPath(b.t, b.f1));
    b.meta = Slurp(layout::TenantMetaFile(silo_->dir, b.t.id));
    return b;
  }
  std::string KeyFp(const tenant::TenantInfo& t) {
    return crypto::KeyFingerprint(silo_->keyring->GetKey(t.id).value());
  }
  // Whatever the re-key left beside the tenant's files and keys.
  std::vector<std::string> Leftovers() {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(silo_->dir)) {
      const std::string p = e.path().string();
      if (p.ends_with(".rekey") || p.ends_with(".next") || p.ends_with("/rekey.pending") ||
          p.find(".rekey-") != std::string::npos) {
        out.push_back(p);
      }
    }
    return out;
  }
  // The tenant as it is now: its records, events and audit entries (the
  // last one dropped when it is the re-key's), and its file.
  void ExpectIntact(const Before& b, bool rekeyed) {
    auto store = Store(b.t);
    std::string dump = Dump(*store);
    auto types = AuditTypes(*store);
    ASSERT_FALSE(types.empty());
    EXPECT_EQ(types.back() == "tenant.rekeyed", rekeyed);
    if (rekeyed) dump = dump.substr(0, dump.rfind("A "));  // the entry the re-key added
    EXPECT_EQ(dump, rekeyed ? b.dump.substr(0, dump.size()) : b.dump);
    EXPECT_EQ(Read(b.t, b.f1, Content(1).size()), Content(1));
    EXPECT_EQ(KeyFp(b.t) != b.key_fp, rekeyed);
    EXPECT_EQ(silo_->registry->Find("acme")->id, b.t.id);  // tenant.meta opens
    EXPECT_TRUE(Leftovers().empty()) << Leftovers().front();
  }
};

TEST_F(RekeyTest, EveryFileIsSealedAgainUnderTheNewKeyAndTheOldKeyOpensNothing) {
  Before b = Prepare();
  const crypto::SecretKey old_dek = silo_->keyring->GetKey(b.t.id).value();
  auto report = silo_->service->Rekey(b.t, "req");
  ASSERT_OK(report) << report.status().ToString();
  EXPECT_EQ(report->key_epoch, 1u);
  EXPECT_EQ(report->files, 1);
  EXPECT_GT(report->database_bytes, 0);
  ExpectIntact(b, true);
  silo_->databases->Close(b.t.id);
  // Every page, the blob and tenant.meta changed; none opens under the old key.
  const std::string db_path = layout::TenantDatabaseFile(silo_->dir, b.t.id);
  const std::string now = Slurp(db_path);
  for (size_t at = 0; at + 4096 <= now.size(); at += 4096) {
    ASSERT_EQ(b.db_bytes.find(now.substr(at, 4096)), std::string::npos) << "page at " << at;
  }
  EXPECT_STATUS(StatusCode::kDataLoss,
                storage::Database::Open(
                    db_path, crypto::DeriveSubkey(old_dek, crypto::KeyPurpose::kDatabasePages),
                    {.create = false}));
  EXPECT_NE(Slurp(BlobPath(b.t, b.f1)), b.blob_bytes);
  EXPECT_EQ(files::ReadKeyEpoch(BlobPath(b.t, b.f1)).value(), 1u);
  auto old_reader = files::BlobReader::Open(
      BlobPath(b.t, b.f1), crypto::DeriveSubkey(old_dek, crypto::KeyPurpose::kFiles), b.f1,
      Content(1).size());
  ASSERT_OK(old_reader);
  EXPECT_STATUS(StatusCode::kDataLoss, (*old_reader)->ReadChunk(0));
  EXPECT_NE(Slurp(layout::TenantMetaFile(silo_->dir, b.t.id)), b.meta);
  EXPECT_TRUE(FilesContaining(silo_->dir, kMarker).empty());
  EXPECT_TRUE(FilesContaining(silo_->dir, kFileMarker).empty());
  // A new installation on the directory (a restart) opens it all.
  silo_ = std::make_unique<Installation>(dir_ + "/data", Master(), backups_);
  EXPECT_EQ(silo_->recovered.rolled_back + silo_->recovered.rolled_forward, 0);
  ExpectIntact(b, true);
}

TEST_F(RekeyTest, AReKeyStoppedBeforeItsCommitLeavesTheTenantAsItWas) {
  Before b = Prepare();
  for (const char* step : {"staged", "blobs", "copying", "copied"}) {
    SCOPED_TRACE(step);
    silo_->service->SetRekeyStopForTest(step, false);
    auto report = silo_->service->Rekey(b.t, "req");
    EXPECT_STATUS(StatusCode::kInternal, report);
    ExpectIntact(b, false);
    EXPECT_TRUE(silo_->keyring->StagedIds().empty());
    // Writes refused in the pause are taken again.
    auto store = Store(b.t);
    ASSERT_OK(store->Audit(Ctx(NowMicros()), {"test.after", "test", step, {}}));
    b.dump = Dump(*store);
  }
}

TEST_F(RekeyTest, ACrashAtAnyStepIsUndoneOrFinishedAtTheNextStart) {
  for (const char* step : {"staged", "blobs", "copying", "copied", "committed"}) {
    SCOPED_TRACE(step);
    silo_ = std::make_unique<Installation>(dir_ + "/" + step, Master(), backups_);
    Before b = Prepare();
    silo_->service->SetRekeyStopForTest(step, true);
    EXPECT_STATUS(StatusCode::kInternal, silo_->service->Rekey(b.t, "req"));
    EXPECT_FALSE(Leftovers().empty());  // as the crash left it
    const bool committed = std::string(step) == "committed";
    silo_ = std::make_unique<Installation>(dir_ + "/" + step, Master(), backups_);
    EXPECT_EQ(silo_->recovered.rolled_back, committed ? 0 : 1);
    EXPECT_EQ(silo_->recovered.rolled_forward, committed ? 1 : 0);
    ExpectIntact(b, committed);
    EXPECT_EQ(silo_->keyring->Epoch(b.t.id).value(), committed ? 1u : 0u);
  }
}

TEST_F(RekeyTest, BackupsFromBeforeARekeyRestoreInPlaceUnderTheLiveKey) {
  Before b = Prepare();
  auto before = silo_->service->Run(b.t);
  ASSERT_OK(before);
  ASSERT_OK(silo_->service->Rekey(b.t, "req"));
  // A backup after the re-key stores the blob again, named by its epoch;
  // the first object stays for the backup that lists it.
  auto after = silo_->service->Run(b.t);
  ASSERT_OK(after);
  EXPECT_TRUE(fs::exists(backups_ + "/" + FileBlobName(b.t.id, b.f1, 1)));
  EXPECT_EQ(Slurp(backups_ + "/" + FileBlobName(b.t.id, b.f1)), b.blob_bytes);
  ASSERT_OK(silo_->service->Verify(before->id));
  ASSERT_OK(silo_->service->Verify(after->id));
  // In place, the blob on disk (live key) is kept; lost, the live key's
  // object comes back; with none stored (re-keyed again), it is sealed anew.
  auto kept = silo_->service->Restore({before->id, std::nullopt, std::nullopt, "req"});
  ASSERT_OK(kept) << kept.status().ToString();
  EXPECT_EQ(kept->files_present, 1);
  EXPECT_EQ(Read(b.t, b.f1, Content(1).size()), Content(1));
  fs::remove(BlobPath(b.t, b.f1));
  auto fetched = silo_->service->Restore({before->id, std::nullopt, std::nullopt, "req"});
  ASSERT_OK(fetched) << fetched.status().ToString();
  EXPECT_EQ(fetched->files_fetched, 1);
  EXPECT_EQ(Slurp(BlobPath(b.t, b.f1)), Slurp(backups_ + "/" + FileBlobName(b.t.id, b.f1, 1)));
  EXPECT_EQ(Read(b.t, b.f1, Content(1).size()), Content(1));
  // Re-keyed again, then the file purged from the live tenant (row and
  // blob): the old backup brings it back, sealed anew under epoch 2.
  ASSERT_OK(silo_->service->Rekey(b.t, "req"));
  fs::remove(BlobPath(b.t, b.f1));
  {
    auto db = silo_->databases->Acquire(b.t.id);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Write([](storage::Database& d) { return d.Exec("DELETE FROM files"); }));
  }
  auto resealed = silo_->service->Restore({before->id, std::nullopt, std::nullopt, "req"});
  ASSERT_OK(resealed) << resealed.status().ToString();
  EXPECT_EQ(resealed->files_resealed, 1);
  EXPECT_EQ(files::ReadKeyEpoch(BlobPath(b.t, b.f1)).value(), 2u);
  EXPECT_EQ(Read(b.t, b.f1, Content(1).size()), Content(1));
  auto last = silo_->service->Run(b.t);
  ASSERT_OK(last);
  ASSERT_OK(silo_->service->Verify(last->id));
}

}  // namespace
}  // namespace silo::backup
