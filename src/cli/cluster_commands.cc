#include "cli/cluster_commands.h"

#include <cstdio>
#include <cstdlib>

#include "app/cluster_member.h"
#include "cli/commands.h"
#include "config/config.h"

namespace silo::cli {

void AddClusterCommands(CLI::App& app, bool& as_json, int& code) {
  auto* cluster = app.add_subcommand("cluster", "a cluster's nodes and replication (from etcd)");
  cluster->require_subcommand(1);
  auto* status = cluster->add_subcommand(
      "status", "nodes, each tenant's primary and term, followers and their lag");
  bool* json = &as_json;
  int* out = &code;
  auto run = [json, out] {
    config::LoadResult loaded = config::Load([](const char* name) { return std::getenv(name); });
    const auto& endpoints = loaded.config.cluster.etcd_endpoints;
    if (endpoints.empty()) {
      std::fprintf(stderr, "silo: set SILO_ETCD_ENDPOINTS to the cluster's etcd\n");
      *out = kUsage;
      return;
    }
    auto text = app::ClusterStatus(endpoints, *json);
    if (!text.ok()) {
      std::fprintf(stderr, "silo: %s\n", text.status().ToString().c_str());
      *out = kRefused;
      return;
    }
    std::fputs(text->c_str(), stdout);
  };
  status->callback(run);
  status->add_flag("--json", as_json, "one JSON object");

  // `silo tenant promote` belongs with the tenant commands but talks to
  // etcd, not to one node's operator API.
  CLI::App* tenant = app.get_subcommand("tenant");
  auto* promote = tenant->add_subcommand(
      "promote", "hand a tenant to another node of the cluster with no write lost (from etcd)");
  static std::string* slug = new std::string;
  static std::string* node = new std::string;
  static bool* accept_loss = new bool(false);
  promote->add_option("slug", *slug, "the tenant")->required();
  promote->add_option("--node", *node, "the node that is to lead it (SILO_NODE_ID)")->required();
  promote->add_flag("--accept-loss", *accept_loss,
                    "for a tenant no node leads whose election waits for sync set members lost "
                    "for good: the node takes it over with what its copy holds (writes only they "
                    "acknowledged are lost)");
  promote->callback([out] {
    config::LoadResult loaded = config::Load([](const char* name) { return std::getenv(name); });
    const auto& endpoints = loaded.config.cluster.etcd_endpoints;
    if (endpoints.empty()) {
      std::fprintf(stderr, "silo: set SILO_ETCD_ENDPOINTS to the cluster's etcd\n");
      *out = kUsage;
      return;
    }
    auto done = *accept_loss ? app::ForceElection(endpoints, *slug, *node)
                             : app::PromoteTenant(endpoints, *slug, *node);
    if (!done.ok()) {
      std::fprintf(stderr, "silo: %s\n", done.status().ToString().c_str());
      *out = kRefused;
      return;
    }
    std::fputs(done->c_str(), stdout);
  });
}

}  // namespace silo::cli
