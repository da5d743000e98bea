#include "cli/operator_client.h"

#include <curl/curl.h>

#include <boost/json.hpp>
#include <filesystem>

#include "app/app.h"
#include "app/dev_secrets.h"
#include "base/file_util.h"

namespace silo::cli {
namespace {

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

Result<OperatorClient> OperatorClient::FromEnvironment(const config::GetEnv& getenv) {
  config::LoadResult loaded = config::Load(getenv);
  const config::Config& c = loaded.config;
  std::string address = c.operator_listen.ToString();
  if (auto info = ReadFile(app::ServerInfoPath(c.data_dir)); info.ok()) {
    boost::system::error_code ec;
    auto v = boost::json::parse(*info, ec);
    if (!ec && v.is_object()) {
      if (auto* a = v.as_object().if_contains("operator_listen"); a && a->is_string()) {
        address = std::string(a->as_string());
      }
    }
  }
  auto hp = config::ParseHostPort(address);
  if (!hp || !config::IsLoopback(hp->host)) {
    return FailedPrecondition("the operator API address must be a loopback address");
  }
  std::string token = c.operator_token;
  if (token.empty()) {
    auto t = ReadFile(app::DevDir(c.data_dir) + "/operator.token");
    if (!t.ok()) {
      // Name where it looked: run from another directory, the default
      // ./silo-data is not the server's data directory.
      std::error_code ec;
      std::string dir = std::filesystem::absolute(c.data_dir, ec).lexically_normal().string();
      if (ec) dir = c.data_dir;
      return FailedPrecondition(
          "no operator token: SILO_OPERATOR_TOKEN is not set and there is no " + app::DevDir(dir) +
          "/operator.token (looked in the data directory " + dir +
          "; point SILO_DATA_DIR at the server's data directory, or run silo serve there in "
          "development once)");
    }
    token = Trimmed(*t);
  }
  return OperatorClient(address, token);
}

Result<HttpAnswer> OperatorClient::Call(const std::string& method, const std::string& path,
                                        const std::string& json_body, long timeout_seconds) const {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Internal("libcurl init failed");
  std::string url = "http://" + address_ + path;
  std::string auth = "Authorization: Bearer " + token_;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, auth.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  HttpAnswer answer;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");  // never send the token through a proxy
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_seconds);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
  if (method == "POST" || !json_body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(json_body.size()));
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return Unavailable("cannot reach the operator API at " + address_ +
                       " (is silo serve running?): " + curl_easy_strerror(rc));
  }
  return answer;
}

}  // namespace silo::cli
