#include "records/schema.h"

#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include "base/time_util.h"
#include "files/blob.h"

namespace silo::records {
namespace json = boost::json;
namespace {

constexpr size_t kDefaultStringBytes = 1024;
constexpr size_t kDefaultLongBytes = 64 * 1024;  // text and json
constexpr size_t kMaxEnumValues = 256;
constexpr size_t kDefaultFileBytes = 5 * 1024 * 1024;
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 40;  // SILO_MAX_FILE_BYTES is the real ceiling
constexpr size_t kMaxFilesPerField = 100;
constexpr size_t kMaxTypes = 64;

bool ValidFileId(const json::value& v) {
  return v.is_string() && files::ValidBlobId(std::string_view(v.as_string()));
}

constexpr std::string_view kReserved[] = {"id",         "version",    "created_at",
                                          "created_by", "updated_at", "updated_by"};

constexpr std::pair<std::string_view, FieldType> kTypes[] = {
    {"string", FieldType::kString},    {"text", FieldType::kText},
    {"integer", FieldType::kInteger},  {"number", FieldType::kNumber},
    {"boolean", FieldType::kBoolean},  {"datetime", FieldType::kDateTime},
    {"email", FieldType::kEmail},      {"enum", FieldType::kEnum},
    {"json", FieldType::kJson},        {"file", FieldType::kFile},
    {"relation", FieldType::kRelation}};

constexpr std::pair<std::string_view, OnDelete> kOnDelete[] = {{"restrict", OnDelete::kRestrict},
                                                               {"cascade", OnDelete::kCascade},
                                                               {"set_null", OnDelete::kSetNull}};

bool ValidRelatedId(const json::value& v) {
  return v.is_string() && ValidRecordId(std::string_view(v.as_string()));
}

int Depth(const json::value& v) {
  int deepest = 0;
  if (v.is_object()) {
    for (const auto& kv : v.as_object()) deepest = std::max(deepest, Depth(kv.value()));
    return deepest + 1;
  }
  if (v.is_array()) {
    for (const auto& e : v.as_array()) deepest = std::max(deepest, Depth(e));
    return deepest + 1;
  }
  return 0;
}

bool ValidEmail(std::string_view s) {
  if (s.size() > 254) return false;
  size_t at = s.find('@');
  if (at == 0 || at == std::string_view::npos || at > 64 || s.find('@', at + 1) != s.npos) {
    return false;
  }
  for (char c : s.substr(0, at)) {
    if (c <= ' ' || c >= 0x7f) return false;
  }
  std::string_view domain = s.substr(at + 1);
  if (domain.empty() || domain.find('.') == domain.npos || domain.front() == '.' ||
      domain.back() == '.' || domain.find("..") != domain.npos) {
    return false;
  }
  for (char c : domain) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

size_t DefaultMax(FieldType t) {
  switch (t) {
    case FieldType::kString: return kDefaultStringBytes;
    case FieldType::kText:
    case FieldType::kJson: return kDefaultLongBytes;
    case FieldType::kFile: return kDefaultFileBytes;
    default: return 0;
  }
}

// An empty string when `v` is a valid value of `f` (normalised into *out).
std::string CheckValue(const FieldDef& f, const json::value& v, json::value* out) {
  *out = v;
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kText:
    case FieldType::kEmail:
    case FieldType::kEnum: {
      if (!v.is_string()) return "must be a string";
      std::string_view s = v.as_string();
      if (f.type == FieldType::kEmail) return ValidEmail(s) ? "" : "must be an e-mail address";
      if (f.type == FieldType::kEnum) {
        for (const auto& allowed : f.values) {
          if (allowed == s) return "";
        }
        std::string values;
        for (const auto& allowed : f.values) values += (values.empty() ? "" : ", ") + allowed;
        return "must be one of: " + values;
      }
      if (s.size() > f.max_bytes) return "longer than " + std::to_string(f.max_bytes) + " bytes";
      return "";
    }
    case FieldType::kInteger:
      if (v.is_int64()) return "";
      if (v.is_uint64() && v.as_uint64() <= uint64_t(std::numeric_limits<int64_t>::max())) {
        *out = static_cast<int64_t>(v.as_uint64());
        return "";
      }
      return "must be an integer";
    case FieldType::kNumber:
      if (v.is_int64() || v.is_uint64()) return "";
      if (v.is_double() && std::isfinite(v.as_double())) return "";
      return "must be a number";
    case FieldType::kBoolean: return v.is_bool() ? "" : "must be true or false";
    case FieldType::kDateTime: {
      if (!v.is_string()) return "must be an RFC 3339 date-time";
      auto us = ParseRfc3339(v.as_string());
      if (!us.ok()) return "must be an RFC 3339 date-time";
      *out = json::string(FormatRfc3339Micros(*us));
      return "";
    }
    case FieldType::kJson:
      if (Depth(v) > kMaxJsonDepth) {
        return "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      }
      if (json::serialize(v).size() > f.max_bytes) {
        return "longer than " + std::to_string(f.max_bytes) + " bytes";
      }
      return "";
    case FieldType::kFile: {
      if (f.max_files == 1) return ValidFileId(v) ? "" : "must be a file id";
      if (!v.is_array() || v.as_array().size() > f.max_files) {
        return "must be an array of at most " + std::to_string(f.max_files) + " file ids";
      }
      std::set<std::string_view> distinct;
      for (const auto& id : v.as_array()) {
        if (!ValidFileId(id) || !distinct.insert(id.as_string()).second) {
          return "must be an array of distinct file ids";
        }
      }
      return "";
    }
    case FieldType::kRelation: {
      if (!f.multiple) return ValidRelatedId(v) ? "" : "must be a record id";
      if (!v.is_array() || v.as_array().size() > kMaxRelationIds) {
        return "must be an array of at most " + std::to_string(kMaxRelationIds) + " record ids";
      }
      std::set<std::string_view> distinct;
      for (const auto& id : v.as_array()) {
        if (!ValidRelatedId(id) || !distinct.insert(id.as_string()).second) {
          return "must be an array of distinct record ids";
        }
      }
      return "";
    }
  }
  return "unsupported type";
}

}  // namespace

std::string_view OnDeleteName(OnDelete mode) {
  for (const auto& [name, m] : kOnDelete) {
    if (m == mode) return name;
  }
  return "?";
}

std::string_view FieldTypeName(FieldType type) {
  for (const auto& [name, t] : kTypes) {
    if (t == type) return name;
  }
  return "?";
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool ValidRecordId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> FileIds(const json::value* value) {
  std::vector<std::string> out;
  if (value == nullptr) return out;
  if (value->is_string()) out.emplace_back(value->as_string());
  if (value->is_array()) {
    for (const auto& id : value->as_array()) {
      if (id.is_string()) out.emplace_back(id.as_string());
    }
  }
  return out;
}

const FieldDef* SystemField(std::string_view name) {
  static const FieldDef* const kFields = [] {
    auto* f = new FieldDef[5];
    f[0].name = f[0].column = "created_by";
    f[1].name = f[1].column = "updated_by";
    f[2].name = "created_at";
    f[2].column = "created_at_us";
    f[3].name = "updated_at";
    f[3].column = "updated_at_us";
    f[2].type = f[3].type = FieldType::kDateTime;
    f[4].name = f[4].column = "id";
    f[4].max_bytes = 64;
    return f;
  }();
  for (int i = 0; i < 5; ++i) {
    if (kFields[i].name == name) return &kFields[i];
  }
  return nullptr;
}

const FieldDef* CollectionSchema::Find(std::string_view field) const {
  for (const auto& f : fields) {
    if (f.name == field) return &f;
  }
  return nullptr;
}

json::object CollectionSchema::ToJson() const {
  json::array out;
  for (const auto& f : fields) {
    json::object o;
    o["name"] = f.name;
    o["type"] = FieldTypeName(f.type);
    o["required"] = f.required;
    o["unique"] = f.unique;
    o["indexed"] = f.indexed;
    if (f.type == FieldType::kFile) {
      o["max_bytes"] = static_cast<int64_t>(f.max_bytes);
      json::array types;
      for (const auto& t : f.types) types.push_back(json::string(t));
      o["types"] = std::move(types);
      o["max_files"] = static_cast<int64_t>(f.max_files);
    } else if (f.type == FieldType::kRelation) {
      o["collection"] = f.collection;
      o["multiple"] = f.multiple;
      o["on_delete"] = OnDeleteName(f.on_delete);
    } else if (f.max_bytes != 0) {
      o["max"] = static_cast<int64_t>(f.max_bytes);
    }
    if (f.type == FieldType::kEnum) {
      json::array values;
      for (const auto& v : f.values) values.push_back(json::string(v));
      o["values"] = std::move(values);
    }
    out.push_back(std::move(o));
  }
  json::object o{{"name", name}, {"fields", std::move(out)}};
  if (public_create) {
    json::object pub{{"create", true}};
    if (!honeypot_field.empty()) pub["honeypot"] = honeypot_field;
    o["public"] = std::move(pub);
  }
  return o;
}

namespace {

using Fail = std::function<void(std::string message)>;

// A MIME type as a file field's "types" lists it: "type/subtype" or
// "type/*", lowercase letters, digits and "+-.".
bool ValidTypePattern(std::string_view t) {
  size_t slash = t.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == t.size() || t.size() > 127) {
    return false;
  }
  if (t.substr(slash + 1) == "*") t = t.substr(0, slash + 1);
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
              c == '.' || (c == '/' && i == slash);
    if (!ok) return false;
  }
  return true;
}

// "max_bytes", "types" and "max_files" of a file field (and of no other).
void ParseFileOptions(const json::object& fo, bool typed, FieldDef* f, const Fail& fail) {
  const bool file = typed && f->type == FieldType::kFile;
  for (const char* key : {"max_bytes", "types", "max_files"}) {
    if (!file && fo.contains(key)) fail(std::string(key) + " applies to file fields only");
  }
  if (!file) return;
  if (const json::value* m = fo.if_contains("max_bytes")) {
    if (!m->is_int64() || m->as_int64() < 1 || uint64_t(m->as_int64()) > kMaxFileBytes) {
      fail("max_bytes must be an integer from 1 to " + std::to_string(kMaxFileBytes));
    } else {
      f->max_bytes = static_cast<size_t>(m->as_int64());
    }
  }
  if (const json::value* n = fo.if_contains("max_files")) {
    if (!n->is_int64() || n->as_int64() < 1 || n->as_int64() > int64_t(kMaxFilesPerField)) {
      fail("max_files must be an integer from 1 to " + std::to_string(kMaxFilesPerField));
    } else {
      f->max_files = static_cast<size_t>(n->as_int64());
    }
  }
  if (const json::value* ts = fo.if_contains("types")) {
    if (!ts->is_array() || ts->as_array().size() > kMaxTypes) {
      fail("types must be an array of at most 64 MIME types");
      return;
    }
    for (const auto& t : ts->as_array()) {
      if (!t.is_string() || !ValidTypePattern(t.as_string())) {
        fail("types must list MIME types like image/png or image/*, in lowercase");
        return;
      }
      f->types.emplace_back(t.as_string());
    }
  }
}

// "collection", "multiple" and "on_delete" of a relation field (and of no
// other). The target's existence is the store's to check.
void ParseRelationOptions(const json::object& fo, bool typed, FieldDef* f, const Fail& fail) {
  const bool relation = typed && f->type == FieldType::kRelation;
  for (const char* key : {"collection", "multiple", "on_delete"}) {
    if (!relation && fo.contains(key)) fail(std::string(key) + " applies to relation fields only");
  }
  if (!relation) return;
  const json::value* c = fo.if_contains("collection");
  if (c == nullptr || !c->is_string() || !ValidName(c->as_string())) {
    fail("collection must name the related collection ([a-z][a-z0-9_]{0,62})");
  } else {
    f->collection = c->as_string();
  }
  if (const json::value* m = fo.if_contains("multiple")) {
    if (!m->is_bool()) {
      fail("multiple must be true or false");
    } else {
      f->multiple = m->as_bool();
    }
  }
  if (const json::value* d = fo.if_contains("on_delete")) {
    bool known = false;
    for (const auto& [name, mode] : kOnDelete) {
      if (d->is_string() && d->as_string() == name) {
        f->on_delete = mode;
        known = true;
      }
    }
    if (!known) fail("on_delete must be one of restrict, cascade, set_null");
  }
  if (f->on_delete == OnDelete::kSetNull && f->required) {
    fail("a required relation cannot be set_null on delete");
  }
  if (f->multiple && (f->unique || f->indexed)) {
    fail("a multiple relation cannot be unique or indexed");
  }
}

// "max" of a string, text or json field.
void ParseMax(const json::object& fo, FieldDef* f, const Fail& fail) {
  f->max_bytes = DefaultMax(f->type);
  const json::value* m = fo.if_contains("max");
  if (m == nullptr) return;
  if (f->max_bytes == 0 || f->type == FieldType::kFile) {
    fail(f->type == FieldType::kFile ? "a file field's limit is max_bytes"
                                     : "max applies to string, text and json fields only");
  } else if (!m->is_int64() || m->as_int64() < 1 || m->as_int64() > int64_t(kDefaultLongBytes)) {
    fail("max must be an integer from 1 to " + std::to_string(kDefaultLongBytes));
  } else {
    f->max_bytes = static_cast<size_t>(m->as_int64());
  }
}

// "values" of an enum field (and of no other).
void ParseEnumValues(const json::object& fo, bool typed, FieldDef* f, const Fail& fail) {
  const json::value* values = fo.if_contains("values");
  if (!typed || f->type != FieldType::kEnum) {
    if (values != nullptr) fail("values applies to enum fields only");
    return;
  }
  if (values == nullptr || !values->is_array() || values->as_array().empty() ||
      values->as_array().size() > kMaxEnumValues) {
    fail("values must be a non-empty array of at most 256 strings");
    return;
  }
  std::set<std::string> distinct;
  for (const auto& v : values->as_array()) {
    if (!v.is_string() || v.as_string().empty() || v.as_string().size() > 255 ||
        !distinct.insert(std::string(v.as_string())).second) {
      fail("values must be distinct non-empty strings of at most 255 bytes");
      return;
    }
    f->values.emplace_back(v.as_string());
  }
}

// Entry `index` of "fields". Errors are named "fields[<index>]" until the
// field's name is known, "fields.<name>" after; nullopt when there was any.
std::optional<FieldDef> ParseField(const json::value& fv, size_t index, std::set<std::string>* seen,
                                   std::vector<FieldError>* errors) {
  std::string where = "fields[" + std::to_string(index) + "]";
  if (!fv.is_object()) {
    errors->push_back({where, "must be an object"});
    return std::nullopt;
  }
  const json::object& fo = fv.as_object();
  FieldDef f;
  bool ok = true;
  const Fail fail = [&](std::string message) {
    errors->push_back({where, std::move(message)});
    ok = false;
  };
  for (const auto& kv : fo) {
    static const std::set<std::string_view> kKnown = {
        "name",      "type",  "required",  "unique",     "indexed",  "max",      "values",
        "max_bytes", "types", "max_files", "collection", "multiple", "on_delete"};
    if (!kKnown.count(kv.key())) fail("unknown member " + std::string(kv.key()));
  }
  const json::value* fname = fo.if_contains("name");
  if (fname == nullptr || !fname->is_string() || !ValidName(fname->as_string())) {
    fail("name must match [a-z][a-z0-9_]{0,62}");
  } else {
    f.name = fname->as_string();
    where = "fields." + f.name;
    for (auto r : kReserved) {
      if (f.name == r) fail("name is reserved");
    }
    if (!seen->insert(f.name).second) fail("name used twice");
  }
  const json::value* ftype = fo.if_contains("type");
  bool typed = false;
  if (ftype != nullptr && ftype->is_string()) {
    for (const auto& [tn, t] : kTypes) {
      if (ftype->as_string() == tn) {
        f.type = t;
        typed = true;
      }
    }
  }
  if (!typed) {
    fail(
        "type must be one of string, text, integer, number, boolean, datetime, email, enum, "
        "json, file, relation");
  }
  for (auto [key, flag] : {std::pair{"required", &f.required}, std::pair{"unique", &f.unique},
                           std::pair{"indexed", &f.indexed}}) {
    if (const json::value* b = fo.if_contains(key)) {
      if (!b->is_bool()) {
        fail(std::string(key) + " must be true or false");
      } else {
        *flag = b->as_bool();
      }
    }
  }
  if (typed && f.unique && f.type == FieldType::kJson) fail("a json field cannot be unique");
  if (typed && f.indexed && f.type == FieldType::kJson) fail("a json field cannot be indexed");
  if (typed && (f.unique || f.indexed) && f.type == FieldType::kFile) {
    fail("a file field cannot be unique or indexed");
  }
  ParseMax(fo, &f, fail);
  ParseFileOptions(fo, typed, &f, fail);
  ParseRelationOptions(fo, typed, &f, fail);
  ParseEnumValues(fo, typed, &f, fail);
  if (!ok) return std::nullopt;
  return f;
}

// "public": {"create": bool, "honeypot": <a name that is not a field>}.
// REQUIRES: schema->fields are parsed (the honeypot must not be one).
void ParsePublic(const json::value& pub, CollectionSchema* schema,
                 std::vector<FieldError>* errors) {
  const json::object* po = pub.if_object();
  const json::value* create = po ? po->if_contains("create") : nullptr;
  const json::value* honeypot = po ? po->if_contains("honeypot") : nullptr;
  bool ok = po != nullptr && create != nullptr && create->is_bool();
  for (const auto& kv : po ? *po : json::object()) {
    if (kv.key() != "create" && kv.key() != "honeypot") ok = false;
  }
  if (honeypot != nullptr && (!honeypot->is_string() || !ValidName(honeypot->as_string()) ||
                              schema->Find(honeypot->as_string()) != nullptr)) {
    ok = false;
  }
  if (!ok) {
    errors->push_back(
        {"public", "must be {\"create\": true|false, \"honeypot\": <a name that is not a field>}"});
    return;
  }
  schema->public_create = create->as_bool();
  if (honeypot != nullptr) schema->honeypot_field = honeypot->as_string();
}

}  // namespace

Result<CollectionSchema> ParseCollection(const json::value& value) {
  if (!value.is_object()) return InvalidArgument("a collection must be a JSON object");
  const json::object& o = value.as_object();
  std::vector<FieldError> errors;
  CollectionSchema schema;
  for (const auto& kv : o) {
    if (kv.key() != "name" && kv.key() != "fields" && kv.key() != "public") {
      errors.push_back({std::string(kv.key()), "unknown member"});
    }
  }
  const json::value* name = o.if_contains("name");
  if (name == nullptr || !name->is_string() || !ValidName(name->as_string())) {
    errors.push_back({"name", "must match [a-z][a-z0-9_]{0,62}"});
  } else {
    schema.name = name->as_string();
  }
  const json::value* fields = o.if_contains("fields");
  if (fields == nullptr || !fields->is_array()) {
    errors.push_back({"fields", "must be an array"});
  } else if (fields->as_array().size() > kMaxFields) {
    errors.push_back({"fields", "at most " + std::to_string(kMaxFields) + " fields"});
  } else {
    std::set<std::string> seen;
    size_t i = 0;
    for (const json::value& fv : fields->as_array()) {
      if (auto f = ParseField(fv, i++, &seen, &errors)) schema.fields.push_back(std::move(*f));
    }
  }
  if (const json::value* pub = o.if_contains("public")) ParsePublic(*pub, &schema, &errors);
  if (!errors.empty()) return InvalidArgument("invalid collection").WithFields(std::move(errors));
  return schema;
}

Result<json::object> ValidateRecord(const CollectionSchema& schema, const json::object& data) {
  std::vector<FieldError> errors;
  json::object out;
  for (const auto& kv : data) {
    const FieldDef* f = schema.Find(kv.key());
    if (f == nullptr) {
      errors.push_back({std::string(kv.key()), "unknown field"});
      continue;
    }
    json::value normalised;
    std::string problem = CheckValue(*f, kv.value(), &normalised);
    if (!problem.empty()) {
      errors.push_back({f->name, problem});
    } else {
      out[f->name] = std::move(normalised);
    }
  }
  for (const auto& f : schema.fields) {
    if (f.required && !data.contains(f.name)) errors.push_back({f.name, "is required"});
  }
  if (!errors.empty()) return InvalidArgument("invalid record").WithFields(std::move(errors));
  return out;
}

Result<json::value> ParseFieldValue(const FieldDef& f, std::string_view text) {
  auto bad = [&] {
    return InvalidArgument(f.name + ": not a valid " + std::string(FieldTypeName(f.type)));
  };
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kText:
    case FieldType::kEmail:
    case FieldType::kEnum:
      if (text.size() > kDefaultLongBytes) return bad();
      return json::value(json::string(text));
    case FieldType::kInteger: {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size()) return bad();
      return json::value(v);
    }
    case FieldType::kNumber: {
      double v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size() || !std::isfinite(v)) return bad();
      return json::value(v);
    }
    case FieldType::kBoolean:
      if (text == "true") return json::value(true);
      if (text == "false") return json::value(false);
      return bad();
    case FieldType::kDateTime: {
      auto us = ParseRfc3339(text);
      if (!us.ok()) return bad();
      return json::value(json::string(FormatRfc3339Micros(*us)));
    }
    case FieldType::kJson: return InvalidArgument(f.name + ": json fields cannot be compared");
    case FieldType::kFile: return InvalidArgument(f.name + ": file fields cannot be compared");
    case FieldType::kRelation:
      if (f.multiple) {
        return InvalidArgument(f.name +
                               ": a multiple relation cannot be compared; filter through it "
                               "(" +
                               f.name + ".id:eq:<id>)");
      }
      if (!ValidRecordId(text)) return bad();
      return json::value(json::string(text));
  }
  return bad();
}

}  // namespace silo::records
