#include "tenant/registry.h"

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "base/data_layout.h"
#include "base/file_util.h"
#include "base/log.h"
#include "crypto/crypto.h"
#include "tenant/rekey_files.h"
#include "tenant/slug.h"

namespace silo::tenant {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

constexpr char kDeletingPrefix[] = ".deleting-";

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string MetaAd(const std::string& id) { return "silo-tenant-meta-v1:" + id; }

bool HasControlChars(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Status ValidateName(const std::string& name) {
  if (name.size() > 200) return InvalidArgument("name must be at most 200 bytes");
  if (HasControlChars(name)) return InvalidArgument("name must not contain control characters");
  return Status::Ok();
}

Status ValidateEmail(const std::string& email) {
  if (email.empty()) return Status::Ok();
  size_t at = email.find('@');
  if (email.size() > 254 || at == std::string::npos || at == 0 || at + 1 >= email.size() ||
      email.find('@', at + 1) != std::string::npos ||
      email.find_first_of(" \t\r\n<>,;\"") != std::string::npos || HasControlChars(email)) {
    return InvalidArgument("owner_email is not a valid e-mail address");
  }
  return Status::Ok();
}

}  // namespace

const char* TenantStateName(TenantState s) {
  return s == TenantState::kActive ? "active" : "suspended";
}

TenantRegistry::TenantRegistry(std::string data_dir, crypto::Keyring* keyring)
    : data_dir_(std::move(data_dir)), keyring_(keyring) {}

std::string TenantRegistry::TenantDir(const std::string& id) const {
  return layout::TenantDir(data_dir_, id);
}

Result<std::unique_ptr<TenantRegistry>> TenantRegistry::Open(const std::string& data_dir,
                                                             crypto::Keyring* keyring) {
  std::unique_ptr<TenantRegistry> reg(new TenantRegistry(data_dir, keyring));
  Status s = MakeDirs(data_dir + "/tenants", 0700);
  if (!s.ok()) return s;
  s = reg->LoadAll();
  if (!s.ok()) return s;
  return reg;
}

Status TenantRegistry::LoadAll() {
  MutexLock lock(mutex_);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(layout::TenantsDir(data_dir_), ec)) {
    std::string dirname = entry.path().filename().string();
    if (dirname.rfind(kDeletingPrefix, 0) == 0) {
      // A delete was interrupted after the rename: finish it.
      std::string id = dirname.substr(sizeof kDeletingPrefix - 1);
      (void)keyring_->DestroyKey(id);  // NotFound is fine: already destroyed
      Status s = RemoveTree(entry.path().string());
      if (!s.ok()) return s;
      continue;
    }
    if (!entry.is_directory()) continue;
    auto info = ReadMeta(dirname);
    if (info.status().code() == StatusCode::kNotFound) continue;  // e.g. half-created
    if (!info.ok()) return info.status();
    std::string slug = info->slug;
    by_slug_[slug] = std::move(info).value();
  }
  if (ec) return Internal("cannot list tenants").WithCause(ec.message());
  return Status::Ok();
}

Result<TenantInfo> TenantRegistry::ReadMeta(const std::string& dirname) const {
  auto text = ReadFile(TenantDir(dirname) + "/tenant.meta");
  if (!text.ok()) return NotFound("no tenant.meta in " + dirname);
  boost::system::error_code jec;
  json::value doc = json::parse(*text, jec);
  if (jec || !doc.is_object()) {
    return DataLoss("tenant.meta unreadable in " + dirname);
  }
  const json::object& o = doc.as_object();
  TenantInfo info;
  try {
    info.id = std::string(o.at("id").as_string());
    info.slug = std::string(o.at("slug").as_string());
    info.state =
        o.at("state").as_string() == "suspended" ? TenantState::kSuspended : TenantState::kActive;
    info.created_at = std::string(o.at("created_at").as_string());
    auto sealed = crypto::Base64Decode(std::string(o.at("sealed").as_string()));
    if (!sealed.ok()) return DataLoss("tenant.meta damaged in " + dirname);
    auto dek = keyring_->GetKey(info.id);
    if (!dek.ok()) return DataLoss("no usable key for tenant " + info.slug);
    auto meta_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kMetadata);
    auto plain = crypto::Open(meta_key, *sealed, MetaAd(info.id));
    if (!plain.ok()) return DataLoss("tenant.meta failed authentication for " + info.slug);
    json::value inner = json::parse(*plain, jec);
    crypto::WipeString(*plain);
    if (jec || !inner.is_object()) return DataLoss("tenant.meta damaged in " + dirname);
    info.name = std::string(inner.as_object().at("name").as_string());
    info.owner_email = std::string(inner.as_object().at("owner_email").as_string());
  } catch (const std::exception&) {
    return DataLoss("tenant.meta has missing fields in " + dirname);
  }
  if (info.id != dirname) return DataLoss("tenant.meta id mismatch in " + dirname);
  return info;
}

Result<TenantInfo> TenantRegistry::Adopt(const std::string& id) {
  SILO_ASSIGN_OR_RETURN(TenantInfo info, ReadMeta(id));
  MutexLock lock(mutex_);
  auto it = by_slug_.find(info.slug);
  if (it != by_slug_.end()) {
    if (it->second.id != id) return AlreadyExists("slug taken by another tenant");
    return it->second;
  }
  by_slug_[info.slug] = info;
  return info;
}

Status TenantRegistry::WriteMetaLocked(const TenantInfo& info, const crypto::SecretKey* dek,
                                       const std::string* path) {
  std::optional<crypto::SecretKey> current;
  if (dek == nullptr) {
    auto got = keyring_->GetKey(info.id);
    if (!got.ok()) return got.status();
    current.emplace(std::move(*got));
    dek = &*current;
  }
  auto meta_key = crypto::DeriveSubkey(*dek, crypto::KeyPurpose::kMetadata);
  json::object inner;
  inner["name"] = info.name;
  inner["owner_email"] = info.owner_email;
  std::string plain = json::serialize(inner);
  std::string sealed = crypto::Seal(meta_key, plain, MetaAd(info.id));
  crypto::WipeString(plain);
  json::object doc;
  doc["format"] = 1;
  doc["id"] = info.id;
  doc["slug"] = info.slug;
  doc["state"] = TenantStateName(info.state);
  doc["created_at"] = info.created_at;
  doc["sealed"] = crypto::Base64Encode(sealed);
  return WriteFileAtomic(path != nullptr ? *path : layout::TenantMetaFile(data_dir_, info.id),
                         json::serialize(doc) + "\n", 0600);
}

Status TenantRegistry::CommitRekey(const std::string& id, const crypto::SecretKey& new_dek,
                                   const std::function<Status()>& commit_key) {
  MutexLock lock(mutex_);
  const TenantInfo* info = nullptr;
  for (const auto& [slug, t] : by_slug_) {
    if (t.id == id) info = &t;
  }
  if (info == nullptr) return NotFound("no such tenant");
  const std::string meta = layout::TenantMetaFile(data_dir_, id);
  const std::string sibling = meta + std::string(kRekeySuffix);
  SILO_RETURN_IF_ERROR(WriteMetaLocked(*info, &new_dek, &sibling));
  if (Status s = commit_key(); !s.ok()) {
    std::remove(sibling.c_str());
    return s;
  }
  if (std::rename(sibling.c_str(), meta.c_str()) != 0) {
    // The key is committed: the sibling is put in place at the next start
    // (RecoverRekeys) if not by the caller's InstallRekeySiblings.
    return Internal("cannot put the re-keyed tenant.meta in place").WithCause(sibling);
  }
  return SyncDir(layout::TenantDir(data_dir_, id));
}

Result<TenantInfo> TenantRegistry::Create(const std::string& slug, const std::string& name,
                                          const std::string& owner_email, TenantState state) {
  if (Status s = ValidateSlug(slug); !s.ok()) return s;
  if (Status s = ValidateName(name); !s.ok()) return s;
  if (Status s = ValidateEmail(owner_email); !s.ok()) return s;
  const std::string id = crypto::HexEncode(crypto::RandomBytes(16));
  // Reserved before the lock (a network round trip must not hold up every
  // lookup), and given back on any failure below.
  if (reservations_.reserve) {
    if (Find(slug)) return AlreadyExists("slug is taken");
    SILO_RETURN_IF_ERROR(reservations_.reserve(slug, id));
  }
  auto result = CreateReserved(slug, id, name, owner_email, state);
  if (!result.ok() && reservations_.release) reservations_.release(slug, id);
  return result;
}

Result<TenantInfo> TenantRegistry::CreateReserved(const std::string& slug, const std::string& id,
                                                  const std::string& name,
                                                  const std::string& owner_email,
                                                  TenantState state) {
  MutexLock lock(mutex_);
  if (by_slug_.count(slug) != 0) return AlreadyExists("slug is taken");
  TenantInfo info;
  info.id = id;
  info.slug = slug;
  info.state = state;
  info.created_at = NowRfc3339();
  info.name = name.empty() ? slug : name;
  info.owner_email = owner_email;
  std::string dir = TenantDir(info.id);
  if (Status s = MakeDirs(layout::TenantFilesDir(data_dir_, info.id), 0700); !s.ok()) return s;
  auto dek = keyring_->CreateKey(info.id);
  if (!dek.ok()) {
    // Best-effort clean-up: the failure the caller needs is the one above, and
    // a directory without a key is finished off by the next start.
    (void)RemoveTree(dir);
    return dek.status();
  }
  if (Status s = WriteMetaLocked(info); !s.ok()) {
    (void)keyring_->DestroyKey(info.id);  // best effort, as above
    (void)RemoveTree(dir);
    return s;
  }
  by_slug_[slug] = info;
  return info;
}

std::vector<TenantInfo> TenantRegistry::List() const {
  MutexLock lock(mutex_);
  std::vector<TenantInfo> out;
  for (const auto& kv : by_slug_) out.push_back(kv.second);
  return out;
}

std::optional<TenantInfo> TenantRegistry::Find(const std::string& slug) const {
  MutexLock lock(mutex_);
  auto it = by_slug_.find(slug);
  if (it == by_slug_.end()) return std::nullopt;
  return it->second;
}

std::optional<TenantInfo> TenantRegistry::FindActive(const std::string& slug) const {
  auto t = Find(slug);
  if (!t || t->state != TenantState::kActive) return std::nullopt;
  return t;
}

Status TenantRegistry::SetState(const std::string& slug, TenantState state) {
  MutexLock lock(mutex_);
  auto it = by_slug_.find(slug);
  if (it == by_slug_.end()) return NotFound("no such tenant");
  TenantInfo updated = it->second;
  updated.state = state;
  if (Status s = WriteMetaLocked(updated); !s.ok()) return s;
  it->second = std::move(updated);
  return Status::Ok();
}

Status TenantRegistry::Delete(const std::string& slug) {
  MutexLock lock(mutex_);
  auto it = by_slug_.find(slug);
  if (it == by_slug_.end()) return NotFound("no such tenant");
  const std::string id = it->second.id;
  // Rename first so that a crash part-way leaves a marked directory that the
  // next start finishes deleting, never a half-present tenant.
  std::string doomed = layout::TenantDir(data_dir_, kDeletingPrefix + id);
  std::error_code ec;
  fs::rename(TenantDir(id), doomed, ec);
  if (ec) return Internal("cannot remove the tenant directory").WithCause(ec.message());
  by_slug_.erase(it);
  if (Status synced = SyncDir(layout::TenantsDir(data_dir_)); !synced.ok()) {
    // The rename may not survive a power cut; the next start finishes the
    // delete either way, so this is a warning, not a failure.
    log::Warn("tenant delete not yet durable", {{"cause", synced.ToString()}});
  }
  Status s = keyring_->DestroyKey(id);
  if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
  if (reservations_.release) reservations_.release(slug, id);
  return RemoveTree(doomed);
}

Status TenantRegistry::Relinquish(const std::string& id, const std::string& kept_at) {
  MutexLock lock(mutex_);
  auto it = std::find_if(by_slug_.begin(), by_slug_.end(),
                         [&](const auto& entry) { return entry.second.id == id; });
  if (it == by_slug_.end()) return NotFound("no such tenant");
  const std::string parent = fs::path(kept_at).parent_path().string();
  SILO_RETURN_IF_ERROR(MakeDirs(parent, 0700));
  std::error_code ec;
  fs::rename(TenantDir(id), kept_at, ec);
  if (ec) return Internal("cannot move the tenant directory").WithCause(ec.message());
  by_slug_.erase(it);
  // Not durable yet only means the next start finds the tenant here again
  // and the cluster node gives it up again.
  for (const std::string& dir : {layout::TenantsDir(data_dir_), parent}) {
    if (Status s = SyncDir(dir); !s.ok()) {
      log::Warn("tenant move not yet durable", {{"cause", s.ToString()}});
    }
  }
  return Status::Ok();
}

size_t TenantRegistry::size() const {
  MutexLock lock(mutex_);
  return by_slug_.size();
}

}  // namespace silo::tenant
