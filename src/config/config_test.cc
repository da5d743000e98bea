#include "config/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>

#include "base/file_util.h"
#include "base/status_matchers.h"

namespace silo::config {
namespace {

using Env = std::map<std::string, std::string>;

GetEnv From(const Env& env) {
  return [env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

bool Mentions(const std::vector<std::string>& problems, const std::string& word) {
  for (const auto& p : problems) {
    if (p.find(word) != std::string::npos) return true;
  }
  return false;
}

const char kKey[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31

TEST(ConfigTest, DevelopmentDefaults) {
  auto r = Load(From({}));
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.config.env, Environment::kDevelopment);
  EXPECT_EQ(r.config.data_dir, "./silo-data");
  EXPECT_EQ(r.config.listen.ToString(), "127.0.0.1:8443");
  EXPECT_EQ(r.config.operator_listen.ToString(), "127.0.0.1:8444");
  EXPECT_FALSE(r.config.master_key.has_value());
}

TEST(ConfigTest, ParsesEveryVariable) {
  auto r = Load(From({{"SILO_LISTEN", "[::1]:9000"},
                      {"SILO_OPERATOR_LISTEN", "127.0.0.2:9001"},
                      {"SILO_MASTER_KEY", kKey},
                      {"SILO_BASE_DOMAIN", "Example.COM"},
                      {"SILO_TRUSTED_PROXIES", "10.0.0.1, ::1"},
                      {"SILO_MAX_HEADER_BYTES", "4096"},
                      {"SILO_READ_TIMEOUT_MS", "1500"},
                      {"SILO_MAX_OPEN_TENANTS", "12"},
                      {"SILO_SYNCHRONOUS", "normal"},
                      {"SILO_AUDIT_RETENTION_MONTHS", "36"}}));
  ASSERT_TRUE(r.problems.empty()) << r.problems[0];
  EXPECT_FALSE(r.config.synchronous_full);
  EXPECT_EQ(r.config.audit_retention_months, 36);
  EXPECT_EQ(r.config.limits.max_open_tenants, 12u);
  EXPECT_EQ(r.config.listen.host, "::1");
  EXPECT_EQ(r.config.listen.port, 9000);
  EXPECT_EQ(r.config.base_domain, "example.com");
  EXPECT_EQ(r.config.trusted_proxies.size(), 2u);
  EXPECT_EQ(r.config.limits.max_header_bytes, 4096u);
  EXPECT_EQ(r.config.limits.read_timeout.count(), 1500);
  ASSERT_TRUE(r.config.master_key.has_value());
  EXPECT_EQ(r.config.master_key->data()[31], 31);
}

TEST(ConfigTest, Backups) {
  auto d = Load(From({{"SILO_DATA_DIR", "/srv/silo"}}));
  EXPECT_TRUE(d.problems.empty());
  EXPECT_EQ(d.config.backups.target, "/srv/silo/backups");
  EXPECT_EQ(d.config.backups.daily_at_seconds, 2 * 3600);
  EXPECT_EQ(d.config.backups.daily_days, 30);
  EXPECT_EQ(d.config.backups.weekly_days, 90);
  auto s3 = Load(From({{"SILO_BACKUP_TARGET", "s3://bk/silo"},
                       {"SILO_S3_REGION", "eu-central-1"},
                       {"SILO_S3_ACCESS_KEY_ID", "AK"},
                       {"SILO_S3_SECRET_ACCESS_KEY", "SK"},
                       {"SILO_BACKUP_TIME", "03:15:30"},
                       {"SILO_BACKUP_WEEKLY_DAY", "wednesday"},
                       {"SILO_BACKUP_SCHEDULE", "off"}}));
  EXPECT_TRUE(s3.problems.empty());
  EXPECT_EQ(s3.config.backups.s3_endpoint, "https://s3.eu-central-1.amazonaws.com");
  EXPECT_EQ(s3.config.backups.daily_at_seconds, 3 * 3600 + 15 * 60 + 30);
  EXPECT_EQ(s3.config.backups.weekly_day, 3);
  EXPECT_FALSE(s3.config.backups.schedule);
  auto bad = Load(From({{"SILO_BACKUP_TARGET", "s3://bk/x"},
                        {"SILO_BACKUP_TIME", "25:00"},
                        {"SILO_BACKUP_WEEKLY_DAY", "Someday"},
                        {"SILO_BACKUP_SCHEDULE", "maybe"},
                        {"SILO_BACKUP_DAILY_DAYS", "0"}}));
  EXPECT_EQ(bad.problems.size(), 5u);
  for (const auto& p : bad.problems) EXPECT_EQ(p.find("SK"), std::string::npos);
  // Outside development an S3 endpoint must be https.
  auto prod = Load(From({{"SILO_ENV", "production"},
                         {"SILO_BACKUP_TARGET", "s3://bk/x"},
                         {"SILO_S3_ENDPOINT", "http://10.0.0.5:9000"},
                         {"SILO_S3_ACCESS_KEY_ID", "AK"},
                         {"SILO_S3_SECRET_ACCESS_KEY", "SK"}}));
  bool https_problem = false;
  for (const auto& p : prod.problems)
    https_problem |= p.find("must be https://") != std::string::npos;
  EXPECT_TRUE(https_problem);
}

TEST(ConfigTest, BadValuesAreAllReported) {
  auto r = Load(From({{"SILO_ENV", "prod"},
                      {"SILO_LISTEN", "localhost:8443"},
                      {"SILO_OPERATOR_LISTEN", "0.0.0.0:8444"},
                      {"SILO_MASTER_KEY", "c2hvcnQ="},
                      {"SILO_MAX_BODY_BYTES", "-5"},
                      {"SILO_MAX_OPEN_TENANTS", "0"},
                      {"SILO_SYNCHRONOUS", "off"},
                      {"SILO_TRUSTED_PROXIES", "evil.example"}}));
  EXPECT_TRUE(Mentions(r.problems, "SILO_SYNCHRONOUS"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_MAX_OPEN_TENANTS"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_ENV"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_LISTEN must"));
  EXPECT_TRUE(Mentions(r.problems, "loopback"));
  EXPECT_TRUE(Mentions(r.problems, "32 bytes"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_MAX_BODY_BYTES"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_TRUSTED_PROXIES"));
}

TEST(ConfigTest, ClusterSettings) {
  auto alone = Load(From({}));
  EXPECT_FALSE(alone.config.cluster.clustered());

  auto r = Load(From({{"SILO_NODE_ID", "node-2"},
                      {"SILO_ETCD_ENDPOINTS", "http://127.0.0.1:2379, http://127.0.0.1:22379"},
                      {"SILO_LEASE_TTL_S", "2"},
                      {"SILO_CLUSTER_LISTEN", "127.0.0.1:7443"},
                      {"SILO_CLUSTER_TLS_CERT", "/c/node.pem"},
                      {"SILO_CLUSTER_TLS_KEY", "/c/node.key"},
                      {"SILO_CLUSTER_TLS_CA", "/c/ca.pem"},
                      {"SILO_REPLICATION", "async"},
                      {"SILO_REPL_ACK_TIMEOUT_MS", "500"},
                      {"SILO_REPL_STRICT", "1"}}));
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  const Cluster& k = r.config.cluster;
  EXPECT_TRUE(k.clustered());
  EXPECT_EQ(k.node_id, "node-2");
  EXPECT_EQ(k.etcd_endpoints,
            (std::vector<std::string>{"http://127.0.0.1:2379", "http://127.0.0.1:22379"}));
  EXPECT_EQ(k.lease_ttl_s, 2);
  EXPECT_EQ(k.listen.ToString(), "127.0.0.1:7443");
  EXPECT_EQ(k.replication, ReplicationMode::kAsync);
  EXPECT_EQ(k.ack_timeout, std::chrono::milliseconds(500));
  EXPECT_TRUE(k.strict);

  // Clustered defaults: sync, 2 s, not strict, a 5 s lease.
  auto d = Load(From({{"SILO_ETCD_ENDPOINTS", "http://127.0.0.1:2379"}}));
  EXPECT_EQ(d.config.cluster.replication, ReplicationMode::kSync);
  EXPECT_EQ(d.config.cluster.ack_timeout, std::chrono::milliseconds(2000));
  EXPECT_FALSE(d.config.cluster.strict);
  EXPECT_EQ(d.config.cluster.lease_ttl_s, 5);
  // ... and what it lacks, all at once.
  EXPECT_TRUE(Mentions(d.problems, "SILO_NODE_ID"));
  EXPECT_TRUE(Mentions(d.problems, "SILO_CLUSTER_LISTEN"));
  EXPECT_TRUE(Mentions(d.problems, "SILO_CLUSTER_TLS_CA"));

  auto bad = Load(From({{"SILO_NODE_ID", "../n1"},
                        {"SILO_ETCD_ENDPOINTS", "127.0.0.1:2379,http://127.0.0.1:2379"},
                        {"SILO_CLUSTER_LISTEN", "127.0.0.1"},
                        {"SILO_REPLICATION", "semi"},
                        {"SILO_REPL_STRICT", "yes"},
                        {"SILO_LEASE_TTL_S", "0"}}));
  EXPECT_TRUE(Mentions(bad.problems, "SILO_NODE_ID must"));
  EXPECT_TRUE(Mentions(bad.problems, "not an http:// or https:// URL: 127.0.0.1:2379"));
  EXPECT_TRUE(Mentions(bad.problems, "SILO_CLUSTER_LISTEN must"));
  EXPECT_TRUE(Mentions(bad.problems, "SILO_REPLICATION must"));
  EXPECT_TRUE(Mentions(bad.problems, "SILO_REPL_STRICT must"));
  EXPECT_TRUE(Mentions(bad.problems, "SILO_LEASE_TTL_S"));

  // A node id without etcd is a mistake, not a single node.
  auto half = Load(From({{"SILO_NODE_ID", "n1"}}));
  EXPECT_TRUE(Mentions(half.problems, "need SILO_ETCD_ENDPOINTS"));
  EXPECT_TRUE(Mentions(Load(From({{"SILO_KEYLESS", "1"}})).problems, "need SILO_ETCD_ENDPOINTS"));

  // A keyless node: no master key (one given is refused), and outside
  // development neither an operator token nor a certificate (no HTTP).
  std::map<std::string, std::string> keyless{{"SILO_ENV", "production"},
                                             {"SILO_DATA_DIR", "/"},
                                             {"SILO_KEYLESS", "1"},
                                             {"SILO_NODE_ID", "n4"},
                                             {"SILO_ETCD_ENDPOINTS", "http://127.0.0.1:2379"},
                                             {"SILO_CLUSTER_LISTEN", "127.0.0.1:7443"},
                                             {"SILO_CLUSTER_TLS_CERT", "/c/node.pem"},
                                             {"SILO_CLUSTER_TLS_KEY", "/c/node.key"},
                                             {"SILO_CLUSTER_TLS_CA", "/c/ca.pem"}};
  auto k4 = Load(From(keyless));
  EXPECT_TRUE(k4.config.cluster.keyless);
  EXPECT_FALSE(Mentions(k4.problems, "SILO_MASTER_KEY"));
  EXPECT_FALSE(Mentions(k4.problems, "SILO_OPERATOR_TOKEN"));
  EXPECT_FALSE(Mentions(k4.problems, "SILO_TLS_CERT"));
  keyless["SILO_MASTER_KEY"] = std::string(43, 'A') + "=";
  EXPECT_TRUE(Mentions(Load(From(keyless)).problems, "SILO_KEYLESS=1 takes no master key"));
  keyless.erase("SILO_MASTER_KEY");
  keyless["SILO_KEYLESS"] = "yes";
  EXPECT_TRUE(Mentions(Load(From(keyless)).problems, "SILO_KEYLESS must be 0 or 1"));
}

TEST(ConfigTest, ProductionRefusesMissingSecretsListingEveryProblem) {
  auto r = Load(From({{"SILO_ENV", "production"},
                      {"SILO_DATA_DIR", "/nonexistent/silo"},
                      {"SILO_AUDIT_RETENTION_MONTHS", "23"}}));
  // Production never keeps audit entries for less than 24 months.
  EXPECT_TRUE(Mentions(r.problems, "SILO_AUDIT_RETENTION_MONTHS must be at least 24"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_MASTER_KEY"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_SIGNING_KEY"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_OPERATOR_TOKEN"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_TLS_CERT"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_DATA_DIR"));
}

TEST(ConfigTest, ProductionChecksTokenLengthTlsFilesAndDirMode) {
  char tmpl[] = "/tmp/silo-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  chmod(dir.c_str(), 0755);
  Env env = {{"SILO_ENV", "production"},
             {"SILO_DATA_DIR", dir},
             {"SILO_MASTER_KEY", kKey},
             {"SILO_SIGNING_KEY", kKey},
             {"SILO_OPERATOR_TOKEN", "short"},
             {"SILO_TLS_CERT", dir + "/missing.crt"},
             {"SILO_TLS_KEY", dir + "/missing.key"}};
  auto r = Load(From(env));
  EXPECT_TRUE(Mentions(r.problems, "at least 32 bytes"));
  EXPECT_TRUE(Mentions(r.problems, "SILO_TLS_CERT: file not found"));
  EXPECT_TRUE(Mentions(r.problems, "other users"));
  EXPECT_FALSE(Mentions(r.problems, "SILO_MASTER_KEY"));

  chmod(dir.c_str(), 0700);
  ASSERT_OK(WriteFileAtomic(dir + "/missing.crt", "x"));
  ASSERT_OK(WriteFileAtomic(dir + "/missing.key", "x"));
  env["SILO_OPERATOR_TOKEN"] = std::string(32, 'x');
  r = Load(From(env));
  EXPECT_TRUE(r.problems.empty()) << r.problems[0];
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, MasterKeyFromFileAndNotBoth) {
  char tmpl[] = "/tmp/silo-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_OK(WriteFileAtomic(dir + "/mk", std::string(kKey) + "\n"));
  auto r = Load(From({{"SILO_MASTER_KEY_FILE", dir + "/mk"}}));
  EXPECT_TRUE(r.problems.empty());
  EXPECT_TRUE(r.config.master_key.has_value());
  r = Load(From({{"SILO_MASTER_KEY_FILE", dir + "/mk"}, {"SILO_MASTER_KEY", kKey}}));
  EXPECT_TRUE(Mentions(r.problems, "only one"));
  // The signing key is read the same way, and is not the master key.
  r = Load(From({{"SILO_SIGNING_KEY_FILE", dir + "/mk"}}));
  EXPECT_TRUE(r.problems.empty());
  EXPECT_TRUE(r.config.signing_key.has_value());
  EXPECT_FALSE(r.config.master_key.has_value());
  r = Load(From({{"SILO_SIGNING_KEY_FILE", dir + "/mk"}, {"SILO_SIGNING_KEY", kKey}}));
  EXPECT_TRUE(Mentions(r.problems, "only one of SILO_SIGNING_KEY"));
  EXPECT_TRUE(Mentions(Load(From({{"SILO_SIGNING_KEY", "c2hvcnQ="}})).problems,
                       "the signing key must be base64 of exactly 32 bytes"));
  std::filesystem::remove_all(dir);
}

TEST(HostPortTest, Parsing) {
  EXPECT_TRUE(ParseHostPort("127.0.0.1:0").has_value());
  EXPECT_FALSE(ParseHostPort("127.0.0.1").has_value());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:65536").has_value());
  EXPECT_FALSE(ParseHostPort("[::1:80").has_value());
  EXPECT_TRUE(IsLoopback("127.5.5.5"));
  EXPECT_TRUE(IsLoopback("::1"));
  EXPECT_FALSE(IsLoopback("10.0.0.1"));
}

}  // namespace
}  // namespace silo::config
