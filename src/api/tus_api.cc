// Resumable uploads: tus 1.0.0 (tus.io/protocols/resumable-upload) at
// /api/uploads with the creation, creation-with-upload, expiration,
// termination and checksum (sha256) extensions. The upload's state lives in
// files::FileStore; this file is the protocol: its headers, statuses and
// the upload URL, which carries the collection (the permission of every
// request on it) and field. A completed upload is the pending file whose id
// is the URL's last segment, attached like any upload.
#include <time.h>

#include <boost/json.hpp>
#include <variant>

#include "api/handlers.h"
#include "api/json_text.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "files/file_store.h"
#include "records/query.h"
#include "records/tenant_store.h"

namespace silo::api {
namespace {

constexpr char kTusVersion[] = "1.0.0";
constexpr char kTusExtensions[] = "creation,creation-with-upload,expiration,termination,checksum";
constexpr char kOffsetStream[] = "application/offset+octet-stream";

// An HTTP date (RFC 9110 section 5.6.7) for Upload-Expires.
std::string HttpDate(int64_t us) {
  time_t t = static_cast<time_t>(us / 1'000'000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

http::Response Tus(http::Response r) {
  r.headers.emplace_back("Tus-Resumable", kTusVersion);
  return r;
}

http::Response TusProblem(int status, std::string_view detail, const http::Request& req) {
  return Tus(http::Problem(status, detail, req.request_id));
}

// A refusal from the file store as tus statuses say it.
http::Response TusRefusal(const Status& st, const http::Request& req) {
  switch (st.code()) {
    case StatusCode::kNotFound: return TusProblem(404, "no such upload", req);
    case StatusCode::kFailedPrecondition: return TusProblem(410, st.message(), req);
    case StatusCode::kVersionMismatch: return TusProblem(409, st.message(), req);
    case StatusCode::kDataLoss: return TusProblem(460, st.message(), req);
    case StatusCode::kResourceExhausted: return TusProblem(413, st.message(), req);
    case StatusCode::kInvalidArgument: return TusProblem(415, st.message(), req);
    case StatusCode::kUnavailable: {
      auto r = TusProblem(503, st.message(), req);
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    default: return Tus(ErrorResponse(st, req));
  }
}

// Every tus request but OPTIONS names the protocol version (412 otherwise).
std::optional<http::Response> WrongVersion(const http::Request& req) {
  if (req.Header("tus-resumable") == kTusVersion) return std::nullopt;
  auto r = TusProblem(412, "Tus-Resumable: 1.0.0 required", req);
  r.headers.emplace_back("Tus-Version", kTusVersion);
  return r;
}

std::optional<uint64_t> Digits(std::optional<std::string_view> v) {
  if (!v || v->empty() || v->size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

// "filename" and "filetype" of Upload-Metadata ("key base64,key base64").
std::string MetadataValue(std::string_view metadata, std::string_view key) {
  while (!metadata.empty()) {
    size_t comma = metadata.find(',');
    std::string_view pair = metadata.substr(0, comma);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    size_t space = pair.find(' ');
    if (pair.substr(0, space) == key && space != std::string_view::npos) {
      auto decoded = crypto::Base64Decode(pair.substr(space + 1));
      return decoded.ok() ? *decoded : "";
    }
    if (comma == std::string_view::npos) break;
    metadata.remove_prefix(comma + 1);
  }
  return "";
}

// The file field the request's query names, with its limits; or the answer.
Result<files::FieldLimits> FileField(RequestContext& ctx, const std::string& field) {
  SILO_ASSIGN_OR_RETURN(auto c, ctx.store->GetCollection(ctx.params.at("collection")));
  const records::FieldDef* f = c.schema.Find(field);
  if (f == nullptr || f->type != records::FieldType::kFile) {
    return InvalidArgument(field + " is not a file field of " + c.schema.name);
  }
  return files::FieldLimits{f->max_bytes, f->types, f->max_files};
}

// Appends the request's body to the upload (PATCH, or POST with
// creation-with-upload); the 204 or the refusal.
http::Response Append(Services& s, RequestContext& ctx, files::FileStore& store,
                      const std::string& id, uint64_t offset, const files::FieldLimits& limits) {
  const http::Request& req = ctx.request;
  std::optional<std::string> checksum;
  if (auto h = req.Header("upload-checksum")) {
    size_t space = h->find(' ');
    if (h->substr(0, space) != "sha256" || space == std::string_view::npos) {
      return TusProblem(400, "Upload-Checksum: only sha256 is supported", req);
    }
    auto raw = crypto::Base64Decode(h->substr(space + 1));
    if (!raw.ok() || raw->size() != 32) {
      return TusProblem(400, "Upload-Checksum is not a base64 SHA-256", req);
    }
    checksum = std::move(*raw);
  }
  auto done = store.AppendUpload(
      OriginOf(ctx), id, offset, limits, req.body_stream->length(),
      [&](std::span<char> out) { return req.body_stream->Read(out); }, checksum);
  if (!done.ok()) return TusRefusal(done.status(), req);
  http::Response r;
  r.status = 204;
  r.headers.emplace_back("Upload-Offset", std::to_string(done->offset));
  return Tus(r);
}

}  // namespace

http::Response TusOptions(Services& s, RequestContext& ctx) {
  http::Response r;
  r.status = 204;
  r.headers = {{"Tus-Version", kTusVersion},
               {"Tus-Extension", kTusExtensions},
               {"Tus-Checksum-Algorithm", "sha256"},
               {"Tus-Max-Size", std::to_string(s.files->options().max_file_bytes)}};
  return Tus(r);
}

http::Response TusCreate(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  if (auto wrong = WrongVersion(req)) return *wrong;
  if (req.Header("upload-defer-length")) {
    return TusProblem(400, "Upload-Defer-Length is not supported: send Upload-Length", req);
  }
  auto length = Digits(req.Header("upload-length"));
  if (!length) return TusProblem(400, "Upload-Length required", req);
  const std::string& field = ctx.params.at("field");
  auto limits = FileField(ctx, field);
  if (!limits.ok()) {
    return limits.status().code() == StatusCode::kInvalidArgument
               ? TusProblem(422, limits.status().message(), req)
               : Tus(ErrorResponse(limits.status(), req));
  }
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return Tus(ErrorResponse(store.status(), req));
  const std::string metadata(req.Header("upload-metadata").value_or(""));
  files::UploadSpec spec{
      ctx.params.at("collection"),         field,  *limits, MetadataValue(metadata, "filename"),
      MetadataValue(metadata, "filetype"), *length};
  const bool with_upload = req.body_stream->length() > 0;  // creation-with-upload
  if (with_upload && req.Header("content-type") != kOffsetStream) {
    return TusProblem(415, "Content-Type must be application/offset+octet-stream", req);
  }
  auto row = (*store)->CreateUpload(OriginOf(ctx), spec);
  if (!row.ok()) return TusRefusal(row.status(), req);
  http::Response r;
  r.status = 201;
  r.headers = {{"Location", req.path + "/" + row->id + "?collection=" + row->collection +
                                "&field=" + row->field},
               {"Upload-Expires", HttpDate(row->expires_at_us)}};
  if (with_upload) {
    http::Response appended = Append(s, ctx, **store, row->id, 0, *limits);
    if (appended.status != 204) return appended;
    for (auto& h : appended.headers) {
      if (h.first == "Upload-Offset") r.headers.push_back(h);
    }
  }
  return Tus(r);
}

namespace {

Result<files::FileStore::UploadState> AsState(Result<files::UploadRow> row) {
  if (!row.ok()) return row.status();
  return files::FileStore::UploadState{std::move(*row), 0};
}

// The caller's upload the URL names, under the collection the URL names
// (whose permission the route checked), with its store; or the answer.
// `with_offset`: read the part file for the offset (HEAD); the others leave
// that to the store call they make next, which reads it once.
struct Named {
  std::unique_ptr<files::FileStore> store;
  files::FileStore::UploadState state;  // offset 0 unless with_offset
};
std::variant<Named, http::Response> NamedUpload(Services& s, RequestContext& ctx,
                                                bool with_offset) {
  const http::Request& req = ctx.request;
  auto store = s.files->Open(ctx.tenant->id);
  if (!store.ok()) return Tus(ErrorResponse(store.status(), req));
  const std::string& id = ctx.params.at("upload");
  Result<files::FileStore::UploadState> state =
      with_offset ? (*store)->GetUpload(OriginOf(ctx), id)
                  : AsState((*store)->FindUpload(OriginOf(ctx), id));
  if (!state.ok()) return TusRefusal(state.status(), req);
  if (state->row.collection != ctx.params.at("collection")) {
    return TusProblem(404, "no such upload", req);
  }
  return Named{std::move(*store), std::move(*state)};
}

}  // namespace

// HEAD, PATCH and DELETE on /api/uploads/{upload}?collection=&field=.
http::Response TusHead(Services& s, RequestContext& ctx) {
  if (auto wrong = WrongVersion(ctx.request)) return *wrong;
  auto named = NamedUpload(s, ctx, true);
  if (auto* answer = std::get_if<http::Response>(&named)) return std::move(*answer);
  const auto& state = std::get<Named>(named).state;
  http::Response r;
  r.status = 200;
  r.headers = {{"Upload-Offset", std::to_string(state.offset)},
               {"Upload-Length", std::to_string(state.row.length)},
               {"Upload-Expires", HttpDate(state.row.expires_at_us)}};
  return Tus(r);
}

http::Response TusPatch(Services& s, RequestContext& ctx) {
  const http::Request& req = ctx.request;
  if (auto wrong = WrongVersion(req)) return *wrong;
  if (req.Header("content-type") != kOffsetStream) {
    return TusProblem(415, "Content-Type must be application/offset+octet-stream", req);
  }
  auto offset = Digits(req.Header("upload-offset"));
  if (!offset) return TusProblem(400, "Upload-Offset required", req);
  auto named = NamedUpload(s, ctx, false);
  if (auto* answer = std::get_if<http::Response>(&named)) return std::move(*answer);
  auto& [store, state] = std::get<Named>(named);
  auto limits = FileField(ctx, state.row.field);
  if (!limits.ok()) return Tus(ErrorResponse(limits.status(), req));
  return Append(s, ctx, *store, state.row.id, *offset, *limits);
}

http::Response TusDelete(Services& s, RequestContext& ctx) {
  if (auto wrong = WrongVersion(ctx.request)) return *wrong;
  auto named = NamedUpload(s, ctx, false);
  if (auto* answer = std::get_if<http::Response>(&named)) return std::move(*answer);
  auto& [store, state] = std::get<Named>(named);
  Status gone = store->TerminateUpload(OriginOf(ctx), state.row.id);
  if (!gone.ok()) return TusRefusal(gone, ctx.request);
  http::Response r;
  r.status = 204;
  return Tus(r);
}

}  // namespace silo::api
