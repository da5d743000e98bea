#include "records/query.h"

#include <boost/json.hpp>
#include <boost/url/parse_query.hpp>
#include <charconv>

#include "base/time_util.h"
#include "crypto/crypto.h"

namespace silo::records {
namespace json = boost::json;
namespace {

constexpr size_t kMaxInValues = 100;
constexpr size_t kMaxFilters = 16;

constexpr std::pair<std::string_view, FilterOp> kOps[] = {
    {"eq", FilterOp::kEq},   {"ne", FilterOp::kNe},        {"lt", FilterOp::kLt},
    {"lte", FilterOp::kLte}, {"gt", FilterOp::kGt},        {"gte", FilterOp::kGte},
    {"in", FilterOp::kIn},   {"prefix", FilterOp::kPrefix}};

// A name from the request as an error shows it: itself when it has the shape
// of a field name, else a placeholder (the answer echoes no arbitrary text).
std::string Shown(std::string_view name) {
  return ValidName(name) ? std::string(name) : std::string("(not a field name)");
}

// "a, b, c": the schema's field names, for errors that name the choices.
std::string FieldNames(const CollectionSchema& schema) {
  std::string out;
  for (const auto& f : schema.fields) out += f.name + ", ";
  return out + std::string(kSystemFieldNames);
}

// A declared field, else a system field (created_by, …), else nullptr.
const FieldDef* Lookup(const CollectionSchema& schema, std::string_view name) {
  const FieldDef* f = schema.Find(name);
  return f != nullptr ? f : SystemField(name);
}

// A filter value: a system date-time is compared as its stored microseconds.
Result<json::value> FilterValue(const FieldDef& f, std::string_view text) {
  if (!f.column.empty() && f.type == FieldType::kDateTime) {
    auto us = ParseRfc3339(text);
    if (!us.ok()) return InvalidArgument(f.name + ": must be an RFC 3339 date-time");
    return json::value(*us);
  }
  return ParseFieldValue(f, text);
}

// A relation field of `schema` named `name`, and its target's schema.
Result<std::pair<FieldDef, CollectionSchema>> Relation(const CollectionSchema& schema,
                                                       std::string_view name,
                                                       const SchemaLookup& related,
                                                       std::string_view use) {
  const FieldDef* f = schema.Find(name);
  if (f == nullptr || f->type != FieldType::kRelation) {
    return InvalidArgument(std::string(use) + ": " + Shown(name) + " is not a relation field of " +
                           schema.name);
  }
  if (!related)
    return InvalidArgument(std::string(use) + " through a relation is not available here");
  auto target = related(f->collection);
  if (!target.ok()) return Internal("the related collection " + f->collection + " is missing");
  return std::pair{*f, std::move(*target)};
}

}  // namespace

Result<Filter> ParseFilter(const CollectionSchema& schema, std::string_view text,
                           const SchemaLookup& related) {
  size_t c1 = text.find(':');
  size_t c2 = c1 == text.npos ? text.npos : text.find(':', c1 + 1);
  if (c2 == text.npos) return InvalidArgument("filter must be <field>:<op>:<value>");
  std::string_view name = text.substr(0, c1);
  std::string_view op = text.substr(c1 + 1, c2 - c1 - 1);
  std::string_view value = text.substr(c2 + 1);
  Filter filter;
  const CollectionSchema* fields_of = &schema;
  std::optional<CollectionSchema> target;
  if (size_t dot = name.find('.'); dot != name.npos) {
    auto rel = Relation(schema, name.substr(0, dot), related, "filter");
    if (!rel.ok()) return rel.status();
    filter.relation = std::move(rel->first);
    target = std::move(rel->second);
    fields_of = &*target;
    name = name.substr(dot + 1);
  }
  const FieldDef* f = Lookup(*fields_of, name);
  if (f == nullptr) {
    return InvalidArgument("filter on an unknown field: " + Shown(name) + " (fields of " +
                           fields_of->name + ": " + FieldNames(*fields_of) + ")");
  }
  filter.field = *f;
  bool known = false;
  for (const auto& [n, o] : kOps) {
    if (n == op) {
      filter.op = o;
      known = true;
    }
  }
  if (!known)
    return InvalidArgument("filter operator must be one of eq ne lt lte gt gte in prefix");
  if (f->type == FieldType::kJson || f->type == FieldType::kFile)
    return InvalidArgument(f->name + ": " + std::string(FieldTypeName(f->type)) +
                           " fields cannot be filtered");
  if (filter.relation && f->type == FieldType::kRelation) {
    return InvalidArgument("a filter follows one relation only");
  }
  if (filter.op == FilterOp::kPrefix &&
      !(f->type == FieldType::kString || f->type == FieldType::kText ||
        f->type == FieldType::kEmail || f->type == FieldType::kEnum)) {
    return InvalidArgument(f->name + ": prefix applies to text fields only");
  }
  std::vector<std::string_view> parts;
  if (filter.op == FilterOp::kIn) {
    size_t start = 0;
    while (true) {
      size_t comma = value.find(',', start);
      parts.push_back(value.substr(start, comma == value.npos ? value.npos : comma - start));
      if (comma == value.npos) break;
      start = comma + 1;
    }
    if (parts.size() > kMaxInValues) return InvalidArgument("at most 100 values in an in filter");
  } else {
    parts.push_back(value);
  }
  for (std::string_view p : parts) {
    auto v = FilterValue(*f, p);
    if (!v.ok()) return v.status();
    filter.values.push_back(std::move(*v));
  }
  return filter;
}

namespace {

std::string ToBase64Url(std::string s) {
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

}  // namespace

std::string EncodeCursor(const Cursor& cursor) {
  json::array a{cursor.sort_value, json::string(cursor.id)};
  return ToBase64Url(crypto::Base64Encode(json::serialize(a)));
}

Result<Cursor> DecodeCursor(std::string_view text) {
  auto bad = [] { return InvalidArgument("cursor is not one this server issued"); };
  if (text.size() > 4096) return bad();
  std::string b64(text);
  for (char& c : b64) {
    if (c == '+' || c == '/' || c == '=') return bad();
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  auto raw = crypto::Base64Decode(b64);
  if (!raw.ok()) return bad();
  boost::system::error_code ec;
  json::value v = json::parse(*raw, ec);
  if (ec || !v.is_array() || v.as_array().size() != 2 || !v.as_array()[1].is_string()) {
    return bad();
  }
  const json::value& sv = v.as_array()[0];
  if (!(sv.is_null() || sv.is_string() || sv.is_int64() || sv.is_uint64() || sv.is_double() ||
        sv.is_bool())) {
    return bad();
  }
  Cursor c{sv, std::string(v.as_array()[1].as_string())};
  if (!ValidRecordId(c.id)) return bad();
  return c;
}

Result<QueryParams> ParseQueryString(std::string_view query) {
  QueryParams out;
  if (query.empty()) return out;
  // Why the copy: Boost.URL 1.81's parse_query measures its input again with
  // strlen, reading past the end of a view that is not NUL-terminated.
  const std::string terminated(query);
  auto parsed = boost::urls::parse_query(terminated);
  if (!parsed) return InvalidArgument("malformed query string");
  // Percent-escapes decoded; '+' stays '+' (RFC 3986, not form encoding), so
  // "at=2026-01-01T00:00:00+01:00" means what it says.
  for (auto p : *parsed) out.emplace_back(p.key.decode(), p.value.decode());
  return out;
}

Result<std::vector<ExpandPath>> ParseExpand(const CollectionSchema& schema, std::string_view text,
                                            const SchemaLookup& related) {
  std::vector<ExpandPath> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view path = text.substr(start, comma == text.npos ? text.npos : comma - start);
    if (out.size() == kMaxExpandPaths) return InvalidArgument("at most 8 expand paths");
    size_t dot = path.find('.');
    if (dot != path.npos && path.find('.', dot + 1) != path.npos) {
      return InvalidArgument("expand: at most 2 levels (<relation>.<relation>)");
    }
    auto first = Relation(schema, path.substr(0, dot), related, "expand");
    if (!first.ok()) return first.status();
    ExpandPath p{std::move(first->first), std::nullopt};
    if (dot != path.npos) {
      auto second = Relation(first->second, path.substr(dot + 1), related, "expand");
      if (!second.ok()) return second.status();
      p.second = std::move(second->first);
    }
    out.push_back(std::move(p));
    if (comma == text.npos) break;
    start = comma + 1;
  }
  return out;
}

Result<ListQuery> ParseListQuery(const CollectionSchema& schema,
                                 const std::vector<std::pair<std::string, std::string>>& params,
                                 const SchemaLookup& related) {
  ListQuery q;
  bool seen_sort = false, seen_limit = false, seen_cursor = false, seen_at = false,
       seen_expand = false;
  auto once = [](bool* seen, const std::string& key) -> Status {
    if (*seen) return InvalidArgument(key + " given twice");
    *seen = true;
    return Status::Ok();
  };
  for (const auto& [key, value] : params) {
    if (key == "filter") {
      if (q.filters.size() == kMaxFilters) return InvalidArgument("at most 16 filters");
      auto f = ParseFilter(schema, value, related);
      if (!f.ok()) return f.status();
      q.filters.push_back(std::move(*f));
    } else if (key == "sort") {
      if (Status s = once(&seen_sort, key); !s.ok()) return s;
      std::string_view name = value;
      if (!name.empty() && name[0] == '-') {
        q.descending = true;
        name.remove_prefix(1);
      }
      if (name == "id") continue;
      const FieldDef* f = Lookup(schema, name);
      if (f == nullptr) {
        return InvalidArgument("sort on an unknown field: " + Shown(name) +
                               " (fields: " + FieldNames(schema) + ")");
      }
      if (f->type == FieldType::kJson || f->type == FieldType::kFile ||
          (f->type == FieldType::kRelation && f->multiple))
        return InvalidArgument(f->name + ": " + std::string(FieldTypeName(f->type)) +
                               " fields cannot be sorted" + (f->multiple ? " (multiple)" : ""));
      q.sort = *f;
    } else if (key == "limit") {
      if (Status s = once(&seen_limit, key); !s.ok()) return s;
      int n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size() || n < 1 || n > kMaxPageSize) {
        return InvalidArgument("limit must be an integer from 1 to 200");
      }
      q.limit = n;
    } else if (key == "cursor") {
      if (Status s = once(&seen_cursor, key); !s.ok()) return s;
      auto c = DecodeCursor(value);
      if (!c.ok()) return c.status();
      q.after = std::move(*c);
    } else if (key == "at") {
      if (Status s = once(&seen_at, key); !s.ok()) return s;
      auto us = ParseRfc3339(value);
      if (!us.ok()) return InvalidArgument("at must be an RFC 3339 date-time");
      q.at_us = *us;
    } else if (key == "expand") {
      if (Status s = once(&seen_expand, key); !s.ok()) return s;
      auto paths = ParseExpand(schema, value, related);
      if (!paths.ok()) return paths.status();
      q.expand = std::move(*paths);
    } else {
      return InvalidArgument("unknown query parameter: " + Shown(key) +
                             " (allowed: filter, sort, limit, cursor, at, expand)");
    }
  }
  return q;
}

}  // namespace silo::records
