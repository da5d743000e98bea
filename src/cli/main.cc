// silo: argv -> subcommand. Exit codes: 0 ok, 1 refused, 2 usage.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "app/app.h"
#include "cli/operator_client.h"

namespace {

using silo::cli::HttpAnswer;
using silo::cli::OperatorClient;
namespace json = boost::json;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;

const char* Env(const char* name) { return std::getenv(name); }

std::string ProblemDetail(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (auto* d = v.as_object().if_contains("detail"); d && d->is_string()) {
      return std::string(d->as_string());
    }
  }
  return "unexpected answer";
}

// Calls the operator API; prints JSON (--json) or `human(answer)`.
int Call(bool as_json, const std::string& method, const std::string& path, const std::string& body,
         const std::function<void(const json::value&)>& human) {
  auto client = OperatorClient::FromEnvironment(Env);
  if (!client.ok()) {
    std::fprintf(stderr, "silo: %s\n", client.status().message().c_str());
    return kRefused;
  }
  auto answer = client->Call(method, path, body);
  if (!answer.ok()) {
    std::fprintf(stderr, "silo: %s\n", answer.status().message().c_str());
    return kRefused;
  }
  bool ok = answer->status >= 200 && answer->status < 300;
  if (as_json) {
    std::cout << answer->body << "\n";
  } else if (ok) {
    boost::system::error_code ec;
    human(json::parse(answer->body, ec));
  }
  if (!ok) {
    if (!as_json) {
      std::fprintf(stderr, "silo: refused (%ld): %s\n", answer->status,
                   ProblemDetail(answer->body).c_str());
    }
    return kRefused;
  }
  return kOk;
}

// Slugs go into URL paths: anything outside [a-z0-9-] could change the path
// or query the request means, so it is a usage error before any request.
bool SlugIsPathSafe(const std::string& s) {
  return !s.empty() &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

std::string Str(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  auto* f = v.as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : "";
}

void PrintTenant(const json::value& t) {
  std::printf("%-24s %-10s %s  %s\n", Str(t, "slug").c_str(), Str(t, "state").c_str(),
              Str(t, "id").c_str(), Str(t, "name").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // Block the signals the server waits for before any thread exists, so that
  // only the main thread's sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"silo: a multi-tenant, encrypted, event-sourced backend"};
  app.require_subcommand(1);
  bool as_json = false;
  app.add_flag("--json", as_json, "print the operator API's JSON answer and nothing else");

  int code = kOk;
  auto* serve = app.add_subcommand("serve", "run the server (configuration from SILO_* variables)");
  serve->callback([&] { code = silo::app::Serve(Env); });

  auto* tenant = app.add_subcommand("tenant", "manage tenants through the operator API");
  tenant->require_subcommand(1);
  tenant->fallthrough();

  std::string slug, name, owner_email;
  auto* create = tenant->add_subcommand("create", "create a tenant");
  create->add_option("slug", slug, "DNS label, 3-63 characters")->required();
  create->add_option("--name", name, "display name");
  create->add_option("--owner-email", owner_email, "the owner's e-mail address");
  create->callback([&] {
    json::object body;
    body["slug"] = slug;
    if (!name.empty()) body["name"] = name;
    if (!owner_email.empty()) body["owner_email"] = owner_email;
    code = Call(as_json, "POST", "/v1/tenants", json::serialize(body), [](const json::value& v) {
      std::printf("created tenant %s (id %s)\n", Str(v, "slug").c_str(), Str(v, "id").c_str());
    });
  });

  auto* list = tenant->add_subcommand("list", "list tenants");
  list->callback([&] {
    code = Call(as_json, "GET", "/v1/tenants", "", [](const json::value& v) {
      std::printf("%-24s %-10s %-32s  %s\n", "SLUG", "STATE", "ID", "NAME");
      if (v.is_object()) {
        if (auto* arr = v.as_object().if_contains("tenants"); arr && arr->is_array()) {
          for (const auto& t : arr->as_array()) PrintTenant(t);
        }
      }
    });
  });

  for (const char* verb : {"suspend", "resume"}) {
    auto* sub = tenant->add_subcommand(verb, std::string(verb) + " a tenant");
    sub->add_option("slug", slug, "the tenant")->required();
    std::string v = verb;
    sub->callback([&, v] {
      if (!SlugIsPathSafe(slug)) {
        std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
        code = kUsage;
        return;
      }
      code = Call(as_json, "POST", "/v1/tenants/" + slug + "/" + v, "",
                  [](const json::value& t) { PrintTenant(t); });
    });
  }

  bool yes = false;
  auto* del = tenant->add_subcommand("delete", "delete a tenant and destroy its key");
  del->add_option("slug", slug, "the tenant")->required();
  del->add_flag("--yes", yes, "confirm: the tenant's data becomes unrecoverable");
  del->callback([&] {
    if (!yes) {
      std::fprintf(stderr, "silo: deleting a tenant destroys its data for good; add --yes\n");
      code = kUsage;
      return;
    }
    if (!SlugIsPathSafe(slug)) {
      std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
      code = kUsage;
      return;
    }
    code = Call(as_json, "DELETE", "/v1/tenants/" + slug, "", [](const json::value& v) {
      std::printf("deleted tenant %s\n", Str(v, "slug").c_str());
    });
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kUsage;
  }
  return code;
}
