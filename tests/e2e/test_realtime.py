"""Realtime channels through the real binary over TLS, with a real WebSocket
client (Python websockets, from Debian) and a streamed Server-Sent Events
reader: record events under record and field rules, credentials at the
upgrade (cookie with Origin, token, single-use ticket), revocation while
events flow, resume and reset, broadcast, presence and user:self, two
tenants with the same names, and the limits.

No verdict waits on a timer: "nothing else arrived" is proven with a ping
sent after the write answered. The write's events are queued on every
connection before its answer (the dispatcher's AfterWrite), and a
connection's frames are answered in order, so an event that was going to
come would arrive before that ping's ack."""
import asyncio
import json
import signal
import time

import pytest
import requests
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import TOKEN_EXPIRES, insecure_client_context, metric, parse_status, raw_exchange
from identity_util import Client, create_tenant

MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}
TICKETS = {"name": "tickets", "fields": [
    {"name": "title", "type": "string"},
    {"name": "assignee", "type": "string"},
    {"name": "secret", "type": "text"}]}
AGENT = {"name": "agent", "permissions": [
    "collections.read",
    {"permission": "records.tickets.read", "where": "assignee:eq:@me",
     "fields": ["title", "assignee"]}]}


def owner_of(silo, slug="acme"):
    t = create_tenant(silo, slug, "owner@%s.test" % slug)
    owner = Client(silo, slug)
    owner.setup(t["owner_setup_token"])
    owner.sign_in("owner@%s.test" % slug)
    owner.enrol_totp()
    return owner


def invite(silo, owner, slug, email, roles):
    inv = owner.call("POST", "/api/users", {"email": email, "roles": roles})
    assert inv.status_code == 201, inv.text
    c = Client(silo, slug)
    assert c.setup(inv.json()["setup_token"]).status_code == 200
    c.sign_in(email)
    return c, inv.json()["user"]["id"]


def token_of(client, permissions, name="rt"):
    r = client.call("POST", "/api/tokens", {"name": name, "expires_at": TOKEN_EXPIRES,
                                           "permissions": permissions})
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["id"]


def acme_with_reader(make_silo, **env):
    """A server, acme's owner, and a token that reads every collection."""
    silo = make_silo(dict(MANY, **env))
    owner = owner_of(silo)
    token, _ = token_of(owner, ["records.*.read"])
    return silo, owner, token


def origin_of(silo):
    return "https://" + silo.url.split("://", 1)[1]


async def connect(silo, slug, cookie=None, token=None, ticket=None, origin=None,
                  headers=None):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = "__Host-silo_session_%s=%s" % (slug, cookie)
    if token:
        h["Authorization"] = "Bearer " + token
    query = "?ticket=" + ticket if ticket else ""
    uri = "wss://%s/t/%s/api/realtime%s" % (silo.url.split("://", 1)[1], slug, query)
    # No WebSocket keepalive pings from the client (websockets pings every
    # 20 s and gives up 20 s later): a client that stopped reading (the
    # stalled consumer) never sees the pong, and past 40 s (an ASan run)
    # its own keepalive ended the connection (1006) before the server's
    # close arrived. Each test's own waits bound it instead.
    return await websockets.connect(uri, ssl=insecure_client_context(), extra_headers=h,
                                    origin=origin, max_size=1 << 20, open_timeout=10,
                                    ping_interval=None)


async def refused(silo, slug, **kw):
    """The HTTP status a refused upgrade answered."""
    with pytest.raises(InvalidStatusCode) as e:
        await connect(silo, slug, **kw)
    return e.value.status_code


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def send(ws, frame):
    await ws.send(json.dumps(frame))


async def until_ack(ws, frame_id):
    """Every frame before the ack of `frame_id`."""
    seen = []
    while True:
        f = await recv(ws)
        if f.get("type") == "ack" and f.get("id") == frame_id:
            return seen
        seen.append(f)


async def subscribe(ws, channel, **more):
    frame = {"type": "subscribe", "id": "s-" + channel, "channel": channel}
    frame.update(more)
    await send(ws, frame)
    return await until_ack(ws, frame["id"])


_pings = [0]


async def drain(ws):
    """The frames that arrive before a fresh ping's ack."""
    _pings[0] += 1
    pid = "p%d" % _pings[0]
    await send(ws, {"type": "ping", "id": pid})
    return await until_ack(ws, pid)


async def closed_with(ws):
    """The close code, after any frames still queued."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except ConnectionClosed as e:
        return e.code, frames


def events(frames):
    return [f for f in frames if f["type"] == "event"]


def create(client, rid, **fields):
    r = client.call("POST", "/api/collections/tickets/records", dict(id=rid, **fields))
    assert r.status_code == 201, r.text
    return r.json()


def test_record_events_follow_record_and_field_rules(make_silo):
    silo = make_silo(MANY)
    owner = owner_of(silo)
    assert owner.call("POST", "/api/collections", TICKETS).status_code == 201
    assert owner.call("POST", "/api/roles", AGENT).status_code == 201
    ann, ann_id = invite(silo, owner, "acme", "ann@acme.test", ["agent"])
    _, bob_id = invite(silo, owner, "acme", "bob@acme.test", ["agent"])

    async def run():
        ws = await connect(silo, "acme", cookie=ann.cookie, origin=origin_of(silo))
        boss = await connect(silo, "acme", cookie=owner.cookie, origin=origin_of(silo))
        assert await subscribe(ws, "records:tickets") == []
        assert await subscribe(boss, "records:tickets") == []
        create(owner, "a1", title="mine", assignee=ann_id, secret="s-a1")
        create(owner, "b1", title="bob's", assignee=bob_id, secret="s-b1")
        got = events(await drain(ws))
        assert [e["data"]["record"]["id"] for e in got] == ["a1"]
        a1 = got[0]
        assert a1["channel"] == "records:tickets" and a1["data"]["action"] == "created"
        assert a1["data"]["record"]["title"] == "mine"
        assert "secret" not in a1["data"]["record"]  # field rule
        assert "s-a1" not in json.dumps(got)
        # The owner sees both, every field.
        all_ = events(await drain(boss))
        assert [e["data"]["record"]["id"] for e in all_] == ["a1", "b1"]
        assert all_[1]["data"]["record"]["secret"] == "s-b1"
        assert all_[0]["seq"] < all_[1]["seq"] and all_[0]["epoch"] == all_[1]["epoch"]
        # A record moved out of ann's rule: the update is not hers to see;
        # the delete of one she can see is (with its last state).
        assert owner.call("PATCH", "/api/collections/tickets/records/a1",
                          {"title": "renamed"}).status_code == 200
        assert owner.call("PATCH", "/api/collections/tickets/records/b1",
                          {"title": "still bob's"}).status_code == 200
        assert owner.call("DELETE", "/api/collections/tickets/records/a1").status_code == 204
        got = events(await drain(ws))
        assert [(e["data"]["action"], e["data"]["record"]["id"]) for e in got] == [
            ("updated", "a1"), ("deleted", "a1")]
        assert got[0]["data"]["record"]["title"] == "renamed"
        # A filter: only what matches.
        await send(ws, {"type": "unsubscribe", "id": "u1", "channel": "records:tickets"})
        await until_ack(ws, "u1")
        assert await subscribe(ws, "records:tickets", filter="filter=title:eq:pick") == []
        create(owner, "a2", title="skip", assignee=ann_id)
        create(owner, "a3", title="pick", assignee=ann_id)
        assert [e["data"]["record"]["id"] for e in events(await drain(ws))] == ["a3"]
        # A filter on a field the rules hide is refused (it would tell its
        # value by bisection), as a listing's is.
        await send(ws, {"type": "subscribe", "id": "x", "channel": "records:other"})
        err = await recv(ws)
        assert err["type"] == "error" and err["id"] == "x" and err["code"] == "forbidden"
        await ws.close()
        await boss.close()

    asyncio.run(run())
    # The refused subscription is an audit entry.
    audit = owner.call("GET", "/api/audit?type=access.denied").json()["items"]
    assert any(a["subject"]["id"] == "records:other" for a in audit)


def test_credentials_at_the_upgrade(make_silo):
    silo = make_silo(MANY)
    owner = owner_of(silo)
    other = owner_of(silo, "beta")
    token, _ = token_of(owner, ["records.*.read"])
    beta_token, _ = token_of(other, ["records.*.read"])

    async def run():
        # The cookie needs the tenant's own Origin (cross-site WebSocket
        # hijacking); without one, or from another site, 403.
        assert await refused(silo, "acme", cookie=owner.cookie) == 403
        assert await refused(silo, "acme", cookie=owner.cookie,
                             origin="https://evil.example") == 403
        ok = await connect(silo, "acme", cookie=owner.cookie, origin=origin_of(silo))
        await ok.close()
        # Another tenant's cookie, token or ticket does not open this one.
        assert await refused(silo, "acme", cookie=other.cookie, origin=origin_of(silo)) == 401
        assert await refused(silo, "acme", token=beta_token) == 401
        assert await refused(silo, "acme") == 401
        t = other.call("POST", "/api/realtime/tickets").json()["ticket"]
        assert await refused(silo, "acme", ticket=t) == 401
        # A ticket: once, any origin.
        t = owner.call("POST", "/api/realtime/tickets").json()["ticket"]
        ws = await connect(silo, "acme", ticket=t, origin="https://app.example")
        assert await drain(ws) == []
        await ws.close()
        assert await refused(silo, "acme", ticket=t) == 401
        # The ticket travels in the query, which the access log never keeps.
        assert t not in silo.output() and t[3:] not in silo.output()
        # A token, as a server would.
        ws = await connect(silo, "acme", token=token)
        assert await drain(ws) == []
        await ws.close()

    asyncio.run(run())
    # A plain GET is not an upgrade.
    r = requests.get(silo.url + "/t/acme/api/realtime", headers={
        "Authorization": "Bearer " + token}, verify=False, timeout=10)
    assert r.status_code == 426


def test_revocation_while_events_flow(make_silo):
    """A token revoked, a session ended, a role narrowed: after each commit,
    zero deliveries, and the connection or the subscription ends."""
    silo = make_silo(MANY)
    owner = owner_of(silo)
    assert owner.call("POST", "/api/collections", TICKETS).status_code == 201
    assert owner.call("POST", "/api/roles", {"name": "reader", "permissions": [
        "records.tickets.read"]}).status_code == 201
    ann, ann_id = invite(silo, owner, "acme", "ann@acme.test", ["reader"])
    token, token_id = token_of(owner, ["records.tickets.read"])
    ann_token, _ = token_of(ann, ["records.tickets.read"], "ann's")

    async def run():
        by_token = await connect(silo, "acme", token=token)
        by_session = await connect(silo, "acme", cookie=ann.cookie, origin=origin_of(silo))
        by_role = await connect(silo, "acme", token=ann_token)
        for ws in (by_token, by_session, by_role):
            await subscribe(ws, "records:tickets")
        create(owner, "t1", title="before")
        for ws in (by_token, by_session, by_role):
            assert [e["data"]["record"]["id"] for e in events(await drain(ws))] == ["t1"]

        # 1. The token is revoked: closed 4001, nothing after.
        assert owner.call("DELETE", "/api/tokens/" + token_id).status_code == 204
        create(owner, "t2", title="after the token")
        code, frames = await closed_with(by_token)
        assert code == 4001 and events(frames) == []

        # 2. Ann signs out: that session's connection is closed 4001.
        assert ann.call("POST", "/api/auth/logout").status_code in (200, 204)
        create(owner, "t3", title="after the session")
        code, frames = await closed_with(by_session)
        # (By record id: "t3" as a substring of the frames' text also matched
        # random user ids, "...26ut3yiw", 1 run in a few dozen.)
        assert code == 4001 and "t3" not in [e["data"]["record"]["id"] for e in events(frames)]

        # 3. Ann's role loses the read: her token's subscription ends with an
        # error, nothing after; the connection stays (the token is valid).
        assert [e["data"]["record"]["id"] for e in events(await drain(by_role))] == [
            "t2", "t3"]
        r = owner.call("PATCH", "/api/roles/reader", {"permissions": ["collections.read"]})
        assert r.status_code == 200, r.text
        create(owner, "t4", title="after the role")
        frames = await drain(by_role)
        assert events(frames) == []
        assert [(f["type"], f["code"]) for f in frames] == [("error", "forbidden")]
        await send(by_role, {"type": "subscribe", "id": "again", "channel": "records:tickets"})
        assert (await recv(by_role))["code"] == "forbidden"
        # Given back, a new subscription works again.
        assert owner.call("PATCH", "/api/roles/reader",
                          {"permissions": ["records.tickets.read"]}).status_code == 200
        await subscribe(by_role, "records:tickets")
        create(owner, "t5", title="again")
        assert [e["data"]["record"]["id"] for e in events(await drain(by_role))] == ["t5"]
        await by_role.close()

    asyncio.run(run())


def test_resume_loses_nothing_and_a_stale_epoch_resets(make_silo):
    silo = make_silo(MANY)
    owner = owner_of(silo)
    assert owner.call("POST", "/api/collections", TICKETS).status_code == 201
    token, _ = token_of(owner, ["records.tickets.read"])

    async def run():
        ws = await connect(silo, "acme", token=token)
        await subscribe(ws, "records:tickets")
        for i in range(3):
            create(owner, "r%d" % i, title="x")
        seen = events(await drain(ws))
        assert len(seen) == 3
        last, epoch = seen[-1]["seq"], seen[-1]["epoch"]
        await ws.close()
        # Written while disconnected.
        for i in range(3, 8):
            create(owner, "r%d" % i, title="x")
        ws = await connect(silo, "acme", token=token)
        replayed = await subscribe(ws, "records:tickets", after=last, epoch=epoch)
        assert [e["data"]["record"]["id"] for e in events(replayed)] == [
            "r%d" % i for i in range(3, 8)]
        # Then live, in order, no gap and no duplicate.
        create(owner, "r8", title="x")
        live = events(await drain(ws))
        assert [e["data"]["record"]["id"] for e in live] == ["r8"]
        seqs = [e["seq"] for e in replayed + live]
        assert seqs == sorted(seqs) and seqs[0] > last
        await ws.close()
        # Another epoch: reset, never a silent gap.
        ws = await connect(silo, "acme", token=token)
        frames = await subscribe(ws, "records:tickets", after=last, epoch="e-unknown")
        assert frames == [{"type": "reset", "channel": "records:tickets", "epoch": epoch}]
        await ws.close()

    asyncio.run(run())


def test_broadcast_presence_and_user_self(make_silo):
    silo = make_silo(MANY)
    owner = owner_of(silo)
    assert owner.call("POST", "/api/roles", {"name": "chat", "permissions": [
        "channels.room:*.subscribe", "channels.room:*.publish",
        "channels.room:*.presence"]}).status_code == 201
    assert owner.call("POST", "/api/roles", {"name": "lurker", "permissions": [
        "channels.room:1.subscribe"]}).status_code == 201
    ann, ann_id = invite(silo, owner, "acme", "ann@acme.test", ["chat"])
    bob, bob_id = invite(silo, owner, "acme", "bob@acme.test", ["lurker"])
    server, _ = token_of(owner, ["channels.*.publish"], "server")

    async def run():
        a = await connect(silo, "acme", cookie=ann.cookie, origin=origin_of(silo))
        b = await connect(silo, "acme", cookie=bob.cookie, origin=origin_of(silo))
        await subscribe(a, "broadcast:room:1")
        await subscribe(b, "broadcast:room:1")
        await subscribe(a, "user:self")
        await subscribe(b, "user:self")
        # Bob may not publish, nor join room:2.
        await send(b, {"type": "publish", "id": "bp", "channel": "broadcast:room:1",
                       "event": "msg", "payload": {"t": "hi"}})
        assert (await recv(b))["code"] == "forbidden"
        await send(b, {"type": "subscribe", "id": "b2", "channel": "broadcast:room:2"})
        assert (await recv(b))["code"] == "forbidden"
        # Ann publishes: Bob gets it, Ann (the sender) does not.
        await send(a, {"type": "publish", "id": "ap", "channel": "broadcast:room:1",
                       "event": "msg", "payload": {"t": "hello"}})
        assert await until_ack(a, "ap") == []
        got = events(await drain(b))
        assert [e["data"] for e in got] == [{"event": "msg", "payload": {"t": "hello"}}]
        # Presence: Ann tracks; Bob (no presence permission) sees none of it.
        await send(a, {"type": "presence.track", "id": "pt", "channel": "broadcast:room:1",
                       "state": {"typing": True}})
        seen = await until_ack(a, "pt")
        assert seen[0]["type"] == "presence.diff"
        (key, value), = seen[0]["joins"].items()
        assert value == {"user": ann_id, "state": {"typing": True}}
        assert await drain(b) == []
        # A server's message to the broadcast, and to one user.
        r = requests.post(silo.url + "/t/acme/api/channels/room:1/messages",
                          json={"event": "note", "payload": 1}, verify=False, timeout=10,
                          headers={"Authorization": "Bearer " + server})
        assert r.status_code == 202 and r.json() == {"delivered": 2}, r.text
        r = requests.post(silo.url + "/t/acme/api/channels/user:%s/messages" % bob_id,
                          json={"event": "dm", "payload": "for bob"}, verify=False, timeout=10,
                          headers={"Authorization": "Bearer " + server})
        assert r.status_code == 202 and r.json() == {"delivered": 1}, r.text
        got_b = events(await drain(b))
        assert [e["channel"] for e in got_b] == ["broadcast:room:1", "user:self"]
        assert got_b[1]["data"] == {"event": "dm", "payload": "for bob"}
        got_a = events(await drain(a))
        assert [e["channel"] for e in got_a] == ["broadcast:room:1"]
        assert "for bob" not in json.dumps(got_a)
        # Ann leaves: a presence leave for those who may see presence.
        watcher = await connect(silo, "acme", cookie=owner.cookie, origin=origin_of(silo))
        joined = await subscribe(watcher, "broadcast:room:1")
        assert joined[0]["type"] == "presence.diff" and key in joined[0]["joins"]
        await a.close()
        # The leave comes once the server has seen the connection end, which
        # may be after a ping sent now is answered (a fresh clone's ASan run
        # saw that order): wait for it, not for a ping's ack.
        left = await recv(watcher)
        assert left == {"type": "presence.diff", "channel": "broadcast:room:1", "joins": {},
                        "leaves": [key]}
        await b.close()
        await watcher.close()

    asyncio.run(run())


def test_two_tenants_with_the_same_names_share_nothing(make_silo):
    silo = make_silo(MANY)
    tenants = {slug: owner_of(silo, slug) for slug in ("acme", "beta")}
    for o in tenants.values():
        assert o.call("POST", "/api/collections", TICKETS).status_code == 201

    async def run():
        conns = {}
        for slug, o in tenants.items():
            ws = await connect(silo, slug, cookie=o.cookie, origin=origin_of(silo))
            await subscribe(ws, "records:tickets")
            await subscribe(ws, "broadcast:room")
            conns[slug] = ws
        create(tenants["acme"], "same-id", title="acme's", secret="acme secret")
        await send(conns["acme"], {"type": "publish", "id": "p", "channel": "broadcast:room",
                                   "event": "e", "payload": "acme only"})
        got = events(await until_ack(conns["acme"], "p"))
        assert [e["data"]["record"]["title"] for e in got] == ["acme's"]
        assert await drain(conns["beta"]) == []
        create(tenants["beta"], "same-id", title="beta's")
        assert await drain(conns["acme"]) == []
        got = events(await drain(conns["beta"]))
        assert [e["data"]["record"]["title"] for e in got] == ["beta's"]
        # A server message to acme's owner, sent on beta: no one gets it
        # (the same id names nobody there); sent on acme: its owner does.
        acme_owner = tenants["acme"].call("GET", "/api/auth/me").json()["user"]["id"]
        await subscribe(conns["acme"], "user:self")
        for slug, want in (("beta", 0), ("acme", 1)):
            r = tenants[slug].call("POST", "/api/channels/user:%s/messages" % acme_owner,
                                   {"event": "dm", "payload": slug})
            assert r.status_code == 202 and r.json() == {"delivered": want}, (slug, r.text)
        got = events(await drain(conns["acme"]))
        assert [e["data"]["payload"] for e in got] == ["acme"]
        for ws in conns.values():
            await ws.close()

    asyncio.run(run())


def test_suspended_tenant_closes_its_connections(make_silo):
    silo, owner, token = acme_with_reader(make_silo)

    async def run():
        ws = await connect(silo, "acme", token=token)
        assert await drain(ws) == []
        r = silo.cli("tenant", "suspend", "acme")
        assert r.returncode == 0, r.stderr
        code, frames = await closed_with(ws)
        assert code == 4003 and frames == []
        assert await refused(silo, "acme", token=token) == 404

    asyncio.run(run())


def test_limits_close_what_exceeds_them(make_silo):
    silo, owner, token = acme_with_reader(make_silo)

    async def run():
        # A message over 64 KiB: closed 1009 (too big).
        ws = await connect(silo, "acme", token=token)
        await ws.send(json.dumps({"type": "ping", "id": "x" * 10, "pad": "y" * 70000}))
        code, _ = await closed_with(ws)
        assert code == 1009
        # Frames faster than the connection's rate: closed 4029.
        ws = await connect(silo, "acme", token=token)
        for i in range(1000):
            await send(ws, {"type": "ping", "id": "f%d" % i})
        code, frames = await closed_with(ws)
        assert code == 4029 and len(frames) < 1000
        # A malformed frame is an error frame, not a crash or a close.
        ws = await connect(silo, "acme", token=token)
        await ws.send("{not json")
        assert (await recv(ws))["code"] == "bad_frame"
        assert await drain(ws) == []
        await ws.close()

    asyncio.run(run())


def sse_lines(resp, n):
    """The first `n` data frames of an event stream, with their ids."""
    out, ident = [], None
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            out.append((ident, json.loads(line[6:])))
            if len(out) == n:
                return out
    raise AssertionError("the stream ended after %d frames" % len(out))


def test_event_stream_delivers_and_resumes_with_last_event_id(make_silo):
    silo = make_silo(MANY)
    owner = owner_of(silo)
    assert owner.call("POST", "/api/collections", TICKETS).status_code == 201
    token, _ = token_of(owner, ["records.tickets.read"])
    url = silo.url + "/t/acme/api/realtime/sse?channel=records:tickets"
    auth = {"Authorization": "Bearer " + token}
    with requests.get(url, headers=auth, stream=True, verify=False, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        create(owner, "s1", title="one")
        create(owner, "s2", title="two")
        (id1, f1), (id2, f2) = sse_lines(r, 2)
        assert f1["data"]["record"]["id"] == "s1" and f2["data"]["record"]["id"] == "s2"
        assert id2 == "%s:%d" % (f2["epoch"], f2["seq"])
    create(owner, "s3", title="three")
    with requests.get(url, headers=dict(auth, **{"Last-Event-ID": id1}), stream=True,
                      verify=False, timeout=10) as r:
        assert [f["data"]["record"]["id"] for _, f in sse_lines(r, 2)] == ["s2", "s3"]
    # Without the read permission: refused before any stream, and audited.
    other, other_id = token_of(owner, ["collections.read"], "other")
    r = requests.get(url, headers={"Authorization": "Bearer " + other}, verify=False, timeout=10)
    assert r.status_code == 403
    audit = owner.call("GET", "/api/audit?type=access.denied").json()["items"]
    assert [a["actor"] for a in audit if a["subject"]["id"] == "records:tickets"] == [
        "token:" + other_id]


def test_a_stalled_consumer_is_closed_and_the_others_get_everything(make_silo):
    """One client stops reading while 24 MiB of broadcasts flow: the server
    holds at most 1 MiB for it (more than socket buffers take), closes it
    4008, and the client that reads gets every message."""
    silo = make_silo(MANY)
    owner = owner_of(silo)
    server, _ = token_of(owner, ["channels.*.publish", "channels.*.subscribe"], "server")
    payload = "x" * (60 * 1024)

    async def run():
        stalled = await connect(silo, "acme", token=server)
        reader = await connect(silo, "acme", token=server)
        for ws in (stalled, reader):
            await subscribe(ws, "broadcast:feed")
        stalled.transport.pause_reading()  # stops taking bytes off the socket
        got = 0
        for i in range(400):
            r = requests.post(silo.url + "/t/acme/api/channels/feed/messages",
                              json={"event": "big", "payload": payload}, verify=False,
                              timeout=10, headers={"Authorization": "Bearer " + server})
            assert r.status_code == 202, r.text
            while True:  # keep the reader reading
                try:
                    f = json.loads(await asyncio.wait_for(reader.recv(), 0.001))
                except asyncio.TimeoutError:
                    break
                got += f["type"] == "event"
        while got < 400:
            got += (await recv(reader))["type"] == "event"
        assert got == 400
        stalled.transport.resume_reading()
        code, _ = await closed_with(stalled)
        assert code == 4008
        await reader.close()

    asyncio.run(run())
    # The server counts the rejection when the connection's writer has ended,
    # which can be after the client has seen the close frame: wait for the
    # line (at most 30 s), then check that each counter is exactly 1.
    rejection = 'silo_http_rejections_total{reason="slow_consumer"}'
    deadline = time.monotonic() + 30
    while metric(silo, rejection) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(silo, "silo_realtime_dropped_slow_total") == 1
    assert metric(silo, rejection) == 1


def test_an_upgrade_whose_host_and_path_disagree_is_400(make_silo):
    silo, owner, token = acme_with_reader(make_silo, SILO_BASE_DOMAIN="silo.test")
    owner_of(silo, "beta")
    upgrade = ("GET /t/acme/api/realtime HTTP/1.1\r\nHost: %s\r\n"
               "Authorization: Bearer %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert parse_status(raw_exchange(silo, (upgrade % ("beta.silo.test", token)).encode())) == 400
    assert parse_status(raw_exchange(silo, (upgrade % ("acme.silo.test", token)).encode())) == 101


def test_a_stopping_server_closes_its_realtime_connections(make_silo):
    """SIGTERM: open WebSockets get 1001 (going away), and the server exits
    0 without waiting out its drain time on them."""
    silo, owner, token = acme_with_reader(make_silo)

    async def run():
        ws = await connect(silo, "acme", token=token)
        assert await drain(ws) == []
        silo.proc.send_signal(signal.SIGTERM)
        code, _ = await closed_with(ws)
        assert code == 1001

    asyncio.run(run())
    assert silo.proc.wait(timeout=4) == 0  # the drain timeout is 5 s
