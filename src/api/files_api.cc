// Files: uploads into a collection's file field, downloads through the
// record that holds them, and the tenant's usage (files/file_store.h).
#include <boost/json.hpp>
#include <cstdio>

#include "api/byte_range.h"
#include "api/handlers.h"
#include "api/json_text.h"
#include "api/tenant_access.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "files/file_store.h"
#include "files/sniff.h"
#include "records/query.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

namespace json = boost::json;

// What every file answer carries: the sniffed type only, never rendered as a
// page of this origin (a sandbox without scripts), readable by this site's
// pages only, kept in the browser's private cache (a blob never changes).
constexpr char kFileCsp[] =
    "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox";
constexpr char kFileCache[] = "private, max-age=86400, immutable";

json::object FileJson(const files::FileRow& f) {
  return {{"id", f.id},
          {"size", static_cast<int64_t>(f.size)},
          {"sha256", f.sha256},
          {"type", f.type},
          {"name", f.name}};
}

// An upload's refusal: each limit its own status, naming the limit.
http::Response UploadRefusal(const Status& st, const http::Request& req) {
  switch (st.code()) {
    case StatusCode::kResourceExhausted: return http::Problem(413, st.message(), req.request_id);
    case StatusCode::kInvalidArgument: return http::Problem(415, st.message(), req.request_id);
    case StatusCode::kUnavailable: {
      auto r = http::Problem(503, st.message(), req.request_id);
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    default: return ErrorResponse(st, req);
  }
}

// The one value of query parameter `key`, or nullopt.
std::optional<std::string> QueryValue(const records::QueryParams& params, std::string_view key) {
  for (const auto& [k, v] : params) {
    if (k == key) return v;
  }
  return std::nullopt;
}

// RFC 6266: an ASCII fallback and the exact name percent-encoded in UTF-8.
std::string ContentDisposition(bool inline_ok, const std::string& name) {
  std::string ascii, encoded;
  for (unsigned char c : name) {
    ascii +=
        (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '%') ? static_cast<char>(c) : '_';
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
        c == '-' || c == '_') {
      encoded += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  return std::string(inline_ok ? "inline" : "attachment") + "; filename=\"" + ascii +
         "\"; filename*=UTF-8''" + encoded;
}

// A blob's bytes [first, first + length), each chunk opened once as the
// server pulls them; the plaintext chunk is wiped when replaced.
class BlobSource : public http::BodySource {
 public:
  BlobSource(std::unique_ptr<files::BlobReader> reader, uint64_t first)
      : reader_(std::move(reader)), next_(first) {}
  ~BlobSource() override { crypto::WipeString(chunk_); }

  // Opens the first chunk to send before any byte of the answer goes out:
  // a blob that fails authentication there (altered, another blob, another
  // key) is an error answer, not a 200 cut short.
  Status Prime() {
    const uint64_t index = next_ / files::kChunkBytes;
    SILO_ASSIGN_OR_RETURN(chunk_, reader_->ReadChunk(index));
    chunk_index_ = index;
    chunk_loaded_ = true;
    return Status::Ok();
  }

  Status Read(std::span<char> out) override {
    size_t filled = 0;
    while (filled < out.size()) {
      const uint64_t index = next_ / files::kChunkBytes;
      if (!chunk_loaded_ || index != chunk_index_) {
        crypto::WipeString(chunk_);
        SILO_ASSIGN_OR_RETURN(chunk_, reader_->ReadChunk(index));
        chunk_index_ = index;
        chunk_loaded_ = true;
      }
      const size_t at = static_cast<size_t>(next_ % files::kChunkBytes);
      if (at >= chunk_.size()) return DataLoss("the file is shorter than its record says");
      const size_t n = std::min(chunk_.size() - at, out.size() - filled);
      std::copy_n(chunk_.data() + at, n, out.data() + filled);
      filled += n;
      next_ += n;
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<files::BlobReader> reader_;
  uint64_t next_;
  std::string chunk_;
  uint64_t chunk_index_ = 0;
  bool chunk_loaded_ = false;
};

// The file `file` as the record's field `field` holds it now (or at `at`):
// NotFound, alike, for a record, field or file that does not match.
Result<files::FileRow> HeldFile(Services& s, RequestContext& ctx, files::FileStore& store,
                                std::optional<int64_t> at) {
  const std::string& collection = ctx.params.at("name");
  const std::string& id = ctx.params.at("id");
  const std::string& field = ctx.params.at("field");
  const std::string& file = ctx.params.at("file");
  SILO_ASSIGN_OR_RETURN(auto record, ctx.store->GetRecord(collection, id, at));
  auto held = records::FileIds(record.data.if_contains(field));
  if (std::find(held.begin(), held.end(), file) == held.end()) return NotFound("no such file");
  auto row = store.Get(file);
  if (!row.ok())
    return row.status().code() == StatusCode::kNotFound ? NotFound("no such file") : row.status();
  if (row->collection != collection || row->field != field || row->record_id != id ||
      row->state == files::FileState::kPending) {
    return NotFound("no such file");
  }
  return row;
}

// The file's bytes (a range of them) with the headers every file answer
// carries. `cross_origin`: a link's answer, which pages of any origin may
// embed (CORP cross-origin); otherwise this site's only.
http::Response ServeFile(files::FileStore& store, const files::FileRow& row,
                         const http::Request& req, bool download, bool cross_origin) {
  http::Response res;
  const std::string etag = "\"" + row.sha256 + "\"";
  res.headers = {{"ETag", etag},
                 {"Accept-Ranges", "bytes"},
                 {"Cache-Control", kFileCache},
                 {"Content-Security-Policy", kFileCsp},
                 {"Cross-Origin-Resource-Policy", cross_origin ? "cross-origin" : "same-site"}};
  if (req.Header("if-none-match") == etag) {
    res.status = 304;
    res.content_type = row.type;
    return res;
  }
  ByteRange range = ParseByteRange(req.Header("range"), row.size);
  if (range.kind == ByteRange::Kind::kUnsatisfiable) {
    http::Response r = http::Problem(416, "the range is past the end of the file", req.request_id);
    r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(row.size));
    return r;
  }
  auto reader = store.OpenBlob(row);
  if (!reader.ok()) {
    if (reader.status().code() == StatusCode::kNotFound) {
      return http::Problem(410, "the file's bytes were purged", req.request_id);
    }
    return ErrorResponse(reader.status(), req);
  }
  res.content_type = row.type;
  res.headers.emplace_back(
      "Content-Disposition",
      ContentDisposition(!download && files::ServedInline(row.type), row.name));
  uint64_t first = 0, length = row.size;
  if (range.kind == ByteRange::Kind::kPart) {
    first = range.first;
    length = range.length;
    res.status = 206;
    res.headers.emplace_back("Content-Range", "bytes " + std::to_string(first) + "-" +
                                                  std::to_string(first + length - 1) + "/" +
                                                  std::to_string(row.size));
  }
  auto source = std::make_shared<BlobSource>(std::move(*reader), first);
  if (Status primed = source->Prime(); !primed.ok()) return ErrorResponse(primed, req);
  res.source = std::move(source);
  res.source_size = length;
  return res;
}

}  // namespace

http::Response UploadFile(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  const std::string& collection = ctx.params.at("collection");
  const std::string& field = ctx.params.at("field");
  auto c = ctx.store->GetCollection(collection);
  if (!c.ok()) return ErrorResponse(c.status(), req);
  const records::FieldDef* f = c->schema.Find(field);
  if (f == nullptr || f->type != records::FieldType::kFile) {
    return http::Problem(422, field + " is not a file field of " + collection, req.request_id);
  }
  auto params = records::ParseQueryString(req.query);
  if (!params.ok()) return ErrorResponse(params.status(), req);
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  files::UploadSpec spec{collection,
                         field,
                         {f->max_bytes, f->types, f->max_files},
                         QueryValue(*params, "name").value_or("file"),
                         std::string(req.Header("content-type").value_or("")),
                         req.body_stream->length()};
  auto row = (*store)->Upload(OriginOf(ctx), spec,
                              [&](std::span<char> out) { return req.body_stream->Read(out); });
  if (!row.ok()) return UploadRefusal(row.status(), req);
  return http::Json(201, JsonText(FileJson(*row)));
}

http::Response DownloadFile(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto params = records::ParseQueryString(req.query);
  if (!params.ok()) return ErrorResponse(params.status(), req);
  std::optional<int64_t> at;
  if (auto text = QueryValue(*params, "at")) {
    auto us = ParseRfc3339(*text);
    if (!us.ok()) return ErrorResponse(InvalidArgument("at must be an RFC 3339 date-time"), req);
    at = *us;
  }
  const bool download = QueryValue(*params, "download") == "1";
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  auto row = HeldFile(s, ctx, **store, at);
  if (!row.ok()) return ErrorResponse(row.status(), req);

  return ServeFile(**store, *row, req, download, false);
}

namespace {

constexpr int64_t kLinkDefaultSeconds = 600;
constexpr int64_t kLinkMaxSeconds = 24 * 3600;

// The file `{id}` names, if the caller may read it: attached to a record of
// a collection whose read permission the caller holds, a record and field
// their read rules give. NotFound alike for no such file, one still pending
// and one outside the rules; PermissionDenied (audited) without the
// permission.
Result<files::FileRow> ReadableFile(RequestContext& ctx, files::FileStore& store) {
  auto row = store.Get(ctx.params.at("id"));
  if (!row.ok()) return row.status();
  if (row->state != files::FileState::kAttached) return NotFound("no such file");
  SILO_RETURN_IF_ERROR(CheckPermission(ctx, "records." + row->collection + ".read"));
  // And the record that holds it, with the field, within the caller's read
  // rules (the store answers NotFound or omits the field otherwise).
  auto record = ctx.store->GetRecord(row->collection, row->record_id, std::nullopt);
  if (!record.ok()) {
    return record.status().code() == StatusCode::kNotFound ? NotFound("no such file")
                                                           : record.status();
  }
  auto held = records::FileIds(record->data.if_contains(row->field));
  if (std::find(held.begin(), held.end(), row->id) == held.end()) return NotFound("no such file");
  return row;
}

// RandomToken(32): 43 characters of URL-safe base64.
bool ValidLinkToken(std::string_view t) {
  return t.size() == 43 &&
         t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
             std::string_view::npos;
}

// The path before "/api/files/...": "/t/<slug>" or "" (a tenant by Host).
std::string TenantPrefix(const http::Request& req) {
  return req.path.substr(0, req.path.find("/api/files/"));
}

}  // namespace

http::Response CreateFileLink(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  // Whose file it is comes first: a file the caller may not read gets the
  // same answer whatever the body says.
  auto row = ReadableFile(ctx, **store);
  if (!row.ok()) return ErrorResponse(row.status(), req);
  http::Response error;
  auto body = JsonObjectBody(req, &error);
  if (!body) return error;
  int64_t seconds = kLinkDefaultSeconds;
  for (const auto& kv : *body) {
    if (kv.key() != "expires_in" || !kv.value().is_int64() || kv.value().as_int64() < 1 ||
        kv.value().as_int64() > kLinkMaxSeconds) {
      return ErrorResponse(
          InvalidArgument("invalid link")
              .WithFields({{"expires_in", "must be seconds from 1 to 86400 (24 h)"}}),
          req);
    }
    seconds = kv.value().as_int64();
  }
  auto link = (*store)->CreateLink(OriginOf(ctx), *row, seconds * 1'000'000);
  if (!link.ok()) return ErrorResponse(link.status(), req);
  return http::Json(201, JsonText(json::object{
                             {"id", link->row.id},
                             {"url", TenantPrefix(req) + "/api/files/link?token=" + link->token},
                             {"expires_at", FormatRfc3339Micros(link->row.expires_at_us)}}));
}

http::Response RevokeFileLink(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  auto row = ReadableFile(ctx, **store);
  if (!row.ok()) return ErrorResponse(row.status(), req);
  Status gone = (*store)->RevokeLink(OriginOf(ctx), row->id, ctx.params.at("link"));
  if (!gone.ok()) return ErrorResponse(gone, req);
  return http::Json(204, "");
}

http::Response OpenFileLink(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), req);
  // The token travels in the query: the access log records paths only.
  auto params = records::ParseQueryString(req.query);
  std::optional<std::string> token;
  if (params.ok()) token = QueryValue(*params, "token");
  if (!token || !ValidLinkToken(*token)) return http::Problem(404, "no such link", req.request_id);
  auto row = (*store)->ResolveLink(*token, NowMicros());
  if (!row.ok()) {
    if (row.status().code() == StatusCode::kFailedPrecondition) {
      return http::Problem(410, row.status().message(), req.request_id);
    }
    return http::Problem(404, "no such link", req.request_id);
  }
  return ServeFile(**store, *row, req, false, true);
}

http::Response FileUsage(Services& s, RequestContext& ctx) {
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return ErrorResponse(store.status(), ctx.request);
  auto usage = (*store)->LoadUsage();
  if (!usage.ok()) return ErrorResponse(usage.status(), ctx.request);
  const auto& o = s.files->options();
  json::object out{{"live_bytes", static_cast<int64_t>(usage->live_bytes)},
                   {"retained_bytes", static_cast<int64_t>(usage->retained_bytes)},
                   {"files", usage->files},
                   {"upload_bytes", static_cast<int64_t>(usage->upload_bytes)},
                   {"uploads", usage->uploads},
                   {"quota_bytes", static_cast<int64_t>(o.tenant_quota_bytes)},
                   {"max_file_bytes", static_cast<int64_t>(o.max_file_bytes)}};
  return http::Json(200, JsonText(out));
}

}  // namespace silo::api
