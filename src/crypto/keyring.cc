#include "crypto/keyring.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/file_util.h"
#include "crypto/crypto.h"

namespace silo::crypto {
namespace {

namespace json = boost::json;

std::string WrapAd(const std::string& tenant_id, Keyring::Kind kind = Keyring::Kind::kData) {
  return (kind == Keyring::Kind::kData ? "silo-dek-v1:" : "silo-backup-key-v1:") + tenant_id;
}

// Key file names are tenant ids: no path syntax can get in.
bool ValidTenantId(std::string_view id) {
  return !id.empty() && id.size() <= 64 &&
         id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") ==
             std::string_view::npos;
}

// A staged key's file: "<tenant>.next" (a tenant id has no dot).
constexpr std::string_view kStagedSuffix = ".next";

// The tenant a key file name is for, staged or not.
std::string TenantOfKeyFile(std::string_view name) {
  if (name.size() > kStagedSuffix.size() && name.ends_with(kStagedSuffix)) {
    name.remove_suffix(kStagedSuffix.size());
  }
  return std::string(name);
}

// A key file's epoch: 0 when absent; -1 when it is not a u32.
int64_t EpochField(const boost::json::object& o) {
  const boost::json::value* v = o.if_contains("epoch");
  if (v == nullptr) return 0;
  if (!v->is_int64() || v->as_int64() < 0 || v->as_int64() > 0xffffffffLL) return -1;
  return v->as_int64();
}

// A temporary file WriteFileAtomic left behind when it was interrupted.
bool Leftover(std::string_view name) { return name.find(".tmp.") != std::string_view::npos; }

// The JSON object in `file`; DataLoss naming `what` when it is not one.
Result<json::object> ReadObject(const std::string& file, const std::string& what) {
  auto text = ReadFile(file);
  if (!text.ok()) return text.status();
  boost::system::error_code ec;
  json::value doc = json::parse(*text, ec);
  if (ec || !doc.is_object()) return DataLoss(what + " is not valid JSON");
  return std::move(doc.as_object());
}

std::string Field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

Keyring::Keyring(std::string path, SecretKey master)
    : path_(std::move(path)),
      keys_dir_(path_ + ".d"),
      kek_(DeriveKek(master)),
      master_fingerprint_(KeyFingerprint(master)) {}

Result<std::unique_ptr<Keyring>> Keyring::Open(const std::string& path, SecretKey master) {
  std::unique_ptr<Keyring> ring(new Keyring(path, std::move(master)));
  MutexLock lock(ring->mutex_);  // no other thread has `ring` yet; the analysis asks
  SILO_RETURN_IF_ERROR(MakeDirs(ring->keys_dir_, 0700));
  if (!PathExists(path)) {
    // A new keyring; key files without a header are not ours to adopt.
    SILO_RETURN_IF_ERROR(ring->LoadKeyFiles());
    if (!ring->wrapped_.empty()) return DataLoss("keyring header missing beside its key files");
    SILO_RETURN_IF_ERROR(ring->WriteHeader());
    return ring;
  }
  SILO_ASSIGN_OR_RETURN(const json::object obj, ReadObject(path, "keyring"));
  const json::value* fmt = obj.if_contains("format");
  const json::value* fp = obj.if_contains("master_fingerprint");
  const int64_t format = fmt != nullptr && fmt->is_int64() ? fmt->as_int64() : 0;
  if ((format != 1 && format != 2) || fp == nullptr || !fp->is_string()) {
    return DataLoss("keyring has an unknown format");
  }
  if (!Field(obj, "rotating_to").empty()) {
    return FailedPrecondition(
        "a master-key rotation was interrupted: run silo keys rotate-master again with the same "
        "two keys to finish it");
  }
  if (!ConstantTimeEquals(std::string(fp->as_string()), ring->master_fingerprint_)) {
    return FailedPrecondition("wrong master key: it does not match this data directory's keyring");
  }
  if (format == 2) {
    SILO_RETURN_IF_ERROR(ring->LoadKeyFiles());
    return ring;
  }
  const json::value* keys = obj.if_contains("keys");
  if (keys == nullptr || !keys->is_object()) return DataLoss("keyring has an unknown format");
  std::map<std::string, std::string> format1;
  for (const auto& kv : keys->as_object()) {
    if (!kv.value().is_string() || !ValidTenantId(kv.key())) {
      return DataLoss("keyring entry malformed");
    }
    auto raw = Base64Decode(std::string(kv.value().as_string()));
    if (!raw.ok()) return DataLoss("keyring entry malformed");
    format1[std::string(kv.key())] = std::move(*raw);
  }
  SILO_RETURN_IF_ERROR(ring->ConvertFormat1(std::move(format1)));
  return ring;
}

Status Keyring::ConvertFormat1(std::map<std::string, std::string> keys) {
  std::error_code ec;
  std::vector<std::string> stray;
  for (const auto& entry : std::filesystem::directory_iterator(keys_dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (keys.count(name) == 0) stray.push_back(entry.path().string());
  }
  if (ec) return Internal("cannot list the key directory").WithCause(ec.message());
  for (const auto& file : stray) {
    if (::unlink(file.c_str()) != 0) return Internal("cannot remove a stray key file");
  }
  for (const auto& [id, wrapped] : keys) SILO_RETURN_IF_ERROR(WriteKeyFile(id, wrapped));
  SILO_RETURN_IF_ERROR(SyncDir(keys_dir_));
  wrapped_ = std::move(keys);
  return WriteHeader();  // last: until here, format 1 is what counts
}

Status Keyring::LoadKeyFiles() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(keys_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (Leftover(name)) {
      (void)::unlink(entry.path().c_str());  // an interrupted write never counted
      continue;
    }
    SILO_ASSIGN_OR_RETURN(const json::object o, ReadObject(entry.path().string(), "a key file"));
    const json::value* fmt = o.if_contains("format");
    const std::string tenant = TenantOfKeyFile(name);
    if (fmt == nullptr || !fmt->is_int64() || fmt->as_int64() != 2 ||
        Field(o, "tenant") != tenant || !ValidTenantId(tenant)) {
      return DataLoss("a key file has an unknown format or another tenant's name");
    }
    if (!ConstantTimeEquals(Field(o, "master_fingerprint"), master_fingerprint_)) {
      return DataLoss("a key file is wrapped under another master key");
    }
    auto raw = Base64Decode(Field(o, "wrapped"));
    const int64_t epoch = EpochField(o);
    if (!raw.ok() || raw->empty() || epoch < 0) return DataLoss("a key file is malformed");
    if (tenant != name) {
      staged_[tenant] = {std::move(*raw), static_cast<uint32_t>(epoch)};
      continue;
    }
    wrapped_[name] = std::move(*raw);
    if (epoch > 0) epochs_[name] = static_cast<uint32_t>(epoch);
  }
  if (ec) return Internal("cannot list the key directory").WithCause(ec.message());
  return Status::Ok();
}

Status Keyring::WriteHeader() const {
  json::object doc;
  doc["format"] = 2;
  doc["master_fingerprint"] = master_fingerprint_;
  return WriteFileAtomic(path_, json::serialize(doc) + "\n", 0600);
}

Status Keyring::WriteKeyFile(const std::string& tenant_id, const std::string& wrapped,
                             uint32_t epoch, const std::string& suffix) const {
  json::object doc;
  doc["format"] = 2;
  doc["tenant"] = tenant_id;
  doc["master_fingerprint"] = master_fingerprint_;
  doc["wrapped"] = Base64Encode(wrapped);
  if (epoch > 0) doc["epoch"] = epoch;
  return WriteFileAtomic(keys_dir_ + "/" + tenant_id + suffix, json::serialize(doc) + "\n", 0600);
}

Result<SecretKey> Keyring::CreateKey(const std::string& tenant_id) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("tenant id is not a key file name");
  MutexLock lock(mutex_);
  if (wrapped_.count(tenant_id) != 0) {
    return AlreadyExists("tenant key exists");
  }
  SecretKey dek = SecretKey::Random();
  std::string_view bytes(reinterpret_cast<const char*>(dek.data()), dek.size());
  std::string sealed = Seal(kek_, bytes, WrapAd(tenant_id));
  SILO_RETURN_IF_ERROR(WriteKeyFile(tenant_id, sealed));
  wrapped_[tenant_id] = std::move(sealed);
  return dek;
}

Status Keyring::Import(const std::string& tenant_id, const std::string& wrapped) {
  if (!ValidTenantId(tenant_id)) return InvalidArgument("tenant id is not a key file name");
  auto raw = crypto::Open(kek_, wrapped, WrapAd(tenant_id));
  if (!raw.ok()) return DataLoss("the tenant key does not open under this master key");
  WipeString(*raw);
  MutexLock lock(mutex_);
  auto it = wrapped_.find(tenant_id);
  if (it != wrapped_.end()) {
    return it->second == wrapped ? Status::Ok() : AlreadyExists("another key for this tenant");
  }
  SILO_RETURN_IF_ERROR(WriteKeyFile(tenant_id, wrapped));
  wrapped_[tenant_id] = wrapped;
  return Status::Ok();
}

Result<SecretKey> Keyring::GetKey(const std::string& tenant_id) const {
  MutexLock lock(mutex_);
  auto it = wrapped_.find(tenant_id);
  if (it == wrapped_.end()) return NotFound("no key for tenant");
  auto raw = crypto::Open(kek_, it->second, WrapAd(tenant_id));
  if (!raw.ok()) return DataLoss("tenant key failed authentication");
  auto key = SecretKey::FromBytes(*raw);
  WipeString(*raw);
  return key;
}

Result<std::string> Keyring::Wrapped(const std::string& tenant_id) const {
  MutexLock lock(mutex_);
  auto it = wrapped_.find(tenant_id);
  if (it == wrapped_.end()) return NotFound("no key for tenant");
  return it->second;
}

Result<SecretKey> Keyring::Unwrap(const std::string& tenant_id, std::string_view wrapped,
                                  Kind kind) const {
  auto raw = crypto::Open(kek_, wrapped, WrapAd(tenant_id, kind));
  if (!raw.ok()) return DataLoss("the key does not open under this master key");
  auto key = SecretKey::FromBytes(*raw);
  WipeString(*raw);
  return key;
}

Status Keyring::DestroyKey(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  auto it = wrapped_.find(tenant_id);
  if (it == wrapped_.end()) return NotFound("no key for tenant");
  const std::string file = keys_dir_ + "/" + tenant_id;
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove the key file").WithCause(std::strerror(errno));
  }
  wrapped_.erase(it);
  epochs_.erase(tenant_id);
  if (staged_.erase(tenant_id) > 0) {
    const std::string next = file + std::string(kStagedSuffix);
    if (::unlink(next.c_str()) != 0 && errno != ENOENT) {
      return Internal("cannot remove the staged key file").WithCause(std::strerror(errno));
    }
  }
  return SyncDir(keys_dir_);
}

Result<uint32_t> Keyring::Epoch(const std::string& tenant_id) const {
  MutexLock lock(mutex_);
  if (wrapped_.count(tenant_id) == 0) return NotFound("no key for tenant");
  auto it = epochs_.find(tenant_id);
  return it == epochs_.end() ? 0 : it->second;
}

Result<Keyring::Staged> Keyring::StageKey(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  if (wrapped_.count(tenant_id) == 0) return NotFound("no key for tenant");
  if (staged_.count(tenant_id) != 0) return AlreadyExists("a key is staged for this tenant");
  auto current = epochs_.find(tenant_id);
  const uint32_t epoch = (current == epochs_.end() ? 0 : current->second) + 1;
  SecretKey dek = SecretKey::Random();
  std::string_view bytes(reinterpret_cast<const char*>(dek.data()), dek.size());
  std::string sealed = Seal(kek_, bytes, WrapAd(tenant_id));
  SILO_RETURN_IF_ERROR(WriteKeyFile(tenant_id, sealed, epoch, std::string(kStagedSuffix)));
  SILO_RETURN_IF_ERROR(SyncDir(keys_dir_));
  staged_[tenant_id] = {std::move(sealed), epoch};
  return Staged{std::move(dek), epoch};
}

std::vector<std::string> Keyring::StagedIds() const {
  MutexLock lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& kv : staged_) ids.push_back(kv.first);
  return ids;
}

Status Keyring::DiscardStaged(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  const std::string file = keys_dir_ + "/" + tenant_id + std::string(kStagedSuffix);
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return Internal("cannot remove the staged key file").WithCause(std::strerror(errno));
  }
  staged_.erase(tenant_id);
  return SyncDir(keys_dir_);
}

Status Keyring::CommitStaged(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  auto it = staged_.find(tenant_id);
  if (it == staged_.end()) return FailedPrecondition("no key is staged for this tenant");
  const std::string file = keys_dir_ + "/" + tenant_id;
  const std::string next = file + std::string(kStagedSuffix);
  if (std::rename(next.c_str(), file.c_str()) != 0) {
    return Internal("cannot commit the staged key").WithCause(std::strerror(errno));
  }
  wrapped_[tenant_id] = std::move(it->second.wrapped);
  epochs_[tenant_id] = it->second.epoch;
  staged_.erase(it);
  return SyncDir(keys_dir_);
}

std::vector<std::string> Keyring::TenantIds() const {
  MutexLock lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& kv : wrapped_) ids.push_back(kv.first);
  return ids;
}

std::string Keyring::Wrap(const std::string& tenant_id, const SecretKey& key, Kind kind) const {
  std::string_view bytes(reinterpret_cast<const char*>(key.data()), key.size());
  return Seal(kek_, bytes, WrapAd(tenant_id, kind));
}

Result<std::string> Keyring::Rewrap(const std::string& tenant_id, std::string_view wrapped,
                                    const SecretKey& from, const SecretKey& to, Kind kind) {
  auto raw = crypto::Open(DeriveKek(from), wrapped, WrapAd(tenant_id, kind));
  if (!raw.ok()) return DataLoss("a tenant key does not open under the current master key");
  std::string sealed = Seal(DeriveKek(to), *raw, WrapAd(tenant_id, kind));
  WipeString(*raw);
  return sealed;
}

Result<SecretKey> Keyring::UnwrapWith(const std::string& tenant_id, std::string_view wrapped,
                                      const SecretKey& master, Kind kind) {
  auto raw = crypto::Open(DeriveKek(master), wrapped, WrapAd(tenant_id, kind));
  if (!raw.ok()) return DataLoss("the key does not open under this master key");
  auto key = SecretKey::FromBytes(*raw);
  WipeString(*raw);
  return key;
}

Result<Keyring::RotationState> Keyring::ReadRotationState(const std::string& path) {
  SILO_ASSIGN_OR_RETURN(const json::object obj, ReadObject(path, "keyring"));
  const json::value* fmt = obj.if_contains("format");
  if (fmt == nullptr || !fmt->is_int64() || fmt->as_int64() != 2) {
    return FailedPrecondition("start silo serve once first: the keyring is not in format 2");
  }
  return RotationState{Field(obj, "master_fingerprint"), Field(obj, "rotating_to")};
}

Result<int64_t> Keyring::RotateKeys(const std::string& path, const SecretKey& old_master,
                                    const SecretKey& new_master, int64_t stop_after) {
  const std::string old_fp = KeyFingerprint(old_master), new_fp = KeyFingerprint(new_master);
  if (old_fp == new_fp) return FailedPrecondition("the new master key is the current one");
  SILO_ASSIGN_OR_RETURN(RotationState state, ReadRotationState(path));
  if (state.current == new_fp && state.rotating_to.empty()) return int64_t{0};  // done before
  if (!ConstantTimeEquals(state.current, old_fp)) {
    return FailedPrecondition(
        "SILO_MASTER_KEY is not this data directory's master key: nothing was changed");
  }
  if (!state.rotating_to.empty() && state.rotating_to != new_fp) {
    return FailedPrecondition("a rotation to another new master key (" + state.rotating_to +
                              ") was begun: finish it with that key; nothing was changed");
  }
  const std::string keys_dir = path + ".d";
  if (state.rotating_to.empty()) {
    json::object header{{"format", 2}, {"master_fingerprint", old_fp}, {"rotating_to", new_fp}};
    SILO_RETURN_IF_ERROR(WriteFileAtomic(path, json::serialize(header) + "\n", 0600));
  }
  int64_t rewrapped = 0;
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(keys_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!Leftover(name)) names.push_back(name);
  }
  if (ec) return Internal("cannot list the key directory").WithCause(ec.message());
  for (const std::string& name : names) {
    SILO_ASSIGN_OR_RETURN(const json::object o, ReadObject(keys_dir + "/" + name, "a key file"));
    const std::string tenant = TenantOfKeyFile(name);
    if (Field(o, "tenant") != tenant || !ValidTenantId(tenant)) {
      return DataLoss("a key file has another tenant's name");
    }
    auto raw = Base64Decode(Field(o, "wrapped"));
    if (!raw.ok() || raw->empty()) return DataLoss("a key file is malformed");
    const std::string fp = Field(o, "master_fingerprint");
    if (fp == new_fp) {
      // Rewritten by an interrupted run: it must open under the new key.
      SILO_RETURN_IF_ERROR(UnwrapWith(tenant, *raw, new_master).status());
      continue;
    }
    if (fp != old_fp) return DataLoss("a key file is wrapped under a third master key");
    if (stop_after >= 0 && rewrapped == stop_after) return Unavailable("stopped (test)");
    SILO_ASSIGN_OR_RETURN(std::string sealed, Rewrap(tenant, *raw, old_master, new_master));
    json::object doc{{"format", 2},
                     {"tenant", tenant},
                     {"master_fingerprint", new_fp},
                     {"wrapped", Base64Encode(sealed)}};
    if (const int64_t epoch = EpochField(o); epoch > 0) doc["epoch"] = epoch;
    SILO_RETURN_IF_ERROR(WriteFileAtomic(keys_dir + "/" + name, json::serialize(doc) + "\n", 0600));
    ++rewrapped;
  }
  SILO_RETURN_IF_ERROR(SyncDir(keys_dir));
  return rewrapped;
}

Status Keyring::FinishRotation(const std::string& path, const SecretKey& new_master) {
  const std::string new_fp = KeyFingerprint(new_master);
  SILO_ASSIGN_OR_RETURN(RotationState state, ReadRotationState(path));
  if (state.current == new_fp && state.rotating_to.empty()) return Status::Ok();
  if (state.rotating_to != new_fp) return FailedPrecondition("no rotation to this key under way");
  json::object header{{"format", 2}, {"master_fingerprint", new_fp}};
  return WriteFileAtomic(path, json::serialize(header) + "\n", 0600);
}

}  // namespace silo::crypto
