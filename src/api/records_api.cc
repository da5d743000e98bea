// Collections, records, history, the change feed and the audit log under
// the tenant prefix. Handlers parse and answer; the tenant store (ctx.store,
// already bound to the request's tenant) does the work.
#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <map>
#include <set>

#include "api/handlers.h"
#include "api/json_strict.h"
#include "api/json_text.h"
#include "api/routes.h"
#include "auth/api_tokens.h"
#include "auth/identity.h"
#include "base/time_util.h"
#include "checkpoint/book.h"
#include "records/query.h"
#include "records/record_json.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;
using Params = std::vector<std::pair<std::string, std::string>>;

constexpr int kMaxBodyDepth = 20;  // a record's json field may nest 16 levels

Result<Params> QueryParams(const http::Request& req) {
  return records::ParseQueryString(req.query);
}

// The one value of `key`, if given. InvalidArgument when given twice.
Result<std::optional<std::string>> Single(const Params& params, std::string_view key) {
  std::optional<std::string> value;
  for (const auto& [k, v] : params) {
    if (k != key) continue;
    if (value) return InvalidArgument(std::string(key) + " given twice");
    value = v;
  }
  return value;
}

// Only the listed parameters are accepted.
Status OnlyParams(const Params& params, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : params) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return InvalidArgument("unknown query parameter: " +
                             (records::ValidName(k) ? k : std::string("(not a parameter name)")) +
                             " (allowed: " + (names.empty() ? "none" : names) + ")");
    }
  }
  return Status::Ok();
}

Result<std::optional<int64_t>> AtParam(const Params& params) {
  auto at = Single(params, "at");
  if (!at.ok()) return at.status();
  if (!*at) return std::optional<int64_t>();
  auto us = ParseRfc3339(**at);
  if (!us.ok()) return InvalidArgument("at must be an RFC 3339 date-time");
  return std::optional<int64_t>(*us);
}

// If-Match: "<version>". InvalidArgument for any other form.
Result<std::optional<int64_t>> IfMatch(const http::Request& req) {
  auto h = req.Header("if-match");
  if (!h) return std::optional<int64_t>();
  std::string_view v = *h;
  if (v.size() < 3 || v.size() > 21 || v.front() != '"' || v.back() != '"') {
    return InvalidArgument("If-Match must be \"<version>\"");
  }
  int64_t n = 0;
  for (char c : v.substr(1, v.size() - 2)) {
    if (c < '0' || c > '9') return InvalidArgument("If-Match must be \"<version>\"");
    n = n * 10 + (c - '0');
  }
  return std::optional<int64_t>(n);
}

json::object CollectionJson(const records::Collection& c) {
  json::object o = c.schema.ToJson();
  o["version"] = c.version;
  o["created_at"] = FormatRfc3339Micros(c.created_at_us);
  o["updated_at"] = FormatRfc3339Micros(c.updated_at_us);
  return o;
}

// Display names of the actors of a page of events, audit entries or record
// history (people read names, not ids): a user's email for a caller who may
// read users, a token's name for one who may read tokens, "operator" for the
// operator; null otherwise, and for an actor that no longer exists. Looked
// up once per actor per page.
class ActorNames {
 public:
  explicit ActorNames(RequestContext& ctx)
      : ctx_(ctx),
        users_(rbac::Grants(ctx.permissions, "users.read")),
        tokens_(rbac::Grants(ctx.permissions, "tokens.read")) {}

  json::value Of(const std::string& actor) {
    auto [it, fresh] = names_.try_emplace(actor, nullptr);
    if (fresh) it->second = Find(actor);
    return it->second;
  }

 private:
  json::value Find(const std::string& actor) {
    const size_t colon = actor.find(':');
    const std::string kind = actor.substr(0, colon);
    const std::string id = colon == std::string::npos ? "" : actor.substr(colon + 1);
    if (kind == "operator") return json::string("operator");
    if (kind == "user" && users_ && ctx_.identity != nullptr) {
      auto u = ctx_.identity->GetUser(id);
      if (u.ok()) return json::string(u->email);
    }
    if (kind == "token" && tokens_ && ctx_.tokens != nullptr) {
      if (!token_list_) {
        auto listed = ctx_.tokens->List(std::nullopt);
        token_list_ = listed.ok() ? std::move(*listed) : std::vector<auth::TokenInfo>{};
      }
      for (const auto& t : *token_list_) {
        if (t.id == id) return json::string(t.name);
      }
    }
    return nullptr;
  }

  RequestContext& ctx_;
  const bool users_;
  const bool tokens_;
  std::map<std::string, json::value> names_;
  std::optional<std::vector<auth::TokenInfo>> token_list_;
};

json::object EventJson(const events::StoredEvent& e, ActorNames& names) {
  json::object o;
  o["seq"] = e.seq;
  o["at"] = FormatRfc3339Micros(e.at_us);
  o["actor"] = e.actor;
  o["actor_name"] = names.Of(e.actor);
  o["type"] = e.type;
  o["subject"] = json::object{{"kind", e.subject_kind}, {"id", e.subject_id}};
  if (e.body) {
    boost::system::error_code ec;
    json::value body = json::parse(*e.body, ec);
    if (!ec && body.is_object()) {
      if (auto* rid = body.as_object().if_contains("request_id")) o["request_id"] = *rid;
      if (auto* changes = body.as_object().if_contains("changes")) o["changes"] = *changes;
    }
  } else {
    o["changes"] = nullptr;  // purged
  }
  o["hash"] = e.hash;
  return o;
}

// A decimal integer in [min, max], nothing else.
std::optional<int64_t> ParseInt(std::string_view text, int64_t min, int64_t max) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p != text.data() + text.size() || n < min || n > max) {
    return std::nullopt;
  }
  return n;
}

http::Response BadIfMatch(const RequestContext& ctx, const Status& status) {
  return http::Problem(400, status.message(), ctx.request.request_id);
}

http::Response WithEtag(http::Response r, int64_t version) {
  r.headers.emplace_back("ETag", "\"" + std::to_string(version) + "\"");
  return r;
}

std::string Name(const RequestContext& ctx) { return ctx.params.at("name"); }

// ErrorResponse, and a refusal by the caller's record rules (a write outside
// them, a filter on a field they hide) is an access.denied audit entry like
// a route's refusal. What the rules hide answers 404 and is not audited: it
// looks like, and is handled as, a record that is not there.
http::Response RecordError(RequestContext& ctx, const Status& status) {
  if (status.code() == StatusCode::kPermissionDenied && ctx.identity != nullptr) {
    const auto& req = ctx.request;
    (void)ctx.identity->Audit(OriginOf(ctx), "access.denied", "route", req.method + " " + req.path,
                              {{"reason", std::string(status.message())}});
  }
  return ErrorResponse(status, ctx.request);
}

// The schemas of related collections, looked up when a filter or an expand
// path names a relation.
records::SchemaLookup Related(const RequestContext& ctx) {
  return [store = ctx.store](const std::string& name) -> Result<records::CollectionSchema> {
    auto c = store->GetCollection(name);
    if (!c.ok()) return c.status();
    return std::move(c->schema);
  };
}

// What one relation field of some records expands to: the related records
// the caller may read, as JSON by id, each with its own expansions.
using Expanded = std::map<std::string, json::object>;

// The value of `field` in an "expand" object: the related record (a
// multiple field: an array of them), or the id alone where the caller may
// not read it.
json::value ExpandedValue(const records::FieldDef& field, const records::Record& r,
                          const Expanded& e) {
  auto one = [&](const std::string& id) -> json::value {
    auto it = e.find(id);
    return it == e.end() ? json::value(json::string(id)) : json::value(it->second);
  };
  const json::value* v = r.data.if_contains(field.name);
  if (v == nullptr) return nullptr;
  if (!field.multiple) return one(std::string(v->as_string()));
  json::array out;
  for (const auto& id : records::RelatedIds(v)) out.push_back(one(id));
  return out;
}

// Fetches the records that `field` names in `records`, as of `at`: those the
// caller's read rules admit, with the fields they give (the store leaves out
// the rest, whose ids stay ids). `next` are the second-level fields to
// expand in them.
Result<Expanded> FetchRelated(const RequestContext& ctx, const records::FieldDef& field,
                              const std::vector<const records::Record*>& records,
                              const std::vector<records::FieldDef>& next,
                              std::optional<int64_t> at) {
  Expanded out;
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (const records::Record* r : records) {
    for (auto& id : records::RelatedIds(r->data.if_contains(field.name))) {
      if (seen.insert(id).second) ids.push_back(std::move(id));
    }
  }
  if (ids.empty()) return out;
  auto related = ctx.store->GetRecords(field.collection, ids, at);
  if (!related.ok()) return related.status();
  std::vector<const records::Record*> level;
  for (const auto& r : *related) level.push_back(&r);
  std::vector<std::pair<const records::FieldDef*, Expanded>> deeper;
  for (const auto& f : next) {
    auto e = FetchRelated(ctx, f, level, {}, at);
    if (!e.ok()) return e.status();
    deeper.emplace_back(&f, std::move(*e));
  }
  for (const auto& r : *related) {
    json::object o = records::RecordJson(r);
    if (!deeper.empty()) {
      json::object expand;
      for (const auto& [f, e] : deeper) expand[f->name] = ExpandedValue(*f, r, e);
      o["expand"] = std::move(expand);
    }
    out.emplace(r.id, std::move(o));
  }
  return out;
}

// Adds "expand" to each of `items` (the JSON of `records`, in order).
Status Expand(const RequestContext& ctx, const std::vector<records::ExpandPath>& paths,
              const std::vector<const records::Record*>& records, std::optional<int64_t> at,
              std::vector<json::object*> items) {
  std::vector<std::pair<records::FieldDef, std::vector<records::FieldDef>>> firsts;
  for (const auto& p : paths) {
    auto it = std::find_if(firsts.begin(), firsts.end(),
                           [&](const auto& f) { return f.first.name == p.first.name; });
    if (it == firsts.end()) it = firsts.insert(firsts.end(), {p.first, {}});
    if (p.second && std::none_of(it->second.begin(), it->second.end(),
                                 [&](const auto& f) { return f.name == p.second->name; })) {
      it->second.push_back(*p.second);
    }
  }
  std::vector<json::object> expands(records.size());
  for (const auto& [field, next] : firsts) {
    auto e = FetchRelated(ctx, field, records, next, at);
    if (!e.ok()) return e.status();
    for (size_t i = 0; i < records.size(); ++i) {
      expands[i][field.name] = ExpandedValue(field, *records[i], *e);
    }
  }
  for (size_t i = 0; i < records.size(); ++i) (*items[i])["expand"] = std::move(expands[i]);
  return Status::Ok();
}

}  // namespace

// The body as a JSON object; on failure *error holds the answer: 415 for
// another content type, 400 for malformed JSON (syntax, UTF-8, nesting).
std::optional<json::object> JsonObjectBody(const http::Request& req, http::Response* error) {
  auto ct = req.Header("content-type");
  if (!ct || ct->substr(0, ct->find(';')) != "application/json") {
    *error = http::Problem(415, "Content-Type must be application/json", req.request_id);
    return std::nullopt;
  }
  std::string why;
  auto v = ParseJsonObject(req.body, &why);
  if (!v) {
    *error = http::Problem(400, why, req.request_id);
    return std::nullopt;
  }
  return v;
}

std::optional<json::object> ParseJsonObject(std::string_view text, std::string* why) {
  json::parse_options opts;
  opts.max_depth = kMaxBodyDepth;
  json::stream_parser parser({}, opts);
  boost::system::error_code ec;
  // write_some stops at the first byte it cannot take: that offset is what
  // a client needs to find its mistake.
  size_t used = parser.write_some(text.data(), text.size(), ec);
  if (!ec && used < text.size()) ec = json::error::extra_data;
  if (!ec) parser.finish(ec);
  if (ec) {
    *why = "body is not valid JSON (UTF-8, nesting at most " + std::to_string(kMaxBodyDepth) +
           "): " + ec.message() + " at byte " + std::to_string(used);
    return std::nullopt;
  }
  json::value v = parser.release();
  if (!v.is_object()) {
    *why = "body must be a JSON object";
    return std::nullopt;
  }
  if (std::string strict = StrictJsonProblem(text); !strict.empty()) {
    *why = "body refused: " + strict;
    return std::nullopt;
  }
  return std::move(v.as_object());
}

http::Response ListCollections(Services& /*s*/, RequestContext& ctx) {
  auto list = ctx.store->ListCollections();
  if (!list.ok()) return RecordError(ctx, list.status());
  json::array items;
  for (const auto& c : *list) items.push_back(CollectionJson(c));
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response CreateCollection(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto schema = records::ParseCollection(*body);
  if (!schema.ok()) return RecordError(ctx, schema.status());
  auto c = ctx.store->CreateCollection(OriginOf(ctx), *schema);
  if (!c.ok()) return RecordError(ctx, c.status());
  return http::Json(201, JsonText(CollectionJson(*c)));
}

http::Response GetCollection(Services& /*s*/, RequestContext& ctx) {
  auto c = ctx.store->GetCollection(Name(ctx));
  if (!c.ok()) return RecordError(ctx, c.status());
  return http::Json(200, JsonText(CollectionJson(*c)));
}

http::Response UpdateCollection(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  // The name is the path's; a body may repeat it but not change it.
  if (auto* n = body->if_contains("name"); n != nullptr && *n != json::value(Name(ctx))) {
    return ErrorResponse(
        InvalidArgument("invalid collection").WithFields({{"name", "cannot be changed"}}),
        ctx.request);
  }
  (*body)["name"] = Name(ctx);
  auto schema = records::ParseCollection(*body);
  if (!schema.ok()) return RecordError(ctx, schema.status());
  auto c = ctx.store->UpdateCollection(OriginOf(ctx), *schema);
  if (!c.ok()) {
    http::Response r = RecordError(ctx, c.status());
    if (c.status().code() == StatusCode::kFailedPrecondition && !c.status().fields().empty()) {
      json::object problem = json::parse(r.body).as_object();
      json::array ids;
      Status status = c.status();
      for (const auto& f : status.fields()) ids.push_back(json::string(f.field));
      problem["offending_ids"] = std::move(ids);
      r.body = JsonText(problem);
    }
    return r;
  }
  return http::Json(200, JsonText(CollectionJson(*c)));
}

http::Response DeleteCollection(Services& /*s*/, RequestContext& ctx) {
  Status s = ctx.store->DeleteCollection(OriginOf(ctx), Name(ctx));
  if (!s.ok()) return RecordError(ctx, s);
  return http::Json(204, "");
}

http::Response ListRecords(Services& /*s*/, RequestContext& ctx) {
  auto params = QueryParams(ctx.request);
  if (!params.ok()) return RecordError(ctx, params.status());
  auto c = ctx.store->GetCollection(Name(ctx));
  if (!c.ok()) return RecordError(ctx, c.status());
  auto q = records::ParseListQuery(c->schema, *params, Related(ctx));
  if (!q.ok()) return RecordError(ctx, q.status());
  auto page = ctx.store->ListRecords(Name(ctx), *q);
  if (!page.ok()) return RecordError(ctx, page.status());
  json::array items;
  for (const auto& r : page->records) items.push_back(records::RecordJson(r));
  if (!q->expand.empty()) {
    std::vector<const records::Record*> recs;
    std::vector<json::object*> objs;
    for (size_t i = 0; i < page->records.size(); ++i) {
      recs.push_back(&page->records[i]);
      objs.push_back(&items[i].as_object());
    }
    if (Status s = Expand(ctx, q->expand, recs, q->at_us, objs); !s.ok()) {
      return RecordError(ctx, s);
    }
  }
  json::object o{{"items", std::move(items)}};
  o["next_cursor"] = page->next_cursor ? json::value(*page->next_cursor) : json::value(nullptr);
  return http::Json(200, JsonText(o));
}

http::Response CreateRecord(Services& /*s*/, RequestContext& ctx) {
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto r = ctx.store->CreateRecord(OriginOf(ctx), Name(ctx), *body);
  if (!r.ok()) return RecordError(ctx, r.status());
  return WithEtag(http::Json(201, JsonText(records::RecordJson(*r))), r->version);
}

http::Response GetRecord(Services& /*s*/, RequestContext& ctx) {
  auto params = QueryParams(ctx.request);
  if (!params.ok()) return RecordError(ctx, params.status());
  if (Status s = OnlyParams(*params, {"at", "expand"}); !s.ok()) {
    return RecordError(ctx, s);
  }
  auto at = AtParam(*params);
  if (!at.ok()) return RecordError(ctx, at.status());
  auto expand = Single(*params, "expand");
  if (!expand.ok()) return RecordError(ctx, expand.status());
  std::vector<records::ExpandPath> paths;
  if (*expand) {
    auto c = ctx.store->GetCollection(Name(ctx));
    if (!c.ok()) return RecordError(ctx, c.status());
    auto parsed = records::ParseExpand(c->schema, **expand, Related(ctx));
    if (!parsed.ok()) return RecordError(ctx, parsed.status());
    paths = std::move(*parsed);
  }
  auto r = ctx.store->GetRecord(Name(ctx), ctx.params.at("id"), *at);
  if (!r.ok()) return RecordError(ctx, r.status());
  json::object o = records::RecordJson(*r);
  if (!paths.empty()) {
    if (Status s = Expand(ctx, paths, {&*r}, *at, {&o}); !s.ok()) {
      return RecordError(ctx, s);
    }
  }
  return WithEtag(http::Json(200, JsonText(o)), r->version);
}

http::Response UpdateRecord(Services& /*s*/, RequestContext& ctx) {
  auto if_match = IfMatch(ctx.request);
  if (!if_match.ok()) return BadIfMatch(ctx, if_match.status());
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  auto r = ctx.store->UpdateRecord(OriginOf(ctx), Name(ctx), ctx.params.at("id"), *body, *if_match);
  if (!r.ok()) return RecordError(ctx, r.status());
  return WithEtag(http::Json(200, JsonText(records::RecordJson(*r))), r->version);
}

http::Response DeleteRecord(Services& /*s*/, RequestContext& ctx) {
  auto if_match = IfMatch(ctx.request);
  if (!if_match.ok()) return BadIfMatch(ctx, if_match.status());
  Status s = ctx.store->DeleteRecord(OriginOf(ctx), Name(ctx), ctx.params.at("id"), *if_match);
  if (!s.ok()) return RecordError(ctx, s);
  return http::Json(204, "");
}

// The whole collection as JSON lines, every field of every live record (as
// of ?at=), for a holder of records.<name>.export: a grant without conditions
// or fields (rbac.h). Each export takes one from the credential's hourly
// budget (ASVS 11.1.4) and is audited before any record leaves, with how
// many; a failed audit write sends nothing.
http::Response ExportRecords(Services& s, RequestContext& ctx) {
  constexpr size_t kMaxExportBytes = 256u << 20;  // held in memory: answers are not streamed
  const auto& req = ctx.request;
  auto params = QueryParams(req);
  if (!params.ok()) return RecordError(ctx, params.status());
  if (Status st = OnlyParams(*params, {"at"}); !st.ok()) return RecordError(ctx, st);
  auto at = AtParam(*params);
  if (!at.ok()) return RecordError(ctx, at.status());
  RateVerdict v = TakeRate(s, kExportPerCredential,
                           "cred:" + ctx.tenant->id + ":" + ctx.actor.kind + ":" + ctx.actor.id,
                           NowMicros(), ctx.client);
  if (!v.allowed) return TooManyAttempts(req, v);
  std::string lines;
  int64_t count = 0;
  Status st = ctx.store->ExportCollection(Name(ctx), *at, [&](const records::Record& r) {
    lines += JsonText(records::RecordJson(r));
    lines += '\n';
    ++count;
    if (lines.size() > kMaxExportBytes) {
      return FailedPrecondition(
          "the export is larger than 256 MiB; page through GET "
          "/api/collections/{name}/records instead");
    }
    return Status::Ok();
  });
  if (!st.ok()) return RecordError(ctx, st);
  json::object details{{"collection", Name(ctx)}, {"records", count}};
  if (*at) details["at"] = FormatRfc3339Micros(**at);
  if (Status a =
          ctx.identity->Audit(OriginOf(ctx), "records.exported", "collection", Name(ctx), details);
      !a.ok()) {
    return ErrorResponse(a, req);
  }
  http::Response r = http::Json(200, std::move(lines));
  r.content_type = "application/x-ndjson";
  r.headers.emplace_back("Content-Disposition",
                         "attachment; filename=\"" + Name(ctx) + ".ndjson\"");
  return r;
}

http::Response RecordHistory(Services& /*s*/, RequestContext& ctx) {
  auto h = ctx.store->History(Name(ctx), ctx.params.at("id"));
  if (!h.ok()) return RecordError(ctx, h.status());
  json::array items;
  ActorNames names(ctx);
  for (const auto& e : *h) {
    const std::string actor = e.actor.kind + ":" + e.actor.id;
    items.push_back(json::object{{"version", e.version},
                                 {"seq", e.seq},
                                 {"at", FormatRfc3339Micros(e.at_us)},
                                 {"type", e.type},
                                 {"actor", actor},
                                 {"actor_name", names.Of(actor)},
                                 {"request_id", e.request_id},
                                 {"changes", e.changes}});
  }
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response RevertRecord(Services& /*s*/, RequestContext& ctx) {
  auto if_match = IfMatch(ctx.request);
  if (!if_match.ok()) return BadIfMatch(ctx, if_match.status());
  http::Response error;
  auto body = JsonObjectBody(ctx.request, &error);
  if (!body) return error;
  records::RevertTarget target;
  const json::value* version = body->if_contains("version");
  const json::value* at = body->if_contains("at");
  if (body->size() != 1 || (version == nullptr && at == nullptr)) {
    return ErrorResponse(InvalidArgument("body must be {\"version\": n} or {\"at\": time}"),
                         ctx.request);
  }
  if (version != nullptr) {
    if (!version->is_int64() || version->as_int64() < 1) {
      return ErrorResponse(
          InvalidArgument("invalid revert").WithFields({{"version", "must be a positive integer"}}),
          ctx.request);
    }
    target.version = version->as_int64();
  } else {
    auto us =
        at->is_string() ? ParseRfc3339(at->as_string()) : Result<int64_t>(InvalidArgument(""));
    if (!us.ok()) {
      return ErrorResponse(
          InvalidArgument("invalid revert").WithFields({{"at", "must be an RFC 3339 date-time"}}),
          ctx.request);
    }
    target.at_us = *us;
  }
  auto r =
      ctx.store->RevertRecord(OriginOf(ctx), Name(ctx), ctx.params.at("id"), target, *if_match);
  if (!r.ok()) return RecordError(ctx, r.status());
  return WithEtag(http::Json(200, JsonText(records::RecordJson(*r))), r->version);
}

http::Response ListEvents(Services& /*s*/, RequestContext& ctx) {
  auto params = QueryParams(ctx.request);
  if (!params.ok()) return RecordError(ctx, params.status());
  if (Status s = OnlyParams(*params, {"after", "limit"}); !s.ok()) return RecordError(ctx, s);
  std::optional<int64_t> after = 0, limit = 100;
  for (const auto& [k, v] : *params) {
    (k == "after" ? after : limit) =
        ParseInt(v, k == "after" ? 0 : 1, k == "after" ? INT64_MAX : 1000);
    if (!(k == "after" ? after : limit)) {
      return ErrorResponse(InvalidArgument("after must be a sequence number, limit 1 to 1000"),
                           ctx.request);
    }
  }
  auto evs = ctx.store->Events(*after, static_cast<int>(*limit));
  if (!evs.ok()) return RecordError(ctx, evs.status());
  json::array items;
  ActorNames names(ctx);
  for (const auto& e : *evs) items.push_back(EventJson(e, names));
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response ListAudit(Services& /*s*/, RequestContext& ctx) {
  auto params = QueryParams(ctx.request);
  if (!params.ok()) return RecordError(ctx, params.status());
  if (Status s = OnlyParams(*params, {"actor", "type", "from", "to", "after", "limit"}); !s.ok()) {
    return RecordError(ctx, s);
  }
  records::AuditQuery q;
  for (const auto& [k, v] : *params) {
    if (k == "actor") q.actor = v;
    if (k == "type") q.type = v;
    if (k == "from" || k == "to") {
      auto us = ParseRfc3339(v);
      if (!us.ok()) return RecordError(ctx, InvalidArgument(k + " must be an RFC 3339 date-time"));
      (k == "from" ? q.from_us : q.to_us) = *us;
    }
    if (k == "after" || k == "limit") {
      auto n = ParseInt(v, k == "after" ? 0 : 1, k == "after" ? INT64_MAX : 1000);
      if (!n) return RecordError(ctx, InvalidArgument(k + " is out of range"));
      if (k == "after") {
        q.after = *n;
      } else {
        q.limit = static_cast<int>(*n);
      }
    }
  }
  auto entries = ctx.store->QueryAudit(q);
  if (!entries.ok()) return RecordError(ctx, entries.status());
  json::array items;
  ActorNames names(ctx);
  for (const auto& e : *entries) items.push_back(EventJson(e, names));
  return http::Json(200, JsonText(json::object{{"items", std::move(items)}}));
}

http::Response VerifyAudit(Services& /*s*/, RequestContext& ctx) {
  auto report = ctx.store->VerifyChains();
  if (!report.ok()) return RecordError(ctx, report.status());
  json::object o;
  o["ok"] = report->ok();
  o["events_checked"] = report->events_checked;
  o["audit_checked"] = report->audit_checked;
  o["events_first_broken"] = report->events_first_broken ? json::value(*report->events_first_broken)
                                                         : json::value(nullptr);
  o["audit_first_broken"] =
      report->audit_first_broken ? json::value(*report->audit_first_broken) : json::value(nullptr);
  if (!report->ok()) o["reason"] = report->reason;
  return http::Json(200, JsonText(o));
}

// A checkpoint of the tenant's own chains as of now, signed with the
// platform's key, for the tenant to keep as evidence; kept as its newest too.
// 409 (nothing signed) when its logs lack entries an earlier checkpoint saw.
http::Response AuditCheckpoint(Services& s, RequestContext& ctx) {
  if (s.checkpoints == nullptr) return RecordError(ctx, Unavailable("checkpoints are off"));
  auto text = s.checkpoints->Take(ctx.tenant->id, ctx.tenant->slug, "request");
  if (!text.ok()) return RecordError(ctx, text.status());
  return http::Json(200, std::move(*text));
}

}  // namespace silo::api
