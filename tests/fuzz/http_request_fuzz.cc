// libFuzzer target: request parsing and routing. Arbitrary bytes go through
// the same Beast parser settings and the same conversion (http/to_request.h)
// as the server, then to the public dispatcher: tenant resolution from Host
// and path, the route table, cookies and tokens, query strings, JSON bodies,
// the record filter and sort parser, over a real encrypted tenant database.
//
// A tenant "acme" with a collection "tickets" (one field of every type) and
// three records exists; "@TOKEN@" in the input is replaced by an API token of
// that tenant (read and write records, read everything else), so that inputs
// reach the handlers behind authentication.
//
// Findings: a crash, a sanitizer report, an exception out of the dispatcher
// (the server would answer 500), a 5xx answer, a status outside 100..599, or
// the token's secret in any answer.
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "api/dispatchers.h"
#include "app/app.h"
#include "app/test_config.h"
#include "base/log.h"
#include "http/to_request.h"

namespace {

using namespace silo;
namespace bhttp = boost::beast::http;

constexpr char kOperatorToken[] = "fuzz-operator-token-0123456789abcdef";

// The server's own service graph (app::App), created but not started.
struct World {
  std::string dir;
  std::unique_ptr<app::App> app;
  api::PublicDispatcher* public_dispatcher = nullptr;
  api::OperatorDispatcher* operator_dispatcher = nullptr;
  std::string token;  // the API token's secret
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "http_request_fuzz setup: %s\n", what);
  std::abort();
}

http::Request Make(std::string method, std::string target, std::string body = "") {
  http::Request r;
  r.method = std::move(method);
  r.target = target;
  r.path = target.substr(0, target.find('?'));
  if (target.find('?') != std::string::npos) r.query = target.substr(target.find('?') + 1);
  r.body = std::move(body);
  r.client_ip = "127.0.0.1";
  r.request_id = "setup";
  if (!r.body.empty()) r.headers.emplace_back("content-type", "application/json");
  return r;
}

std::string Expect(http::Dispatcher& d, http::Request r, int status) {
  auto res = d.Handle(r);
  if (res.status != status) {
    std::fprintf(stderr, "%s %s -> %d %s\n", r.method.c_str(), r.target.c_str(), res.status,
                 res.body.c_str());
    Die("unexpected status");
  }
  return res.body;
}

World& Setup() {
  static World* w = [] {
    auto* w = new World;
    char tmpl[] = "/tmp/silo-http-fuzz-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
    w->dir = tmpl;
    config::Config c = app::testing::ConfigFor(w->dir, kOperatorToken);
    // The cheapest password cost the hasher takes: the fuzzer explores the
    // login routes, not Argon2.
    c.security.password_memory_kib = 64;
    c.security.password_iterations = 1;
    c.security.honeypot_paths = {"/.env", "/wp-login.php"};
    c.security.ban_seconds = 0;  // a honeypot hit still runs, but bans no later input
    c.security.login_per_minute = 1'000'000;
    c.security.public_form_per_minute = 1'000'000;
    c.security.security_contact = "mailto:security@example.com";
    c.security.public_url = "https://example.com";
    c.security.token_max_days = 100 * 366;  // the seeds' tokens expire in 2099
    c.base_domain = "example.com";
    auto app = app::App::Create(std::move(c));
    if (!app.ok()) Die("app");
    w->app = std::move(*app);
    w->public_dispatcher = &w->app->public_dispatcher();
    w->operator_dispatcher = &w->app->operator_dispatcher();

    auto& op = *w->operator_dispatcher;
    auto with_bearer = [](http::Request r, const std::string& token) {
      r.headers.emplace_back("authorization", "Bearer " + token);
      return r;
    };
    Expect(op,
           with_bearer(Make("POST", "/v1/tenants",
                            R"({"slug":"acme","name":"Acme","owner_email":"owner@acme.test"})"),
                       kOperatorToken),
           201);
    std::string issued = Expect(
        op,
        with_bearer(
            Make(
                "POST", "/v1/tenants/acme/tokens",
                R"({"name":"admin","expires_at":"2099-01-01T00:00:00Z","permissions":["collections.manage"]})"),
            kOperatorToken),
        201);
    auto& pub = *w->public_dispatcher;
    const std::string admin = boost::json::parse(issued).at("token").as_string().c_str();
    Expect(
        pub,
        with_bearer(
            Make(
                "POST", "/t/acme/api/collections",
                R"({"name":"tickets","fields":[)"
                R"({"name":"title","type":"string","required":true,"max":200},)"
                R"({"name":"body","type":"text"},{"name":"n","type":"integer","indexed":true},)"
                R"({"name":"x","type":"number"},{"name":"done","type":"boolean"},)"
                R"({"name":"due","type":"datetime"},{"name":"mail","type":"email","unique":true},)"
                R"({"name":"state","type":"enum","values":["open","closed"]},)"
                R"({"name":"extra","type":"json"}],"public":{"create":true,"honeypot":"website"}})"),
            admin),
        201);
    issued = Expect(
        op,
        with_bearer(
            Make(
                "POST", "/v1/tenants/acme/tokens",
                R"({"name":"fuzz","expires_at":"2099-01-01T00:00:00Z","permissions":["records.tickets.read",)"
                R"("records.tickets.create","records.tickets.update","records.tickets.delete",)"
                R"("records.tickets.history",)"
                R"("collections.read","events.read","audit.read",)"
                R"("audit.verify","roles.read","users.read"]})"),
            kOperatorToken),
        201);
    w->token = boost::json::parse(issued).at("token").as_string().c_str();
    for (const char* rec : {R"({"id":"r1","title":"one","n":1,"state":"open"})",
                            R"({"id":"r2","title":"two","n":2,"due":"2026-01-02T03:04:05Z"})",
                            R"({"id":"r3","title":"three","mail":"a@b.test","extra":{"k":[1]}})"}) {
      Expect(pub,
             with_bearer(Make("POST", "/t/acme/api/collections/tickets/records", rec), w->token),
             201);
    }
    return w;
  }();
  return *w;
}

void ReplaceAll(std::string& s, std::string_view from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = Setup();
  std::string raw(reinterpret_cast<const char*>(data), size);
  ReplaceAll(raw, "@TOKEN@", w.token);

  // The server's parser settings: 16 KiB of header, then the route's body
  // limit decided from the request line.
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.eager(false);
  boost::system::error_code ec;
  size_t used = 0;
  while (!parser.is_header_done() && used < raw.size()) {
    size_t n = parser.put(boost::asio::buffer(raw.data() + used, raw.size() - used), ec);
    if (ec) return 0;  // the server answers 400/431 and closes
    if (n == 0) return 0;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  auto& header = parser.get();
  if (!http::FramingProblem(header.base()).empty()) return 0;  // 400, connection closed
  size_t limit = w.public_dispatcher->BodyLimit(
      std::string_view(header.method_string().data(), header.method_string().size()),
      std::string_view(header.target().data(), header.target().size()));
  bool read_body = true;
  if (limit == http::Dispatcher::kNoRoute) {
    // As the server: a small declared body is read and dropped; a larger or
    // chunked one is not read, and the request is answered without it.
    read_body = !parser.chunked() &&
                parser.content_length().value_or(0) <= http::Dispatcher::kUnroutedDrainBytes;
    limit = http::Dispatcher::kUnroutedDrainBytes;
  }
  if (auto length = parser.content_length(); read_body && length && *length > limit) return 0;
  parser.body_limit(limit);
  parser.eager(true);
  while (read_body && !parser.is_done() && used < raw.size()) {
    size_t n = parser.put(boost::asio::buffer(raw.data() + used, raw.size() - used), ec);
    if (ec == bhttp::error::need_more) break;
    if (ec) return 0;
    if (n == 0) break;
    used += n;
  }
  if (read_body && !parser.is_done()) {
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  auto msg = parser.release();
  http::Request req = http::ToRequest(msg, "127.0.0.1", "fuzz");
  http::Response res = w.public_dispatcher->Handle(req);
  // SILO_FUZZ_VERBOSE=1: each answer's status, to check that the seeds get past authentication.
  static const bool verbose = std::getenv("SILO_FUZZ_VERBOSE") != nullptr;
  if (verbose)
    std::fprintf(stderr, "%d %s %s\n", res.status, req.method.c_str(), req.target.c_str());
  if (res.status < 100 || res.status > 599) __builtin_trap();
  if (res.status >= 500 && res.status != 503) {
    std::fprintf(stderr, "status %d: %s\n", res.status, res.body.c_str());
    __builtin_trap();
  }
  if (res.body.find(w.token) != std::string::npos) __builtin_trap();
  for (const auto& [name, value] : res.headers) {
    if (value.find(w.token) != std::string::npos) __builtin_trap();
  }
  return 0;
}
