#include "records/rules.h"

#include <boost/json.hpp>

#include "base/time_util.h"
#include "records/tenant_store.h"

namespace silo::records {
namespace json = boost::json;
namespace {

// A value as SQLite sees it in a comparison: NULL, a number or text.
struct SqlValue {
  enum Kind { kNull, kInteger, kReal, kText } kind = kNull;
  int64_t i = 0;
  long double r = 0;  // 64 mantissa bits: every int64 exactly
  std::string_view text;
};

// A JSON value as json_extract() yields it, or as BindJson() binds it.
SqlValue FromJson(const json::value* v) {
  SqlValue out;
  if (v == nullptr) return out;
  switch (v->kind()) {
    case json::kind::string:
      out.kind = SqlValue::kText;
      out.text = v->as_string();
      break;
    case json::kind::int64:
      out.kind = SqlValue::kInteger;
      out.i = v->as_int64();
      break;
    case json::kind::bool_:
      out.kind = SqlValue::kInteger;
      out.i = v->as_bool() ? 1 : 0;
      break;
    case json::kind::uint64:
      out.kind = SqlValue::kReal;
      out.r = static_cast<long double>(static_cast<double>(v->as_uint64()));
      break;
    case json::kind::double_:
      out.kind = SqlValue::kReal;
      out.r = v->as_double();
      break;
    default: break;  // null; arrays and objects are not compared
  }
  return out;
}

// <0, 0, >0 as SQLite orders two non-NULL values (numbers before text).
int Compare(const SqlValue& a, const SqlValue& b) {
  const bool a_text = a.kind == SqlValue::kText, b_text = b.kind == SqlValue::kText;
  if (a_text != b_text) return a_text ? 1 : -1;
  if (a_text) return a.text.compare(b.text) < 0 ? -1 : a.text == b.text ? 0 : 1;
  if (a.kind == SqlValue::kInteger && b.kind == SqlValue::kInteger) {
    return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
  }
  long double x = a.kind == SqlValue::kInteger ? a.i : a.r;
  long double y = b.kind == SqlValue::kInteger ? b.i : b.r;
  return x < y ? -1 : x > y ? 1 : 0;
}

bool MatchesOne(const Filter& f, const Record& r) {
  json::value holder;
  const json::value* v = nullptr;
  const std::string& column = f.field.column;
  if (column.empty()) {
    v = r.data.if_contains(f.field.name);
  } else {
    if (column == "id") holder = json::string(r.id);
    if (column == "created_by") holder = json::string(r.created_by);
    if (column == "updated_by") holder = json::string(r.updated_by);
    if (column == "created_at_us") holder = r.created_at_us;
    if (column == "updated_at_us") holder = r.updated_at_us;
    v = &holder;
  }
  const SqlValue x = FromJson(v);
  if (x.kind == SqlValue::kNull) return false;
  auto cmp = [&](const json::value& value, auto pred) {
    SqlValue y = FromJson(&value);
    return y.kind != SqlValue::kNull && pred(Compare(x, y));
  };
  switch (f.op) {
    case FilterOp::kEq: return cmp(f.values[0], [](int c) { return c == 0; });
    case FilterOp::kNe: return cmp(f.values[0], [](int c) { return c != 0; });
    case FilterOp::kLt: return cmp(f.values[0], [](int c) { return c < 0; });
    case FilterOp::kLte: return cmp(f.values[0], [](int c) { return c <= 0; });
    case FilterOp::kGt: return cmp(f.values[0], [](int c) { return c > 0; });
    case FilterOp::kGte: return cmp(f.values[0], [](int c) { return c >= 0; });
    case FilterOp::kIn:
      for (const auto& value : f.values) {
        if (cmp(value, [](int c) { return c == 0; })) return true;
      }
      return false;
    case FilterOp::kPrefix: {
      // substr(x, 1, length(p)) = p: x's first characters are p's.
      SqlValue p = FromJson(&f.values[0]);
      if (p.kind != SqlValue::kText || x.kind != SqlValue::kText) return false;
      return x.text.substr(0, p.text.size()) == p.text;
    }
  }
  return false;
}

// The filter text with a variable in its value replaced; the field's kind
// decides the form (@me on created_by is the actor "user:<id>").
Result<std::string> Substitute(const CollectionSchema& schema, std::string_view text,
                               const Variables& vars, bool* matches_nothing) {
  size_t c1 = text.find(':');
  size_t c2 = c1 == text.npos ? text.npos : text.find(':', c1 + 1);
  if (c2 == text.npos) return std::string(text);  // ParseFilter names the problem
  std::string_view name = text.substr(0, c1);
  if (name.find('.') != name.npos) {
    return InvalidArgument("a condition cannot follow a relation: " +
                           std::string(ValidName(name.substr(0, name.find('.')))
                                           ? name.substr(0, name.find('.'))
                                           : "(not a field name)"));
  }
  const FieldDef* f = schema.Find(name);
  if (f == nullptr) f = SystemField(name);
  if (f == nullptr) return std::string(text);
  std::string out(text.substr(0, c2 + 1));
  std::string_view values = text.substr(c2 + 1);
  bool first = true;
  while (true) {
    size_t comma = values.find(',');
    std::string_view v = values.substr(0, comma);
    if (!first) out += ',';
    first = false;
    if (!v.empty() && v[0] == '@') {
      if (v == "@me") {
        bool text_field = f->type == FieldType::kString || f->type == FieldType::kEmail ||
                          f->type == FieldType::kEnum || f->type == FieldType::kText ||
                          (f->type == FieldType::kRelation && !f->multiple);
        if (!text_field) return InvalidArgument(f->name + ": @me applies to text fields");
        if (vars.me.empty()) *matches_nothing = true;
        out +=
            (f->column == "created_by" || f->column == "updated_by") ? "user:" + vars.me : vars.me;
      } else if (v == "@now") {
        if (f->type != FieldType::kDateTime) {
          return InvalidArgument(f->name + ": @now applies to date-time fields");
        }
        out += FormatRfc3339Micros(vars.now_us);
      } else {
        return InvalidArgument("unknown variable " +
                               std::string(ValidName(v.substr(1)) ? v : "@(?)") +
                               " (variables: @me, @now)");
      }
    } else {
      out += v;
    }
    if (comma == values.npos) break;
    values = values.substr(comma + 1);
  }
  return out;
}

}  // namespace

bool RecordRules::Unrestricted() const {
  for (const Rule& r : rules) {
    if (r.where.empty() && !r.fields) return true;
  }
  return false;
}

bool RecordRules::AllRows() const {
  for (const Rule& r : rules) {
    if (r.where.empty()) return true;
  }
  return false;
}

bool RecordRules::Admits(const Record& record) const {
  for (const Rule& r : rules) {
    if (Matches(r.where, record)) return true;
  }
  return false;
}

FieldSet RecordRules::FieldsFor(const Record& record) const {
  std::set<std::string> out;
  for (const Rule& r : rules) {
    if (!Matches(r.where, record)) continue;
    if (!r.fields) return std::nullopt;
    out.insert(r.fields->begin(), r.fields->end());
  }
  return out;
}

FieldSet RecordRules::FieldsOfEveryRule() const {
  FieldSet out;  // every field until a rule narrows it
  for (const Rule& r : rules) {
    if (!r.fields) continue;
    if (!out) {
      out = *r.fields;
      continue;
    }
    std::erase_if(*out, [&](const std::string& f) { return !r.fields->count(f); });
  }
  return out;
}

RecordRules AllowAll() { return RecordRules{{Rule{}}}; }

Result<Rule> ParseRule(const CollectionSchema& schema, const std::vector<std::string>& where,
                       const std::vector<std::string>& fields, const Variables& vars) {
  Rule rule;
  for (const std::string& text : where) {
    bool nothing = false;
    auto substituted = Substitute(schema, text, vars, &nothing);
    if (!substituted.ok()) return substituted.status();
    auto f = ParseFilter(schema, *substituted, nullptr);
    if (!f.ok()) return f.status();
    if (nothing) {
      f->op = FilterOp::kIn;  // "IN ()": no record
      f->values.clear();
    }
    rule.where.push_back(std::move(*f));
  }
  if (!fields.empty()) {
    rule.fields.emplace();
    for (const std::string& name : fields) {
      if (schema.Find(name) == nullptr) {
        return InvalidArgument("fields: " + std::string(ValidName(name) ? name : "(not a name)") +
                               " is not a field of " + schema.name);
      }
      rule.fields->insert(name);
    }
  }
  return rule;
}

bool Matches(const std::vector<Filter>& where, const Record& r) {
  for (const Filter& f : where) {
    if (!MatchesOne(f, r)) return false;
  }
  return true;
}

void KeepFields(const FieldSet& fields, json::object* data) {
  if (!fields) return;
  for (auto it = data->begin(); it != data->end();) {
    if (fields->count(std::string(it->key()))) {
      ++it;
    } else {
      it = data->erase(it);
    }
  }
}

}  // namespace silo::records
