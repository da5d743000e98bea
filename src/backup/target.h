// Where backups are stored: named objects ("<tenant-id>/<backup-id>.json",
// "….data") in a directory or in S3-compatible object storage. Objects hold
// only sealed data and manifests, never plaintext.
//
// Implementations are thread-compatible; the backup service serialises calls.
#ifndef SILO_BACKUP_TARGET_H_
#define SILO_BACKUP_TARGET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::backup {

class Target {
 public:
  virtual ~Target() = default;
  // Stores `bytes` under `name`; a reader sees all of it or nothing.
  virtual Status Put(const std::string& name, std::string_view bytes) = 0;
  // NotFound when absent.
  virtual Result<std::string> Get(const std::string& name) = 0;
  // Every name starting with `prefix`, sorted.
  virtual Result<std::vector<std::string>> List(const std::string& prefix) = 0;
  // OK when absent.
  virtual Status Delete(const std::string& name) = 0;
  // Stores the file at `path` under `name`, read in pieces (a blob of any
  // size never sits whole in memory); a reader sees all of it or nothing.
  virtual Status PutFile(const std::string& name, const std::string& path) = 0;
  // Writes object `name` to `path` (0600, replacing it; all or nothing), in
  // pieces. NotFound when absent.
  virtual Status GetFile(const std::string& name, const std::string& path) = 0;
  // "dir:<path>" or "s3://bucket/prefix": for logs and answers; no secrets.
  virtual std::string Describe() const = 0;
};

// Files under `dir` (created 0700 on first Put); Put writes a temp file,
// fsyncs and renames it.
std::unique_ptr<Target> NewDirectoryTarget(std::string dir);

struct S3Options {
  std::string bucket;
  std::string prefix;    // without leading '/', empty or ending in '/'
  std::string endpoint;  // "https://s3.eu-central-1.amazonaws.com", "http://127.0.0.1:9000"
  std::string region;
  std::string access_key_id;
  std::string secret_access_key;
  long timeout_seconds = 600;
};

// Parses "s3://bucket/prefix" into `bucket` and `prefix`. InvalidArgument when malformed.
Status ParseS3Url(std::string_view url, S3Options& options);

// Path-style requests signed with AWS Signature Version 4 by libcurl
// (CURLOPT_AWS_SIGV4), with the payload's SHA-256 signed too.
std::unique_ptr<Target> NewS3Target(S3Options options);

}  // namespace silo::backup

#endif  // SILO_BACKUP_TARGET_H_
