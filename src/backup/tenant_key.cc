#include "backup/tenant_key.h"

#include <boost/json.hpp>

#include "crypto/crypto.h"

namespace silo::backup {
namespace {

namespace json = boost::json;

std::string DekAd(const std::string& tenant_id) { return "silo-backup-dek-v1:" + tenant_id; }

}  // namespace

std::string TenantKeyName(const std::string& tenant_id) { return tenant_id + "/tenant.key"; }
std::string ShreddedName(const std::string& tenant_id) { return tenant_id + "/tenant.shredded"; }

std::string EncodeTenantKey(const TenantKeyObject& o) {
  json::object doc{{"format", 1},
                   {"tenant", o.tenant_id},
                   {"master_fingerprint", o.master_fingerprint},
                   {"wrapped", crypto::Base64Encode(o.wrapped)}};
  return json::serialize(doc) + "\n";
}

Result<TenantKeyObject> DecodeTenantKey(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return DataLoss("the tenant's backup key object is not JSON");
  const json::object& o = v.as_object();
  const json::value* format = o.if_contains("format");
  const json::value* tenant = o.if_contains("tenant");
  const json::value* fp = o.if_contains("master_fingerprint");
  const json::value* wrapped = o.if_contains("wrapped");
  if (format == nullptr || !format->is_int64() || format->as_int64() != 1 || tenant == nullptr ||
      !tenant->is_string() || fp == nullptr || !fp->is_string() || wrapped == nullptr ||
      !wrapped->is_string()) {
    return DataLoss("the tenant's backup key object lacks a field or has an unknown format");
  }
  auto raw = crypto::Base64Decode(wrapped->as_string());
  if (!raw.ok()) return DataLoss("the tenant's backup key object is not base64");
  return TenantKeyObject{std::string(tenant->as_string()), std::string(fp->as_string()),
                         std::move(*raw)};
}

std::string EncodeShredded(const std::string& tenant_id, const std::string& slug, int64_t at_us) {
  json::object doc{{"format", 1}, {"tenant", tenant_id}, {"slug", slug}, {"shredded_at_us", at_us}};
  return json::serialize(doc) + "\n";
}

std::string WrapDataKey(const crypto::SecretKey& tenant_key, const std::string& tenant_id,
                        const crypto::SecretKey& dek) {
  std::string_view bytes(reinterpret_cast<const char*>(dek.data()), dek.size());
  return crypto::Seal(tenant_key, bytes, DekAd(tenant_id));
}

Result<crypto::SecretKey> UnwrapDataKey(const crypto::SecretKey& tenant_key,
                                        const std::string& tenant_id, std::string_view wrapped) {
  auto raw = crypto::Open(tenant_key, wrapped, DekAd(tenant_id));
  if (!raw.ok()) return DataLoss("the backup's data key does not open under the tenant's key");
  auto key = crypto::SecretKey::FromBytes(*raw);
  crypto::WipeString(*raw);
  return key;
}

std::string TenantKeyId(const crypto::SecretKey& tenant_key) {
  return crypto::KeyFingerprint(tenant_key);
}

}  // namespace silo::backup
