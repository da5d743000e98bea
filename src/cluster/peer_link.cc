// Blocking sockets and OpenSSL, a thread per link: a node has a handful of
// peers, so this stays simple and keeps Asio out of the cluster module.
#include "cluster/peer_link.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "base/log.h"
#include "crypto/crypto.h"

namespace silo::cluster {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint8_t kRequest = 1;
constexpr uint8_t kReply = 2;
constexpr uint8_t kLastChunk = 1;
constexpr size_t kMaxTenant = 64;
// type, kind, flags, tenant length, seq, total length
constexpr size_t kFixedHeader = 1 + 1 + 1 + 1 + 8 + 4;
constexpr int kHandshakeTimeoutS = 5;
constexpr int kMaxLinks = 64;
// What the peer's records may make OpenSSL queue for it between two of our
// writes (a KeyUpdate answered is 27 bytes, an alert ends the link): a peer
// that asks for more, such as a flood of KeyUpdates on a link we write
// nothing to, is dropped rather than left to grow our memory.
constexpr size_t kMaxQueuedByReads = 64 << 10;

std::string SslError() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// A TLS 1.3 context that presents `tls`'s certificate and accepts only
// peers whose certificate the cluster CA signed.
Result<std::shared_ptr<SSL_CTX>> MakeContext(const PeerTls& tls, bool server) {
  // OpenSSL writes with write(2): a peer that went away must give an error,
  // not SIGPIPE (silo's main ignores it too; tests and tools may not).
  static const bool ignored = [] { return ::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)ignored;
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()),
                               SSL_CTX_free);
  if (!ctx) return Internal("TLS setup failed").WithCause(SslError());
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(c, tls.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(c, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(c) != 1) {
    return InvalidArgument("the cluster TLS certificate or key cannot be used")
        .WithCause(SslError());
  }
  if (SSL_CTX_load_verify_locations(c, tls.ca_file.c_str(), nullptr) != 1) {
    return InvalidArgument("the cluster CA cannot be used").WithCause(SslError());
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
  return ctx;
}

bool SplitAddress(const std::string& address, std::string* host, std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return !port->empty();
}

using AddressInfo = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// The first address `host`:`port` names (numeric only when `passive`: a
// listener binds an IP address, it does not look one up).
AddressInfo Resolve(const std::string& host, const std::string& port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) found = nullptr;
  return AddressInfo(found, freeaddrinfo);
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetUint(const char* p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// One chunk on the wire.
struct Chunk {
  uint8_t type = 0;
  uint8_t kind = 0;
  bool last = false;
  std::string tenant;
  uint64_t seq = 0;
  uint32_t total = 0;  // the whole payload's length
  std::string bytes;
};

// One TLS connection: whole-frame writes under a lock, frame reads by one
// reader thread.
//
// OpenSSL allows one call at a time on an SSL object, and a read may write:
// a peer's KeyUpdate makes SSL_read queue one of ours (an alert does too).
// The reader's SSL_read and a writer's SSL_write used to run on the socket
// at once and corrupt the stream. So once the handshake is done
// (Established) OpenSSL works on memory buffers, every SSL call runs under
// ssl_mu_ and never touches the socket, and the socket is read and written
// outside that lock. (Non-blocking socket calls under the lock would not do:
// OpenSSL 3.0 fails with "bad length" when a KeyUpdate comes in while a
// write waits for the socket; seen with the test's key-updating peer.)
class Link {
 public:
  Link(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ~Link() {
    SSL_free(ssl_);
    ::close(fd_);
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Ends blocked reads and writes on both sides.
  void Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

  // After the handshake (on the socket, blocking), before a second thread
  // uses the link: OpenSSL reads from and writes to memory from now on.
  // Nothing past the handshake is lost: OpenSSL reads the socket a record at
  // a time and has read none yet (TLS 1.3 without session tickets).
  bool Established() {
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    if (in == nullptr || out == nullptr) {
      BIO_free(in);
      BIO_free(out);
      return false;
    }
    SSL_set_bio(ssl_, in, out);  // frees the socket's BIO
    in_ = in;
    out_ = out;
    return true;
  }

  // Writes a message as chunks, taking the lock per chunk so that other
  // senders' chunks go in between.
  bool WriteMessage(uint8_t type, const Message& m) {
    return WriteMessage(type, MessageRef{m.tenant, m.kind, m.seq, m.payload});
  }
  bool WriteMessage(uint8_t type, const MessageRef& m) {
    size_t offset = 0;
    do {
      if (!WriteChunk(type, m, &offset)) return false;
    } while (offset < m.payload.size());
    return true;
  }
  // Writes the chunk of `m` that starts at `*offset` and moves `*offset`
  // past it.
  bool WriteChunk(uint8_t type, const MessageRef& m, size_t* offset) {
    size_t n = std::min(kChunkBytes, m.payload.size() - *offset);
    std::string frame;
    frame.reserve(4 + kFixedHeader + m.tenant.size() + n);
    PutU32(frame, static_cast<uint32_t>(kFixedHeader + m.tenant.size() + n));
    frame.push_back(static_cast<char>(type));
    frame.push_back(static_cast<char>(m.kind));
    frame.push_back(static_cast<char>(*offset + n == m.payload.size() ? kLastChunk : 0));
    frame.push_back(static_cast<char>(m.tenant.size()));
    PutU64(frame, m.seq);
    PutU32(frame, static_cast<uint32_t>(m.payload.size()));
    frame.append(m.tenant);
    frame.append(m.payload.substr(*offset, n));
    {
      std::lock_guard lock(write_mu_);
      if (!WriteAll(frame)) return false;
    }
    *offset += n;
    return true;
  }

  // Reads one chunk; false when the link ended or the peer sent something
  // that is not a frame (the link is then dropped).
  bool ReadChunk(Chunk& c) {
    char length[4];
    if (!ReadAll(length, 4)) return false;
    size_t n = GetUint(length, 4);
    if (n < kFixedHeader || n > kFixedHeader + kMaxTenant + kChunkBytes) return false;
    std::string frame(n, '\0');
    if (!ReadAll(frame.data(), n)) return false;
    c.type = static_cast<uint8_t>(frame[0]);
    c.kind = static_cast<uint8_t>(frame[1]);
    c.last = (static_cast<uint8_t>(frame[2]) & kLastChunk) != 0;
    size_t tenant_size = static_cast<uint8_t>(frame[3]);
    c.seq = GetUint(frame.data() + 4, 8);
    c.total = static_cast<uint32_t>(GetUint(frame.data() + 12, 4));
    if ((c.type != kRequest && c.type != kReply) || tenant_size > kMaxTenant ||
        kFixedHeader + tenant_size > n || c.total > kMaxPayload) {
      return false;
    }
    c.tenant = frame.substr(kFixedHeader, tenant_size);
    c.bytes = frame.substr(kFixedHeader + tenant_size);
    return true;
  }

 private:
  // Seals `bytes` (into memory: it takes one call) and sends what OpenSSL
  // has queued, a KeyUpdate the reader queued included. Under write_mu_.
  bool WriteAll(const std::string& bytes) {
    std::string sealed;
    {
      std::lock_guard lock(ssl_mu_);
      size_t written = 0;
      if (SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written) != 1 ||
          written != bytes.size()) {
        return false;
      }
      TakeQueued(&sealed);
    }
    // write_mu_ keeps what is taken out of out_ in order on the socket.
    for (size_t done = 0; done < sealed.size();) {
      ssize_t n = ::send(fd_, sealed.data() + done, sealed.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // What the reader makes OpenSSL queue (a KeyUpdate in answer to the
  // peer's, an alert) waits in out_ for the next write: TLS 1.3 asks for our
  // KeyUpdate only before our next record, and after an alert the link is
  // dropped. So the reader never waits for the socket's send buffer, and a
  // peer that makes it queue more than kMaxQueuedByReads is dropped.
  bool ReadAll(char* out, size_t n) {
    size_t done = 0;
    while (done < n) {
      size_t got = 0;
      int result = 0;
      int error = SSL_ERROR_NONE;
      {
        std::lock_guard lock(ssl_mu_);
        result = SSL_read_ex(ssl_, out + done, n - done, &got);
        if (result != 1) error = SSL_get_error(ssl_, result);
        if (BIO_ctrl_pending(out_) > kMaxQueuedByReads) {
          log::Warn("cluster.link_dropped", {{"reason",
                                              "the peer's records queued over "
                                              "64 KiB of answers we did not send"}});
          return false;
        }
      }
      if (result == 1) {
        done += got;
        continue;
      }
      if (error != SSL_ERROR_WANT_READ) return false;
      char buf[64 << 10];
      ssize_t k = ::recv(fd_, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      std::lock_guard lock(ssl_mu_);
      if (BIO_write(in_, buf, static_cast<int>(k)) != k) return false;
    }
    return true;
  }
  // Moves what OpenSSL has queued for the peer to `sealed`. Under ssl_mu_.
  void TakeQueued(std::string* sealed) {
    size_t pending = BIO_ctrl_pending(out_);
    sealed->resize(pending);
    if (pending > 0) {
      size_t read = 0;
      BIO_read_ex(out_, sealed->data(), pending, &read);
      sealed->resize(read);
    }
  }

  int fd_;
  SSL* ssl_;
  BIO* in_ = nullptr;    // owned by ssl_
  BIO* out_ = nullptr;   // owned by ssl_
  std::mutex write_mu_;  // a frame's seal and send, in order
  std::mutex ssl_mu_;    // one SSL call at a time; taken inside write_mu_
};

// Collects chunks into whole messages, per (tenant, seq).
class Assembler {
 public:
  // The whole message once `c` was its last chunk; nullopt meanwhile.
  // False in `ok` when the chunks do not add up.
  std::optional<Message> Add(Chunk c, bool* ok) {
    *ok = true;
    auto key = std::make_pair(c.tenant, c.seq);
    Message& m = partial_[key];
    m.tenant = c.tenant;
    m.kind = c.kind;
    m.seq = c.seq;
    m.payload.append(c.bytes);
    if (m.payload.size() > c.total) {
      *ok = false;
      return std::nullopt;
    }
    if (!c.last) return std::nullopt;
    if (m.payload.size() != c.total) {
      *ok = false;
      return std::nullopt;
    }
    Message whole = std::move(m);
    partial_.erase(key);
    return whole;
  }

 private:
  std::map<std::pair<std::string, uint64_t>, Message> partial_;
};

// Reads whole messages of `type` off `link` and hands each to `on_message`,
// until the link ends or the peer sends anything else or chunks that do not
// add up.
template <typename OnMessage>
void ReadMessages(Link& link, uint8_t type, OnMessage on_message) {
  Assembler assembler;
  Chunk chunk;
  while (link.ReadChunk(chunk)) {
    if (chunk.type != type) return;
    bool ok = true;
    std::optional<Message> m = assembler.Add(std::move(chunk), &ok);
    if (!ok) return;
    if (m) on_message(std::move(*m));
  }
}

// Runs each tenant's messages in order, one tenant per worker at a time: a
// worker takes the tenant's messages queued by then (at most kMaxRun) as one
// run, and writes each answer to the link its message came on.
class TenantPool {
 public:
  static constexpr size_t kMaxRun = 64;
  struct Item {
    std::shared_ptr<Link> link;
    Message message;
  };
  TenantPool(int workers, RunHandler handler) : handler_(std::move(handler)) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~TenantPool() { Stop(); }
  // Waits for the runs being handled; the queued ones are dropped unanswered
  // (their links are closed by then). Nothing is handled once it returns.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  void Post(std::shared_ptr<Link> link, Message m) {
    std::lock_guard lock(mu_);
    std::string tenant = m.tenant;
    auto& q = queues_[tenant];
    q.push_back(Item{std::move(link), std::move(m)});
    if (q.size() == 1 && busy_.count(tenant) == 0) {
      ready_.push_back(std::move(tenant));
      cv_.notify_one();
    }
  }

 private:
  void Work() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !ready_.empty(); });
      if (stop_) return;
      std::string tenant = std::move(ready_.front());
      ready_.pop_front();
      busy_.insert(tenant);
      std::deque<Item>& q = queues_[tenant];
      std::vector<Item> items;
      while (!q.empty() && items.size() < kMaxRun) {
        items.push_back(std::move(q.front()));
        q.pop_front();
      }
      lock.unlock();
      Run(items);
      lock.lock();
      busy_.erase(tenant);
      if (queues_[tenant].empty()) {
        queues_.erase(tenant);
      } else {
        ready_.push_back(tenant);
        cv_.notify_one();
      }
    }
  }

  void Run(std::vector<Item>& items) {
    // The messages move into the run (a segment's bytes are not copied);
    // each item keeps its tenant and seq for the answer.
    std::vector<Message> run;
    run.reserve(items.size());
    for (Item& item : items) {
      run.push_back(Message{item.message.tenant, item.message.kind, item.message.seq,
                            std::move(item.message.payload)});
    }
    std::vector<Message> answers = handler_(run);
    for (size_t i = 0; i < items.size(); ++i) {
      const Message& m = items[i].message;
      Message answer =
          i < answers.size() ? std::move(answers[i]) : Message{m.tenant, 0, m.seq, "no answer"};
      answer.tenant = m.tenant;
      answer.seq = m.seq;
      if (answer.payload.size() > kMaxPayload) answer = Message{m.tenant, 0, m.seq, "too large"};
      if (!items[i].link->WriteMessage(kReply, answer)) items[i].link->Shutdown();
    }
  }

  const RunHandler handler_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::deque<Item>> queues_;
  std::deque<std::string> ready_;
  std::set<std::string> busy_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class Listener : public PeerListener {
 public:
  Listener(int fd, int port, std::shared_ptr<SSL_CTX> ctx, RunHandler handler, int workers)
      : fd_(fd), port_(port), ctx_(std::move(ctx)), pool_(workers, std::move(handler)) {
    accept_thread_ = std::thread([this] { Accept(); });
  }
  ~Listener() override { Stop(); }

  int port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(fd_);
    std::vector<std::pair<std::shared_ptr<std::atomic<bool>>, std::thread>> threads;
    {
      std::lock_guard lock(mu_);
      for (auto& link : links_) link->Shutdown();
      threads = std::move(threads_);
    }
    for (auto& t : threads) t.second.join();
    // No link posts any more: the handler's last run ends here, so a caller
    // may remove what the handler writes once Stop returns.
    pool_.Stop();
  }

 private:
  void Accept() {
    while (!stopped_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::lock_guard lock(mu_);
      // Join the threads of links that ended.
      for (auto it = threads_.begin(); it != threads_.end();) {
        if (it->first->load()) {
          it->second.join();
          it = threads_.erase(it);
        } else {
          ++it;
        }
      }
      if (stopped_ || threads_.size() >= kMaxLinks) {
        ::close(conn);
        continue;
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      threads_.emplace_back(done, std::thread([this, conn, done] {
                              Serve(conn);
                              done->store(true);
                            }));
    }
  }

  void Serve(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval limit{kHandshakeTimeoutS, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    SSL* ssl = SSL_new(ctx_.get());
    auto link = std::make_shared<Link>(fd, ssl);
    SSL_set_fd(ssl, fd);
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      links_.insert(link);
    }
    if (SSL_accept(ssl) == 1 && link->Established()) {
      timeval none{0, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
      Read(link);
    } else {
      log::Warn("cluster.link_refused", {{"reason", SslError()}});
    }
    link->Shutdown();
    std::lock_guard lock(mu_);
    links_.erase(link);
  }

  void Read(const std::shared_ptr<Link>& link) {
    ReadMessages(*link, kRequest, [&](Message m) { pool_.Post(link, std::move(m)); });
  }

  const int fd_;
  const int port_;
  std::shared_ptr<SSL_CTX> ctx_;
  std::atomic<bool> stopped_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::set<std::shared_ptr<Link>> links_;
  // One per accepted connection, with a flag it sets when it is done.
  std::vector<std::pair<std::shared_ptr<std::atomic<bool>>, std::thread>> threads_;
  TenantPool pool_;  // last: destroyed (joined) before the links it writes to
};

class Client : public PeerClient {
 public:
  Client(std::shared_ptr<SSL_CTX> ctx, std::shared_ptr<Link> link)
      : ctx_(std::move(ctx)), link_(std::move(link)) {
    reader_ = std::thread([this] { Read(); });
    writer_ = std::thread([this] { Write(); });
  }
  ~Client() override {
    link_->Shutdown();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    writer_cv_.notify_all();
    writer_.join();
    if (reader_.get_id() == std::this_thread::get_id()) {
      // The last owner let go inside an answer callback, on the reader
      // thread: it cannot join itself. It touches no member after the
      // callbacks (Read), so it may run on to its end alone.
      reader_.detach();
    } else {
      reader_.join();
    }
  }

  using PeerClient::Send;
  Status Send(const MessageRef& message, std::chrono::milliseconds window_wait,
              Done done) override {
    if (message.tenant.size() > kMaxTenant || message.payload.size() > kMaxPayload) {
      return InvalidArgument("a message over the link's limits");
    }
    const Clock::time_point deadline = Clock::now() + window_wait;
    const std::string tenant(message.tenant);
    const auto key = std::make_pair(tenant, message.seq);
    const size_t size = message.payload.size();
    {
      std::unique_lock lock(mu_);
      // The tenant's window: wait while it has other bytes in flight that
      // would put it over (one message alone always may go).
      while (!broken_ && !write_failed_ && in_flight_[tenant] > 0 &&
             in_flight_[tenant] + size > kWindowBytes) {
        if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
          return DeadlineExceeded("the peer did not take this tenant's messages in time");
        }
      }
      if (broken_ || write_failed_) return Unavailable("the link to the peer is down");
      if (waiting_.count(key) != 0) {
        return InvalidArgument("a message with this sequence number is already in flight");
      }
      waiting_.emplace(key, Waiter{size, std::move(done)});
      in_flight_[tenant] += size;
      auto outgoing = std::make_shared<Outgoing>();
      outgoing->tenant = tenant;
      outgoing->kind = message.kind;
      outgoing->seq = message.seq;
      if (size <= kChunkBytes) {
        outgoing->owned = std::string(message.payload);
        outgoing->payload = outgoing->owned;
      } else {
        outgoing->payload = message.payload;
      }
      std::deque<std::shared_ptr<Outgoing>>& queue = outgoing_[tenant];
      queue.push_back(outgoing);
      if (queue.size() == 1) turns_.push_back(tenant);
      writer_cv_.notify_one();
      if (size > kChunkBytes) {
        // The caller's bytes: wait until they are written (or never will be).
        cv_.wait(lock, [&] { return outgoing->finished; });
      }
    }
    // A write that fails shuts the link down: the reader then fails every
    // waiter, this one included.
    return Status::Ok();
  }

  Result<Message> Call(const Message& message, std::chrono::milliseconds timeout) override {
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<Result<Message>> result;
    };
    auto state = std::make_shared<State>();
    const Clock::time_point deadline = Clock::now() + timeout;
    SILO_RETURN_IF_ERROR(Send(message, timeout, [state](Result<Message> answer) {
      std::lock_guard lock(state->mu);
      state->result = std::move(answer);
      state->cv.notify_all();
    }));
    std::unique_lock lock(state->mu);
    if (!state->cv.wait_until(lock, deadline, [&] { return state->result.has_value(); })) {
      return DeadlineExceeded("the peer did not answer in time");
    }
    return std::move(*state->result);
  }

  bool broken() const override {
    std::lock_guard lock(mu_);
    return broken_;
  }

 private:
  struct Waiter {
    size_t size;
    Done done;
  };
  // A message the writer thread has yet to write (all of, or the rest).
  struct Outgoing {
    std::string tenant;
    uint8_t kind = 0;
    uint64_t seq = 0;
    std::string owned;         // a copy of a payload of at most one chunk
    std::string_view payload;  // `owned`, or the bytes of a Send that waits
    size_t offset = 0;         // how much of it is written
    bool finished = false;
  };

  // The writer thread: writes the queued messages, a chunk at a time, the
  // tenants that have some taking turns (so one tenant's large message does
  // not hold up the others'), each tenant's in the order they were sent.
  void Write() {
    std::unique_lock lock(mu_);
    while (true) {
      writer_cv_.wait(lock,
                      [&] { return stopping_ || broken_ || write_failed_ || !turns_.empty(); });
      if (stopping_ || broken_ || write_failed_) {
        // Down for good (Send queues nothing more): what is queued is not
        // written, and a Send waiting on its bytes may return.
        for (auto& [tenant, queue] : outgoing_) {
          for (auto& m : queue) m->finished = true;
        }
        outgoing_.clear();
        turns_.clear();
        cv_.notify_all();
        if (!stopping_) writer_cv_.wait(lock, [&] { return stopping_; });
        return;
      }
      std::string tenant = std::move(turns_.front());
      turns_.pop_front();
      std::shared_ptr<Outgoing> next = outgoing_[tenant].front();
      lock.unlock();
      size_t offset = next->offset;
      bool ok = link_->WriteChunk(
          kRequest, MessageRef{next->tenant, next->kind, next->seq, next->payload}, &offset);
      lock.lock();
      if (!ok) {
        write_failed_ = true;
        link_->Shutdown();  // the reader fails every waiter
        continue;
      }
      next->offset = offset;
      std::deque<std::shared_ptr<Outgoing>>& queue = outgoing_[tenant];
      if (next->offset == next->payload.size()) {
        next->finished = true;
        queue.pop_front();
        cv_.notify_all();
      }
      if (queue.empty()) {
        outgoing_.erase(tenant);
      } else {
        turns_.push_back(std::move(tenant));
      }
    }
  }

  void Read() {
    ReadMessages(*link_, kReply, [&](Message m) {
      Done done;
      {
        std::lock_guard lock(mu_);
        auto it = waiting_.find(std::make_pair(m.tenant, m.seq));
        if (it == waiting_.end()) return;  // not asked: ignored
        done = std::move(it->second.done);
        Release(it);
      }
      done(std::move(m));  // outside the lock: it may send the next message
    });
    std::map<std::pair<std::string, uint64_t>, Waiter> failed;
    {
      std::lock_guard lock(mu_);
      broken_ = true;
      failed.swap(waiting_);
      in_flight_.clear();
      cv_.notify_all();
      writer_cv_.notify_all();
    }
    for (auto& [key, waiter] : failed) waiter.done(Unavailable("the link to the peer is down"));
  }

  void Release(std::map<std::pair<std::string, uint64_t>, Waiter>::iterator it) {
    const std::string& tenant = it->first.first;
    if ((in_flight_[tenant] -= it->second.size) == 0) in_flight_.erase(tenant);
    waiting_.erase(it);
    cv_.notify_all();
  }

  std::shared_ptr<SSL_CTX> ctx_;
  std::shared_ptr<Link> link_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<std::string, uint64_t>, Waiter> waiting_;
  std::map<std::string, size_t> in_flight_;
  bool broken_ = false;
  // What the writer thread has to write, per tenant, and the tenants in
  // the order of their turns.
  std::map<std::string, std::deque<std::shared_ptr<Outgoing>>> outgoing_;
  std::deque<std::string> turns_;
  std::condition_variable writer_cv_;
  bool write_failed_ = false;
  bool stopping_ = false;
  std::thread reader_;
  std::thread writer_;
};

}  // namespace

uint64_t RandomFirstSeq() {
  uint64_t start = 0;
  for (char c : crypto::RandomBytes(8)) start = (start << 8) | static_cast<uint8_t>(c);
  return start >> 1;  // room to count up
}

Result<std::unique_ptr<PeerListener>> PeerListener::Start(const std::string& listen,
                                                          const PeerTls& tls, Handler handler,
                                                          int workers) {
  return StartForRuns(
      listen, tls,
      [handler = std::move(handler)](const std::vector<Message>& run) {
        std::vector<Message> answers;
        answers.reserve(run.size());
        for (const Message& m : run) answers.push_back(handler(m));
        return answers;
      },
      workers);
}

Result<std::unique_ptr<PeerListener>> PeerListener::StartForRuns(const std::string& listen,
                                                                 const PeerTls& tls,
                                                                 RunHandler handler, int workers) {
  SILO_ASSIGN_OR_RETURN(std::shared_ptr<SSL_CTX> ctx, MakeContext(tls, /*server=*/true));
  std::string host, port;
  if (!SplitAddress(listen, &host, &port)) {
    return InvalidArgument("the cluster listen address is not host:port");
  }
  AddressInfo found = Resolve(host, port, /*passive=*/true);
  if (!found) return InvalidArgument("the cluster listen address is not an IP address and port");
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
    if (fd >= 0) ::close(fd);
    return Unavailable("cannot listen on the cluster address").WithCause(listen);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  int bound_port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<PeerListener>(
      new Listener(fd, bound_port, std::move(ctx), std::move(handler), workers));
}

Result<std::unique_ptr<PeerClient>> PeerClient::Connect(const std::string& address,
                                                        const PeerTls& tls) {
  SILO_ASSIGN_OR_RETURN(std::shared_ptr<SSL_CTX> ctx, MakeContext(tls, /*server=*/false));
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) {
    return InvalidArgument("a peer address is not host:port");
  }
  AddressInfo found = Resolve(host, port, /*passive=*/false);
  if (!found) return Unavailable("the peer's address does not resolve").WithCause(address);
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    if (fd >= 0) ::close(fd);
    return Unavailable("the peer does not answer").WithCause(address);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* ssl = SSL_new(ctx.get());
  auto link = std::make_shared<Link>(fd, ssl);
  SSL_set_fd(ssl, fd);
  // The peer's certificate must name the address we dialled.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    SSL_set_tlsext_host_name(ssl, host.c_str());
  }
  timeval limit{kHandshakeTimeoutS, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (SSL_connect(ssl) != 1 || !link->Established()) {
    return Unavailable("the peer's TLS handshake failed").WithCause(address + ": " + SslError());
  }
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  return std::unique_ptr<PeerClient>(new Client(std::move(ctx), std::move(link)));
}

}  // namespace silo::cluster
