#include "cli/commands.h"

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/operator_client.h"

namespace silo::cli {

namespace json = boost::json;

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

std::vector<std::string> ProblemErrors(const std::string& body) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return out;
  auto* errors = v.as_object().if_contains("errors");
  if (errors == nullptr || !errors->is_array()) return out;
  for (const auto& e : errors->as_array()) {
    std::string field = Str(e, "field");
    std::string message = Str(e, "message");
    out.push_back(field.empty() ? message : field + ": " + message);
  }
  return out;
}

int Call(bool as_json, const std::string& method, const std::string& path, const std::string& body,
         const std::function<void(const json::value&)>& human, std::string* raw,
         long timeout_seconds) {
  auto client = OperatorClient::FromEnvironment([](const char* n) { return std::getenv(n); });
  if (!client.ok()) {
    std::fprintf(stderr, "silo: %s\n", client.status().message().c_str());
    return kRefused;
  }
  auto answer = client->Call(method, path, body, timeout_seconds);
  if (!answer.ok()) {
    std::fprintf(stderr, "silo: %s\n", answer.status().message().c_str());
    return kRefused;
  }
  bool ok = answer->status >= 200 && answer->status < 300;
  if (raw != nullptr) *raw = answer->body;
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
      // The detail is often generic ("invalid token"); the server names each
      // field at fault in errors[].
      for (const auto& e : ProblemErrors(answer->body)) {
        std::fprintf(stderr, "  %s\n", e.c_str());
      }
    }
    return kRefused;
  }
  return kOk;
}

bool SlugIsPathSafe(const std::string& s) {
  return !s.empty() &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

bool CheckSlug(const std::string& slug, int& code) {
  if (SlugIsPathSafe(slug)) return true;
  std::fprintf(stderr, "silo: not a valid slug: %s\n", slug.c_str());
  code = kUsage;
  return false;
}

std::string Str(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  auto* f = v.as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : "";
}

void PrintFollowerCopies(const json::value& v, const char* what) {
  auto n = [&](const char* key) -> long long {
    auto* f = v.is_object() ? v.as_object().if_contains(key) : nullptr;
    return f && f->is_int64() ? f->as_int64() : 0;
  };
  if (n("followers") <= 0) return;
  std::printf("%lld of %lld followers hold a copy %s%s\n", n("followers_copied"), n("followers"),
              what,
              n("followers_copied") < n("followers") ? " (the others take theirs later)" : "");
}

}  // namespace silo::cli
