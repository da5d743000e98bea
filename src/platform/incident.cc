#include "platform/incident.h"

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "base/time_util.h"

namespace silo::platform {
namespace json = boost::json;

namespace {

constexpr int64_t kNotifyWithinUs = 72LL * 3600 * 1'000'000;  // GDPR Art. 33(1)
constexpr size_t kMaxTimeline = 5000;

struct Category {
  std::string_view name;  // what kind of event
  std::string_view data;  // the data it may concern ("" for none)
  std::vector<std::string_view> prefixes;
};

// In order: the first category whose prefix matches an entry's type holds it.
const std::vector<Category>& Categories() {
  static const std::vector<Category> kAll = {
      {"failed sign-ins and second factors",
       "account data: e-mail addresses and sign-in metadata",
       {"login.failed", "mfa.failed", "mfa.replayed", "password.change_failed", "step_up.failed",
        "password.reset_throttled"}},
      {"sign-ins",
       "account data: e-mail addresses and sign-in metadata",
       {"login.", "session.created", "mfa.recovery_code_used", "user.setup_completed",
        "session.stepped_up"}},
      {"denied requests", "", {"access.denied"}},
      {"operator access (the lockbox)", "the data within the approved scopes", {"access."}},
      {"exports of records",
       "the records of the exported collections",
       {"tenant.exported", "records.exported"}},
      {"restores", "the tenant's whole database as of the backup", {"backup."}},
      {"API tokens", "what the tokens' permissions reach", {"token."}},
      {"accounts, roles and settings",
       "account data",
       {"user.", "role.", "password.", "settings.", "session."}},
      {"log integrity", "", {"audit."}},
      {"incident handling", "", {"incident."}},
      {"blocked clients", "", {"honeypot.", "rate.", "client."}},
      {"operator authentication", "", {"operator."}},
      {"tenant lifecycle", "", {"tenant."}},
  };
  return kAll;
}

const Category* CategoryOf(std::string_view type) {
  for (const Category& c : Categories()) {
    for (std::string_view p : c.prefixes) {
      if (type.substr(0, p.size()) == p) return &c;
    }
  }
  return nullptr;
}

// What an entry says was done about it (revoked, ended, restored, banned).
bool IsMeasure(std::string_view type) {
  for (std::string_view t :
       {"session.revoked", "session.revoked_all", "token.revoked", "access.revoked",
        "access.denied", "user.disabled", "password.reset", "password.changed", "backup.restored",
        "honeypot.hit", "rate.throttled", "client.banned", "access.refused", "tenant.rekeyed"}) {
    if (type == t) return true;
  }
  return false;
}

// A Markdown table cell: no pipe, no line break.
std::string Cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out.empty() ? "-" : out;
}

struct Item {
  int64_t at_us;
  std::string source;  // "platform" or the tenant's slug
  std::string type, actor, client, about;
};

}  // namespace

bool SecurityRelevant(std::string_view type) { return CategoryOf(type) != nullptr; }

bool NamesTenant(std::string_view detail, std::string_view slug) {
  auto slug_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  if (slug.empty()) return false;
  for (size_t at = detail.find(slug); at != std::string_view::npos;
       at = detail.find(slug, at + 1)) {
    const size_t end = at + slug.size();
    if ((at == 0 || !slug_char(detail[at - 1])) &&
        (end == detail.size() || !slug_char(detail[end]))) {
      return true;
    }
  }
  return false;
}

std::string IncidentSignedText(const json::object& report, std::string_view markdown) {
  return "silo-incident-1\n" + json::serialize(report) + "\n" + std::string(markdown);
}

IncidentReport BuildIncidentReport(const IncidentInput& in) {
  std::vector<Item> items;
  for (const LoggedEvent& e : in.platform) {
    items.push_back(
        {e.at_us, "platform", e.event.type, e.event.actor, e.event.client, e.event.detail});
  }
  struct PerTenant {
    int64_t entries = 0;
    std::set<std::string> users;
    std::map<std::string, int64_t> categories;  // name -> count
    std::set<std::string> data;
    std::map<std::string, int64_t> measures;  // type -> count
    int64_t first_us = INT64_MAX, last_us = 0;
  };
  std::map<std::string, PerTenant> tenants;
  for (const auto& [slug, entries] : in.tenants) {
    for (const TenantEntry& e : entries) {
      const Category* c = CategoryOf(e.type);
      if (c == nullptr) continue;
      items.push_back({e.at_us, slug, e.type, e.actor, e.client, e.subject});
      PerTenant& t = tenants[slug];
      ++t.entries;
      ++t.categories[std::string(c->name)];
      if (!c->data.empty()) t.data.insert(std::string(c->data));
      if (IsMeasure(e.type)) ++t.measures[e.type];
      if (e.actor.starts_with("user:")) t.users.insert(e.actor.substr(5));
      if (e.subject.starts_with("user ")) t.users.insert(e.subject.substr(5));
      t.first_us = std::min(t.first_us, e.at_us);
      t.last_us = std::max(t.last_us, e.at_us);
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.at_us < b.at_us; });
  const bool truncated = items.size() > kMaxTimeline;
  if (truncated) items.resize(kMaxTimeline);

  json::object report;
  report["format"] = "silo-incident-1";
  report["id"] = in.id;
  report["generated_at"] = FormatRfc3339Micros(in.generated_at_us);
  report["from"] = FormatRfc3339Micros(in.from_us);
  report["to"] = FormatRfc3339Micros(in.to_us);
  report["discovered_at"] = FormatRfc3339Micros(in.discovered_us);
  report["notify_by"] = FormatRfc3339Micros(in.discovered_us + kNotifyWithinUs);
  report["tenant"] = in.tenant ? json::value(*in.tenant) : json::value(nullptr);
  json::object counts;
  for (const Item& i : items) {
    counts[i.type] = (counts.contains(i.type) ? counts[i.type].as_int64() : 0) + 1;
  }
  report["counts"] = std::move(counts);
  json::array affected;
  std::map<std::string, std::string> drafts;
  for (const auto& [slug, t] : tenants) {
    json::array users, categories, data, measures;
    for (const auto& u : t.users) users.emplace_back(u);
    for (const auto& [name, n] : t.categories) {
      categories.push_back(json::object{{"category", name}, {"entries", n}});
    }
    for (const auto& d : t.data) data.emplace_back(d);
    for (const auto& [type, n] : t.measures) {
      measures.push_back(json::object{{"type", type}, {"entries", n}});
    }
    affected.push_back(json::object{{"tenant", slug},
                                    {"entries", t.entries},
                                    {"first", FormatRfc3339Micros(t.first_us)},
                                    {"last", FormatRfc3339Micros(t.last_us)},
                                    {"users", users},
                                    {"categories", categories},
                                    {"data_categories", data},
                                    {"measures", measures}});
    // The draft: what happened, which data, what was done, and by when the
    // tenant (as controller) must tell its authority.
    std::string d = "Subject: Security incident notice for " + slug + "\n\n";
    d += "Between " + FormatRfc3339Micros(t.first_us) + " and " + FormatRfc3339Micros(t.last_us) +
         " our platform recorded " + std::to_string(t.entries) +
         " security-relevant events for your tenant " + slug + ":\n";
    for (const auto& [name, n] : t.categories) d += "- " + name + ": " + std::to_string(n) + "\n";
    d += "\nData that may be concerned:\n";
    if (t.data.empty()) d += "- none identified from the logs\n";
    for (const auto& x : t.data) d += "- " + x + "\n";
    if (!t.users.empty()) {
      d += "\nUser accounts involved (ids in your tenant): ";
      bool first = true;
      for (const auto& u : t.users) {
        d += (first ? "" : ", ") + u;
        first = false;
      }
      d += "\n";
    }
    d += "\nWhat was done:\n";
    if (t.measures.empty()) d += "- no measure is recorded in the logs yet\n";
    for (const auto& [type, n] : t.measures) {
      d += "- " + type + " (" + std::to_string(n) + ")\n";
    }
    d += "\nWe became aware of this on " + FormatRfc3339Micros(in.discovered_us) +
         ". Where personal data is concerned, the notification to the supervisory authority is "
         "due by " +
         FormatRfc3339Micros(in.discovered_us + kNotifyWithinUs) +
         " (72 hours). Your audit log (GET /api/audit) holds every entry named here.\n";
    drafts[slug] = std::move(d);
  }
  report["affected_tenants"] = std::move(affected);
  json::array timeline;
  for (const Item& i : items) {
    timeline.push_back(json::object{{"at", FormatRfc3339Micros(i.at_us)},
                                    {"source", i.source},
                                    {"type", i.type},
                                    {"actor", i.actor},
                                    {"client", i.client},
                                    {"about", i.about}});
  }
  report["timeline"] = std::move(timeline);
  report["timeline_truncated"] = truncated;
  json::object draft_json;
  for (const auto& [slug, d] : drafts) draft_json[slug] = d;
  report["drafts"] = std::move(draft_json);

  std::string md = "# Incident report " + in.id + "\n\n";
  md += "- Generated: " + FormatRfc3339Micros(in.generated_at_us) + "\n";
  md += "- Window: " + FormatRfc3339Micros(in.from_us) + " to " + FormatRfc3339Micros(in.to_us) +
        (in.tenant ? " (tenant " + *in.tenant + ")" : std::string(" (every tenant)")) + "\n";
  md += "- Discovered: " + FormatRfc3339Micros(in.discovered_us) + "\n";
  md += "- **Notify by: " + FormatRfc3339Micros(in.discovered_us + kNotifyWithinUs) +
        "** (72 hours after discovery)\n";
  md += "- Events: " + std::to_string(items.size()) + (truncated ? " (timeline cut)" : "") + "\n\n";
  md += "## Affected tenants\n\n";
  if (tenants.empty()) md += "None.\n";
  for (const auto& [slug, t] : tenants) {
    md += "- " + Cell(slug) + ": " + std::to_string(t.entries) + " entries, " +
          std::to_string(t.users.size()) + " users\n";
  }
  md +=
      "\n## Timeline\n\n| time | where | event | actor | client | about "
      "|\n|---|---|---|---|---|---|\n";
  for (const Item& i : items) {
    md += "| " + FormatRfc3339Micros(i.at_us) + " | " + Cell(i.source) + " | " + Cell(i.type) +
          " | " + Cell(i.actor) + " | " + Cell(i.client) + " | " + Cell(i.about) + " |\n";
  }
  md += "\n## Notification drafts\n";
  for (const auto& [slug, d] : drafts) md += "\n### " + Cell(slug) + "\n\n```\n" + d + "```\n";
  return {std::move(report), std::move(md)};
}

}  // namespace silo::platform
