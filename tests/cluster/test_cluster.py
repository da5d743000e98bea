"""Replication across three real `silo serve` nodes and a real etcd: a tenant
created on one node is copied, sealed and byte for byte, to the other two,
which never hold its key in the clear; the cluster's state is readable with
`silo cluster status`; a node that loses etcd stops acknowledging writes;
a primary killed under load hands its tenant to a follower with no
acknowledged write lost, round after round; a primary paused past its lease
acknowledges nothing after it and comes back as a follower; a damaged copy
is never promoted."""
import base64
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import (SILO_BIN, TTL_S, caught_up, e2e, etcd_call, make_tenant, tenant_entry,
                      wait_until)

metric = e2e.metric

NEEDLE = "CLUSTER-NEEDLE-plaintext-4711"
TICKETS = {"name": "tickets", "fields": [{"name": "title", "type": "string", "max": 200}]}


_sessions = threading.local()


@pytest.fixture(autouse=True)
def _closed_sessions():
    """The main thread's sessions (call) go with each test's nodes."""
    yield
    for session in getattr(_sessions, "by_url", {}).values():
        session.close()
    _sessions.by_url = {}


def call(node, slug, token, method, path, body=None):
    """One request to `node` itself: a redirect to another node is an
    answer here, not followed (a write must be counted where it was made).
    Each thread keeps its connections (a session per node URL): a TLS
    handshake per request cost a kill round about a second."""
    sessions = getattr(_sessions, "by_url", None)
    if sessions is None:
        sessions = _sessions.by_url = {}
    session = sessions.get(node.url)
    if session is None:
        session = sessions[node.url] = requests.Session()
    return session.request(method, node.url + "/t/" + slug + path, json=body,
                           headers={"Authorization": "Bearer " + token}, verify=False,
                           timeout=10, allow_redirects=False)


def serving(cluster, token, pick):
    """A predicate for wait_until: `pick()` (a tenant's status entry or
    None) once the node it names as primary answers for the tenant. etcd
    names a new primary a moment before that node has the tenant in hand; it
    answers 503 (retry) meanwhile, which is not the verdict of a test."""
    def check():
        entry = pick()
        if not entry:
            return None
        node = next((n for n in cluster.nodes
                     if n.node_id == entry["primary"] and n.proc.poll() is None), None)
        if node is None:
            return None
        r = call(node, "acme", token, "GET", "/api/collections/tickets/records/not-a-record")
        return entry if r.status_code not in (503, 307) else None
    return check


def taken_over(cluster, token, tenant_id, n2, n3):
    """Waits until n2 or n3 leads the tenant and answers for it (after n1,
    its primary, was killed); returns the leader and the other one."""
    def new_primary():
        entry = tenant_entry(cluster.status(), tenant_id)
        return entry if entry and entry["primary"] in ("n2", "n3") else None
    entry = wait_until("a follower leads the tenant", serving(cluster, token, new_primary),
                       timeout=30)
    return (n2, n3) if entry["primary"] == "n2" else (n3, n2)


def started_three(cluster):
    return tuple(cluster.start_node(n) for n in ("n1", "n2", "n3"))


def tenant_with_records(node, prefix, count):
    """Tenant acme on `node`, its tickets collection holding records
    <prefix>0 .. <prefix><count - 1>; (tenant id, token)."""
    tenant_id, token = make_tenant(node, "acme")
    assert call(node, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    for i in range(count):
        r = call(node, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "%s%d" % (prefix, i), "title": "%s %d" % (NEEDLE, i)})
        assert r.status_code == 201, r.text
    return tenant_id, token


def assert_served(node, token, record_ids):
    """`node` answers for every one of the tenant acme's `record_ids`."""
    for record_id in record_ids:
        r = call(node, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def read_wal(path):
    """A WAL's bytes; none when there is no file (SQLite reads both alike:
    a follower removes its WAL when it installs a snapshot, the primary's
    TRUNCATE checkpoint leaves an empty one)."""
    return read(path) if os.path.exists(path) else b""


def same_files(follower, primary, tenant_id):
    """The follower's copy holds the primary's sealed bytes: the database
    file and its WAL."""
    copy = os.path.join(follower.data_dir, "replicas", tenant_id)
    own = os.path.join(primary.data_dir, "tenants", tenant_id)
    return (read(os.path.join(copy, "tenant.db")) == read(os.path.join(own, "tenant.db")) and
            read_wal(os.path.join(copy, "tenant.db-wal")) ==
            read_wal(os.path.join(own, "tenant.db-wal")))


def recorded_seq(copy):
    """The seq a copy's replica.pos records (docs/formats.md: two 128-byte
    slots, magic SLRP, version, seq; the intact one with the higher seq)."""
    data = read(os.path.join(copy, "replica.pos"))
    seqs = [0]
    for at in (0, 128):
        slot = data[at:at + 128]
        body = slot[:76]
        if len(slot) == 128 and body[:4] == b"SLRP" and \
                hashlib.blake2b(body, digest_size=32).digest() == slot[76:108]:
            seqs.append(int.from_bytes(body[8:16], "little"))
    return max(seqs)


def events(node, msg):
    """The lines of `node`'s log that say `msg`, as dicts."""
    found = []
    for line in node.output().splitlines():
        if '"msg":"%s"' % msg in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                pass  # a line cut short by a kill
    return found


def test_a_tenant_is_copied_sealed_and_byte_for_byte_to_every_other_node(cluster):
    n1, n2, n3 = started_three(cluster)

    # Every node is announced with its node link and public URL (and, from
    # its first status report on, its replication mode).
    def all_reported():
        nodes = {n["id"]: n for n in cluster.status()["nodes"]}
        return nodes if all(n["replication"] for n in nodes.values()) else None
    nodes = wait_until("every node reported", all_reported)
    assert sorted(nodes) == ["n1", "n2", "n3"]
    for n in (n1, n2, n3):
        assert nodes[n.node_id]["url"] == n.url
        assert nodes[n.node_id]["cluster"].startswith("127.0.0.1:")
        assert nodes[n.node_id]["replication"] == "sync"

    tenant_id, token = make_tenant(n1, "acme")
    r = call(n1, "acme", token, "POST", "/api/collections", TICKETS)
    assert r.status_code == 201, r.text
    for i in range(40):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "r%d" % i, "title": "%s %d" % (NEEDLE, i)})
        assert r.status_code == 201, r.text

    # n1 leads the tenant; both others follow it with nothing outstanding.
    t = wait_until("both followers caught up",
                   lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    assert t["primary"] == "n1"
    assert t["term"] > 0

    primary_dir = os.path.join(n1.data_dir, "tenants", tenant_id)
    for follower in (n2, n3):
        copy = os.path.join(follower.data_dir, "replicas", tenant_id)
        # The same sealed bytes: the database file and its WAL. (Compared
        # once the status says the copy holds the last segment; the primary
        # may still be writing in the background, so a few tries.)
        wait_until("%s's copy equals the primary's files" % follower.node_id,
                   lambda: caught_up(cluster, tenant_id, ["n2", "n3"]) and
                   same_files(follower, n1, tenant_id))
        # The tenant's metadata and its key as the keyring holds it: wrapped.
        assert read(os.path.join(copy, "tenant.meta")) == \
            read(os.path.join(primary_dir, "tenant.meta"))
        with open(os.path.join(n1.data_dir, "platform", "keyring.d", tenant_id)) as f:
            wrapped = json.load(f)["wrapped"]
        assert base64.b64encode(read(os.path.join(copy, "tenant.key"))).decode() == wrapped
        # Nothing a customer wrote is readable on the follower's disk.
        for root, _, files in os.walk(os.path.join(follower.data_dir, "replicas")):
            for name in files:
                assert NEEDLE.encode() not in read(os.path.join(root, name)), name
        # ... and a follower does not serve the tenant it copies: it sends
        # the request to the primary (307: the same method and body there).
        r = call(follower, "acme", token, "GET", "/api/collections?x=1")
        assert r.status_code == 307, r.status_code
        assert r.headers["location"] == n1.url + "/t/acme/api/collections?x=1"
        assert not r.content
        r = call(follower, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "via-" + follower.node_id, "title": "sent on"})
        assert r.status_code == 307
        assert r.headers["location"] == n1.url + "/t/acme/api/collections/tickets/records"
        r = requests.post(r.headers["location"], json={"id": "via-" + follower.node_id,
                                                       "title": "sent on"},
                          headers={"Authorization": "Bearer " + token}, verify=False, timeout=10)
        assert r.status_code == 201, r.text
        # A slug no node has is still unknown.
        assert follower.get("/t/nobody/api/collections").status_code == 404

    # Writes after the catch-up stream on; the text status says the same.
    for i in range(40, 60):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "r%d" % i, "title": "%s %d" % (NEEDLE, i)})
        assert r.status_code == 201, r.text
    later = wait_until("caught up again",
                       lambda: caught_up(cluster, tenant_id, ["n2", "n3"], t["seq"]))
    text = subprocess.run([SILO_BIN, "cluster", "status"],
                          env={"SILO_ETCD_ENDPOINTS": cluster.etcd.endpoint},
                          capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    assert "%s  primary n1  term %d" % (tenant_id, later["term"]) in text.stdout
    assert "follower n2  streaming" in text.stdout and "follower n3  streaming" in text.stdout

    # /metrics says the same: n1 leads one tenant whose followers are level,
    # and has shipped segments and snapshots; n2 and n3 hold one copy each.
    assert metric(n1, "silo_cluster_lease_held") == 1
    assert metric(n1, "silo_repl_tenants_led") == 1
    assert metric(n1, "silo_repl_term_max") == later["term"]
    assert metric(n1, "silo_repl_segments_total") >= later["seq"] - t["seq"]
    assert metric(n1, "silo_repl_bytes_total") > 0
    assert metric(n1, "silo_repl_snapshots_total") >= 1
    assert metric(n1, "silo_repl_followers_behind") == 0
    assert metric(n1, "silo_repl_recent_bytes") == 0  # it holds no copy
    # The segments it sent since the snapshots, kept for a follower away a
    # moment (within 192 MiB for all the tenants it leads).
    assert 0 < metric(n1, "silo_repl_retained_bytes") <= 192 << 20
    for follower in (n2, n3):
        assert metric(follower, "silo_repl_copies") == 1
        assert metric(follower, "silo_repl_tenants_led") == 0
        assert metric(follower, "silo_repl_retained_bytes") == 0  # it leads none
        # The segments it applied since its snapshot, kept for a promotion.
        assert 0 < metric(follower, "silo_repl_recent_bytes") <= 192 << 20


def test_a_second_node_with_a_live_node_id_is_refused(cluster):
    cluster.start_node("n1")
    twin = cluster.start_node("n1", wait=False, data=os.path.join(cluster.root, "twin"))
    assert twin.proc.wait(timeout=30) == 1
    assert "SILO_NODE_ID n1 is in use by a live node" in twin.output()


def test_a_node_refuses_to_start_without_etcd(cluster):
    cluster.etcd.stop()
    n = cluster.start_node("n1", wait=False)
    assert n.proc.wait(timeout=30) == 1
    assert "cannot get a node lease from etcd" in n.output()


def test_cluster_settings_are_checked_before_anything_starts(cluster):
    n = cluster.start_node("n1", {"SILO_REPLICATION": "semi", "SILO_CLUSTER_TLS_CA": ""},
                           wait=False)
    assert n.proc.wait(timeout=30) == 1
    out = n.output()
    assert "SILO_REPLICATION must be sync, async or off" in out
    assert "SILO_CLUSTER_TLS_CA are required when clustered" in out


def test_a_primary_that_loses_etcd_acknowledges_no_write_after_its_lease_deadline_and_resumes_after(
        cluster):
    n1 = cluster.start_node("n1")
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201

    # Writes go on, one at a time, while etcd disappears.
    answers = []  # (sent, status)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            sent = time.monotonic()
            try:
                code = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                            {"id": "w%d" % i, "title": "x"}).status_code
            except requests.RequestException:
                code = None
            answers.append((sent, code))
            i += 1
            time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1)
    killed = time.monotonic()
    cluster.etcd.stop()
    time.sleep(TTL_S + 2)
    stop.set()
    t.join()

    assert any(code == 201 for sent, code in answers if sent < killed), "no write before the kill"
    # The node's deadline is at most TTL after its last answered keep-alive,
    # which was before the kill: a write sent after kill + TTL was sent after
    # the deadline and must not be acknowledged.
    late = [(sent - killed, code) for sent, code in answers if sent > killed + TTL_S]
    assert late, "no write was tried after the deadline"
    assert all(code != 201 for _, code in late), late
    assert all(code == 503 for _, code in late), late

    # etcd comes back (its members restarted on their data): the node holds
    # a lease again, its old one or, if that ran out, a new one it announces,
    # and the tenant takes writes again, still led here.
    cluster.etcd.restart()

    def writable():
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "again-%d" % time.monotonic_ns(), "title": "x"})
        return r.status_code == 201
    wait_until("writes acknowledged again", writable, timeout=30, every=0.2)
    entry = tenant_entry(cluster.status(), tenant_id)
    assert entry is not None and entry["primary"] == "n1"
    assert metric(n1, "silo_cluster_lease_held") == 1
    out = n1.output()
    print("after etcd came back: %s" % ("a new lease (cluster.rejoined)"
                                        if "cluster.rejoined" in out else "the same lease"))


def test_sigkill_of_the_primary_loses_no_acknowledged_write(cluster):
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    term = tenant_entry(cluster.status(), tenant_id)["term"]

    # Writes go on, one at a time, until the primary is killed under them:
    # the ledger holds every write n1 acknowledged.
    acked = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                         {"id": "w%d" % i, "title": "%s %d" % (NEEDLE, i)})
            except requests.RequestException:
                return
            if r.status_code == 201:
                acked.append("w%d" % i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    wait_until("some writes acknowledged", lambda: len(acked) >= 30, timeout=60)
    killed = time.monotonic()
    n1.proc.kill()
    n1.proc.wait()
    stop.set()
    t.join()

    # A follower takes the tenant over under a higher term. (How soon is a
    # figure, printed below, not a verdict here.)
    def new_primary():
        entry = tenant_entry(cluster.status(), tenant_id)
        return entry if entry and entry["primary"] in ("n2", "n3") else None
    entry = wait_until("a follower leads the tenant", serving(cluster, token, new_primary),
                       timeout=30)
    took = time.monotonic() - killed
    assert entry["term"] > term
    leader = n2 if entry["primary"] == "n2" else n3
    other = n3 if leader is n2 else n2

    # Every acknowledged write is there, and the tenant takes writes again.
    for record_id in acked:
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code, r.text)
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the failover"})
    assert r.status_code == 201, r.text
    writable = time.monotonic() - killed
    # Both hash chains and integrity_check on the new primary.
    verify = leader.cli("audit", "verify", "acme")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The remaining follower follows the new primary (a snapshot of its chain).
    wait_until("the other follower follows the new primary",
               lambda: caught_up(cluster, tenant_id, [other.node_id]))
    assert metric(leader, "silo_repl_promotions_total") == 1
    assert metric(other, "silo_repl_promotions_total") == 0
    print("failover: %d acknowledged writes kept; led again after %.2f s, writable after %.2f s "
          "(TTL %d s)" % (len(acked), took, writable, TTL_S))


def test_a_primary_paused_past_its_lease_acknowledges_nothing_after_and_rejoins_as_a_follower(
        cluster):
    """SIGSTOP for three lease lengths (a VM paused, a process stuck in the
    kernel): etcd lets the lease go, a follower takes over. When the old
    primary runs again, the requests that waited on it must not be
    acknowledged (the new primary never saw them): its own lease deadline
    passed while it was stopped. It then gets a new lease, gives the tenant
    up and follows the new primary, byte for byte."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    term = tenant_entry(cluster.status(), tenant_id)["term"]

    answers = []  # (record id, sent, status or None)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            record_id = "p%d" % i
            sent = time.monotonic()
            try:
                code = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                            {"id": record_id, "title": "%s %d" % (NEEDLE, i)}).status_code
            except requests.RequestException:
                code = None
            answers.append((record_id, sent, code))
            i += 1
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until("writes acknowledged", lambda: sum(a[2] == 201 for a in answers) >= 10)
        os.kill(n1.proc.pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            entry = wait_until(
                "a follower leads the tenant",
                serving(cluster, token,
                        lambda: (lambda e: e if e and e["primary"] != "n1" else None)(
                            tenant_entry(cluster.status(), tenant_id))))
            time.sleep(max(0.0, paused + 3 * TTL_S - time.monotonic()))
        finally:
            os.kill(n1.proc.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until("writes sent to n1 after it resumed",
                   lambda: sum(a[1] > resumed for a in answers) >= 20)
    finally:
        stop.set()
        t.join()
    assert entry["term"] > term
    leader = n2 if entry["primary"] == "n2" else n3
    other = n3 if leader is n2 else n2

    # Nothing sent after the pause is acknowledged by n1 ...
    after = [(record_id, code) for record_id, sent, code in answers if sent > resumed]
    assert all(code != 201 for _, code in after), after
    # ... and every write it did acknowledge, before the pause or answered
    # after it, is on the new primary.
    acked = [record_id for record_id, _, code in answers if code == 201]
    assert acked
    for record_id in acked:
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)

    # n1 rejoined under a new lease, gave the tenant up and follows the new
    # primary with the other node. Its files are its copy when the pause
    # caught them clean, between two cuts (chain.live); stopped in the
    # middle of a write they are kept aside, not served. Where SIGSTOP lands
    # is not the test's to choose: either way the log says which, and the
    # files are where it says.
    wait_until("n1 follows the new primary",
               lambda: caught_up(cluster, tenant_id, ["n1", other.node_id]), timeout=60)
    assert "cluster.rejoined" in n1.output()
    [deposed] = [e for e in events(n1, "replication.deposed") if e["tenant"] == tenant_id]
    aside = os.path.join(n1.data_dir, "deposed", "%s.%d" % (tenant_id, entry["term"]))
    if deposed["kept"] == "as this node's copy":
        assert not os.path.exists(aside)
    else:
        assert os.path.exists(aside) and os.path.samefile(deposed["kept"], aside), deposed
    print("n1's files were kept %s" % deposed["kept"])
    assert not os.path.exists(os.path.join(n1.data_dir, "tenants", tenant_id))
    r = call(n1, "acme", token, "GET", "/api/collections")
    assert r.status_code == 307 and r.headers["location"].startswith(leader.url + "/t/acme/"), \
        (r.status_code, r.headers.get("location"))
    assert metric(n1, "silo_cluster_lease_held") == 1
    assert metric(n1, "silo_repl_tenants_led") == 0
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "x"})
    assert r.status_code == 201, r.text
    seq = tenant_entry(cluster.status(), tenant_id)["seq"]
    wait_until("n1's copy equals the new primary's files",
               lambda: caught_up(cluster, tenant_id, ["n1", other.node_id], seq - 1) and
               same_files(n1, leader, tenant_id))
    for root, _, files in os.walk(os.path.join(n1.data_dir, "replicas")):
        for name in files:
            assert NEEDLE.encode() not in read(os.path.join(root, name)), name


def promote(cluster, *args):
    return subprocess.run([SILO_BIN, "tenant", "promote", *args],
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "SILO_ETCD_ENDPOINTS": cluster.etcd.endpoint},
                          capture_output=True, text=True, timeout=60)


def test_silo_tenant_promote_hands_a_tenant_over_under_load_with_no_write_lost(cluster):
    n1, n2, n3 = started_three(cluster)
    by_url = {n.url: n for n in (n1, n2, n3)}
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    term = tenant_entry(cluster.status(), tenant_id)["term"]
    served = os.stat(os.path.join(n1.data_dir, "tenants", tenant_id, "tenant.db")).st_ino

    # What cannot be done is refused, and says why.
    r = promote(cluster, "nobody", "--node", "n2")
    assert r.returncode == 1 and "no tenant nobody in the cluster" in r.stderr, r.stderr
    r = promote(cluster, "acme", "--node", "n9")
    assert r.returncode == 1 and "no live node n9" in r.stderr, r.stderr
    r = promote(cluster, "acme", "--node", "n1")
    assert r.returncode == 0 and "n1 leads acme already" in r.stdout, r.stdout + r.stderr

    # A client writes all along, to whichever node it was last sent to: a
    # 307 moves it, a 503 (the tenant held closed while it changes hands)
    # makes it try again. The ledger holds every write acknowledged.
    acked, moved, unexpected = [], [], []
    stop = threading.Event()

    def writer():
        node, i = n1, 0
        while not stop.is_set():
            record_id = "h%d" % i
            i += 1
            try:
                r = call(node, "acme", token, "POST", "/api/collections/tickets/records",
                         {"id": record_id, "title": NEEDLE})
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if r.status_code == 201:
                acked.append((record_id, node.node_id))
            elif r.status_code == 307:
                location = r.headers["location"]
                node = next(n for url, n in by_url.items() if location.startswith(url + "/"))
                moved.append(node.node_id)
            else:
                if r.status_code != 503:
                    unexpected.append((record_id, r.status_code, r.text))
                time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until("writes acknowledged", lambda: len(acked) >= 20)
        r = promote(cluster, "acme", "--node", "n3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "n3 leads acme now" in r.stdout, r.stdout
        before = len(acked)
        wait_until("writes acknowledged by n3", lambda: len(acked) >= before + 20 and
                   acked[-1][1] == "n3")
    finally:
        stop.set()
        t.join()
    assert not unexpected, unexpected
    assert moved and moved[0] == "n3", moved
    entry = tenant_entry(cluster.status(), tenant_id)
    assert entry["primary"] == "n3" and entry["term"] > term
    for record_id, _ in acked:
        r = call(n3, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)
    verify = n3.cli("audit", "verify", "acme")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert_audited_promotion(n3, token, entry["term"])
    # The old primary handed it over: the files it served, at the position
    # n3 went on from, are its copy now (the very file: no snapshot
    # replaced it), nothing set aside; it streams on from there.
    [handed] = events(n1, "replication.handed_over")
    assert handed["kept"] == "as this node's copy", handed
    assert not os.path.exists(os.path.join(n1.data_dir, "tenants", tenant_id))
    deposed = os.path.join(n1.data_dir, "deposed")
    assert not os.path.exists(deposed) or not os.listdir(deposed), os.listdir(deposed)
    wait_until("n1 and n2 follow n3", lambda: caught_up(cluster, tenant_id, ["n1", "n2"]))
    copy = os.path.join(n1.data_dir, "replicas", tenant_id)
    assert os.stat(os.path.join(copy, "tenant.db")).st_ino == served
    assert any(e["tenant"] == tenant_id and e["node"] == "n1"
               for e in events(n3, "replication.follower_resumed"))
    r = call(n3, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the switchover"})
    assert r.status_code == 201, r.text
    wait_until("n1's copy is n3's files, byte for byte",
               lambda: caught_up(cluster, tenant_id, ["n1", "n2"]) and same_files(n1, n3, tenant_id))
    assert metric(n3, "silo_repl_promotions_total") == 1
    assert metric(n2, "silo_repl_promotions_total") == 0


def test_a_switchover_waiting_for_its_target_holds_nothing_else_up_on_its_node(cluster):
    """A switchover to a follower that stopped answering waits (5 s) for
    it on its own thread: meanwhile the node's cluster loop turns on (its
    other tenants' elections and snapshots go on), and afterwards the
    tenant, never given up, is still led and writable there."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    os.kill(n3.proc.pid, signal.SIGSTOP)
    command = subprocess.Popen([*e2e.DIE_WITH_PARENT, SILO_BIN, "tenant", "promote", "acme",
                                "--node", "n3"],
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                    "SILO_ETCD_ENDPOINTS": cluster.etcd.endpoint},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("n1 starts the switchover", lambda: "replication.handing_over" in n1.output())
        before = metric(n1, "silo_cluster_loop_turns_total")
        time.sleep(1.5)
        after = metric(n1, "silo_cluster_loop_turns_total")
        # Still inside the 5 s wait for n3: what was measured is the loop
        # while a switchover waited.
        assert "replication.handover_failed" not in n1.output(), "the sample came too late"
        assert after > before, "the cluster loop stood still while a switchover waited"
        wait_until("the switchover gives up on n3",
                   lambda: "replication.handover_failed" in n1.output(), timeout=20)
    finally:
        os.kill(n3.proc.pid, signal.SIGCONT)
        command.kill()
        command.wait()
    assert tenant_entry(cluster.status(), tenant_id)["primary"] == "n1"
    r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "still", "title": "n1 still leads"})
    assert r.status_code == 201, r.text


def assert_audited_promotion(node, token, term):
    """Tenant acme's own audit log (the tenant's view, GET /api/audit) says
    that `node` took it over under `term`."""
    r = call(node, "acme", token, "GET", "/api/audit?type=replication.promoted&limit=1000")
    assert r.status_code == 200, r.text
    taken = [{c["field"]: c.get("new") for c in e["changes"]} for e in r.json()["items"]
             if e["actor"] == "system:replication" and
             e["subject"] == {"kind": "node", "id": node.node_id}]
    assert any(t.get("term") == term for t in taken), (node.node_id, term, r.json()["items"])


def etcd_kv(cluster, key, revision=0):
    """etcd key `key` as of `revision` (0: now): (its JSON value, the
    revision that wrote it), or None."""
    body = {"key": base64.b64encode(key.encode()).decode()}
    if revision:
        body["revision"] = revision
    kvs = (etcd_call(cluster.etcd.endpoint.split(",")[0], "/v3/kv/range", body) or {}).get("kvs")
    if not kvs:
        return None
    return json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])


def etcd_value(cluster, key):
    """The JSON value of etcd key `key` now, or None."""
    kv = etcd_kv(cluster, key)
    return kv[0] if kv else None


def test_an_election_waiting_for_a_lost_sync_set_member_goes_on_only_with_accept_loss(cluster):
    """Sync mode: n2 and n3 both in the tenant's sync set; n2 is lost, then
    n1, its primary. n3 may not take the tenant over alone (n2 might have
    held an acknowledged write it lacks), so the election waits for n2.
    `silo tenant promote --node n3` refuses (no node leads it) and points
    at --accept-loss; with it, and only for a live candidate, the set
    becomes n3 alone and n3 takes the tenant over, its audit log saying the
    election was forced over [n2, n3]. With a primary again, --accept-loss
    refuses."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "f", 20)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    assert sorted(tenant_entry(cluster.status(), tenant_id)["sync"]) == ["n2", "n3"]
    # n1 stopped first, so that it cannot record a set without n2 when n2's
    # link drops; no election starts before n1's lease runs out.
    n1.proc.send_signal(signal.SIGSTOP)
    n2.proc.kill()
    n2.proc.wait()
    n1.proc.kill()
    n1.proc.wait()
    pos = "/silo/t/%s/pos/n3" % tenant_id
    wait_until("n3 posted its position", lambda: etcd_value(cluster, pos))
    # Past three loop turns of n3's own (it chooses after 750 ms), and still
    # nobody: the set's other member was not heard.
    time.sleep(2)
    assert etcd_value(cluster, "/silo/t/%s/primary" % tenant_id) is None
    assert metric(n3, "silo_repl_promotions_total") == 0

    r = promote(cluster, "acme", "--node", "n3")
    assert r.returncode != 0 and "no node leads acme" in r.stderr and \
        "--accept-loss" in r.stderr, r
    r = promote(cluster, "acme", "--node", "n2", "--accept-loss")
    assert r.returncode != 0 and "no live node n2" in r.stderr, r
    assert sorted(etcd_value(cluster, "/silo/t/%s/sync" % tenant_id)["nodes"]) == ["n2", "n3"]

    r = promote(cluster, "acme", "--node", "n3", "--accept-loss")
    assert r.returncode == 0, r
    assert "n3 leads acme now" in r.stdout and "[n2,n3]" in r.stdout, r.stdout
    def n3_leads():
        entry = tenant_entry(cluster.status(), tenant_id)
        return entry if entry and entry["primary"] == "n3" else None
    wait_until("n3 answers for the tenant", serving(cluster, token, n3_leads))
    assert_served(n3, token, ["f%d" % i for i in range(20)])
    term = tenant_entry(cluster.status(), tenant_id)["term"]
    r = call(n3, "acme", token, "GET", "/api/audit?type=replication.promoted&limit=1000")
    assert r.status_code == 200, r.text
    taken = [{c["field"]: c.get("new") for c in e["changes"]} for e in r.json()["items"]
             if e["subject"] == {"kind": "node", "id": "n3"}]
    assert [t for t in taken if t.get("term") == term and
            sorted(t.get("forced_over_sync_set") or []) == ["n2", "n3"]], taken
    assert [e for e in events(n3, "replication.promoted_accepting_loss")
            if e["tenant"] == tenant_id]

    r = promote(cluster, "acme", "--node", "n3", "--accept-loss")
    assert r.returncode != 0 and "n3 leads acme" in r.stderr, r


def test_a_keyless_node_keeps_a_sealed_copy_and_is_never_promoted(cluster):
    """SILO_KEYLESS=1, no master key: an off-site copy. It follows every
    tenant like any node (byte for byte, nothing readable in its files), but
    its acknowledgement does not answer a sync commit, it never takes a
    tenant over, and `silo tenant promote` refuses it."""
    n1, n2 = cluster.start_node("n1"), cluster.start_node("n2")
    n3 = cluster.start_node("n3", keyless=True)
    tenant_id, token = tenant_with_records(n1, "c", 30)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    nodes = {n["id"]: n for n in cluster.status()["nodes"]}
    assert nodes["n3"]["keyless"] is True and nodes["n2"]["keyless"] is False
    wait_until("n3's copy equals the primary's files",
               lambda: caught_up(cluster, tenant_id, ["n2", "n3"]) and
               same_files(n3, n1, tenant_id))
    # The canary: no customer byte anywhere under the keyless node's data
    # directory, and no key of its own.
    for root, _, files in os.walk(n3.data_dir):
        for name in files:
            assert NEEDLE.encode() not in read(os.path.join(root, name)), (root, name)
    assert not os.path.exists(os.path.join(n3.data_dir, "platform", "keyring.d"))
    assert not os.path.exists(os.path.join(n3.data_dir, "dev", "master.key"))

    r = promote(cluster, "acme", "--node", "n3")
    assert r.returncode == 1 and "n3 has no master key" in r.stderr, r.stdout + r.stderr

    # The primary goes: n2 takes the tenant, n3 says why it will not.
    n1.proc.kill()
    n1.proc.wait()
    entry = wait_until("a follower leads the tenant",
                       serving(cluster, token,
                               lambda: (lambda e: e if e and e["primary"] != "n1" else None)(
                                   tenant_entry(cluster.status(), tenant_id))))
    assert entry["primary"] == "n2"
    for i in range(30):
        r = call(n2, "acme", token, "GET", "/api/collections/tickets/records/c%d" % i)
        assert r.status_code == 200, r.text
    # n3 follows the new primary.
    wait_until("n3 follows n2", lambda: caught_up(cluster, tenant_id, ["n3"]))

    # n2 goes too: the keyless copy is all that is left, and it does not
    # lead; it says why (once each time the tenant is left without one).
    before = n3.output().count("replication.promotion_refused")
    n2.proc.kill()
    n2.proc.wait()
    wait_until("n3 refused", lambda: n3.output().count("replication.promotion_refused") > before)
    assert "has no master key (SILO_KEYLESS=1)" in n3.output()
    assert tenant_entry(cluster.status(), tenant_id) is None
    assert not os.path.exists(os.path.join(n3.data_dir, "tenants"))


class Writer:
    """Writes to `node` one at a time on its own thread until stopped: the
    acknowledged ids, each answer's latency, and anything not 201. With
    `pace`, at most one write each `pace` seconds."""

    def __init__(self, node, token, prefix, pace=0):
        self.acked, self.latencies, self.unexpected = [], [], []
        self.stop = threading.Event()

        def run():
            i = 0
            while not self.stop.is_set():
                record_id = "%s%d" % (prefix, i)
                i += 1
                sent = time.monotonic()
                try:
                    r = call(node, "acme", token, "POST", "/api/collections/tickets/records",
                             {"id": record_id, "title": NEEDLE})
                except requests.RequestException as e:
                    self.unexpected.append((record_id, str(e)))
                    continue
                self.latencies.append(time.monotonic() - sent)
                if r.status_code == 201:
                    self.acked.append(record_id)
                else:
                    self.unexpected.append((record_id, r.status_code, r.text))
                self.stop.wait(max(0.0, pace - (time.monotonic() - sent)))
        self.thread = threading.Thread(target=run)
        self.thread.start()

    def wait_for(self, n):
        target = len(self.acked) + n
        wait_until("%d more writes acknowledged" % n, lambda: len(self.acked) >= target,
                   timeout=60)

    def finish(self):
        self.stop.set()
        self.thread.join()
        assert not self.unexpected, self.unexpected[:5]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))] if values else 0.0


DOCS = {"name": "docs", "fields": [{"name": "title", "type": "string"},
                                   {"name": "doc", "type": "file", "max_bytes": 8 << 20}]}
FILE_NEEDLE = b"FILE-NEEDLE-plaintext-2718"


def file_bytes(size, seed):
    """A file's bytes with the canary in each MiB (random beside it: the
    type sniffer calls it application/octet-stream)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += FILE_NEEDLE + rng.randbytes(1 << 20)
    return bytes(out[:size])


def store_file(node, token, record_id, data):
    r = requests.post(node.url + "/t/acme/api/files?collection=docs&field=doc&name=f.bin",
                      data=data, headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/octet-stream"},
                      verify=False, timeout=30, allow_redirects=False)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    r = call(node, "acme", token, "POST", "/api/collections/docs/records",
             {"id": record_id, "title": "t", "doc": fid})
    assert r.status_code == 201, r.text
    return fid


def blob_path(node, tenant_id, fid, copy):
    where = ("replicas", tenant_id) if copy else ("tenants", tenant_id)
    return os.path.join(node.data_dir, *where, "files", "b", fid[:2], fid + ".sf")


def test_a_tenants_files_reach_every_follower_sealed_and_survive_the_loss_of_the_primary(cluster):
    """A stored file's blob is on every follower, byte for byte as the
    primary sealed it and readable by none, before its upload is answered; a
    follower that was down while one was stored gets it back before it
    follows again; the follower that takes the tenant over serves every
    file."""
    seed = int.from_bytes(os.urandom(4), "big")
    print("seed", seed)
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", DOCS).status_code == 201
    first = file_bytes((5 << 20) // 2, seed)  # three pieces on the node link
    fid1 = store_file(n1, token, "d1", first)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    sealed = read(blob_path(n1, tenant_id, fid1, copy=False))
    for follower in (n2, n3):
        assert read(blob_path(follower, tenant_id, fid1, copy=True)) == sealed

    # n3 is down while the second file is stored. Back, it gets the blob it
    # missed before it streams (the retained segments alone would have let
    # it resume without it).
    kill_node(cluster, n3)
    second = file_bytes(300_000, seed + 1)
    fid2 = store_file(n1, token, "d2", second)
    assert not os.path.exists(blob_path(n3, tenant_id, fid2, copy=True))
    n3 = cluster.start_node("n3")
    # (The status is a second behind at most: "streaming" alone could be
    # n3's state before it went; the blob on its disk is the verdict.)
    wait_until("n3 holds the blob it missed and follows again",
               lambda: os.path.exists(blob_path(n3, tenant_id, fid2, copy=True)) and
               caught_up(cluster, tenant_id, ["n2", "n3"]))
    sealed2 = read(blob_path(n1, tenant_id, fid2, copy=False))
    for follower in (n2, n3):
        assert read(blob_path(follower, tenant_id, fid2, copy=True)) == sealed2
    # Keyless copies: no byte of either file in the clear on a follower.
    for follower in (n2, n3):
        for root, _, names in os.walk(follower.data_dir):
            for name in names:
                assert FILE_NEEDLE not in read(os.path.join(root, name)), (root, name)

    # The primary goes; the new one serves both files, whole.
    n1.proc.kill()
    n1.proc.wait()
    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    for record_id, fid, data in (("d1", fid1, first), ("d2", fid2, second)):
        r = call(leader, "acme", token, "GET",
                 "/api/collections/docs/records/%s/files/doc/%s" % (record_id, fid))
        assert r.status_code == 200, (record_id, r.status_code, r.text[:200])
        assert r.content == data, record_id
        assert os.path.exists(blob_path(leader, tenant_id, fid, copy=False))
    # What the tenant holds now is its own: a new file is stored and served.
    fid3 = store_file(leader, token, "d3", second[:1000])
    r = call(leader, "acme", token, "GET", "/api/collections/docs/records/d3/files/doc/" + fid3)
    assert r.status_code == 200 and r.content == second[:1000]


TUS_CHUNK = 65536  # an upload's offset is acknowledged in whole chunks of this


def tus(node, token, method, path, body=None, **headers):
    h = {"Authorization": "Bearer " + token, "Tus-Resumable": "1.0.0"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return requests.request(method, node.url + path, data=body, headers=h, verify=False,
                            timeout=30, allow_redirects=False)


def test_a_resumable_upload_in_progress_resumes_on_the_follower_that_takes_the_tenant_over(
        cluster):
    """Each PATCH's bytes of a resumable upload are on every follower,
    sealed, before it is answered: when the primary is lost mid-upload, the
    client asks the new primary where the upload stands, gets the offset the
    old one acknowledged and sends only the rest; the file arrives whole and
    no follower is left holding the part."""
    seed = int.from_bytes(os.urandom(4), "big")
    print("seed", seed)
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", DOCS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    data = file_bytes(9 * TUS_CHUNK + 1234, seed)
    r = tus(n1, token, "POST", "/t/acme/api/uploads?collection=docs&field=doc",
            Upload_Length=str(len(data)))
    assert r.status_code == 201, r.text
    url = r.headers["Location"]  # /t/acme/api/uploads/<id>?collection=docs&field=doc
    upload_id = url.split("/")[-1].split("?")[0]
    sent = 5 * TUS_CHUNK
    r = tus(n1, token, "PATCH", url, data[:sent], Upload_Offset="0",
            Content_Type="application/offset+octet-stream")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(sent), r.text

    def part(node, copy):
        where = ("replicas", tenant_id) if copy else ("tenants", tenant_id)
        return os.path.join(node.data_dir, *where, "files", "u", upload_id + ".part")
    sealed = read(part(n1, copy=False))
    for follower in (n2, n3):
        held = read(part(follower, copy=True))
        assert held == sealed, follower.node_id
        assert FILE_NEEDLE not in held

    n1.proc.kill()
    n1.proc.wait()
    leader, other = taken_over(cluster, token, tenant_id, n2, n3)
    head = tus(leader, token, "HEAD", url)
    assert head.status_code == 200, (head.status_code, head.text[:200])
    assert head.headers["Upload-Offset"] == str(sent)
    r = tus(leader, token, "PATCH", url, data[sent:], Upload_Offset=str(sent),
            Content_Type="application/offset+octet-stream")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data)), r.text
    r = call(leader, "acme", token, "POST", "/api/collections/docs/records",
             {"id": "d1", "title": "t", "doc": upload_id})
    assert r.status_code == 201, r.text
    r = call(leader, "acme", token, "GET", "/api/collections/docs/records/d1/files/doc/" + upload_id)
    assert r.status_code == 200 and r.content == data
    # The remaining follower (a new primary's chain: a snapshot, which
    # gives it the blobs it lacks) holds the blob, and the part no more.
    wait_until("the other follower follows the new primary and holds the blob",
               lambda: caught_up(cluster, tenant_id, [other.node_id]) and
               os.path.exists(blob_path(other, tenant_id, upload_id, copy=True)), timeout=30)
    assert read(blob_path(other, tenant_id, upload_id, copy=True)) == \
        read(blob_path(leader, tenant_id, upload_id, copy=False))
    assert not os.path.exists(part(other, copy=True))
    assert not os.path.exists(part(leader, copy=False))


def test_a_tenant_rekeyed_on_its_primary_is_copied_anew_to_every_follower(cluster):
    """`silo tenant rekey` on a cluster node: the swap ends the tenant's
    chain and every follower takes a new copy, sealed under the new key: its
    database, its wrapped key and each blob (sealed again: the same id and
    size, another key epoch, so a copy that compared sizes only would keep
    the old one); a follower that takes the tenant over then serves every
    record and file."""
    seed = int.from_bytes(os.urandom(4), "big")
    print("seed", seed)
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    assert call(n1, "acme", token, "POST", "/api/collections", DOCS).status_code == 201
    for i in range(20):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "r%d" % i, "title": NEEDLE})
        assert r.status_code == 201, r.text
    data = file_bytes(300_000, seed)
    fid = store_file(n1, token, "d1", data)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))

    def copy_file(node, name):
        return read(os.path.join(node.data_dir, "replicas", tenant_id, name))
    old_key = {f.node_id: copy_file(f, "tenant.key") for f in (n2, n3)}
    old_blob = read(blob_path(n1, tenant_id, fid, copy=False))
    r = n1.cli("--json", "tenant", "rekey", "acme")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["key_epoch"] == 1 and report["files"] == 1 and report["followers"] == 2, report
    new_blob = read(blob_path(n1, tenant_id, fid, copy=False))
    assert len(new_blob) == len(old_blob) and new_blob != old_blob

    def copied_anew(f):
        return (copy_file(f, "tenant.key") != old_key[f.node_id] and
                read(blob_path(f, tenant_id, fid, copy=True)) == new_blob and
                same_files(f, n1, tenant_id))
    wait_until("both followers hold the re-keyed copy",
               lambda: all(copied_anew(f) for f in (n2, n3)), timeout=60)
    # The same new wrapped key on both (the one the primary's keyring holds).
    assert copy_file(n2, "tenant.key") == copy_file(n3, "tenant.key")
    # Keyless copies still: no record's text in the clear.
    for f in (n2, n3):
        for root, _, names in os.walk(os.path.join(f.data_dir, "replicas", tenant_id)):
            for name in names:
                assert NEEDLE.encode() not in read(os.path.join(root, name)), (root, name)

    n1.proc.kill()
    n1.proc.wait()
    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    for i in range(20):
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/r%d" % i)
        assert r.status_code == 200 and r.json()["title"] == NEEDLE, (i, r.status_code)
    r = call(leader, "acme", token, "GET", "/api/collections/docs/records/d1/files/doc/" + fid)
    assert r.status_code == 200 and r.content == data, r.status_code
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "t"})
    assert r.status_code == 201, r.text


def test_a_tenant_restored_in_place_on_its_primary_is_copied_anew_and_survives_a_failover(
        cluster):
    """`silo backup restore` in place on a cluster node replaces the tenant's
    file under its replication chain: the swap ends the chain (no copy of
    the replaced file may be elected), the answer waits for both followers
    to copy the restored tenant, and a follower that takes it over serves
    the restored state, not the one the restore replaced."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "r", 10)
    r = n1.cli("--json", "backup", "run", "acme")
    assert r.returncode == 0, r.stderr
    [answer] = json.loads(r.stdout)
    backup_id = answer["id"]
    for i in range(5):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "late%d" % i, "title": "after the backup"})
        assert r.status_code == 201, r.text
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))

    r = n1.cli("--json", "backup", "restore", backup_id, "--yes")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["new_tenant"] is False, report
    assert report["followers"] == 2 and report["followers_copied"] == 2, report
    n1.proc.kill()
    n1.proc.wait()

    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    for i in range(10):
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/r%d" % i)
        assert r.status_code == 200, (i, r.status_code)
    for i in range(5):
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/late%d" % i)
        assert r.status_code == 404, ("the restore was undone", i, r.status_code)
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the failover"})
    assert r.status_code == 201, r.text


def chain_history(cluster, tenant_id):
    """Every value /silo/t/<id>/chain had, newest first (read back through
    etcd's revisions: nothing here compacts them)."""
    values, revision = [], 0
    while True:
        kv = etcd_kv(cluster, "/silo/t/%s/chain" % tenant_id, revision)
        if kv is None:
            return values
        values.append(kv[0])
        revision = kv[1] - 1


def n2_takes_it_back(cluster, token, tenant_id, n2, n3, record_ids):
    """n2, back, leads the tenant and serves every one of `record_ids`; n3,
    whose copy could not be elected, follows it on a new copy, byte for
    byte."""
    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    assert leader is n2
    for record_id in record_ids:
        r = call(n2, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)
    wait_until("n3 follows n2 on a new copy, byte for byte",
               lambda: caught_up(cluster, tenant_id, ["n3"]) and same_files(n3, n2, tenant_id))


def test_async_mode_never_elects_a_copy_of_a_chain_the_primary_ended(cluster):
    """SILO_REPLICATION=async elects the most advanced follower, but only
    among copies of the tenant's current chain. n3, stopped before a
    re-key, holds a long run of the chain the re-key ended (under the old
    key, without what came after); n2 a short run of the new one, with
    every write since. n3 alone must not take the tenant over, whatever its
    segment count: it waits, and n2, once back, does. The re-key's swap
    records the chain ended before the new chain is recorded, so that no
    copy is a candidate in between."""
    env = {"SILO_REPLICATION": "async"}
    n1, n2, n3 = (cluster.start_node(n, env) for n in ("n1", "n2", "n3"))
    tenant_id, token = tenant_with_records(n1, "old", 40)
    old_seq = wait_until("both followers caught up",
                         lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))["seq"]
    n3.proc.kill()
    n3.proc.wait()
    wait_until("n1 follows n3 no more", lambda: caught_up(cluster, tenant_id, ["n2"]))
    r = n1.cli("--json", "tenant", "rekey", "acme")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["followers"] == 1, r.stdout
    # The swap recorded the chain ended before the new one was recorded: no
    # copy is a candidate in between.
    history = chain_history(cluster, tenant_id)
    assert len(history) >= 3 and history[1].get("ended") is True, history
    assert history[0]["lineage"] and history[2]["lineage"], history
    assert history[0]["lineage"] != history[2]["lineage"], history
    # The new chain counts its segments from 0 again: fewer than n3 holds of
    # the old one (what a count-only election would get wrong).
    rekeyed_seq = wait_until(
        "n1 reports the new chain, n2 on it",
        lambda: (lambda t: t if t and t["seq"] < old_seq else None)(
            caught_up(cluster, tenant_id, ["n2"])))["seq"]
    for i in range(3):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "new%d" % i, "title": "after the re-key"})
        assert r.status_code == 201, r.text
    new_seq = wait_until("n2 holds every write since the re-key",
                         lambda: caught_up(cluster, tenant_id, ["n2"], after_seq=rekeyed_seq))["seq"]
    print("n3 holds segment %d of the ended chain, n2 segment %d of the new one" %
          (old_seq, new_seq))
    assert new_seq < old_seq
    for node in (n1, n2):
        node.proc.kill()
        node.proc.wait()

    n3 = cluster.start_node("n3", env, data=n3.data_dir)
    wait_until("n3 says its copy is of an ended chain, or takes the tenant",
               lambda: "replication.copy_of_ended_chain" in n3.output() or
               "replication.promoted" in n3.output())
    assert "replication.promoted" not in n3.output(), "a copy of the ended chain took over"
    assert tenant_entry(cluster.status(), tenant_id) is None  # no node leads it

    n2 = cluster.start_node("n2", env, data=n2.data_dir)
    n2_takes_it_back(cluster, token, tenant_id, n2, n3,
                     ["old%d" % i for i in range(40)] + ["new%d" % i for i in range(3)])


def lease_gone(cluster, node, timeout=30):
    """Waits until etcd let `node`'s lease go (it no longer lists the node;
    until then its id is a live node's, and a new process refuses it)."""
    wait_until("etcd lets %s's lease go" % node.node_id,
               lambda: node.node_id not in [n["id"] for n in cluster.status()["nodes"]],
               timeout=timeout)


def kill_node(cluster, node):
    """Kills `node` (SIGKILL) and waits until etcd let its lease go."""
    node.proc.kill()
    node.proc.wait()
    lease_gone(cluster, node)


def restarted(cluster, node, env):
    """`node`, killed, started again on its data once etcd let its lease
    go."""
    lease_gone(cluster, node, timeout=20)
    return cluster.start_node(node.node_id, env, data=node.data_dir)


def test_async_mode_never_elects_a_copy_past_where_the_new_primary_took_the_chain_on(cluster):
    """An async follower may hold segments the follower promoted in a
    failover lacks: n3 ran ahead while n2 was paused, then n1 and n3 went
    down and n2 took the chain on from where it stood, under a new term.
    n3's copy is of the same lineage, with more segments than n2 has
    written since, but what it holds past n2's starting point is in no
    current copy, and it lacks n2's writes: alone, it must not take the
    tenant over. n2, back, does, with every write it acknowledged."""
    env = {"SILO_REPLICATION": "async"}
    n1, n2, n3 = (cluster.start_node(n, env) for n in ("n1", "n2", "n3"))
    tenant_id, token = tenant_with_records(n1, "old", 10)
    behind = wait_until("both followers caught up",
                        lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))["seq"]

    def n3_streams_all():
        t = tenant_entry(cluster.status(), tenant_id)
        f = {f["node"]: f for f in t["followers"]} if t else {}
        return (t if t and t["seq"] > behind and "n3" in f and f["n3"]["state"] == "streaming"
                and f["n3"]["lag"] == 0 else None)

    # (Killed, not paused: a paused node's socket would still take in what
    # it is sent, and apply it when resumed.)
    n2.proc.kill()
    n2.proc.wait()
    for i in range(20):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "ahead%d" % i, "title": "n2 never gets this"})
        assert r.status_code == 201, r.text
    ahead = wait_until("n3 holds every segment", n3_streams_all)["seq"]
    for node in (n1, n3):
        node.proc.kill()
        node.proc.wait()
    n2 = restarted(cluster, n2, env)
    wait_until("n2 leads the tenant",
               lambda: (tenant_entry(cluster.status(), tenant_id) or {}).get("primary") == "n2",
               timeout=30)
    chain = chain_history(cluster, tenant_id)[0]
    assert behind <= chain["from"] and chain["from_hash"], chain
    for i in range(3):
        r = call(n2, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "new%d" % i, "title": "after the failover"})
        assert r.status_code == 201, r.text
    now = wait_until("n2 reports its writes",
                     lambda: (lambda t: t["seq"] if t and t["seq"] > chain["from"] else None)(
                         tenant_entry(cluster.status(), tenant_id)))
    print("n3 holds segment %d (term of n1), n2 took the chain on from %d and is at %d" %
          (ahead, chain["from"], now))
    n2.proc.kill()
    n2.proc.wait()

    n3 = restarted(cluster, n3, env)
    wait_until("n3 says its copy is off the current chain, or takes the tenant",
               lambda: "replication.copy_off_chain" in n3.output() or
               "replication.promoted" in n3.output())
    assert "replication.promoted" not in n3.output(), "a copy past the chain's new start took over"
    [said] = events(n3, "replication.copy_off_chain")
    # (`ahead` is what the status said a moment before: n3 may hold more.)
    assert said["seq"] >= ahead and said["taken_on_from"] == chain["from"], said
    assert now < said["seq"], (now, said)  # what a count-only election gets wrong
    assert tenant_entry(cluster.status(), tenant_id) is None  # no node leads it

    n2 = restarted(cluster, n2, env)
    n2_takes_it_back(cluster, token, tenant_id, n2, n3,
                     ["old%d" % i for i in range(10)] + ["new%d" % i for i in range(3)])


def test_a_rekey_on_a_cluster_node_without_replication_has_no_chain_to_end(cluster):
    """With SILO_REPLICATION=off a cluster node keeps no chain for a tenant:
    its re-key has none to end and goes through, with no follower."""
    n1 = cluster.start_node("n1", {"SILO_REPLICATION": "off"})
    make_tenant(n1, "acme")
    r = n1.cli("--json", "tenant", "rekey", "acme")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["key_epoch"] == 1 and report["followers"] == 0, report


def one_tenant_open_at_a_time(cluster):
    """n1, which keeps one tenant open (SILO_MAX_OPEN_TENANTS=1), n2 and n3,
    and tenants acme and beta on n1, each with a tickets collection, both
    followers caught up: {slug: (tenant id, token)}."""
    n1 = cluster.start_node("n1", {"SILO_MAX_OPEN_TENANTS": "1"})
    n2, n3 = cluster.start_node("n2"), cluster.start_node("n3")
    tenants = {}
    for slug in ("acme", "beta"):
        tenants[slug] = make_tenant(n1, slug)
        # A 503 while the other tenant is still open says to try again.
        wait_until(slug + "'s collection made", lambda: call(
            n1, slug, tenants[slug][1], "POST", "/api/collections",
            TICKETS).status_code in (201, 409))
    for tenant_id, _ in tenants.values():
        wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    return n1, n2, n3, tenants


def test_a_tenant_closed_and_reopened_on_its_primary_keeps_its_chain_and_needs_no_snapshot(
        cluster):
    """With one tenant open at a time on n1, each write to one tenant closes
    the other: every reopen continues the tenant's chain, its followers
    stream on, and no snapshot is sent. A file changed while its tenant was
    closed (here only its time) starts a new chain, with a snapshot."""
    n1, n2, n3, tenants = one_tenant_open_at_a_time(cluster)
    snapshots = metric(n1, "silo_repl_snapshots_total")
    for i in range(5):
        for slug, (_, token) in tenants.items():
            r = call(n1, slug, token, "POST", "/api/collections/tickets/records",
                     {"id": "r%d" % i, "title": "%s %d" % (NEEDLE, i)})
            assert r.status_code == 201, r.text
    assert n1.output().count("replication.chain_continued") >= 8
    for tenant_id, _ in tenants.values():
        wait_until("the followers hold every write, byte for byte",
                   lambda: caught_up(cluster, tenant_id, ["n2", "n3"]) and
                   same_files(n2, n1, tenant_id) and same_files(n3, n1, tenant_id))
    assert metric(n1, "silo_repl_snapshots_total") == snapshots

    # acme is closed now (beta was written last); its file changes.
    acme_id, acme_token = tenants["acme"]
    db = os.path.join(n1.data_dir, "tenants", acme_id, "tenant.db")
    os.utime(db, (time.time() + 60, time.time() + 60))
    r = call(n1, "acme", acme_token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the change"})
    assert r.status_code == 201, r.text
    wait_until("a snapshot of acme's new chain",
               lambda: metric(n1, "silo_repl_snapshots_total") > snapshots)
    wait_until("the followers hold acme's new chain",
               lambda: caught_up(cluster, acme_id, ["n2", "n3"]) and
               same_files(n2, n1, acme_id) and same_files(n3, n1, acme_id))


def test_a_follower_away_while_its_tenant_closed_resumes_from_the_segments_kept_for_it(cluster):
    """With one tenant open at a time on n1, a write to beta closes acme.
    n3 is away for acme's last writes and its close: n1 keeps a closed
    tenant's segments (within 64 MiB for all of them), so n3, back,
    resumes acme from them while it is still closed, with no snapshot,
    and holds its files byte for byte. (Until 2026-12-07 a close kept only
    the newest segment, and n3 took a whole snapshot.)"""
    n1, n2, n3, tenants = one_tenant_open_at_a_time(cluster)
    acme_id, acme_token = tenants["acme"]
    beta_id, beta_token = tenants["beta"]
    kill_node(cluster, n3)
    behind = recorded_seq(os.path.join(n3.data_dir, "replicas", acme_id))
    for i in range(10):
        r = call(n1, "acme", acme_token, "POST", "/api/collections/tickets/records",
                 {"id": "m%d" % i, "title": NEEDLE})
        assert r.status_code == 201, r.text
    r = call(n1, "beta", beta_token, "POST", "/api/collections/tickets/records",
             {"id": "b", "title": "closes acme"})
    assert r.status_code == 201, r.text
    wait_until("n2 holds acme's close", lambda: caught_up(cluster, acme_id, ["n2"]) and
               same_files(n2, n1, acme_id))
    snapshots = metric(n1, "silo_repl_snapshots_total")

    n3 = cluster.start_node("n3", data=n3.data_dir)
    wait_until("n3 holds acme's files, byte for byte",
               lambda: caught_up(cluster, acme_id, ["n2", "n3"]) and same_files(n3, n1, acme_id))
    resumed = [e for e in events(n1, "replication.follower_resumed")
               if e["tenant"] == acme_id and e["node"] == "n3"]
    assert resumed and behind <= resumed[-1]["from"], (resumed, behind)
    assert resumed[-1]["segments"] > 10, resumed
    assert metric(n1, "silo_repl_snapshots_total") == snapshots


def closed_and_copied(cluster, n1, followers):
    """Tenants acme (20 records) and beta on n1, which keeps one tenant open
    (SILO_MAX_OPEN_TENANTS=1): a write to beta closes acme, whose close
    (its checkpoint, the WAL's removal) `followers` then hold, so that n1
    stops with acme's files where the followers' copies stand. Returns
    acme's id, its token, the inode of n1's tenant.db, and beta's id and
    token."""
    tenant_id, token = tenant_with_records(n1, "r", 20)
    wait_until("acme's copies made", lambda: caught_up(cluster, tenant_id, followers))
    beta_id, beta = make_tenant(n1, "beta")
    # A 503 while acme is still in use (its copies' snapshot, the close)
    # says to try again, which a client does.
    wait_until("beta's collection made", lambda: call(
        n1, "beta", beta, "POST", "/api/collections", TICKETS).status_code in (201, 409))
    wait_until("acme's close reached its followers",
               lambda: caught_up(cluster, tenant_id, followers) and
               all(same_files(f, n1, tenant_id) for f in cluster.nodes
                   if f.node_id in followers and f.proc.poll() is None))
    served = os.stat(os.path.join(n1.data_dir, "tenants", tenant_id, "tenant.db")).st_ino
    return tenant_id, token, served, beta_id, beta


def written_on_to_n1(cluster, leader, other, n1, tenant_id, token):
    """A write on the new primary reaches n1's copy, which ends byte for
    byte the primary's files."""
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the restart"})
    assert r.status_code == 201, r.text
    wait_until("n1's copy is the new primary's files, byte for byte",
               lambda: caught_up(cluster, tenant_id, ["n1", other.node_id]) and
               same_files(n1, leader, tenant_id))


def test_a_primary_restarted_after_a_takeover_follows_on_the_files_it_stopped_with(cluster):
    """A primary stopped (SIGTERM) records where its closed tenants' chains
    stand beside their files (chain.head); a follower takes the tenant over
    from that very position; the restarted node finds it led elsewhere and
    keeps its files, unchanged since, as its copy: the new primary resumes
    it, no snapshot, and it ends byte for byte the new primary's files."""
    n1 = cluster.start_node("n1", {"SILO_MAX_OPEN_TENANTS": "1"})
    n2, n3 = cluster.start_node("n2"), cluster.start_node("n3")
    tenant_id, token, served, _, _ = closed_and_copied(cluster, n1, ["n2", "n3"])
    assert n1.stop() == 0
    head = json.loads(read(os.path.join(n1.data_dir, "tenants", tenant_id, "chain.head")))
    leader, other = taken_over(cluster, token, tenant_id, n2, n3)
    chain = chain_history(cluster, tenant_id)[0]
    assert (chain["from"], chain["from_hash"]) == (head["seq"], head["hash"]), (chain, head)

    n1 = cluster.start_node("n1", {"SILO_MAX_OPEN_TENANTS": "1"}, data=n1.data_dir)
    deposed = wait_until("n1 gives acme up", lambda: [
        e for e in events(n1, "replication.deposed") if e["tenant"] == tenant_id])
    assert deposed[0]["kept"] == "as this node's copy", deposed
    wait_until("the new primary streams acme to n1",
               lambda: caught_up(cluster, tenant_id, ["n1", other.node_id]))
    copy = os.path.join(n1.data_dir, "replicas", tenant_id)
    assert os.stat(os.path.join(copy, "tenant.db")).st_ino == served
    assert any(e["tenant"] == tenant_id and e["node"] == "n1" and e["from"] == head["seq"]
               for e in events(leader, "replication.follower_resumed"))
    written_on_to_n1(cluster, leader, other, n1, tenant_id, token)


def test_a_primary_killed_and_restarted_after_a_takeover_follows_on_its_files_unless_they_changed(
        cluster):
    """A primary killed (SIGKILL) leaves no chain.head, but its recorder
    kept chain.live beside each led tenant's files: clean at the last cut,
    dirty before any change after it. The restarted node (same boot, files
    unchanged since) finds acme led elsewhere and keeps its files, WAL
    included, as its copy: the new primary streams on to it, no snapshot,
    and it ends byte for byte the new primary's files. beta's WAL changed
    after the kill: its position is not trusted, a snapshot replaces it,
    sent as the pages that differ from the files n1 served (they seed its
    copy before n1 announces itself), and it too ends byte for byte the new
    primary's files."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "r", 20)
    beta_id, beta = make_tenant(n1, "beta")
    wait_until("both tenants' copies made", lambda: caught_up(cluster, tenant_id, ["n2", "n3"])
               and caught_up(cluster, beta_id, ["n2", "n3"]))
    r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "last", "title": "the last before the kill"})
    assert r.status_code == 201, r.text
    wait_until("acme's last write copied", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    own = os.path.join(n1.data_dir, "tenants")
    assert os.path.getsize(os.path.join(own, tenant_id, "tenant.db-wal")) > 0
    n1.proc.kill()
    n1.proc.wait()
    assert not os.path.exists(os.path.join(own, tenant_id, "chain.head"))
    served = os.stat(os.path.join(own, tenant_id, "tenant.db")).st_ino
    with open(os.path.join(own, beta_id, "tenant.db-wal"), "ab") as wal:
        wal.write(b"\0")
    leader, other = taken_over(cluster, token, tenant_id, n2, n3)
    taken_over(cluster, beta, beta_id, n2, n3)

    n1 = cluster.start_node("n1", data=n1.data_dir)
    deposed = wait_until("n1 gives both tenants up", lambda: (lambda d: d if len(d) == 2 else None)(
        {e["tenant"]: e for e in events(n1, "replication.deposed")
         if e["tenant"] in (tenant_id, beta_id)}))
    assert deposed[tenant_id]["kept"] == "as this node's copy", deposed
    assert deposed[beta_id]["kept"] != "as this node's copy", deposed
    copy = os.path.join(n1.data_dir, "replicas", tenant_id)
    assert os.stat(os.path.join(copy, "tenant.db")).st_ino == served
    written_on_to_n1(cluster, leader, other, n1, tenant_id, token)
    assert any(e["tenant"] == tenant_id and e["node"] == "n1"
               for e in events(leader, "replication.follower_resumed"))
    assert not [e for e in events(leader, "replication.snapshot_sent") if e["tenant"] == tenant_id]
    beta_leader = n2 if tenant_entry(cluster.status(), beta_id)["primary"] == "n2" else n3
    sent = wait_until("beta's copy on n1 is a snapshot", lambda: [
        e for e in events(beta_leader, "replication.snapshot_to_follower")
        if e["tenant"] == beta_id and e["node"] == "n1"])
    assert sent[0]["as"] == "pages" and sent[0]["sent"] * 4 < sent[0]["bytes"], sent
    wait_until("n1's copy of beta is its primary's files", lambda: same_files(n1, beta_leader, beta_id))


def written_after_the_restart(cluster, n1, n2, n3, tenant_id, token):
    """A write to acme on n1 reaches both copies, which then hold n1's
    files byte for byte."""
    r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the restart"})
    assert r.status_code == 201, r.text
    wait_until("both copies stream acme on, byte for byte",
               lambda: caught_up(cluster, tenant_id, ["n2", "n3"]) and
               same_files(n2, n1, tenant_id) and same_files(n3, n1, tenant_id))


def its_chain_goes_on(cluster, n1, n2, n3, tenant_id, token, lineage, seq=None, at_least=0):
    """n1, started again, leads acme again, its chain going on from `seq`
    of `lineage` (with no `seq`: from one not before `at_least`); a write on
    it reaches both copies, which stream on from there (no snapshot) to
    n1's files, byte for byte."""
    def led_by_n1():
        entry = tenant_entry(cluster.status(), tenant_id)
        return entry if entry and entry["primary"] == "n1" else None
    term = wait_until("n1 leads acme again", led_by_n1, timeout=20)["term"]
    # Its primary key comes a moment before its chain record.
    chain = wait_until("n1 recorded its chain", lambda: next(
        (c for c in chain_history(cluster, tenant_id)[:1] if c.get("term") == term), None))
    if seq is None:
        seq = chain["from"]
    assert chain["lineage"] == lineage and chain["from"] == seq >= at_least, (chain, seq)
    written_after_the_restart(cluster, n1, n2, n3, tenant_id, token)
    resumed = {e["node"] for e in events(n1, "replication.follower_resumed")
               if e["tenant"] == tenant_id and e["from"] == seq}
    assert resumed == {"n2", "n3"}, resumed
    assert not [e for e in events(n1, "replication.snapshot_sent") if e["tenant"] == tenant_id]


def test_a_primary_restarted_with_no_follower_to_take_over_goes_on_with_its_chain(cluster):
    """Keyless followers cannot take a tenant over: the primary, stopped and
    started again, claims its tenant back, and its chain goes on from the
    head it recorded at the stop (same lineage, a new term): both copies
    stream on from where they stood, no snapshot, byte for byte. A
    recorded head whose file changed since is not used."""
    env = {"SILO_REPLICATION": "async", "SILO_MAX_OPEN_TENANTS": "1"}
    n1 = cluster.start_node("n1", env)
    n2 = cluster.start_node("n2", {"SILO_REPLICATION": "async"}, keyless=True)
    n3 = cluster.start_node("n3", {"SILO_REPLICATION": "async"}, keyless=True)
    tenant_id, token, _, beta_id, beta = closed_and_copied(cluster, n1, ["n2", "n3"])
    lineage = chain_history(cluster, tenant_id)[0]["lineage"]
    assert n1.stop() == 0
    own = os.path.join(n1.data_dir, "tenants")
    head = json.loads(read(os.path.join(own, tenant_id, "chain.head")))
    # beta's file "changed" after the stop: its head is not to be trusted.
    os.utime(os.path.join(own, beta_id, "tenant.db"))

    n1 = cluster.start_node("n1", env, data=n1.data_dir)
    its_chain_goes_on(cluster, n1, n2, n3, tenant_id, token, lineage, head["seq"])
    # beta starts a new chain: a snapshot for each copy.
    r = call(n1, "beta", beta, "POST", "/api/collections/tickets/records",
             {"id": "b", "title": "beta after the restart"})
    assert r.status_code == 201, r.text
    wait_until("beta's copies take a snapshot of its new chain",
               lambda: [e for e in events(n1, "replication.snapshot_sent")
                        if e["tenant"] == beta_id])
    assert chain_history(cluster, beta_id)[0].get("from") is None


def test_a_primary_killed_with_no_follower_to_take_over_goes_on_with_its_chain(cluster):
    """As above, with SIGKILL and the tenant open: no chain.head, but the
    recorder's chain.live, clean at the last cut, names the files it left.
    The chain goes on from there and both copies stream on, no snapshot."""
    n1 = cluster.start_node("n1", {"SILO_REPLICATION": "async"})
    n2 = cluster.start_node("n2", {"SILO_REPLICATION": "async"}, keyless=True)
    n3 = cluster.start_node("n3", {"SILO_REPLICATION": "async"}, keyless=True)
    tenant_id, token = tenant_with_records(n1, "r", 20)
    wait_until("both copies hold n1's files", lambda: caught_up(cluster, tenant_id, ["n2", "n3"])
               and same_files(n2, n1, tenant_id) and same_files(n3, n1, tenant_id))
    # The status seq may lag the files (it is reported now and then): the
    # files stand at the copies' position, which the chain must go on from.
    entry = tenant_entry(cluster.status(), tenant_id)
    lineage = chain_history(cluster, tenant_id)[0]["lineage"]
    n1.proc.kill()
    n1.proc.wait()
    assert os.path.exists(os.path.join(n1.data_dir, "tenants", tenant_id, "chain.live"))
    assert not os.path.exists(os.path.join(n1.data_dir, "tenants", tenant_id, "chain.head"))
    lease_gone(cluster, n1)

    n1 = cluster.start_node("n1", {"SILO_REPLICATION": "async"}, data=n1.data_dir)
    its_chain_goes_on(cluster, n1, n2, n3, tenant_id, token, lineage, at_least=entry["seq"])


def test_a_follower_behind_a_restarted_primary_streams_on_from_the_segments_it_kept(cluster):
    """Keyless followers cannot take a tenant over, so n1, stopped and
    started again, goes on with its chain. n3 was away meanwhile: it missed
    a file and writes before the stop. n1 kept the segments it shipped
    last beside the files (chain.recent): n3, back, is given the blob it
    lacks, then them, and streams on with no snapshot, ending byte for
    byte n1's files. (Until 2026-12-07 it took a whole snapshot.)"""
    seed = 2126
    print("seed", seed)
    env = {"SILO_REPLICATION": "async"}
    n1 = cluster.start_node("n1", env)
    n2 = cluster.start_node("n2", env, keyless=True)
    n3 = cluster.start_node("n3", env, keyless=True)
    tenant_id, token = tenant_with_records(n1, "c", 5)
    assert call(n1, "acme", token, "POST", "/api/collections", DOCS).status_code == 201
    wait_until("both copies caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    kill_node(cluster, n3)
    behind = recorded_seq(os.path.join(n3.data_dir, "replicas", tenant_id))
    fid = store_file(n1, token, "d1", file_bytes(300_000, seed))
    missed = ["m%d" % i for i in range(10)]
    for record_id in missed:
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": record_id, "title": NEEDLE})
        assert r.status_code == 201, r.text
    wait_until("n2 holds every write", lambda: caught_up(cluster, tenant_id, ["n2"]))
    assert n1.stop() == 0
    own = os.path.join(n1.data_dir, "tenants", tenant_id)
    head = json.loads(read(os.path.join(own, "chain.head")))
    assert os.path.exists(os.path.join(own, "chain.recent"))
    assert NEEDLE.encode() not in read(os.path.join(own, "chain.recent"))

    n1 = cluster.start_node("n1", env, data=n1.data_dir)
    n3 = cluster.start_node("n3", env, keyless=True, data=n3.data_dir)
    written_after_the_restart(cluster, n1, n2, n3, tenant_id, token)
    continued = [e for e in events(n1, "replication.chain_continued")
                 if e["tenant"] == tenant_id and e.get("after") == "a restart"]
    assert continued and continued[0]["seq"] == head["seq"], continued
    assert continued[0]["kept_segments"] > 1, continued
    assert not os.path.exists(os.path.join(own, "chain.recent"))  # read once, by the open
    resumed = [e for e in events(n1, "replication.follower_resumed")
               if e["tenant"] == tenant_id and e["node"] == "n3"]
    assert resumed and behind <= resumed[0]["from"] < head["seq"], (resumed, behind, head)
    assert not [e for e in events(n1, "replication.snapshot_sent") if e["tenant"] == tenant_id]
    assert read(blob_path(n3, tenant_id, fid, copy=True)) == \
        read(blob_path(n1, tenant_id, fid, copy=False))


def test_a_follower_killed_under_load_resumes_where_it_was_without_a_snapshot(cluster):
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    snapshots = metric(n1, "silo_repl_snapshots_total")
    # At most 25 writes a second: what n3 misses while away (its lease's
    # 2 s and a restart) stays well within the 8 MiB the primary keeps for
    # it, past which it would rightly take a snapshot.
    w = Writer(n1, token, "f", pace=0.04)
    try:
        w.wait_for(20)
        # Wherever it was in applying a segment; its node key goes with its
        # lease, then it comes back, on its data.
        kill_node(cluster, n3)
        w.wait_for(20)
        n3 = cluster.start_node("n3")
        seq = tenant_entry(cluster.status(), tenant_id)["seq"]
        wait_until("n3 follows again", lambda: caught_up(cluster, tenant_id, ["n2", "n3"], seq))
        w.wait_for(10)
    finally:
        w.finish()
    # It resumed from what the primary kept: no snapshot was sent again.
    assert "replication.follower_resumed" in n1.output()
    assert metric(n1, "silo_repl_snapshots_total") == snapshots
    wait_until("n3's copy equals the primary's files",
               lambda: caught_up(cluster, tenant_id, ["n2", "n3"]) and
               same_files(n3, n1, tenant_id))


def test_a_tenant_shredded_on_its_primary_leaves_no_copy_or_key_on_any_node(cluster):
    """`silo tenant delete --shred` on the primary (issue 22): each other
    node drops its sealed copy and the wrapped key that came with it, a node
    that was down meanwhile when it is back, and no follower elects the
    tenant back."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    for i in range(10):
        assert call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                    {"id": "r%d" % i, "title": "%s %d" % (NEEDLE, i)}).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    r = n1.cli("backup", "run", "acme")
    assert r.returncode == 0, r.stderr
    copies = {n.node_id: os.path.join(n.data_dir, "replicas", tenant_id) for n in (n2, n3)}
    for path in copies.values():
        assert os.path.exists(os.path.join(path, "tenant.key"))
    # A re-key is for the node that leads the tenant: a follower says which
    # one, and stages no key.
    r = n2.cli("tenant", "rekey", "acme")
    assert r.returncode == 1 and "another node of the cluster leads this tenant (%s)" % n1.url \
        in r.stderr, r.stderr
    assert not glob.glob(os.path.join(n2.data_dir, "platform", "keyring*.d", "*.next"))
    # A follower is not where the tenant is deleted: it says which node is.
    r = n2.cli("tenant", "delete", "acme", "--shred", "--yes")
    assert r.returncode == 1 and "another node of the cluster leads this tenant (%s)" % n1.url \
        in r.stderr, r.stderr
    assert os.path.exists(copies["n2"])
    assert n3.stop() == 0  # down while the tenant goes
    wait_until("n3's lease ended",
               lambda: "n3" not in [n["id"] for n in cluster.status()["nodes"]])

    r = n1.cli("tenant", "delete", "acme", "--shred", "--yes")
    assert r.returncode == 0, r.stderr
    assert "shredded: 1 backups" in r.stdout, r.stdout
    wait_until("n2 dropped its copy", lambda: not os.path.exists(copies["n2"]))
    n3 = cluster.start_node("n3")
    wait_until("n3 dropped its copy", lambda: not os.path.exists(copies["n3"]))
    # Nothing of the tenant on any node: no copy, no key, no primary. (n1's
    # backup target keeps the shredded backups, sealed under keys that are
    # gone, until retention prunes them; its key object is gone.)
    kept = os.path.join(n1.data_dir, "backups", tenant_id)
    assert not os.path.exists(os.path.join(kept, "tenant.key"))
    assert os.path.exists(os.path.join(kept, "tenant.shredded"))
    for n in (n1, n2, n3):
        for root, dirs, files in os.walk(n.data_dir):
            if root.startswith(kept):
                continue
            assert tenant_id not in root and not [f for f in files if tenant_id in f], root
    wait_until("no node leads the tenant",
               lambda: tenant_entry(cluster.status(), tenant_id) is None)
    assert call(n2, "acme", token, "GET", "/api/collections").status_code == 404
    assert "replication.copy_dropped" in n2.output() and "replication.copy_dropped" in n3.output()
    assert "replication.promoted" not in n2.output() + n3.output()


def test_a_slow_follower_does_not_hold_commits_back_and_both_slow_stall_at_most_the_ack_timeout(
        cluster):
    """SIGSTOP bursts longer than the ack timeout (2 s), shorter than the
    lease (5 s here): every write is answered 201 throughout (the other
    follower acknowledges; with both stopped, the sync set empties after
    the timeout), and the stopped followers resume from the kept segments.
    Latencies are printed: a figure, not a verdict (a shared machine)."""
    ttl = {"SILO_LEASE_TTL_S": "5"}
    n1, n2, n3 = (cluster.start_node(n, ttl) for n in ("n1", "n2", "n3"))
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    snapshots = metric(n1, "silo_repl_snapshots_total")
    w = Writer(n1, token, "s")
    phases = {}
    try:
        w.wait_for(30)
        phases["both following"] = len(w.latencies)
        for burst in range(2):
            os.kill(n3.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(2.5)
            finally:
                os.kill(n3.proc.pid, signal.SIGCONT)
            w.wait_for(10)
        phases["n3 stopped in bursts"] = len(w.latencies)
        for n in (n2, n3):
            os.kill(n.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)
        finally:
            for n in (n2, n3):
                os.kill(n.proc.pid, signal.SIGCONT)
        w.wait_for(10)
        phases["both stopped"] = len(w.latencies)
        seq = tenant_entry(cluster.status(), tenant_id)["seq"]
        wait_until("both follow again", lambda: caught_up(cluster, tenant_id, ["n2", "n3"], seq))
    finally:
        w.finish()
    assert metric(n1, "silo_repl_snapshots_total") == snapshots
    start = 0
    for name, end in phases.items():
        part = w.latencies[start:end]
        print("%s: %d writes, p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            name, len(part), percentile(part, 0.5) * 1000, percentile(part, 0.99) * 1000,
            max(part) * 1000))
        start = end


def test_a_follower_that_missed_acknowledged_writes_is_never_elected(cluster):
    """The sync set: n3 stops (SIGSTOP); writes are answered on n2's copy,
    and once n3 acknowledged nothing for the ack timeout the primary takes
    it out of the set recorded in etcd. Then n1 and n2 die and n3 comes
    back: the only copy left lacks acknowledged writes, so it does not take
    over (a lease of 5 s here, so that n3's own outlives its pause). n2
    comes back on its data and does, with every acknowledged write."""
    ttl = {"SILO_LEASE_TTL_S": "5"}
    n1, n2, n3 = (cluster.start_node(n, ttl) for n in ("n1", "n2", "n3"))
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    assert sorted(tenant_entry(cluster.status(), tenant_id)["sync"]) == ["n2", "n3"]
    os.kill(n3.proc.pid, signal.SIGSTOP)
    try:
        acked = []
        for i in range(10):
            r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                     {"id": "m%d" % i, "title": NEEDLE})
            assert r.status_code == 201, r.text
            acked.append("m%d" % i)
        wait_until("n3 out of the sync set",
                   lambda: tenant_entry(cluster.status(), tenant_id)["sync"] == ["n2"])
        for n in (n1, n2):
            n.proc.kill()
            n.proc.wait()
    finally:
        os.kill(n3.proc.pid, signal.SIGCONT)
    wait_until("n3 stands aside",
               lambda: "replication.not_in_sync_set" in n3.output(), timeout=60)
    assert tenant_entry(cluster.status(), tenant_id) is None
    assert not os.path.exists(os.path.join(n3.data_dir, "tenants", tenant_id))

    n2 = cluster.start_node("n2", ttl, data=n2.data_dir)
    wait_until("n2 leads the tenant",
               serving(cluster, token,
                       lambda: (lambda e: e if e and e["primary"] == "n2" else None)(
                           tenant_entry(cluster.status(), tenant_id))), timeout=60)
    for record_id in acked:
        r = call(n2, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)
    wait_until("n3 follows n2", lambda: caught_up(cluster, tenant_id, ["n3"]))
    assert metric(n3, "silo_repl_promotions_total") == 0


def test_a_restarted_primary_never_leads_again_on_a_copy_older_than_a_later_primarys(cluster):
    """n1 leads; it is killed, a follower takes the tenant over and
    acknowledges a write; that node dies too while the third is stopped, so
    no node leads. n1 comes back on its own data, which lacks that write:
    asked to open the tenant (a backup), it refuses rather than lead on its
    older copy. Once the third node runs again it takes the tenant over,
    with the write."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    n1.proc.kill()
    n1.proc.wait()
    entry = wait_until("a follower leads the tenant", serving(cluster, token, lambda: (
        lambda e: e if e and e["primary"] in ("n2", "n3") else None)(
            tenant_entry(cluster.status(), tenant_id))), timeout=30)
    leader, other = (n2, n3) if entry["primary"] == "n2" else (n3, n2)
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "late", "title": "acknowledged by the second primary"})
    assert r.status_code == 201, r.text
    wait_until("the third node holds it", lambda: caught_up(cluster, tenant_id, [other.node_id]))
    os.kill(other.proc.pid, signal.SIGSTOP)
    try:
        leader.proc.kill()
        leader.proc.wait()
        wait_until("no node leads the tenant",
                   lambda: tenant_entry(cluster.status(), tenant_id) is None)
        n1 = cluster.start_node("n1", data=n1.data_dir)
        backup = n1.cli("backup", "run", "acme")
        assert backup.returncode != 0, backup.stdout
        assert tenant_entry(cluster.status(), tenant_id) is None
    finally:
        os.kill(other.proc.pid, signal.SIGCONT)
    wait_until("the third node leads the tenant", serving(cluster, token, lambda: (
        lambda e: e if e and e["primary"] == other.node_id else None)(
            tenant_entry(cluster.status(), tenant_id))), timeout=60)
    r = call(other, "acme", token, "GET", "/api/collections/tickets/records/late")
    assert r.status_code == 200, r.text
    # n1 gives its older copy up and follows.
    wait_until("n1 follows", lambda: caught_up(cluster, tenant_id, ["n1"]), timeout=60)


def test_a_whole_cluster_restarted_leads_each_tenant_where_it_was_before_any_request(cluster):
    """Every node stops, the followers first; the primary comes back alone.
    No follower can take the tenant, and no request has opened it: the node
    claims it on its own (its primary key, a new term), so another node
    would send its requests there, and its followers, back, stream it
    (no request has reached it yet): it is handed to one with its data."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    term = tenant_entry(cluster.status(), tenant_id)["term"]
    for node in (n2, n3, n1):
        assert node.stop() == 0
    assert tenant_entry(cluster.status(), tenant_id) is None
    # What a switchover that stopped half-way leaves on n1 (its files kept
    # as its copy, the tenant still its own): dropped when n1 starts, since
    # a copy that shares the files it serves would change with them.
    own = os.path.join(n1.data_dir, "tenants", tenant_id)
    half = os.path.join(n1.data_dir, "replicas", tenant_id)
    os.makedirs(half)
    os.link(os.path.join(own, "tenant.db"), os.path.join(half, "tenant.db"))
    with open(os.path.join(half, "replica.pos"), "wb") as f:
        f.write(b"\0" * 128)
    n1 = cluster.start_node("n1", data=n1.data_dir)
    entry = wait_until("n1 leads the tenant again, unasked",
                       lambda: tenant_entry(cluster.status(), tenant_id), timeout=20)
    assert entry["primary"] == "n1" and entry["term"] > term, entry
    # Logged once the open that created the primary key is done: a moment
    # after etcd shows it.
    wait_until("n1 says it claimed the tenant", lambda: "replication.claimed" in n1.output(),
               timeout=10)
    assert not os.path.exists(half)
    assert any(e["tenant"] == tenant_id and e["why"] == "led here"
               for e in events(n1, "replication.copy_dropped"))
    n2 = cluster.start_node("n2", data=n2.data_dir)
    cluster.start_node("n3", data=n3.data_dir)
    wait_until("n2 and n3 follow n1", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]),
               timeout=60)
    r = promote(cluster, "acme", "--node", "n2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert tenant_entry(cluster.status(), tenant_id)["primary"] == "n2"
    r = call(n2, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "written after the restart"})
    assert r.status_code == 201, r.text
    wait_until("n1 and n3 follow n2", lambda: caught_up(cluster, tenant_id, ["n1", "n3"]),
               timeout=60)


def test_a_follower_whose_copy_was_damaged_is_not_promoted_and_resyncs(cluster):
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "d", 20)
    acked = ["d%d" % i for i in range(20)]
    first = wait_until("both followers caught up",
                       lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    # More commits after the followers' snapshot, so that their WAL has frames.
    for i in range(20, 30):
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "d%d" % i, "title": "%s %d" % (NEEDLE, i)})
        assert r.status_code == 201, r.text
        acked.append("d%d" % i)
    wait_until("both followers caught up again",
               lambda: caught_up(cluster, tenant_id, ["n2", "n3"], first["seq"]))
    # n2 restarts: reopening its copy (the next segment does) rolls its
    # journal forward and records its position, so the frames are behind
    # it (a damaged byte in a frame the journal holds past the recorded
    # position is written again from it at promotion).
    copy = os.path.join(n2.data_dir, "replicas", tenant_id)
    caught = tenant_entry(cluster.status(), tenant_id)["seq"]
    assert n2.stop() == 0
    n2 = cluster.start_node("n2", data=n2.data_dir)
    r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "d30", "title": "%s 30" % NEEDLE})
    assert r.status_code == 201, r.text
    acked.append("d30")
    wait_until("n2's journal rolled forward", lambda: recorded_seq(copy) >= caught)
    wait_until("n2 follows again", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))

    # One byte of n2's copy flips (a bad disk): inside the first WAL frame's
    # page, which SQLite would take as the end of the log, silently dropping
    # every later commit. Both copies stand at the same position, so n2 (the
    # lower id) is the first choice; its check must refuse it.
    wal = os.path.join(copy, "tenant.db-wal")
    data = bytearray(read(wal))
    assert len(data) > 32 + 24 + 100
    data[32 + 24 + 100] ^= 0x01
    with open(wal, "r+b") as f:
        f.write(data)
    n1.proc.kill()
    n1.proc.wait()

    entry = wait_until("a follower leads the tenant",
                       serving(cluster, token,
                               lambda: (tenant_entry(cluster.status(), tenant_id) or {}).get(
                                   "primary") in ("n2", "n3") and
                               tenant_entry(cluster.status(), tenant_id)))
    assert entry["primary"] == "n3"
    out = n2.output()
    assert "replication.promotion_refused" in out and "needs a resync" in out
    assert_served(n3, token, acked)
    # n2 takes a snapshot of n3's chain and follows it: byte-identical again.
    r = call(n3, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "x"})
    assert r.status_code == 201, r.text
    wait_until("n2's copy equals n3's files",
               lambda: caught_up(cluster, tenant_id, ["n2"]) and same_files(n2, n3, tenant_id))
    # Its refused copy was emptied: it could not stream on from where it
    # was, though its position is where n3's chain went on from.
    assert metric(n3, "silo_repl_snapshots_total") >= 1
    assert "replication.chain_continued" in n3.output()


def test_a_follower_still_holding_the_tenants_own_directory_steps_aside_in_the_election(cluster):
    """A follower whose node still has the tenant's own directory (a deposed
    primary's it could not move away) cannot take the tenant over: its copy
    would be moved onto it. It says so and posts its position as refused,
    so that the election, which in sync mode waits for every member of the
    sync set, goes on to the other follower. (It used to skip the election
    without a word: no follower ever took the tenant over.) No acknowledged
    write is lost, and its copy, untouched, streams on from the new
    primary."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "g", 20)
    at = wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    assert sorted(at["sync"]) == ["n2", "n3"]
    # Both copies stand at the same position, so n2 (the lower id) would be
    # the first choice.
    left = os.path.join(n2.data_dir, "tenants", tenant_id)
    assert not os.path.exists(left)
    os.makedirs(os.path.join(left, "files"))
    n1.proc.kill()
    n1.proc.wait()

    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    assert leader is n3
    refused = [e for e in events(n2, "replication.promotion_refused")
               if e["tenant"] == tenant_id]
    assert len(refused) == 1 and "own directory" in refused[0]["cause"], refused
    assert metric(n2, "silo_repl_promotions_total") == 0
    assert os.listdir(left) == ["files"]  # left as it was
    assert_served(n3, token, ["g%d" % i for i in range(20)])
    # n2's copy was not touched: it streams on from n3, with no snapshot.
    r = call(n3, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "x"})
    assert r.status_code == 201, r.text
    wait_until("n2's copy equals n3's files",
               lambda: caught_up(cluster, tenant_id, ["n2"]) and same_files(n2, n3, tenant_id))
    assert metric(n3, "silo_repl_snapshots_total") == 0
    shutil.rmtree(left)


def n3_takes_over_from_n2_refused(cluster, token, tenant_id, n1, n2, n3, path, cause):
    """A regular file at `path` on n2 makes its promotion fail; n1, the
    primary, is killed. With both copies at the same position n2, the lower
    id, tries first and refuses once, saying `cause`; n3 takes over."""
    with open(path, "w") as f:
        f.write("not a directory\n")
    n1.proc.kill()
    n1.proc.wait()
    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    assert leader is n3
    refused = [e for e in events(n2, "replication.promotion_refused") if e["tenant"] == tenant_id]
    assert len(refused) == 1 and cause in refused[0]["cause"], refused
    assert metric(n2, "silo_repl_promotions_total") == 0


def test_a_promotion_that_fails_after_recording_its_chain_puts_it_back_for_the_next_follower(
        cluster):
    """A promotion can fail after it recorded the tenant's chain under its
    term (here: n2 cannot make the tenant's directory, its tenants/ being a
    file). It gives up: the chain and the sync set it replaced are put
    back and its primary key deleted, so that the other follower, whose
    copy stands on that chain and which the set names, takes the tenant
    over and carries it on; no acknowledged write is lost. (The sync set
    was left empty under the failed term: the other follower waited for a
    member forever.) Its own copy, which the check may have changed, is emptied: it
    follows after a snapshot, byte for byte."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "h", 20)
    at = wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    assert sorted(at["sync"]) == ["n2", "n3"]
    original = chain_history(cluster, tenant_id)[0]
    tenants = os.path.join(n2.data_dir, "tenants")
    os.rename(tenants, tenants + ".aside")
    n3_takes_over_from_n2_refused(cluster, token, tenant_id, n1, n2, n3, tenants, "mkdir")
    # The chain's values, newest first: n3's, going on from where the copies
    # stood on the original lineage; the original put back; n2's, recorded
    # under its own term; the original.
    history = chain_history(cluster, tenant_id)
    assert history[3] == original and history[1] == original, history
    assert history[2]["term"] not in (original["term"], history[0]["term"]), history
    assert history[0]["lineage"] == original["lineage"] and history[0]["from"] == at["seq"], \
        history
    assert_served(n3, token, ["h%d" % i for i in range(20)])

    os.remove(tenants)
    os.rename(tenants + ".aside", tenants)
    r = call(n3, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "x"})
    assert r.status_code == 201, r.text
    wait_until("n2's copy equals n3's files",
               lambda: caught_up(cluster, tenant_id, ["n2"]) and same_files(n2, n3, tenant_id))
    assert [e for e in events(n3, "replication.snapshot_sent") if e["tenant"] == tenant_id], \
        "n2's emptied copy took no snapshot"


def test_a_promotion_that_fails_after_making_the_tenants_directory_removes_it(cluster):
    """A promotion can fail after it made the tenant's own directory and
    moved the copy's database into it (here: n2's copy's files/ is a regular
    file, so its blobs cannot be listed). It gives up and removes that
    directory with what it moved, so n2 stays a candidate: once n3, which
    took the tenant over instead, is lost in turn, n2 takes it over with
    every acknowledged write. (Left behind, the directory made n2 step
    aside in every election for the tenant, kOwnDirectoryRefusal, until an
    operator removed it: nobody took the tenant over.)"""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "m", 20)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    files = os.path.join(n2.data_dir, "replicas", tenant_id, "files")
    shutil.rmtree(files, ignore_errors=True)
    n3_takes_over_from_n2_refused(cluster, token, tenant_id, n1, n2, n3, files,
                                  "cannot list the copy's files")
    assert not os.path.exists(os.path.join(n2.data_dir, "tenants", tenant_id))
    assert not events(n2, "replication.promotion_not_undone")

    os.remove(files)
    r = call(n3, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "x"})
    assert r.status_code == 201, r.text
    wait_until("n2's copy equals n3's files",
               lambda: caught_up(cluster, tenant_id, ["n2"]) and same_files(n2, n3, tenant_id))
    n3.proc.kill()
    n3.proc.wait()

    def n2_leads():
        entry = tenant_entry(cluster.status(), tenant_id)
        return entry if entry and entry["primary"] == "n2" else None
    wait_until("n2 leads the tenant", serving(cluster, token, n2_leads), timeout=30)
    assert_served(n2, token, ["m%d" % i for i in range(20)] + ["after"])
    assert metric(n2, "silo_repl_promotions_total") == 1


def test_a_follower_at_the_promoted_copys_position_streams_on_without_a_snapshot(cluster):
    """The tenant's chain goes on across a failover: the follower that is
    not promoted holds what the promoted copy holds, so it streams on from
    the new primary, takes no snapshot, and ends byte for byte its files,
    the promotion's own changes (its audit entry) included."""
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "c", 20)
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    n1.proc.kill()
    n1.proc.wait()

    leader, other = taken_over(cluster, token, tenant_id, n2, n3)
    term = tenant_entry(cluster.status(), tenant_id)["term"]
    for i in range(20):
        r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/c%d" % i)
        assert r.status_code == 200, (i, r.status_code)
    r = call(leader, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the failover"})
    assert r.status_code == 201, r.text
    wait_until("the other follower streams the new primary's chain, byte for byte",
               lambda: caught_up(cluster, tenant_id, [other.node_id]) and
               same_files(other, leader, tenant_id))
    out = leader.output()
    assert "replication.chain_continued" in out
    assert "replication.follower_resumed" in out
    assert metric(leader, "silo_repl_snapshots_total") == 0
    assert_audited_promotion(leader, token, term)


def test_a_follower_behind_the_promoted_copy_streams_on_from_the_segments_the_copy_applied_last(
        cluster):
    """n3 is down while n1 stores a file and acknowledges writes on n2's
    copy; then n1 is killed and n2 takes the tenant over. n3 comes back
    behind where n2 took the chain on: n2 gives it the blob it missed, then
    the segments its own copy applied last, and n3 streams on with no
    snapshot, ending byte for byte n2's files."""
    behind_the_promoted_copy(cluster, restart_n2=False)


def test_a_follower_behind_a_promoted_copy_whose_node_restarted_streams_on_from_its_files(
        cluster):
    """As above, but n2 restarts (SIGTERM) after n3 fell behind and before
    n1 is killed: the segments its copy applied last are no longer in its
    memory, only in its files (the journal's history, Applier::History).
    n3 still streams on from where it is with no snapshot. (Until
    2026-12-06 it took a whole snapshot.)"""
    behind_the_promoted_copy(cluster, restart_n2=True)


def behind_the_promoted_copy(cluster, restart_n2):
    seed = 2124
    print("seed", seed)
    n1, n2, n3 = started_three(cluster)
    tenant_id, token = tenant_with_records(n1, "c", 5)
    assert call(n1, "acme", token, "POST", "/api/collections", DOCS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    kill_node(cluster, n3)
    data = file_bytes(300_000, seed)
    fid = store_file(n1, token, "d1", data)
    missed = ["m%d" % i for i in range(10)]
    for record_id in missed:
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": record_id, "title": NEEDLE})
        assert r.status_code == 201, r.text
    wait_until("n2 alone in the sync set, caught up",
               lambda: tenant_entry(cluster.status(), tenant_id)["sync"] == ["n2"] and
               caught_up(cluster, tenant_id, ["n2"]))
    if restart_n2:
        seq = tenant_entry(cluster.status(), tenant_id)["seq"]
        assert n2.stop() == 0
        n2 = cluster.start_node("n2", data=n2.data_dir)
        wait_until("n2 back in the sync set, caught up",
                   lambda: tenant_entry(cluster.status(), tenant_id)["sync"] == ["n2"] and
                   caught_up(cluster, tenant_id, ["n2"], seq - 1))
    n1.proc.kill()
    n1.proc.wait()
    leader, _ = taken_over(cluster, token, tenant_id, n2, n3)
    assert leader is n2
    taken_on = chain_history(cluster, tenant_id)[0]["from"]

    n3 = cluster.start_node("n3", data=n3.data_dir)
    r = call(n2, "acme", token, "POST", "/api/collections/tickets/records",
             {"id": "after", "title": "after the failover"})
    assert r.status_code == 201, r.text
    wait_until("n3 streams n2's chain, byte for byte",
               lambda: caught_up(cluster, tenant_id, ["n3"]) and same_files(n3, n2, tenant_id))
    resumed = [e for e in events(n2, "replication.follower_resumed")
               if e["tenant"] == tenant_id and e["node"] == "n3"]
    assert resumed, n2.output()[-3000:]
    assert resumed[0]["from"] < taken_on, (resumed, taken_on)
    assert metric(n2, "silo_repl_snapshots_total") == 0
    assert read(blob_path(n3, tenant_id, fid, copy=True)) == \
        read(blob_path(n2, tenant_id, fid, copy=False))
    for record_id in missed + ["after"]:
        r = call(n2, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
        assert r.status_code == 200, (record_id, r.status_code)


# Rounds of the kill test: 30 as issue 21 asks; `make check-asan` runs fewer
# (the sanitizer build is several times slower and checks memory, not odds).
KILL_ROUNDS = int(os.environ.get("CLUSTER_KILL_ROUNDS", "30"))


def kill_rounds(cluster, rounds, extra_env=None):
    """Kills the tenant's primary under load `rounds` times. Each round:
    writes until a seeded number were acknowledged, SIGKILL, a follower
    takes over under a higher term, `silo audit verify` passes there, the
    killed node comes back empty and follows. Returns one dict a round:
    the writes acknowledged (id, monotonic time of the answer), those the
    new primary lacks, and when the kill was."""
    seed = int(os.environ.get("CLUSTER_SEED", "2112"))
    print("seed %d (CLUSTER_SEED=%d repeats it), %d rounds" % (seed, seed, rounds))
    rng = random.Random(seed)
    nodes = {n: cluster.start_node(n, extra_env) for n in ("n1", "n2", "n3")}
    leader = nodes["n1"]
    tenant_id, token = make_tenant(leader, "acme")
    assert call(leader, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    wait_until("both followers caught up", lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    term = tenant_entry(cluster.status(), tenant_id)["term"]
    results = []
    for round_no in range(rounds):
        acked = []  # (id, when answered)
        target = rng.randint(5, 40)

        def writer(node=leader):
            i = 0
            while True:
                record_id = "k%d-%d" % (round_no, i)
                try:
                    r = call(node, "acme", token, "POST", "/api/collections/tickets/records",
                             {"id": record_id, "title": NEEDLE})
                except requests.RequestException:
                    return
                if r.status_code == 201:
                    acked.append((record_id, time.monotonic()))
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        wait_until("round %d: writes acknowledged" % round_no, lambda: len(acked) >= target,
                   timeout=60)
        killed_id = leader.node_id
        killed_at = time.monotonic()
        leader.proc.kill()
        leader.proc.wait()
        t.join()

        entry = wait_until(
            "round %d: a follower leads the tenant" % round_no,
            serving(cluster, token,
                    lambda: (lambda e: e if e and e["primary"] != killed_id else None)(
                        tenant_entry(cluster.status(), tenant_id))), timeout=60)
        assert entry["term"] > term
        term = entry["term"]
        leader = nodes[entry["primary"]]
        lost = []
        for record_id, answered in acked:
            r = call(leader, "acme", token, "GET", "/api/collections/tickets/records/" + record_id)
            assert r.status_code in (200, 404), (round_no, record_id, r.status_code, r.text)
            if r.status_code == 404:
                lost.append((record_id, answered))
        verify = leader.cli("audit", "verify", "acme")
        assert verify.returncode == 0, (round_no, verify.stdout + verify.stderr)
        assert_audited_promotion(leader, token, term)
        results.append({"acked": acked, "lost": lost, "killed_at": killed_at})

        # The killed node comes back and follows the new primary: on its own
        # data directory in even rounds (it finds another node leads the
        # tenant, moves its own directory aside under deposed/ and takes a
        # snapshot), empty in odd ones (docs/cluster_runbook.md).
        old_data = nodes[killed_id].data_dir
        data = old_data if round_no % 2 == 0 else os.path.join(
            cluster.root, "%s-r%d" % (killed_id, round_no))
        nodes[killed_id] = cluster.start_node(killed_id, extra_env, data=data)
        followers = sorted(n for n in nodes if n != leader.node_id)
        wait_until("round %d: both followers follow the new primary" % round_no,
                   lambda: caught_up(cluster, tenant_id, followers), timeout=60)
        if data == old_data:
            wait_until("round %d: the restarted node set its old directory aside" % round_no,
                       lambda: not os.path.exists(os.path.join(data, "tenants", tenant_id)) and
                       os.path.isdir(os.path.join(data, "deposed")))
    return results


def test_the_primary_killed_round_after_round_under_load_loses_no_acknowledged_write(cluster):
    results = kill_rounds(cluster, KILL_ROUNDS)
    lost = [(i, r["lost"]) for i, r in enumerate(results) if r["lost"]]
    assert not lost, lost
    print("%d rounds, %d acknowledged writes, none lost" % (
        len(results), sum(len(r["acked"]) for r in results)))


def test_async_replication_loses_only_the_last_moments_before_a_kill(cluster):
    """SILO_REPLICATION=async answers a commit once it is sent: a kill may
    lose what was in flight. The loss window of a round is the kill time
    minus the answer time of the last acknowledged write the new primary
    lacks (0 when none). Issue 21: p99 <= 50 ms, never over 1 s; the 1 s is
    the verdict here, the p99 a printed figure (timing on a shared machine)."""
    results = kill_rounds(cluster, max(1, KILL_ROUNDS // 3), {"SILO_REPLICATION": "async"})
    windows = sorted(
        (r["killed_at"] - max(answered for _, answered in r["lost"])) if r["lost"] else 0.0
        for r in results)
    p99 = windows[min(len(windows) - 1, int(round(0.99 * (len(windows) - 1))))]
    print("async: %d rounds, %d acknowledged writes, %d lost; loss window p99 %.1f ms, "
          "max %.1f ms" % (len(results), sum(len(r["acked"]) for r in results),
                           sum(len(r["lost"]) for r in results), p99 * 1000, windows[-1] * 1000))
    assert windows[-1] <= 1.0, windows
    # What was lost is only ever the newest: no write survives a lost one
    # acknowledged before it (a copy is a prefix of the primary's commits).
    for r in results:
        if r["lost"]:
            first_lost = min(answered for _, answered in r["lost"])
            kept_after = [i for i, answered in r["acked"]
                          if answered > first_lost and (i, answered) not in r["lost"]]
            assert not kept_after, kept_after


def test_a_slug_names_one_tenant_across_the_cluster(cluster):
    n1, n2 = cluster.start_node("n1"), cluster.start_node("n2")
    make_tenant(n1, "acme")
    taken = n2.cli("tenant", "create", "acme")
    assert taken.returncode == 1
    assert "another node" in taken.stdout + taken.stderr
    assert n2.cli("tenant", "create", "beta").returncode == 0
    assert n1.cli("tenant", "create", "beta").returncode == 1
    # A deleted tenant gives its slug back to the cluster.
    assert n1.cli("tenant", "delete", "acme", "--yes").returncode == 0
    again = n2.cli("--json", "tenant", "create", "acme")
    assert again.returncode == 0, again.stderr
    assert n1.cli("tenant", "create", "acme").returncode == 1


def test_losing_one_etcd_member_of_three_fails_nothing_over(cluster_etcd3):
    """etcd keeps its majority with one member of three gone, even its
    leader: no lease runs out, so no tenant changes hands and writes go on.
    (A 5 s lease here, the default: etcd's own election after losing its
    leader takes about a second and a half, longer than a third of the
    2 s lease of the other tests.)"""
    cluster = cluster_etcd3
    n1, n2, n3 = (cluster.start_node(n, {"SILO_LEASE_TTL_S": "5"}) for n in ("n1", "n2", "n3"))
    tenant_id, token = make_tenant(n1, "acme")
    assert call(n1, "acme", token, "POST", "/api/collections", TICKETS).status_code == 201
    before = wait_until("both followers caught up",
                        lambda: caught_up(cluster, tenant_id, ["n2", "n3"]))
    (leader,) = wait_until("etcd has a leader",
                           lambda: (lambda i: None if i is None else (i,))(cluster.etcd.leader()))
    cluster.etcd.kill(leader)

    # Writes for three lease lengths: every one acknowledged.
    deadline = time.monotonic() + 3 * 5
    i = 0
    while time.monotonic() < deadline:
        r = call(n1, "acme", token, "POST", "/api/collections/tickets/records",
                 {"id": "e%d" % i, "title": "x"})
        assert r.status_code == 201, (i, r.status_code, r.text)
        i += 1
        time.sleep(0.05)
    after = wait_until("both followers caught up",
                       lambda: caught_up(cluster, tenant_id, ["n2", "n3"], before["seq"]))
    assert after["primary"] == "n1" and after["term"] == before["term"]
    for node in (n1, n2, n3):
        assert metric(node, "silo_repl_promotions_total") == 0
        assert metric(node, "silo_cluster_lease_held") == 1
