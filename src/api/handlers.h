// Handler functions, grouped by file: health_api.cc, tenant_root_api.cc,
// tenants_api.cc. Each returns the full Response (status, JSON body).
#ifndef SILO_API_HANDLERS_H_
#define SILO_API_HANDLERS_H_

#include <boost/json/object.hpp>
#include <optional>

#include "api/context.h"
#include "api/services.h"
#include "base/time_util.h"

namespace silo::api {

// Who writes, from where, now: the origin of every write a tenant handler
// makes for its proven caller.
inline events::Origin OriginOf(const RequestContext& ctx) {
  return {ctx.actor, ctx.request.request_id, ctx.client, NowMicros()};
}

http::Response Healthz(Services& s, RequestContext& ctx);
http::Response Readyz(Services& s, RequestContext& ctx);
http::Response Metrics(Services& s, RequestContext& ctx);

http::Response TenantRoot(Services& s, RequestContext& ctx);

// The OpenAPI documents (openapi_api.cc): the tenant's, with the caller's
// collections, and the operator listener's.
http::Response TenantOpenApi(Services& s, RequestContext& ctx);
http::Response OperatorOpenApiDocument(Services& s, RequestContext& ctx);

// The web console (console_api.cc).
http::Response ConsoleIndex(Services& s, RequestContext& ctx);
http::Response ConsoleFile(Services& s, RequestContext& ctx);
http::Response ConsoleSlash(Services& s, RequestContext& ctx);
http::Response ResetPage(Services& s, RequestContext& ctx);

http::Response CreateTenant(Services& s, RequestContext& ctx);
http::Response ListTenants(Services& s, RequestContext& ctx);
http::Response SuspendTenant(Services& s, RequestContext& ctx);
http::Response ResumeTenant(Services& s, RequestContext& ctx);
http::Response DeleteTenant(Services& s, RequestContext& ctx);

// Tenant operator actions (tenant_ops_api.cc).
http::Response IssueToken(Services& s, RequestContext& ctx);
http::Response RebuildTenant(Services& s, RequestContext& ctx);
http::Response ExportTenant(Services& s, RequestContext& ctx);
http::Response VerifyTenants(Services& s, RequestContext& ctx);

// incidents_api.cc
http::Response CreateIncidentReport(Services& s, RequestContext& ctx);
http::Response VerifyIncidentReport(Services& s, RequestContext& ctx);

// backups_api.cc
http::Response RunBackup(Services& s, RequestContext& ctx);
http::Response ListBackups(Services& s, RequestContext& ctx);
http::Response VerifyBackup(Services& s, RequestContext& ctx);
http::Response RestoreBackup(Services& s, RequestContext& ctx);
http::Response DrillBackup(Services& s, RequestContext& ctx);
http::Response RekeyTenant(Services& s, RequestContext& ctx);
http::Response PruneBackups(Services& s, RequestContext& ctx);

// Tenant data (records_api.cc); ctx.store and ctx.principal are set.
http::Response ListCollections(Services& s, RequestContext& ctx);
http::Response CreateCollection(Services& s, RequestContext& ctx);
http::Response GetCollection(Services& s, RequestContext& ctx);
http::Response UpdateCollection(Services& s, RequestContext& ctx);
http::Response DeleteCollection(Services& s, RequestContext& ctx);
http::Response ListRecords(Services& s, RequestContext& ctx);
http::Response CreateRecord(Services& s, RequestContext& ctx);
http::Response GetRecord(Services& s, RequestContext& ctx);
http::Response UpdateRecord(Services& s, RequestContext& ctx);
http::Response DeleteRecord(Services& s, RequestContext& ctx);
http::Response RecordHistory(Services& s, RequestContext& ctx);
http::Response ExportRecords(Services& s, RequestContext& ctx);
http::Response RevertRecord(Services& s, RequestContext& ctx);
http::Response ListEvents(Services& s, RequestContext& ctx);
http::Response ListAudit(Services& s, RequestContext& ctx);
http::Response VerifyAudit(Services& s, RequestContext& ctx);
http::Response AuditCheckpoint(Services& s, RequestContext& ctx);

// Files (files_api.cc); ctx.store is set. UploadFile runs on a streamed route.
http::Response UploadFile(Services& s, RequestContext& ctx);
http::Response DownloadFile(Services& s, RequestContext& ctx);
http::Response FileUsage(Services& s, RequestContext& ctx);
// Links to one file without credentials; CreateFileLink and RevokeFileLink
// are kAuthenticated routes that check read permission on the file's
// collection themselves.
http::Response CreateFileLink(Services& s, RequestContext& ctx);
http::Response RevokeFileLink(Services& s, RequestContext& ctx);
http::Response OpenFileLink(Services& s, RequestContext& ctx);
// tus 1.0 resumable uploads (tus_api.cc); all but TusOptions streamed or on
// /api/uploads/{upload}?collection=.
http::Response TusOptions(Services& s, RequestContext& ctx);
http::Response TusCreate(Services& s, RequestContext& ctx);
http::Response TusHead(Services& s, RequestContext& ctx);
http::Response TusPatch(Services& s, RequestContext& ctx);
http::Response TusDelete(Services& s, RequestContext& ctx);

// Realtime (realtime_api.cc): the WebSocket and event-stream upgrades, the
// tickets for cross-origin clients, and servers' messages to channels.
http::Response RealtimeConnect(Services& s, RequestContext& ctx);
http::Response RealtimeStream(Services& s, RequestContext& ctx);
http::Response CreateRealtimeTicket(Services& s, RequestContext& ctx);
http::Response PublishMessage(Services& s, RequestContext& ctx);

// The body as a JSON object; on failure *error holds the answer: 415 for
// another content type, 400 for malformed JSON (syntax, UTF-8, nesting).
std::optional<boost::json::object> JsonObjectBody(const http::Request& req, http::Response* error);
// `text` as a JSON object; else nullopt and *why says what is wrong and at
// which byte.
std::optional<boost::json::object> ParseJsonObject(std::string_view text, std::string* why);

// Status -> problem response: the one place where domain errors become HTTP.
http::Response ErrorResponse(const Status& status, const http::Request& req);

}  // namespace silo::api

#endif  // SILO_API_HANDLERS_H_
