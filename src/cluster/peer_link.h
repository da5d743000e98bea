// Node-to-node links: one mutual-TLS connection from a node to each peer,
// carrying the messages of many tenants (notes: replication.md section 6).
//
// Both ends present a certificate signed by the cluster's CA
// (SILO_CLUSTER_TLS_CA) and check the other's; TLS 1.3 only. Messages are
// frames: a tenant id, a kind, a sequence number and a payload. So that one
// large tenant cannot hold up the others:
//  - a payload over kChunkBytes travels as several chunks, and the link
//    writes one chunk at a time, so other tenants' frames go in between;
//  - a sender has at most kWindowBytes of one tenant in flight (queued or
//    sent, not answered); past that only that tenant's sender waits;
//  - the receiving end runs each tenant's messages in order on a pool of
//    workers, one tenant per worker at a time, so a tenant whose handler is
//    slow (a follower's fsync) delays only itself.
// The wire format is in docs/formats.md ("Node link frame").
#ifndef SILO_CLUSTER_PEER_LINK_H_
#define SILO_CLUSTER_PEER_LINK_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace silo::cluster {

struct PeerTls {
  std::string cert_file;  // this node's certificate chain (PEM)
  std::string key_file;
  std::string ca_file;  // the cluster CA: the only issuer a peer may have
};

struct Message {
  std::string tenant;  // at most 64 bytes
  uint8_t kind = 0;    // the caller's; 0 is the link's own (an error answer)
  uint64_t seq = 0;
  std::string payload;  // at most kMaxPayload
};

// A message to send, its bytes the caller's until Send returns (Send
// copies a payload of at most kChunkBytes and waits until a larger one is
// written): a segment shipped to several followers is not copied into a
// Message for each.
struct MessageRef {
  std::string_view tenant;
  uint8_t kind = 0;
  uint64_t seq = 0;
  std::string_view payload;
};

inline constexpr size_t kChunkBytes = size_t{256} << 10;
inline constexpr size_t kWindowBytes = size_t{8} << 20;
inline constexpr size_t kMaxPayload = size_t{64} << 20;

// Answers one message; runs on a worker of the listener's pool. The answer
// goes back to the sender as the reply to that message (same tenant, seq).
using Handler = std::function<Message(const Message&)>;
// Answers a run of one tenant's messages, in the order they came (those
// queued when a worker took the tenant, at most 64): one answer per message,
// in the same order. Lets a handler do once for a run what each message
// would need (a follower's fsync: several segments made durable together).
using RunHandler = std::function<std::vector<Message>(const std::vector<Message>&)>;

// A random first message number for a sender that shares a link with
// others (its numbers then count up from it), so that no two senders' (tenant,
// seq) pairs in flight meet.
uint64_t RandomFirstSeq();

class PeerListener {
 public:
  // Listens on `listen` ("127.0.0.1:0" picks a port) and serves every peer
  // that completes the mutual TLS handshake. `workers` threads run handlers.
  static Result<std::unique_ptr<PeerListener>> Start(const std::string& listen, const PeerTls& tls,
                                                     Handler handler, int workers = 4);
  // The same, with a handler that answers runs.
  static Result<std::unique_ptr<PeerListener>> StartForRuns(const std::string& listen,
                                                            const PeerTls& tls, RunHandler handler,
                                                            int workers = 4);
  virtual ~PeerListener() = default;
  virtual int port() const = 0;
  // Stops accepting, closes every link, joins every thread: no handler runs
  // once it returns (messages still queued are dropped unanswered).
  virtual void Stop() = 0;
};

class PeerClient {
 public:
  // Connects to `address` ("host:port") with mutual TLS.
  static Result<std::unique_ptr<PeerClient>> Connect(const std::string& address,
                                                     const PeerTls& tls);
  virtual ~PeerClient() = default;
  // Called once with the answer to a sent message, or with Unavailable
  // when the link broke first. Runs on the link's reader thread: it must
  // not block (it may Send), and it must not hold the last reference to
  // this client (a client destroyed on its own reader thread leaves that
  // thread running, detached, which crashes a process that exits meanwhile).
  using Done = std::function<void(Result<Message>)>;

  // Queues `message` for the link's writer thread (a tenant's messages go
  // in the order of these calls; the tenants with messages queued take
  // turns, a chunk each) and returns; `done` gets the answer. A payload of
  // at most kChunkBytes is copied, so a commit that ships a segment does
  // not wait for a slow peer's socket; Send with a larger one returns once
  // it is written. Waits first while the tenant's window (queued or sent,
  // not answered) is full, at most `window_wait` (DeadlineExceeded).
  // Thread-safe: many tenants' calls share the link. Unavailable once the
  // link is broken (for good: connect again); InvalidArgument for a message
  // over the limits or a (tenant, seq) already in flight.
  virtual Status Send(const MessageRef& message, std::chrono::milliseconds window_wait,
                      Done done) = 0;
  Status Send(const Message& message, std::chrono::milliseconds window_wait, Done done) {
    return Send(MessageRef{message.tenant, message.kind, message.seq, message.payload}, window_wait,
                std::move(done));
  }
  // Sends `message` and waits for its answer, at most `timeout` in all.
  // DeadlineExceeded on timeout (the message may still arrive; its answer
  // is then dropped).
  virtual Result<Message> Call(const Message& message, std::chrono::milliseconds timeout) = 0;
  virtual bool broken() const = 0;
};

}  // namespace silo::cluster

#endif  // SILO_CLUSTER_PEER_LINK_H_
