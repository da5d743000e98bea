#include "cli/backup_commands.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace silo::cli {
namespace {

namespace json = boost::json;

constexpr long kLongCall = 3600;  // seconds: a large tenant's backup or restore

int64_t Int(const json::value& v, const char* key) {
  if (!v.is_object()) return 0;
  auto* f = v.as_object().if_contains(key);
  return f && f->is_int64() ? f->as_int64() : 0;
}

double Num(const json::value& v, const char* key) {
  if (!v.is_object()) return 0;
  auto* f = v.as_object().if_contains(key);
  if (f == nullptr) return 0;
  if (f->is_double()) return f->as_double();
  if (f->is_int64()) return static_cast<double>(f->as_int64());
  return 0;
}

std::string Mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

bool IdIsPathSafe(const std::string& id) {
  return !id.empty() && id.size() < 100 &&
         id.find_first_not_of("0123456789abcdefABCDEFTZ-") == std::string::npos;
}

bool CheckId(const std::string& id, int& code) {
  if (IdIsPathSafe(id)) return true;
  std::fprintf(stderr, "silo: not a backup id: %s\n", id.c_str());
  code = kUsage;
  return false;
}

// Work over several tenants: a bar redrawn on stderr when it is a terminal;
// otherwise (CI, pipes, logs) only one plain line per tenant.
class Progress {
 public:
  Progress(std::string verb, size_t total)
      : verb_(std::move(verb)), total_(total), tty_(::isatty(STDERR_FILENO) == 1) {}
  ~Progress() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  void Start(size_t index, const std::string& slug) {
    if (!tty_) return;
    constexpr size_t kWidth = 30;
    size_t filled = total_ == 0 ? kWidth : index * kWidth / total_;
    std::fprintf(stderr, "\r\033[K[%s%s] %zu/%zu %s %s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '-').c_str(), index, total_, verb_.c_str(),
                 slug.c_str());
    std::fflush(stderr);
  }
  // A finished tenant's line, printed above the bar.
  void Line(const std::string& text) {
    if (tty_) std::fprintf(stderr, "\r\033[K");
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
  }

 private:
  const std::string verb_;
  const size_t total_;
  const bool tty_;
};

// The slugs to act on: the one given, or every tenant.
bool Slugs(const std::string& one, std::vector<std::string>* out, int* code) {
  if (!one.empty()) {
    if (!SlugIsPathSafe(one)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", one.c_str());
      *code = kUsage;
      return false;
    }
    out->push_back(one);
    return true;
  }
  std::string raw;
  *code = Call(
      false, "GET", "/v1/tenants", "", [](const json::value&) {}, &raw);
  if (*code != kOk) return false;
  boost::system::error_code ec;
  json::value v = json::parse(raw, ec);
  if (!ec && v.is_object()) {
    if (auto* arr = v.as_object().if_contains("items"); arr && arr->is_array()) {
      for (const auto& t : arr->as_array()) out->push_back(Str(t, "slug"));
    }
  }
  return true;
}

// Runs `path_of(slug)` for every slug with a progress display; exit 1 if any failed.
int OverTenants(bool as_json, const std::string& verb, const std::vector<std::string>& slugs,
                const std::function<std::string(const std::string&)>& path_of,
                const std::function<std::pair<bool, std::string>(const std::string&,
                                                                 const json::value&)>& describe) {
  Progress progress(verb, slugs.size());
  json::array all;
  int failures = 0;
  for (size_t i = 0; i < slugs.size(); ++i) {
    progress.Start(i, slugs[i]);
    std::string raw;
    int c = Call(
        false, "POST", path_of(slugs[i]), "", [](const json::value&) {}, &raw, kLongCall);
    boost::system::error_code ec;
    json::value v = json::parse(raw, ec);
    if (ec) v = json::object{{"tenant", slugs[i]}, {"detail", "no answer"}};
    if (c == kOk) {
      auto [ok, text] = describe(slugs[i], v);
      if (!ok) ++failures;
      if (!as_json) progress.Line(text);
    } else {
      ++failures;
      if (!as_json) progress.Line(slugs[i] + ": FAILED: " + ProblemDetail(raw));
    }
    all.push_back(v);
  }
  if (as_json) std::cout << json::serialize(all) << "\n";
  return failures == 0 ? kOk : kRefused;
}

// The values of the backup commands' options. Callbacks run after
// AddBackupCommands returns, so the values live here, and the callbacks
// capture only these, `as_json` and `code` (the caller's).
struct BackupOptions {
  std::string slug, id, as_slug, at;
  bool yes = false;
};

BackupOptions& Options() {
  static BackupOptions* o = new BackupOptions;
  return *o;
}

// `backup run` and `backup drill`: one tenant, or every tenant in turn.
void AddRunAndDrill(CLI::App* backup, bool& as_json, int& code) {
  BackupOptions& o = Options();
  auto* run = backup->add_subcommand("run", "back up one tenant, or every tenant");
  run->add_option("slug", o.slug, "the tenant (default: every tenant)");
  run->callback([&o, &as_json, &code] {
    std::vector<std::string> slugs;
    if (!Slugs(o.slug, &slugs, &code)) return;
    code = OverTenants(
        as_json, "backing up", slugs,
        [](const std::string& s) { return "/v1/tenants/" + s + "/backups"; },
        [](const std::string& s, const json::value& v) {
          return std::pair{true, s + ": backed up " + Str(v, "id") + " (" +
                                     Mib(Int(v, "image_bytes")) + " database, " +
                                     Mib(Int(v, "stored_bytes")) + " stored, " +
                                     std::to_string(Int(v, "files")) + " files of " +
                                     Mib(Int(v, "files_bytes")) + ", in " + Str(v, "target") + ")"};
        });
  });

  auto* drill = backup->add_subcommand(
      "drill",
      "restore the newest backup of each tenant (or one) into a scratch copy and check it");
  drill->add_option("slug", o.slug, "the tenant (default: every tenant)");
  drill->callback([&o, &as_json, &code] {
    std::vector<std::string> slugs;
    if (!Slugs(o.slug, &slugs, &code)) return;
    code = OverTenants(
        as_json, "drilling", slugs,
        [](const std::string& s) { return "/v1/tenants/" + s + "/drill"; },
        [](const std::string& s, const json::value& v) {
          bool ok =
              v.is_object() && v.as_object().if_contains("ok") && v.at("ok") == json::value(true);
          char seconds[32];
          std::snprintf(seconds, sizeof seconds, "%.2f", Num(v, "restore_seconds"));
          if (!ok)
            return std::pair{
                false, s + ": drill FAILED on " + Str(v, "backup_id") + ": " + Str(v, "problem")};
          return std::pair{true, s + ": drill passed: " + Str(v, "backup_id") + " restored in " +
                                     seconds + " s, " + std::to_string(Int(v, "events")) +
                                     " events, chain head matches the manifest, " +
                                     std::to_string(Int(v, "files_checked")) + " files opened"};
        });
  });
}

// `backup list`: one tenant's backups, or everyone's.
void AddList(CLI::App* backup, bool& as_json, int& code) {
  BackupOptions& o = Options();
  auto* list = backup->add_subcommand("list", "list backups, oldest first");
  list->add_option("slug", o.slug, "the tenant (default: every tenant)");
  list->callback([&o, &as_json, &code] {
    if (!o.slug.empty() && !SlugIsPathSafe(o.slug)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", o.slug.c_str());
      code = kUsage;
      return;
    }
    std::string path = "/v1/backups" + (o.slug.empty() ? "" : "?tenant=" + o.slug);
    code = Call(as_json, "GET", path, "", [](const json::value& v) {
      std::printf("%-59s %-20s %-27s %10s %10s  %s\n", "ID", "TENANT", "TAKEN", "DATABASE",
                  "STORED", "GOOD");
      for (const auto& b : v.at("items").as_array()) {
        bool good = b.at("good").as_bool();
        const json::value* shredded = b.as_object().if_contains("shredded");
        const std::string state =
            good ? "yes"
            : shredded != nullptr && shredded->is_bool() && shredded->as_bool()
                ? "SHREDDED (its tenant's key was destroyed)"
                : "NO: " + Str(b, "problem");
        std::printf("%-59s %-20s %-27s %10s %10s  %s\n", Str(b, "id").c_str(),
                    Str(b, "tenant").c_str(), Str(b, "taken_at").c_str(),
                    Mib(Int(b, "image_bytes")).c_str(), Mib(Int(b, "stored_bytes")).c_str(),
                    state.c_str());
      }
    });
  });
}

// `backup verify <id>` and `backup prune`.
void AddVerifyAndPrune(CLI::App* backup, bool& as_json, int& code) {
  BackupOptions& o = Options();
  auto* verify = backup->add_subcommand(
      "verify", "check a backup's manifest, key and every sealed chunk without restoring it");
  verify->add_option("backup-id", o.id, "from `silo backup list`")->required();
  verify->callback([&o, &as_json, &code] {
    if (!CheckId(o.id, code)) return;
    code = Call(
        as_json, "POST", "/v1/backups/" + o.id + "/verify", "",
        [](const json::value& v) {
          std::printf("%s: verified (%s database, %lld events, chain head %s)\n",
                      Str(v, "id").c_str(), Mib(Int(v, "image_bytes")).c_str(),
                      static_cast<long long>(Int(v.at("events"), "count")),
                      Str(v.at("events"), "head").substr(0, 16).c_str());
        },
        nullptr, kLongCall);
  });

  auto* prune = backup->add_subcommand("prune", "delete the backups the retention policy drops");
  prune->callback([&as_json, &code] {
    code = Call(
        as_json, "POST", "/v1/backups/prune", "",
        [](const json::value& v) {
          const auto& ids = v.at("pruned").as_array();
          std::printf("pruned %zu backups\n", ids.size());
          for (const auto& i : ids) std::printf("  %s\n", std::string(i.as_string()).c_str());
        },
        nullptr, kLongCall);
  });
}

// `backup restore <id>`: in place (with --yes) or into a new tenant (--as).
void AddRestore(CLI::App* backup, bool& as_json, int& code) {
  BackupOptions& o = Options();
  auto* restore = backup->add_subcommand(
      "restore", "verify a backup, then restore it in place (atomic swap) or as a new tenant");
  restore->add_option("backup-id", o.id, "from `silo backup list`")->required();
  restore->add_option("--as", o.as_slug, "restore into this new tenant instead of in place");
  restore->add_option("--at", o.at, "the state as of this RFC 3339 time (later events dropped)");
  restore->add_flag("--yes", o.yes,
                    "confirm an in-place restore: the tenant's records go back to the backup "
                    "(the current state is backed up first)");
  restore->callback([&o, &as_json, &code] {
    if (!CheckId(o.id, code)) return;
    if (o.as_slug.empty() && !o.yes) {
      std::fprintf(stderr,
                   "silo: restoring in place replaces the tenant's current records, events and "
                   "users with the backup's (the current state is backed up first); add --yes, "
                   "or restore into a new tenant with --as <new-slug>\n");
      code = kUsage;
      return;
    }
    if (!o.as_slug.empty() && !SlugIsPathSafe(o.as_slug)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", o.as_slug.c_str());
      code = kUsage;
      return;
    }
    json::object body;
    if (!o.as_slug.empty()) body["as"] = o.as_slug;
    if (!o.at.empty()) body["at"] = o.at;
    code = Call(
        as_json, "POST", "/v1/backups/" + o.id + "/restore", json::serialize(body),
        [](const json::value& v) {
          bool created = v.at("new_tenant").as_bool();
          std::printf("restored %s into %s (%s): %lld events", Str(v, "backup_id").c_str(),
                      Str(v, "tenant").c_str(), created ? "new tenant" : "in place",
                      static_cast<long long>(Int(v, "events")));
          if (Int(v, "events_dropped") > 0) {
            std::printf(", %lld later events dropped",
                        static_cast<long long>(Int(v, "events_dropped")));
          }
          std::printf(", %lld files, %lld sessions ended, %.2f s\n",
                      static_cast<long long>(Int(v, "files")),
                      static_cast<long long>(Int(v, "sessions_ended")), Num(v, "seconds"));
          if (std::string before = Str(v, "pre_restore_backup_id"); !before.empty()) {
            std::printf("the state before the restore is backup %s (restore it to undo)\n",
                        before.c_str());
          }
          PrintFollowerCopies(v, "of the restored tenant");
        },
        nullptr, kLongCall);
  });
}

}  // namespace

void AddBackupCommands(CLI::App& app, bool& as_json, int& code) {
  auto* backup = app.add_subcommand("backup", "encrypted backups, restores and restore drills");
  backup->require_subcommand(1);
  backup->fallthrough();
  AddRunAndDrill(backup, as_json, code);
  AddList(backup, as_json, code);
  AddVerifyAndPrune(backup, as_json, code);
  AddRestore(backup, as_json, code);
}

}  // namespace silo::cli
