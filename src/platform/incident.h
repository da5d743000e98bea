// Incident reports (issue 22, `silo incident report`): a timeline of what the
// platform's security log and the tenants' audit logs recorded in a window
// (sign-ins and their failures, denials, operator access and the lockbox,
// exports, restores, honeypot hits, bans, throttling), the tenants and users
// concerned, the notification deadline (72 hours after discovery: GDPR
// Art. 33), and a notification draft per tenant, as JSON and Markdown,
// signed with the platform's Ed25519 key so that it can be shown later
// unchanged. Pure: the caller gathers the entries (docs/formats.md
// "Incident reports").
#ifndef SILO_PLATFORM_INCIDENT_H_
#define SILO_PLATFORM_INCIDENT_H_

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "platform/security_log.h"

namespace silo::platform {

// One audit entry of a tenant, as the report needs it (no record contents:
// the type, who, from where, and what it was about).
struct TenantEntry {
  int64_t at_us = 0;
  std::string type;
  std::string actor;    // "<kind>:<id>"
  std::string client;   // address, "" when none
  std::string subject;  // "<kind> <id>"
};

// Whether an audit entry type belongs in an incident's timeline.
bool SecurityRelevant(std::string_view type);

// Whether a platform security event's detail names the tenant `slug`: as a
// whole slug, not inside a longer one ("acme" is not named by "acme-eu").
bool NamesTenant(std::string_view detail, std::string_view slug);

struct IncidentInput {
  std::string id;
  int64_t generated_at_us = 0;
  int64_t from_us = 0, to_us = 0;
  int64_t discovered_us = 0;
  std::optional<std::string> tenant;  // the one tenant asked for, or every tenant
  std::vector<LoggedEvent> platform;  // in the window (a tenant's only, when one is asked for)
  std::map<std::string, std::vector<TenantEntry>> tenants;  // by slug, in the window
};

struct IncidentReport {
  boost::json::object report;  // the signed content
  std::string markdown;        // the same for people, with the drafts
};

IncidentReport BuildIncidentReport(const IncidentInput& input);

// The bytes a report's signature covers.
std::string IncidentSignedText(const boost::json::object& report, std::string_view markdown);

}  // namespace silo::platform

#endif  // SILO_PLATFORM_INCIDENT_H_
