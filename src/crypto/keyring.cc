#include "crypto/keyring.h"

#include <boost/json.hpp>

#include "base/file_util.h"
#include "crypto/crypto.h"

namespace silo::crypto {
namespace {

namespace json = boost::json;

std::string WrapAd(const std::string& tenant_id) { return "silo-dek-v1:" + tenant_id; }

}  // namespace

Keyring::Keyring(std::string path, SecretKey master)
    : path_(std::move(path)),
      kek_(DeriveKek(master)),
      master_fingerprint_(KeyFingerprint(master)) {}

Result<std::unique_ptr<Keyring>> Keyring::Open(const std::string& path, SecretKey master) {
  std::unique_ptr<Keyring> ring(new Keyring(path, std::move(master)));
  if (!PathExists(path)) {
    MutexLock lock(ring->mutex_);
    Status s = ring->PersistLocked();
    if (!s.ok()) return s;
    return ring;
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  boost::system::error_code ec;
  json::value doc = json::parse(*text, ec);
  if (ec || !doc.is_object()) return DataLoss("keyring is not valid JSON");
  const json::object& obj = doc.as_object();
  const json::value* fmt = obj.if_contains("format");
  const json::value* fp = obj.if_contains("master_fingerprint");
  const json::value* keys = obj.if_contains("keys");
  if (fmt == nullptr || !fmt->is_int64() || fmt->as_int64() != 1 || fp == nullptr ||
      !fp->is_string() || keys == nullptr || !keys->is_object()) {
    return DataLoss("keyring has an unknown format");
  }
  if (!ConstantTimeEquals(std::string(fp->as_string()), ring->master_fingerprint_)) {
    return FailedPrecondition("wrong master key: it does not match this data directory's keyring");
  }
  MutexLock lock(ring->mutex_);  // no other thread has `ring` yet; the analysis asks
  for (const auto& kv : keys->as_object()) {
    if (!kv.value().is_string()) return DataLoss("keyring entry malformed");
    auto raw = Base64Decode(std::string(kv.value().as_string()));
    if (!raw.ok()) return DataLoss("keyring entry malformed");
    ring->wrapped_[std::string(kv.key())] = std::move(*raw);
  }
  return ring;
}

Result<SecretKey> Keyring::CreateKey(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  if (wrapped_.count(tenant_id) != 0) {
    return AlreadyExists("tenant key exists");
  }
  SecretKey dek = SecretKey::Random();
  std::string_view bytes(reinterpret_cast<const char*>(dek.data()), dek.size());
  wrapped_[tenant_id] = Seal(kek_, bytes, WrapAd(tenant_id));
  Status s = PersistLocked();
  if (!s.ok()) {
    wrapped_.erase(tenant_id);
    return s;
  }
  return dek;
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

Result<SecretKey> Keyring::Unwrap(const std::string& tenant_id, std::string_view wrapped) const {
  auto raw = crypto::Open(kek_, wrapped, WrapAd(tenant_id));
  if (!raw.ok()) return DataLoss("the key does not open under this master key");
  auto key = SecretKey::FromBytes(*raw);
  WipeString(*raw);
  return key;
}

Status Keyring::DestroyKey(const std::string& tenant_id) {
  MutexLock lock(mutex_);
  auto it = wrapped_.find(tenant_id);
  if (it == wrapped_.end()) return NotFound("no key for tenant");
  std::string saved = it->second;
  wrapped_.erase(it);
  Status s = PersistLocked();
  if (!s.ok()) wrapped_[tenant_id] = saved;
  return s;
}

std::vector<std::string> Keyring::TenantIds() const {
  MutexLock lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& kv : wrapped_) ids.push_back(kv.first);
  return ids;
}

Status Keyring::PersistLocked() const {
  json::object keys;
  for (const auto& kv : wrapped_) keys[kv.first] = Base64Encode(kv.second);
  json::object doc;
  doc["format"] = 1;
  doc["master_fingerprint"] = master_fingerprint_;
  doc["keys"] = std::move(keys);
  return WriteFileAtomic(path_, json::serialize(doc) + "\n", 0600);
}

}  // namespace silo::crypto
