#include "cluster/etcd.h"

#include <curl/curl.h>

#include <boost/json.hpp>
#include <memory>

#include "crypto/crypto.h"

namespace silo::cluster {
namespace {

namespace json = boost::json;

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::string B64(std::string_view bytes) { return crypto::Base64Encode(bytes); }

// etcd's gateway writes int64 fields as JSON strings and leaves out zeros.
int64_t Int(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

std::string Bytes(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || !v->is_string()) return "";
  auto decoded = crypto::Base64Decode(std::string(v->as_string()));
  return decoded.ok() ? *decoded : "";
}

// The store's revision an answer was read at (its header's), which every
// range answer carries.
Result<int64_t> HeaderRevision(const json::object& o) {
  int64_t revision = 0;
  if (const json::value* header = o.if_contains("header"); header && header->is_object()) {
    revision = Int(header->as_object(), "revision");
  }
  if (revision == 0) return Unavailable("etcd answered a range without its revision");
  return revision;
}

Result<json::object> Parse(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return Unavailable("etcd answered something that is not JSON").WithCause(text.substr(0, 200));
  }
  return std::move(v.as_object());
}

KeyValue ToKeyValue(const json::object& kv) {
  return KeyValue{Bytes(kv, "key"), Bytes(kv, "value"), Int(kv, "create_revision"),
                  Int(kv, "mod_revision"), Int(kv, "lease")};
}

// The first key after every key that starts with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

json::object Compare(const std::string& key, const char* target, const char* field, int64_t value) {
  return json::object{
      {"key", B64(key)}, {"target", target}, {"result", "EQUAL"}, {field, std::to_string(value)}};
}

json::object PutRequest(const std::string& key, const std::string& value, int64_t lease) {
  json::object put{{"key", B64(key)}, {"value", B64(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  return json::object{{"request_put", std::move(put)}};
}

}  // namespace

Etcd::Etcd(EtcdOptions options) : options_(std::move(options)) {}

Result<std::string> Etcd::Call(const std::string& path, const std::string& body) const {
  std::string last_error = "no endpoint";
  for (const std::string& endpoint : options_.endpoints) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return Unavailable("etcd is unreachable").WithCause("curl_easy_init");
    CURL* c = curl.get();
    std::string url = endpoint + path;
    std::string answer;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(headers, curl_slist_free_all);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.cert_file.empty()) {
      curl_easy_setopt(c, CURLOPT_SSLCERT, options_.cert_file.c_str());
      curl_easy_setopt(c, CURLOPT_SSLKEY, options_.key_file.c_str());
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      last_error = endpoint + ": " + curl_easy_strerror(rc);
      continue;  // the next endpoint may answer
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      return Unavailable("etcd refused a request")
          .WithCause(endpoint + path + ": HTTP " + std::to_string(status) + " " +
                     answer.substr(0, 200));
    }
    return answer;
  }
  return Unavailable("etcd is unreachable").WithCause(last_error);
}

Result<int64_t> Etcd::GrantLease(int ttl_s) {
  SILO_ASSIGN_OR_RETURN(std::string text,
                        Call("/v3/lease/grant", json::serialize(json::object{{"TTL", ttl_s}})));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  int64_t id = Int(o, "ID");
  if (id == 0) return Unavailable("etcd granted no lease").WithCause(text.substr(0, 200));
  return id;
}

Result<int64_t> Etcd::KeepAlive(int64_t lease) {
  // The gateway maps the keep-alive stream to one request and its answers:
  // one message in, one answer out.
  SILO_ASSIGN_OR_RETURN(
      std::string text,
      Call("/v3/lease/keepalive", json::serialize(json::object{{"ID", std::to_string(lease)}})));
  // The answer may hold several JSON messages; the first says it.
  std::string first = text.substr(0, text.find('\n'));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(first));
  const json::value* result = o.if_contains("result");
  int64_t ttl = (result != nullptr && result->is_object()) ? Int(result->as_object(), "TTL") : 0;
  if (ttl <= 0) return NotFound("the lease expired");
  return ttl;
}

Status Etcd::Revoke(int64_t lease) {
  Result<std::string> text =
      Call("/v3/lease/revoke", json::serialize(json::object{{"ID", std::to_string(lease)}}));
  if (!text.ok() && text.status().cause().find("not found") != std::string::npos) {
    return Status::Ok();  // already gone
  }
  return text.status();
}

Result<int64_t> Etcd::CreateIfAbsent(const std::string& key, const std::string& value,
                                     int64_t lease) {
  json::object txn{{"compare", json::array{Compare(key, "CREATE", "create_revision", 0)}},
                   {"success", json::array{PutRequest(key, value, lease)}}};
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/txn", json::serialize(txn)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  if (!o.contains("succeeded")) return AlreadyExists("the key exists");
  const json::value* header = o.if_contains("header");
  int64_t revision =
      (header != nullptr && header->is_object()) ? Int(header->as_object(), "revision") : 0;
  if (revision == 0) return Unavailable("etcd gave no revision").WithCause(text.substr(0, 200));
  return revision;
}

Result<int64_t> Etcd::PutIf(const std::string& key, const std::string& value, int64_t revision,
                            int64_t lease) {
  json::object txn{{"compare", json::array{Compare(key, "MOD", "mod_revision", revision)}},
                   {"success", json::array{PutRequest(key, value, lease)}}};
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/txn", json::serialize(txn)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  if (!o.contains("succeeded")) return VersionMismatch("the key changed");
  const json::value* header = o.if_contains("header");
  return (header != nullptr && header->is_object()) ? Int(header->as_object(), "revision")
                                                    : int64_t{0};
}

Result<int64_t> Etcd::Put(const std::string& key, const std::string& value, int64_t lease) {
  json::object put = PutRequest(key, value, lease).at("request_put").as_object();
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/put", json::serialize(put)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  const json::value* header = o.if_contains("header");
  return (header != nullptr && header->is_object()) ? Int(header->as_object(), "revision")
                                                    : int64_t{0};
}

Status Etcd::DeleteIf(const std::string& key, int64_t revision) {
  json::object txn{
      {"compare", json::array{Compare(key, "MOD", "mod_revision", revision)}},
      {"success",
       json::array{json::object{{"request_delete_range", json::object{{"key", B64(key)}}}}}}};
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/txn", json::serialize(txn)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  if (!o.contains("succeeded")) return VersionMismatch("the key changed");
  return Status::Ok();
}

Status Etcd::Delete(const std::string& key) {
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/deleterange",
                                               json::serialize(json::object{{"key", B64(key)}})));
  return Parse(text).status();
}

Result<std::optional<KeyValue>> Etcd::Get(const std::string& key) {
  SILO_ASSIGN_OR_RETURN(std::string text,
                        Call("/v3/kv/range", json::serialize(json::object{{"key", B64(key)}})));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  const json::value* kvs = o.if_contains("kvs");
  if (kvs == nullptr || !kvs->is_array() || kvs->as_array().empty()) {
    return std::optional<KeyValue>();
  }
  const json::value& first = kvs->as_array()[0];
  if (!first.is_object()) return Unavailable("etcd answered an odd range");
  return std::optional<KeyValue>(ToKeyValue(first.as_object()));
}

Result<std::vector<KeyValue>> Etcd::List(const std::string& prefix, int64_t min_mod_revision,
                                         bool keys_only) {
  SILO_ASSIGN_OR_RETURN(Range range, ListRange(prefix, min_mod_revision, keys_only));
  return std::move(range.kvs);
}

Result<Etcd::Range> Etcd::ListRange(const std::string& prefix, int64_t min_mod_revision,
                                    bool keys_only) {
  json::object range{{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}};
  // The gateway reads int64 fields as JSON strings (protobuf's JSON mapping).
  if (min_mod_revision > 0) range["min_mod_revision"] = std::to_string(min_mod_revision);
  if (keys_only) range["keys_only"] = true;
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/range", json::serialize(range)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  Range out;
  // etcd counts the keys in the range before it drops those older than
  // min_mod_revision: the count is the prefix's, whatever was left out.
  out.count = Int(o, "count");
  SILO_ASSIGN_OR_RETURN(out.revision, HeaderRevision(o));
  const json::value* kvs = o.if_contains("kvs");
  if (kvs == nullptr || !kvs->is_array()) return out;
  for (const json::value& kv : kvs->as_array()) {
    if (kv.is_object()) out.kvs.push_back(ToKeyValue(kv.as_object()));
  }
  return out;
}

Result<int64_t> Etcd::Revision() {
  json::object range{{"key", B64("/")}, {"count_only", true}};
  SILO_ASSIGN_OR_RETURN(std::string text, Call("/v3/kv/range", json::serialize(range)));
  SILO_ASSIGN_OR_RETURN(json::object o, Parse(text));
  return HeaderRevision(o);
}

}  // namespace silo::cluster
