#include "realtime/hub.h"

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <set>

#include "base/log.h"
#include "base/time_util.h"
#include "crypto/crypto.h"
#include "rbac/rbac.h"
#include "realtime/protocol.h"
#include "records/query.h"
#include "records/record_json.h"

namespace silo::realtime {
namespace json = boost::json;

const std::vector<std::string_view> kRevokingAuditTypes = {
    "user.roles_changed", "user.disabled",      "user.password_changed", "password.reset",
    "token.revoked",      "session.revoked",    "session.revoked_all",   "role.updated",
    "role.deleted",       "collection.deleted", "collection.updated",    "backup.restored",
    "tenant.rebuilt"};
const std::vector<std::string_view> kEpochAuditTypes = {"backup.restored", "tenant.rebuilt"};

namespace {

constexpr int64_t kTicketLifeUs = 30LL * 1'000'000;
constexpr int kPage = 1000;

Status Exhausted(std::string why) { return Status(StatusCode::kResourceExhausted, std::move(why)); }

bool IsOneOf(std::string_view t, const std::vector<std::string_view>& list) {
  return std::find(list.begin(), list.end(), t) != list.end();
}

std::string EpochOf(int64_t seq) { return "e" + std::to_string(seq); }

// A token bucket: `rate` a second, a burst of twice as many.
struct Bucket {
  double tokens = -1;
  int64_t last_us = 0;
  bool Take(int rate, int64_t now_us) {
    const double burst = 2.0 * rate;
    if (tokens < 0) tokens = burst;
    tokens = std::min(burst, tokens + (now_us - last_us) / 1e6 * rate);
    last_us = now_us;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }
};

struct Subscription {
  std::string id;  // the subscribe frame's, for the error that ends it
  Channel channel;
  std::vector<records::Filter> filter;  // records: all must hold
  std::string filter_text;              // to re-parse against a changed schema
  // records: the read rules as of the last resolution; none: no access.
  std::optional<records::RecordRules> rules;
  bool presence = false;  // broadcast: may see and track presence
};

}  // namespace

class Connection;

// One tenant's realtime state. Everything below is guarded by mu.
class Hub {
 public:
  Hub(std::string tenant_id, records::TenantStores* stores, const Limits& limits,
      Counters& counters)
      : tenant_id(std::move(tenant_id)), stores(stores), limits(limits), counters(counters) {
    broadcast_epoch = "b" + crypto::HexEncode(crypto::RandomBytes(6));
  }

  const std::string tenant_id;
  records::TenantStores* const stores;
  const Limits& limits;
  Counters& counters;

  Mutex mu;
  std::map<uint64_t, std::shared_ptr<Connection>> connections GUARDED_BY(mu);
  uint64_t next_id GUARDED_BY(mu) = 1;
  // The log positions delivered up to, and the epoch; known once a
  // connection exists (reset when the last one leaves).
  bool positioned GUARDED_BY(mu) = false;
  int64_t event_cursor GUARDED_BY(mu) = 0;
  int64_t audit_cursor GUARDED_BY(mu) = 0;
  std::string epoch GUARDED_BY(mu);
  // Broadcasts: their own sequence, in an epoch of this process's.
  std::string broadcast_epoch;
  int64_t broadcast_seq GUARDED_BY(mu) = 0;
  Bucket publishes GUARDED_BY(mu);
  // Subscribers per channel in use (the tenant's channel cap counts these).
  std::map<std::string, int> channel_subscribers GUARDED_BY(mu);
  void JoinedLocked(const std::string& key) REQUIRES(mu) { ++channel_subscribers[key]; }
  void LeftLocked(const std::string& key) REQUIRES(mu) {
    auto it = channel_subscribers.find(key);
    if (it != channel_subscribers.end() && --it->second <= 0) channel_subscribers.erase(it);
  }
  struct Ticket {
    int64_t expires_us;
    Reauthenticate reauthenticate;
  };
  std::map<std::string, Ticket> tickets GUARDED_BY(mu);  // by SHA-256 of the ticket

  // The store, opened once per round or message (no rules: the hub applies
  // each subscriber's).
  Result<std::unique_ptr<records::TenantStore>> Store() { return stores->Open(tenant_id); }

  Status PositionLocked(records::TenantStore& store) REQUIRES(mu);
  void RoundLocked() REQUIRES(mu);
  void RevalidateLocked(Connection& c, records::TenantStore* store, int64_t now_us) REQUIRES(mu);
  // Delivers one record event to every subscriber of its collection (or to
  // `only` when set: a replay).
  void DeliverRecordEventLocked(records::TenantStore& store, const events::StoredEvent& e,
                                Connection* only) REQUIRES(mu);
  int64_t FanOutLocked(const Channel& channel, const std::string& frame, const Connection* skip,
                       bool presence_only) REQUIRES(mu);
  void PresenceLocked(Connection& c, const Channel& channel, const json::object* joined)
      REQUIRES(mu);
  void RemoveLocked(uint64_t id) REQUIRES(mu);
};

// One client connection: its rights and subscriptions (guarded by the hub's
// mutex), and the transport's channel.
class Connection : public http::MessageHandler {
 public:
  Connection(std::shared_ptr<Hub> hub, uint64_t id, ConnectionSpec spec)
      : hub_(std::move(hub)), id_(id), spec_(std::move(spec)) {
    presence_key_ = crypto::HexEncode(crypto::RandomBytes(8));
  }

  void OnOpen(std::shared_ptr<http::MessageChannel> channel) override {
    MutexLock lock(hub_->mu);
    channel_ = std::move(channel);
    // What was sent before the transport was ready (an event stream's
    // replay), in order.
    for (auto& m : early_) {
      if (!channel_->Send(std::move(m))) break;
    }
    early_.clear();
    if (closed_) channel_->Close(close_code_, close_reason_);
  }
  void OnMessage(std::string text) override;
  void OnClose() override {
    MutexLock lock(hub_->mu);
    closed_ = true;
    hub_->RemoveLocked(id_);
  }

  // Sends one frame (WebSocket) or its event-stream form.
  bool SendLocked(const std::string& frame, std::string_view stream_id = {}) REQUIRES(hub_->mu) {
    return SendSharedLocked(std::make_shared<const std::string>(
        spec_.event_stream ? StreamFrame(stream_id, frame) : frame));
  }
  bool SendSharedLocked(std::shared_ptr<const std::string> frame) REQUIRES(hub_->mu) {
    if (closed_) return false;
    if (!channel_) {
      early_.push_back(std::move(frame));
      return true;
    }
    if (channel_->Send(std::move(frame))) return true;
    ++hub_->counters.dropped_slow;
    closed_ = true;
    return false;
  }
  void CloseLocked(int code, std::string_view reason) REQUIRES(hub_->mu) {
    if (closed_) return;
    closed_ = true;
    close_code_ = code;
    close_reason_ = std::string(reason);
    if (channel_) channel_->Close(code, reason);
  }

  // An error frame for a refused subscription, and its audit entry (at most
  // denials_audited_per_minute per connection).
  void DeniedLocked(records::TenantStore* store, const std::string& id, const Channel& channel,
                    const std::string& permission, int64_t now_us) REQUIRES(hub_->mu);
  // records:<c>: the caller's read permission and rules, the filter parsed
  // against the schema. The error's message is safe to show.
  Status ResolveRecordsLocked(records::TenantStore& store, Subscription& sub) REQUIRES(hub_->mu);
  Status SubscribeLocked(records::TenantStore* store, const ClientMessage& m, int64_t now_us)
      REQUIRES(hub_->mu);
  // Replays the channel's record events after `after`, or sends reset.
  void ReplayLocked(records::TenantStore& store, const Subscription& sub,
                    std::optional<int64_t> after, const std::optional<std::string>& epoch)
      REQUIRES(hub_->mu);

  bool Allowed(const std::string& permission) const {
    return rbac::Authorize({spec_.principal.permissions, spec_.principal.mfa_enrolment_pending},
                           permission) == rbac::Decision::kAllow;
  }

  std::shared_ptr<Hub> hub_;
  const uint64_t id_;
  ConnectionSpec spec_;
  std::string presence_key_;
  std::shared_ptr<http::MessageChannel> channel_;
  std::vector<std::shared_ptr<const std::string>> early_;  // before OnOpen
  bool closed_ = false;
  int close_code_ = 1000;
  std::string close_reason_;
  std::map<std::string, Subscription> subs_;      // by channel text
  std::map<std::string, json::object> presence_;  // tracked state by channel text
  Bucket frames_;
  int denials_ = 0;
  int64_t denials_window_us_ = 0;
};

namespace {

std::string FieldsKey(const records::FieldSet& f) {
  if (!f) return "*";
  std::string k;
  for (const auto& n : *f) k.append(n).push_back(',');
  return k;
}

// "collection/id" of a record event.
std::pair<std::string, std::string> SplitSubject(const std::string& subject) {
  size_t slash = subject.find('/');
  if (slash == std::string::npos) return {subject, ""};
  return {subject.substr(0, slash), subject.substr(slash + 1)};
}

std::string ActionOf(std::string_view type) {
  return type.substr(0, 7) == "record." ? std::string(type.substr(7)) : std::string(type);
}

}  // namespace

Status Hub::PositionLocked(records::TenantStore& store) {
  if (positioned) return Status::Ok();
  SILO_ASSIGN_OR_RETURN(event_cursor, store.LastSeq(events::Log::kEvents, {}));
  SILO_ASSIGN_OR_RETURN(audit_cursor, store.LastSeq(events::Log::kAudit, {}));
  std::vector<std::string> types(kEpochAuditTypes.begin(), kEpochAuditTypes.end());
  SILO_ASSIGN_OR_RETURN(int64_t epoch_seq, store.LastSeq(events::Log::kAudit, types));
  epoch = EpochOf(epoch_seq);
  positioned = true;
  return Status::Ok();
}

void Hub::RemoveLocked(uint64_t id) {
  auto it = connections.find(id);
  if (it == connections.end()) return;
  std::shared_ptr<Connection> c = it->second;
  connections.erase(it);
  --counters.connections;
  for (const auto& [key, sub] : c->subs_) LeftLocked(key);
  c->subs_.clear();
  for (const auto& [name, state] : c->presence_) {
    if (auto ch = ParseChannel(name)) PresenceLocked(*c, *ch, nullptr);
  }
  c->presence_.clear();
  if (connections.empty()) positioned = false;
}

int64_t Hub::FanOutLocked(const Channel& channel, const std::string& frame, const Connection* skip,
                          bool presence_only) {
  const std::string key = channel.ToString();
  auto shared = std::make_shared<const std::string>(frame);
  int64_t n = 0;
  for (auto& [id, c] : connections) {
    c->hub_->mu.AssertHeld();  // every connection here is this hub's
    if (c.get() == skip || c->spec_.event_stream) continue;
    auto it = c->subs_.find(key);
    if (it == c->subs_.end() || (presence_only && !it->second.presence)) continue;
    if (c->SendSharedLocked(shared)) ++n;
  }
  counters.deliveries += n;
  return n;
}

// A presence change of `c` in `channel`: joined with `joined` state, or left.
void Hub::PresenceLocked(Connection& c, const Channel& channel, const json::object* joined) {
  json::object joins;
  json::array leaves;
  if (joined != nullptr) {
    joins[c.presence_key_] = json::object{{"user", c.spec_.principal.user_id}, {"state", *joined}};
  } else {
    leaves.emplace_back(c.presence_key_);
  }
  FanOutLocked(channel, PresenceDiffFrame(channel, joins, leaves), nullptr, true);
}

void Connection::DeniedLocked(records::TenantStore* store, const std::string& id,
                              const Channel& channel, const std::string& permission,
                              int64_t now_us) {
  ++hub_->counters.denied;
  if (!spec_.event_stream)
    SendLocked(ErrorFrame(id, "forbidden", "missing permission " + permission));
  if (now_us - denials_window_us_ > 60LL * 1'000'000) {
    denials_window_us_ = now_us;
    denials_ = 0;
  }
  if (store == nullptr || ++denials_ > hub_->limits.denials_audited_per_minute) return;
  events::Origin origin{spec_.principal.actor, spec_.request_id, spec_.client, now_us};
  (void)store->Audit(origin, {"access.denied",
                              "channel",
                              channel.ToString(),
                              {{"permission", permission}, {"via", "realtime"}}});
}

Status Connection::ResolveRecordsLocked(records::TenantStore& store, Subscription& sub) {
  sub.rules.reset();
  const std::string permission = "records." + sub.channel.name + ".read";
  if (!Allowed(permission)) return PermissionDenied("missing permission " + permission);
  auto collection = store.GetCollection(sub.channel.name);
  if (!collection.ok()) {
    if (collection.status().code() == StatusCode::kNotFound) {
      return NotFound("no collection " + sub.channel.name);
    }
    return collection.status();
  }
  SILO_ASSIGN_OR_RETURN(records::RecordRules rules,
                        spec_.principal.rules(collection->schema, "read"));
  if (rules.rules.empty())
    return PermissionDenied("no record of " + sub.channel.name + " is readable");
  sub.filter.clear();
  if (!sub.filter_text.empty()) {
    auto params = records::ParseQueryString(sub.filter_text);
    if (!params.ok()) return InvalidArgument("filter: " + params.status().message());
    const records::FieldSet visible = rules.FieldsOfEveryRule();
    for (const auto& [name, value] : *params) {
      if (name != "filter") return InvalidArgument("filter takes only filter=<field>:<op>:<value>");
      auto f = records::ParseFilter(collection->schema, value, nullptr);
      if (!f.ok()) return InvalidArgument("filter: " + f.status().message());
      if (visible && f->field.column.empty() && !visible->contains(f->field.name)) {
        return PermissionDenied("filter names field " + f->field.name + ", which is not readable");
      }
      sub.filter.push_back(std::move(*f));
    }
  }
  sub.rules = std::move(rules);
  return Status::Ok();
}

void Connection::ReplayLocked(records::TenantStore& store, const Subscription& sub,
                              std::optional<int64_t> after,
                              const std::optional<std::string>& epoch) {
  if (!after) return;
  if ((epoch && *epoch != hub_->epoch) || *after > hub_->event_cursor || *after < 0) {
    SendLocked(ResetFrame(sub.channel, hub_->epoch));
    return;
  }
  // Count first: a resume beyond max_replay events is a reset, not a flood.
  std::vector<events::StoredEvent> mine;
  for (int64_t at = *after; at < hub_->event_cursor;) {
    auto page = store.Events(at, kPage);
    if (!page.ok() || page->empty()) break;
    for (auto& e : *page) {
      at = e.seq;
      if (e.seq > hub_->event_cursor) break;
      if (e.subject_kind != "record" || SplitSubject(e.subject_id).first != sub.channel.name) {
        continue;
      }
      mine.push_back(std::move(e));
      if (static_cast<int>(mine.size()) > hub_->limits.max_replay) {
        SendLocked(ResetFrame(sub.channel, hub_->epoch));
        return;
      }
    }
  }
  for (const auto& e : mine) hub_->DeliverRecordEventLocked(store, e, this);
}

Status Connection::SubscribeLocked(records::TenantStore* store, const ClientMessage& m,
                                   int64_t now_us) {
  const Channel& channel = *m.channel;
  const std::string key = channel.ToString();
  if (subs_.contains(key)) return AlreadyExists("already subscribed to " + key);
  if (subs_.size() >= hub_->limits.max_channels) {
    return Exhausted("at most " + std::to_string(hub_->limits.max_channels) +
                     " subscriptions per connection");
  }
  if (!hub_->channel_subscribers.contains(key) &&
      hub_->channel_subscribers.size() >= hub_->limits.max_tenant_channels) {
    return Exhausted("at most " + std::to_string(hub_->limits.max_tenant_channels) +
                     " channels in use per tenant");
  }
  Subscription sub{m.id, channel, {}, m.filter.value_or(""), std::nullopt, false};
  switch (channel.kind) {
    case Channel::Kind::kRecords: {
      if (store == nullptr) return Unavailable("the tenant's storage is unavailable");
      if (Status st = hub_->PositionLocked(*store); !st.ok()) return st;
      Status st = ResolveRecordsLocked(*store, sub);
      if (st.code() == StatusCode::kPermissionDenied) {
        DeniedLocked(store, m.id, channel, "records." + channel.name + ".read", now_us);
        // A frame answered it; an event stream's refusal is the HTTP answer.
        return spec_.event_stream ? st : Status::Ok();
      }
      if (!st.ok()) return st;
      // The replay, then the ack: after it, the subscription is live.
      const Subscription& added = subs_.emplace(key, std::move(sub)).first->second;
      hub_->JoinedLocked(key);
      ReplayLocked(*store, added, m.after, m.epoch);
      if (!spec_.event_stream) SendLocked(AckFrame(m.id));
      return Status::Ok();
    }
    case Channel::Kind::kBroadcast: {
      const std::string permission = "channels." + channel.name + ".subscribe";
      if (!Allowed(permission)) {
        DeniedLocked(store, m.id, channel, permission, now_us);
        return Status::Ok();
      }
      sub.presence = Allowed("channels." + channel.name + ".presence");
      if (sub.presence) {
        // The joiner learns who is present now.
        json::object joins;
        for (const auto& [id, c] : hub_->connections) {
          auto it = c->presence_.find(key);
          if (it == c->presence_.end()) continue;
          joins[c->presence_key_] =
              json::object{{"user", c->spec_.principal.user_id}, {"state", it->second}};
        }
        if (!joins.empty()) SendLocked(PresenceDiffFrame(channel, joins, {}));
      }
      SendLocked(AckFrame(m.id));
      subs_.emplace(key, std::move(sub));
      hub_->JoinedLocked(key);
      return Status::Ok();
    }
    case Channel::Kind::kUserSelf:
      if (spec_.principal.user_id.empty()) {
        DeniedLocked(store, m.id, channel, "a user's credentials", now_us);
        return Status::Ok();
      }
      SendLocked(AckFrame(m.id));
      subs_.emplace(key, std::move(sub));
      hub_->JoinedLocked(key);
      return Status::Ok();
  }
  return Internal("unknown channel kind");
}

void Connection::OnMessage(std::string text) {
  const int64_t now = NowMicros();
  ParsedFrame parsed = ParseClientFrame(text);
  MutexLock lock(hub_->mu);
  if (closed_) return;
  if (!frames_.Take(hub_->limits.connection_messages_per_second, now)) {
    CloseLocked(kCloseRateLimited, "rate limited");
    return;
  }
  if (!parsed.message) {
    const ProtocolError& e = parsed.error;
    SendLocked(ErrorFrame(e.id, e.code, e.detail));
    return;
  }
  const ClientMessage& m = *parsed.message;
  if (spec_.event_stream) return;  // read-only
  auto fail = [&](const Status& st) {
    hub_->mu.AssertHeld();  // called below, under the lock
    std::string code = st.code() == StatusCode::kNotFound             ? "not_found"
                       : st.code() == StatusCode::kInvalidArgument    ? "bad_field"
                       : st.code() == StatusCode::kPermissionDenied   ? "forbidden"
                       : st.code() == StatusCode::kResourceExhausted  ? "limit"
                       : st.code() == StatusCode::kAlreadyExists      ? "already_subscribed"
                       : st.code() == StatusCode::kFailedPrecondition ? "not_subscribed"
                                                                      : "unavailable";
    SendLocked(ErrorFrame(m.id, code, code == "unavailable" ? "try again later" : st.message()));
  };
  switch (m.type) {
    case MessageType::kPing: SendLocked(AckFrame(m.id)); return;
    case MessageType::kSubscribe: {
      std::unique_ptr<records::TenantStore> store;
      if (auto s = hub_->Store(); s.ok()) store = std::move(*s);
      if (Status st = SubscribeLocked(store.get(), m, now); !st.ok()) fail(st);
      return;
    }
    case MessageType::kUnsubscribe: {
      const std::string key = m.channel->ToString();
      if (subs_.erase(key) == 0) return fail(FailedPrecondition("not subscribed to " + key));
      hub_->LeftLocked(key);
      if (presence_.erase(key) > 0) hub_->PresenceLocked(*this, *m.channel, nullptr);
      SendLocked(AckFrame(m.id));
      return;
    }
    case MessageType::kPublish: {
      const std::string permission = "channels." + m.channel->name + ".publish";
      if (!Allowed(permission)) {
        std::unique_ptr<records::TenantStore> store;
        if (auto s = hub_->Store(); s.ok()) store = std::move(*s);
        DeniedLocked(store.get(), m.id, *m.channel, permission, now);
        return;
      }
      if (!hub_->publishes.Take(hub_->limits.tenant_publishes_per_second, now)) {
        SendLocked(ErrorFrame(m.id, "rate_limited", "the tenant's publish rate is exceeded"));
        return;
      }
      json::object data{{"event", m.event}, {"payload", m.payload}};
      hub_->FanOutLocked(*m.channel,
                         EventFrame(*m.channel, ++hub_->broadcast_seq, hub_->broadcast_epoch, data),
                         this, false);
      SendLocked(AckFrame(m.id));
      return;
    }
    case MessageType::kPresenceTrack:
    case MessageType::kPresenceUntrack: {
      const std::string key = m.channel->ToString();
      auto it = subs_.find(key);
      if (it == subs_.end()) return fail(FailedPrecondition("subscribe to " + key + " first"));
      if (!it->second.presence) {
        DeniedLocked(nullptr, m.id, *m.channel, "channels." + m.channel->name + ".presence", now);
        return;
      }
      if (m.type == MessageType::kPresenceTrack) {
        presence_[key] = m.state;
        hub_->PresenceLocked(*this, *m.channel, &m.state);
      } else if (presence_.erase(key) > 0) {
        hub_->PresenceLocked(*this, *m.channel, nullptr);
      }
      SendLocked(AckFrame(m.id));
      return;
    }
  }
}

void Hub::RevalidateLocked(Connection& c, records::TenantStore* store, int64_t now_us) {
  if (c.closed_) return;
  c.hub_->mu.AssertHeld();  // `c` is this hub's
  auto p = c.spec_.reauthenticate(now_us);
  if (!p.ok()) {
    if (p.status().code() == StatusCode::kUnauthenticated) {
      c.CloseLocked(kCloseAuthEnded, "authentication ended");
    } else {
      log::Warn("realtime: re-checking a connection failed", {{"cause", p.status().message()}});
      c.CloseLocked(1011, "try again later");
    }
    return;
  }
  c.spec_.principal = std::move(*p);
  for (auto it = c.subs_.begin(); it != c.subs_.end();) {
    Subscription& sub = it->second;
    Status st;
    switch (sub.channel.kind) {
      case Channel::Kind::kRecords:
        st = store == nullptr ? Unavailable("storage") : c.ResolveRecordsLocked(*store, sub);
        break;
      case Channel::Kind::kBroadcast:
        if (!c.Allowed("channels." + sub.channel.name + ".subscribe")) {
          st = PermissionDenied("missing permission channels." + sub.channel.name + ".subscribe");
        }
        sub.presence = st.ok() && c.Allowed("channels." + sub.channel.name + ".presence");
        break;
      case Channel::Kind::kUserSelf:
        if (c.spec_.principal.user_id.empty()) st = PermissionDenied("no user");
        break;
    }
    if (st.ok()) {
      if (!sub.presence && c.presence_.erase(it->first) > 0) {
        PresenceLocked(c, sub.channel, nullptr);
      }
      ++it;
      continue;
    }
    c.SendLocked(ErrorFrame(sub.id, st.code() == StatusCode::kNotFound ? "not_found" : "forbidden",
                            "subscription to " + it->first + " ended: " + st.message()));
    if (c.presence_.erase(it->first) > 0) PresenceLocked(c, sub.channel, nullptr);
    LeftLocked(it->first);
    it = c.subs_.erase(it);
  }
}

void Hub::DeliverRecordEventLocked(records::TenantStore& store, const events::StoredEvent& e,
                                   Connection* only) {
  if (e.subject_kind != "record") return;
  auto [collection, id] = SplitSubject(e.subject_id);
  const Channel channel{Channel::Kind::kRecords, collection};
  const std::string key = channel.ToString();
  std::vector<std::pair<Connection*, const Subscription*>> subscribers;
  for (auto& [cid, c] : connections) {
    if (only != nullptr && c.get() != only) continue;
    auto it = c->subs_.find(key);
    if (it != c->subs_.end() && it->second.rules) subscribers.emplace_back(c.get(), &it->second);
  }
  if (subscribers.empty()) return;
  const bool deleted = e.type == "record.deleted";
  auto record = store.GetRecord(collection, id, deleted ? e.at_us - 1 : e.at_us);
  if (!record.ok()) return;  // purged or gone: nothing to show
  const std::string action = ActionOf(e.type);
  // One frame per distinct field set, shared by its subscribers; the event
  // stream's form made only when an event stream needs it.
  struct Frames {
    std::shared_ptr<const std::string> ws, sse;
  };
  std::map<std::string, Frames> frames;  // by FieldsKey
  int64_t n = 0;
  for (auto [c, sub] : subscribers) {
    if (!sub->rules->Admits(*record)) continue;
    if (!sub->filter.empty() && !records::Matches(sub->filter, *record)) continue;
    const records::FieldSet fields = sub->rules->FieldsFor(*record);
    Frames& f = frames[FieldsKey(fields)];
    if (!f.ws) {
      records::Record shown = *record;
      records::KeepFields(fields, &shown.data);
      json::object data{{"action", action}, {"record", records::RecordJson(shown)}};
      f.ws = std::make_shared<const std::string>(EventFrame(channel, e.seq, epoch, data));
    }
    if (c->spec_.event_stream && !f.sse) {
      f.sse = std::make_shared<const std::string>(
          StreamFrame(epoch + ":" + std::to_string(e.seq), *f.ws));
    }
    c->hub_->mu.AssertHeld();
    if (c->SendSharedLocked(c->spec_.event_stream ? f.sse : f.ws)) ++n;
  }
  counters.deliveries += n;
}

void Hub::RoundLocked() {
  if (connections.empty()) return;
  auto opened = Store();
  if (!opened.ok()) return;
  records::TenantStore& store = **opened;
  if (!positioned) {
    (void)PositionLocked(store);
    return;
  }
  // Events first, then the audit entries: a revocation that committed
  // before the events were read is seen, and applied before they go out.
  std::vector<events::StoredEvent> pending;
  for (int64_t at = event_cursor;;) {
    auto page = store.Events(at, kPage);
    if (!page.ok() || page->empty()) break;
    at = page->back().seq;
    for (auto& e : *page) pending.push_back(std::move(e));
    if (static_cast<int>(page->size()) < kPage) break;
  }
  bool revalidate = false, new_epoch = false;
  int64_t epoch_seq = 0;
  for (;;) {
    records::AuditQuery q;
    q.after = audit_cursor;
    q.limit = kPage;
    auto page = store.QueryAudit(q);
    if (!page.ok() || page->empty()) break;
    for (const auto& a : *page) {
      audit_cursor = a.seq;
      if (IsOneOf(a.type, kRevokingAuditTypes)) revalidate = true;
      if (IsOneOf(a.type, kEpochAuditTypes)) {
        new_epoch = true;
        epoch_seq = a.seq;
      }
    }
    if (static_cast<int>(page->size()) < kPage) break;
  }
  const int64_t now = NowMicros();
  if (revalidate) {
    for (auto& [id, c] : connections) RevalidateLocked(*c, &store, now);
  }
  if (new_epoch) {
    // The log was replaced (restore) or rebuilt: what a client holds may
    // not be what the log says now. Every records subscriber starts over.
    epoch = EpochOf(epoch_seq);
    auto last = store.LastSeq(events::Log::kEvents, {});
    event_cursor = last.ok() ? *last : 0;
    for (auto& [id, c] : connections) {
      c->hub_->mu.AssertHeld();
      for (const auto& [key, sub] : c->subs_) {
        if (sub.channel.kind == Channel::Kind::kRecords) {
          c->SendLocked(ResetFrame(sub.channel, epoch));
        }
      }
    }
    return;
  }
  for (const auto& e : pending) {
    DeliverRecordEventLocked(store, e, nullptr);
    event_cursor = e.seq;
  }
}

Hubs::Hubs(records::TenantStores* stores, Limits limits) : stores_(stores), limits_(limits) {
  sweeper_ = std::thread([this] { SweeperLoop(); });
}

Hubs::~Hubs() {
  {
    MutexLock lock(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.SignalAll();
  sweeper_.join();
}

void Hubs::SweeperLoop() {
  MutexLock lock(sweep_mu_);
  while (!stopping_) {
    sweep_cv_.WaitUntil(sweep_mu_,
                        std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
    if (stopping_) break;
    sweep_mu_.Unlock();
    Sweep(NowMicros());
    sweep_mu_.Lock();
  }
}

std::shared_ptr<Hub> Hubs::HubOf(const std::string& tenant_id, bool create) {
  MutexLock lock(mu_);
  auto it = hubs_.find(tenant_id);
  if (it != hubs_.end()) return it->second;
  if (!create) return nullptr;
  auto hub = std::make_shared<Hub>(tenant_id, stores_, limits_, counters_);
  hubs_.emplace(tenant_id, hub);
  return hub;
}

Result<std::shared_ptr<http::MessageHandler>> Hubs::Connect(const std::string& tenant_id,
                                                            ConnectionSpec spec) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, true);
  MutexLock lock(hub->mu);
  if (connections() >= limits_.max_connections) {
    return Exhausted("too many realtime connections, retry later");
  }
  if (hub->connections.size() >= limits_.max_tenant_connections) {
    return Exhausted("too many realtime connections for this tenant, retry later");
  }
  if (!hub->positioned) {
    auto store = hub->Store();
    if (!store.ok()) return store.status();
    SILO_RETURN_IF_ERROR(hub->PositionLocked(**store));
  }
  const uint64_t id = hub->next_id++;
  auto c = std::make_shared<Connection>(hub, id, std::move(spec));
  hub->connections.emplace(id, c);
  ++counters_.connections;
  return std::shared_ptr<http::MessageHandler>(c);
}

Status Hubs::SubscribeStream(const std::string& tenant_id, http::MessageHandler& stream,
                             std::string_view channel, std::string_view filter,
                             std::optional<int64_t> after, std::optional<std::string> epoch) {
  auto* c = dynamic_cast<Connection*>(&stream);
  if (c == nullptr) return Internal("not a realtime connection");
  auto parsed = ParseChannel(channel);
  if (!parsed || parsed->kind != Channel::Kind::kRecords) {
    return InvalidArgument("channel must be records:<collection>");
  }
  ClientMessage m;
  m.type = MessageType::kSubscribe;
  m.id = "sse";
  m.channel = *parsed;
  if (!filter.empty()) m.filter = std::string(filter);
  m.after = after;
  m.epoch = std::move(epoch);
  auto store = c->hub_->Store();
  if (!store.ok()) return store.status();
  MutexLock lock(c->hub_->mu);
  // Checked and audited as a subscribe frame is; a refusal is the HTTP answer.
  return c->SubscribeLocked(store->get(), m, NowMicros());
}

void Hubs::AfterWrite(const std::string& tenant_id) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, false);
  if (!hub) return;
  MutexLock lock(hub->mu);
  hub->RoundLocked();
}

Result<int64_t> Hubs::Publish(const std::string& tenant_id, std::string_view channel_text,
                              std::string_view event, const json::value& payload) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, false);
  std::optional<Channel> channel;
  std::string user;
  if (channel_text.substr(0, 5) == "user:") {
    user = std::string(channel_text.substr(5));
    channel = Channel{Channel::Kind::kUserSelf, ""};
  } else {
    channel = ParseChannel("broadcast:" + std::string(channel_text));
    if (!channel || channel->kind != Channel::Kind::kBroadcast) {
      return InvalidArgument("channel must be a broadcast name or user:<id>");
    }
  }
  if (!hub) return int64_t{0};
  MutexLock lock(hub->mu);
  if (!hub->publishes.Take(limits_.tenant_publishes_per_second, NowMicros())) {
    return Exhausted("the tenant's publish rate is exceeded");
  }
  json::object data{{"event", event}, {"payload", payload}};
  const std::string frame = EventFrame(*channel, ++hub->broadcast_seq, hub->broadcast_epoch, data);
  if (user.empty()) return hub->FanOutLocked(*channel, frame, nullptr, false);
  auto shared = std::make_shared<const std::string>(frame);
  int64_t n = 0;
  for (auto& [id, c] : hub->connections) {
    c->hub_->mu.AssertHeld();
    if (c->spec_.principal.user_id != user || c->spec_.event_stream) continue;
    if (c->subs_.contains("user:self") && c->SendSharedLocked(shared)) ++n;
  }
  counters_.deliveries += n;
  return n;
}

void Hubs::CloseTenant(const std::string& tenant_id, int code, std::string_view reason) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, false);
  if (!hub) return;
  MutexLock lock(hub->mu);
  for (auto& [id, c] : hub->connections) {
    c->hub_->mu.AssertHeld();
    c->CloseLocked(code, reason);
  }
  hub->tickets.clear();
}

std::string Hubs::IssueTicket(const std::string& tenant_id, Reauthenticate reauthenticate,
                              int64_t now_us) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, true);
  std::string ticket = "rt_" + crypto::HexEncode(crypto::RandomBytes(32));
  MutexLock lock(hub->mu);
  hub->tickets[crypto::Sha256Hex(ticket)] = {now_us + kTicketLifeUs, std::move(reauthenticate)};
  return ticket;
}

Result<Reauthenticate> Hubs::RedeemTicket(const std::string& tenant_id, std::string_view ticket,
                                          int64_t now_us) {
  std::shared_ptr<Hub> hub = HubOf(tenant_id, false);
  if (!hub) return Unauthenticated("invalid or expired ticket");
  MutexLock lock(hub->mu);
  auto it = hub->tickets.find(crypto::Sha256Hex(ticket));
  if (it == hub->tickets.end()) return Unauthenticated("invalid or expired ticket");
  Hub::Ticket t = std::move(it->second);
  hub->tickets.erase(it);  // single use, even when expired
  if (t.expires_us <= now_us) return Unauthenticated("invalid or expired ticket");
  return std::move(t.reauthenticate);
}

void Hubs::Sweep(int64_t now_us) {
  std::vector<std::shared_ptr<Hub>> hubs;
  {
    MutexLock lock(mu_);
    for (auto& [id, h] : hubs_) hubs.push_back(h);
  }
  for (auto& hub : hubs) {
    MutexLock lock(hub->mu);
    std::erase_if(hub->tickets, [&](const auto& t) { return t.second.expires_us <= now_us; });
    std::unique_ptr<records::TenantStore> store;
    for (auto& [id, c] : hub->connections) {
      if (c->closed_ || c->spec_.principal.ends_at_us > now_us) continue;
      if (!store) {
        if (auto s = hub->Store(); s.ok()) store = std::move(*s);
      }
      hub->RevalidateLocked(*c, store.get(), now_us);
    }
  }
  // Hubs with nothing left are dropped (their tenant's state with them).
  MutexLock lock(mu_);
  std::erase_if(hubs_, [](auto& h) {
    if (h.second.use_count() > 1) return false;
    MutexLock hub_lock(h.second->mu);
    return h.second->connections.empty() && h.second->tickets.empty();
  });
}

}  // namespace silo::realtime
