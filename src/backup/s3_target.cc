// S3-compatible object storage through libcurl: path-style URLs
// (<endpoint>/<bucket>/<prefix><name>), AWS Signature Version 4 computed by
// libcurl (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3"), the payload's SHA-256
// sent and signed as x-amz-content-sha256. ListObjectsV2 answers are read
// with Boost.PropertyTree's XML parser.
#include <curl/curl.h>
#include <unistd.h>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <vector>

#include "backup/target.h"
#include "crypto/crypto.h"

namespace silo::backup {
namespace {

constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

bool SafeKeyText(std::string_view s) {
  return s.find("..") == std::string_view::npos &&
         s.find_first_not_of(
             "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_/") ==
             std::string_view::npos;
}

struct Body {
  std::string_view data;
  size_t pos = 0;
};

size_t ReadBody(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* b = static_cast<Body*>(userdata);
  size_t n = std::min(size * nitems, b->data.size() - b->pos);
  std::memcpy(buffer, b->data.data() + b->pos, n);
  b->pos += n;
  return n;
}

size_t ReadFileBody(char* buffer, size_t size, size_t nitems, void* userdata) {
  return std::fread(buffer, 1, size * nitems, static_cast<FILE*>(userdata));
}

size_t WriteFileBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  return std::fwrite(ptr, 1, size * nmemb, static_cast<FILE*>(userdata));
}

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

// An answer's body: to `file` when there is one and the status is 200, else
// to memory.
struct DownloadSink {
  FILE* file;
  std::string* memory;
  CURL* curl;
};

size_t WriteAnswer(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* sink = static_cast<DownloadSink*>(userdata);
  long status = 0;
  curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
  if (sink->file != nullptr && status == 200) return WriteFileBody(ptr, size, nmemb, sink->file);
  return WriteBody(ptr, size, nmemb, sink->memory);
}

struct Answer {
  long status = 0;
  std::string body;
};

// Where a request's payload comes from and its answer's body goes, when not
// from and to memory (PutFile, GetFile).
struct Stream {
  FILE* upload = nullptr;  // with its size and SHA-256 (hex), signed as the payload's
  curl_off_t upload_size = 0;
  std::string upload_sha256;
  FILE* download = nullptr;  // the body of a 200 answer
};

class S3Target : public Target {
 public:
  explicit S3Target(S3Options o) : o_(std::move(o)) {
    while (!o_.endpoint.empty() && o_.endpoint.back() == '/') o_.endpoint.pop_back();
  }

  Status Put(const std::string& name, std::string_view bytes) override {
    if (!SafeKeyText(name)) return InvalidArgument("bad object name");
    auto a = Request("PUT", ObjectPath(name), "", bytes);
    if (!a.ok()) return a.status();
    if (a->status != 200) return Refused("PUT", name, *a);
    return Status::Ok();
  }

  Result<std::string> Get(const std::string& name) override {
    if (!SafeKeyText(name)) return InvalidArgument("bad object name");
    auto a = Request("GET", ObjectPath(name), "", {});
    if (!a.ok()) return a.status();
    if (a->status == 404) return NotFound("no object " + name);
    if (a->status != 200) return Refused("GET", name, *a);
    return std::move(a->body);
  }

  Result<std::vector<std::string>> List(const std::string& prefix) override {
    if (!SafeKeyText(prefix)) return InvalidArgument("bad prefix");
    std::vector<std::string> names;
    std::string token;
    for (int page = 0; page < 100'000; ++page) {
      std::string query = "list-type=2&prefix=" + Escape(o_.prefix + prefix);
      if (!token.empty()) query += "&continuation-token=" + Escape(token);
      auto a = Request("GET", "/" + o_.bucket, query, {});
      if (!a.ok()) return a.status();
      if (a->status != 200) return Refused("LIST", prefix, *a);
      boost::property_tree::ptree tree;
      try {
        std::istringstream in(a->body);
        boost::property_tree::read_xml(in, tree);
        const auto& result = tree.get_child("ListBucketResult");
        for (const auto& [tag, child] : result) {
          if (tag != "Contents") continue;
          std::string key = child.get<std::string>("Key");
          if (key.rfind(o_.prefix, 0) == 0) names.push_back(key.substr(o_.prefix.size()));
        }
        if (result.get<std::string>("IsTruncated", "false") != "true") break;
        token = result.get<std::string>("NextContinuationToken", "");
        if (token.empty()) break;
      } catch (const std::exception&) {
        return Unavailable("S3 LIST: the answer is not a ListBucketResult");
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  Status Delete(const std::string& name) override {
    if (!SafeKeyText(name)) return InvalidArgument("bad object name");
    auto a = Request("DELETE", ObjectPath(name), "", {});
    if (!a.ok()) return a.status();
    if (a->status != 204 && a->status != 200 && a->status != 404) {
      return Refused("DELETE", name, *a);
    }
    return Status::Ok();
  }

  Status PutFile(const std::string& name, const std::string& path) override {
    if (!SafeKeyText(name)) return InvalidArgument("bad object name");
    // The payload's hash is signed, so it is read twice: hashed, then sent.
    SILO_ASSIGN_OR_RETURN(crypto::FileDigest digest, crypto::DigestFile(path));
    std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), std::fclose);
    if (!f) return Unavailable("cannot read " + path);
    Stream stream{f.get(), static_cast<curl_off_t>(digest.size), digest.sha256, nullptr};
    auto a = Request("PUT", ObjectPath(name), "", {}, &stream);
    if (!a.ok()) return a.status();
    if (a->status != 200) return Refused("PUT", name, *a);
    return Status::Ok();
  }

  Status GetFile(const std::string& name, const std::string& path) override {
    if (!SafeKeyText(name)) return InvalidArgument("bad object name");
    const std::string tmp = path + ".tmp." + crypto::HexEncode(crypto::RandomBytes(4));
    std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(tmp.c_str(), "wbx"), std::fclose);
    if (!f) return Unavailable("cannot write " + path);
    Stream stream{nullptr, 0, "", f.get()};
    auto a = Request("GET", ObjectPath(name), "", {}, &stream);
    const bool flushed = std::fflush(f.get()) == 0 && ::fsync(fileno(f.get())) == 0;
    f.reset();
    Status s;
    if (!a.ok()) {
      s = a.status();
    } else if (a->status == 404) {
      s = NotFound("no object " + name);
    } else if (a->status != 200) {
      s = Refused("GET", name, *a);
    } else if (!flushed || std::rename(tmp.c_str(), path.c_str()) != 0) {
      s = Unavailable("cannot write " + path);
    }
    if (!s.ok()) std::remove(tmp.c_str());
    return s;
  }

  std::string Describe() const override { return "s3://" + o_.bucket + "/" + o_.prefix; }

 private:
  std::string ObjectPath(const std::string& name) const {
    return "/" + o_.bucket + "/" + o_.prefix + name;
  }

  static std::string Escape(const std::string& s) {
    std::unique_ptr<char, decltype(&curl_free)> e(
        curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size())), curl_free);
    return e ? std::string(e.get()) : std::string();
  }

  // The S3 error code from an error answer, never the body (which may echo
  // the string that was signed).
  static Status Refused(const char* what, const std::string& name, const Answer& a) {
    std::string code;
    size_t b = a.body.find("<Code>");
    size_t e = a.body.find("</Code>");
    if (b != std::string::npos && e != std::string::npos && e > b + 6 && e - b < 70) {
      code = " " + a.body.substr(b + 6, e - b - 6);
    }
    return Unavailable(std::string("S3 ") + what + " " + name + ": HTTP " +
                       std::to_string(a.status) + code);
  }

  // `stream`, when given, is the payload (instead of `body`) and where a
  // 200 answer's body goes (an error answer's body is kept in memory, for
  // its error code).
  Result<Answer> Request(const char* method, const std::string& path, const std::string& query,
                         std::string_view body, Stream* stream = nullptr) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return Unavailable("cannot start libcurl");
    CURL* c = curl.get();
    std::string url = o_.endpoint + path + (query.empty() ? "" : "?" + query);
    std::string sigv4 = "aws:amz:" + o_.region + ":s3";
    std::string userpwd = o_.access_key_id + ":" + o_.secret_access_key;
    const bool put = std::strcmp(method, "PUT") == 0;
    const bool from_file = stream != nullptr && stream->upload != nullptr;
    std::string hash_header = "x-amz-content-sha256: " + (from_file ? stream->upload_sha256
                                                          : put     ? crypto::Sha256Hex(body)
                                                                    : std::string(kEmptySha256));
    curl_slist* headers = curl_slist_append(nullptr, hash_header.c_str());
    if (put) headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(headers, curl_slist_free_all);
    Answer answer;
    Body reader{body, 0};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(c, CURLOPT_USERPWD, userpwd.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, o_.timeout_seconds);
    // A streamed download's body goes to its file only on a 200; any other
    // answer's body is the error to read (a header callback would know the
    // status first; an error answer to GET is small, so memory is fine).
    DownloadSink sink{stream != nullptr ? stream->download : nullptr, &answer.body, c};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteAnswer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    if (put && from_file) {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadFileBody);
      curl_easy_setopt(c, CURLOPT_READDATA, stream->upload);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, stream->upload_size);
    } else if (put) {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
      curl_easy_setopt(c, CURLOPT_READDATA, &reader);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body.size()));
    } else if (std::strcmp(method, "DELETE") == 0) {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    CURLcode rc = curl_easy_perform(c);
    crypto::WipeString(userpwd);
    if (rc != CURLE_OK) {
      return Unavailable(std::string("S3 ") + method + " failed: " + curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &answer.status);
    return answer;
  }

  S3Options o_;
};

}  // namespace

Status ParseS3Url(std::string_view url, S3Options& options) {
  constexpr std::string_view kScheme = "s3://";
  if (url.substr(0, kScheme.size()) != kScheme) return InvalidArgument("not an s3:// URL");
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string bucket(rest.substr(0, slash));
  std::string prefix(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
  if (bucket.size() < 3 || bucket.size() > 63 ||
      bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos) {
    return InvalidArgument("bad S3 bucket name in " + std::string(url));
  }
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  if (!prefix.empty() && (!SafeKeyText(prefix) || prefix.front() == '/')) {
    return InvalidArgument("bad S3 prefix in " + std::string(url) + " (use [A-Za-z0-9._-/])");
  }
  options.bucket = std::move(bucket);
  options.prefix = std::move(prefix);
  return Status::Ok();
}

std::unique_ptr<Target> NewS3Target(S3Options options) {
  return std::make_unique<S3Target>(std::move(options));
}

}  // namespace silo::backup
