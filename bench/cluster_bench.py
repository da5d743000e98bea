"""make bench-cluster (issue 21): three `silo serve` nodes and one etcd on
loopback, started by the cluster test harness (tests/cluster/conftest.py).

  - Create and read throughput of one tenant with SILO_SYNCHRONOUS=full and
    replication off, async and sync: WRITERS threads (default 8), each on
    its own kept-alive TLS connection, creating records for SECONDS
    (default 5), then reading them by id for as long. RUNS (default 3)
    rounds, each mode once per round in turn (interleaved, so that the
    machine's noise falls on all three alike); medians, and ratios against
    "off" from the same rounds. With FOLLOWER_DIRS, the same rounds again
    with the followers' data directories under each of those directories
    (another filesystem: on one machine the followers otherwise share the
    primary's disk), interleaved with the others. ONLY=throughput runs this
    part alone.
  - Where the CPU went while creating: milliseconds of CPU per create of the
    primary, the followers, etcd and this client (they share the machine's
    cores: a follower's work here is work the primary cannot do), and the
    primary's CPU per create off over async's and sync's: the share of
    "off"'s creates a primary with cores of its own would keep if its CPU
    were what bounds it. With BASE_SILO, each round of each mode runs that
    binary too, right before the new one.
  - Bytes shipped per create (silo_repl_bytes_total over the creates, sync).
  - Upload time of a file of UPLOAD_MIB (default 64) MiB, random bytes, in
    the same rounds and modes (UPLOADS, default 3, per round; medians; 0:
    none): with replication on, its sealed blob reaches both followers
    before the upload is answered. And the same file as a resumable (tus) upload in
    PATCHes of TUS_PATCH_MIB (default 4) MiB, timed from its creation to the
    last PATCH's answer: with replication on, each PATCH's bytes reach the
    followers before it is answered.
  - Failover time: KILLS (default 5) SIGKILLs of the primary under writes,
    with the default 5 s lease; the time from the kill to the first write
    the new primary accepts. p50 and max.
  - Catch-up of a tenant of CATCHUP_MIB (default 100) MiB: the time from a
    third node's start to its copy streaming with no lag.
  - Takeover: a tenant of TAKEOVER_MIB (default 64) MiB, its followers
    caught up, its primary killed: the time from the first write the new
    primary accepts to the other follower holding its chain (that write
    included), and the snapshots the new primary sent (its chain goes on
    from the promoted copy's position: none), RUNS rounds (medians); with
    BASE_SILO, that binary's rounds interleaved. ONLY=takeover runs this
    part alone. TAKEOVER_CASE picks what the follower not promoted holds:
    "caught_up" (the default: what the promoted one holds); "under_writes"
    (the primary killed while WRITERS clients create records); "away" (it
    was down while AWAY_CREATES (default 50) records were created, and is
    started again once the other took over: timed from its start).
  - Restart: a tenant of TAKEOVER_MIB MiB, its followers caught up, its
    primary stopped, a follower takes it over, and the old primary starts
    again on its data: the time from its start until it holds the new
    primary's chain, the snapshots the new primary sent and their database
    bytes. Stopped with SIGTERM (it records its chain's head and follows
    on its own files), SIGKILL while idle (its chain.live names its files:
    the same) and SIGKILL while WRITERS clients create records (its files
    stand at no known position: a snapshot, sent as the pages that differ
    from them; with BASE_SILO, that binary's rounds of this case
    interleaved), RUNS rounds (medians). ONLY=restart runs this part
    alone.
  - Retained: RETAIN_TENANTS (default 40) tenants led by n1 (async), each
    sent RETAIN_CREATES (default 100) creates of 60 KB records: n1's
    resident memory growth over the creates and the segments its led
    tenants keep for their followers (silo_repl_retained_bytes, at most
    192 MiB together; before, 8 MiB each); with BASE_SILO, that binary's
    rounds interleaved, RUNS rounds (medians). ONLY=retained runs this
    part alone.
  - Reopen: with SILO_MAX_OPEN_TENANTS=1 on the primary, REOPENS (default
    20) writes to a tenant of REOPEN_MIB (default 20) MiB each right after a
    write to another tenant closed it (the write reopens it), against the
    same writes while it stays open; medians, and the snapshots sent
    meanwhile (a reopen keeps the tenant's chain: none).
  - Replica lag: LAG_RATE (default 500) creates/s, open loop (each sent at
    its scheduled time, whatever the answers before it), spread over
    LAG_TENANTS (default 10) tenants for LAG_SECONDS (default 10), async
    and sync, RUNS rounds (medians): p50 and p99 of the primary's
    silo_repl_ack_seconds (from a segment's send to a follower's
    acknowledgement that it is durable there), read off the histogram's
    buckets before and after.

  - etcd's load from an idle cluster: with ETCD_TENANTS (default 2000)
    other tenants' keys in etcd (a primary key, two positions, a sync set,
    a chain and a slug each, written straight to etcd), the CPU etcd spends per
    second of an idle 3-node cluster over IDLE_SECONDS (default 10), RUNS
    rounds (medians); beside it, measured in the same round, the etcd CPU
    of one full list of /silo/t/ (what each node asked for every 250 ms
    before it read only the changes). With BASE_SILO set to another
    binary, the same rounds run it too, interleaved.

Prints RESULT lines for bench/all.py. Usage: cluster_bench.py <silo binary>"""
import base64
import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("SILO_BIN", os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                                  "build/silo"))
_spec = importlib.util.spec_from_file_location(
    "cluster_harness", os.path.join(HERE, "..", "tests", "cluster", "conftest.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

RUNS = int(os.environ.get("RUNS", "3"))
SECONDS = float(os.environ.get("SECONDS_PER_RUN", "5"))
WRITERS = int(os.environ.get("WRITERS", "8"))
KILLS = int(os.environ.get("KILLS", "5"))
CATCHUP_MIB = int(os.environ.get("CATCHUP_MIB", "100"))
SEED = int(os.environ.get("SEED", "21"))
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE  # the development certificates of the nodes this started
TTL = {"SILO_LEASE_TTL_S": "5"}


REOPENS = int(os.environ.get("REOPENS", "20"))
REOPEN_MIB = int(os.environ.get("REOPEN_MIB", "20"))
UPLOAD_MIB = int(os.environ.get("UPLOAD_MIB", "64"))
TUS_PATCH_MIB = int(os.environ.get("TUS_PATCH_MIB", "4"))
UPLOADS = int(os.environ.get("UPLOADS", "3"))
LAG_RATE = float(os.environ.get("LAG_RATE", "500"))
LAG_TENANTS = int(os.environ.get("LAG_TENANTS", "10"))
LAG_SECONDS = float(os.environ.get("LAG_SECONDS", "10"))
# Other places for the followers' data directories (comma-separated; e.g.
# /dev/shm): the throughput rounds run once per place too, interleaved,
# each against its own "off". On this one machine the followers otherwise
# share the primary's disk (and its flushes) besides its cores.
FOLLOWER_DIRS = [d for d in os.environ.get("FOLLOWER_DIRS", "").split(",") if d]


class Client:
    """One kept-alive HTTPS connection to a node, as a tenant's API token."""

    def __init__(self, node, token, slug="acme"):
        self.port = node.port
        self.token = token
        self.slug = slug
        self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=CTX, timeout=30)

    def call(self, method, path, body=None, token=None, slug=None):
        headers = {"Authorization": "Bearer " + (token or self.token)}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, "/t/%s%s" % (slug or self.slug, path), body=data,
                              headers=headers)
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=CTX,
                                                    timeout=30)
            return None


def new_cluster(names, extra, follower_dir=None):
    """A cluster of `names`; with `follower_dir`, every node but the first
    keeps its data directory under it (another filesystem: see
    FOLLOWER_DIRS)."""
    root = tempfile.mkdtemp(prefix="silo-bench-cluster-")
    c = harness.Cluster(root)
    c.elsewhere = tempfile.mkdtemp(prefix="silo-bench-", dir=follower_dir) if follower_dir else None
    c.etcd.start()
    nodes = [c.start_node(n, extra, data=os.path.join(c.elsewhere, n) if c.elsewhere and i else None)
             for i, n in enumerate(names)]
    return c, nodes


def close_cluster(c):
    c.stop()
    shutil.rmtree(c.root, ignore_errors=True)
    if getattr(c, "elsewhere", None):
        shutil.rmtree(c.elsewhere, ignore_errors=True)


def make_tenant(node, fields, slug="acme"):
    """Tenant `slug` on `node` (the harness's), with a collection "tickets"."""
    tenant_id, token = harness.make_tenant(node, slug)
    status = Client(node, token, slug).call("POST", "/api/collections",
                                            {"name": "tickets", "fields": fields})
    assert status == 201, status
    return tenant_id, token


def load(node, token, method, seconds, make_path, make_body=None, slug="acme"):
    """WRITERS threads for `seconds`: the requests answered 2xx per second,
    and the ids created (for creates)."""
    done = []
    stop = time.monotonic() + seconds

    def worker(w):
        client = Client(node, token, slug)
        i = 0
        while time.monotonic() < stop:
            status = client.call(method, make_path(w, i),
                                 make_body(w, i) if make_body else None)
            if status is not None and 200 <= status < 300:
                done.append((w, i))
            i += 1
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WRITERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done) / (time.monotonic() - t0), done


def upload_seconds(node, token, data):
    """Median seconds of UPLOADS uploads of `data` to `node`, each on a new
    connection, timed from the request's start to its answer."""
    times = []
    for _ in range(UPLOADS):
        conn = http.client.HTTPSConnection("127.0.0.1", node.port, context=CTX, timeout=300)
        t0 = time.monotonic()
        conn.request("POST", "/t/acme/api/files?collection=tickets&field=doc&name=b.bin",
                     body=data, headers={"Authorization": "Bearer " + token,
                                         "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        r.read()
        times.append(time.monotonic() - t0)
        conn.close()
        assert r.status == 201, r.status
    return statistics.median(times)


def tus_seconds(node, token, data):
    """Median seconds of UPLOADS resumable uploads of `data` to `node`, in
    PATCHes of TUS_PATCH_MIB, each upload on a new connection, timed from
    its creation to the last PATCH's answer."""
    times = []
    step = TUS_PATCH_MIB << 20
    for _ in range(UPLOADS):
        conn = http.client.HTTPSConnection("127.0.0.1", node.port, context=CTX, timeout=300)
        head = {"Authorization": "Bearer " + token, "Tus-Resumable": "1.0.0"}
        t0 = time.monotonic()
        conn.request("POST", "/t/acme/api/uploads?collection=tickets&field=doc",
                     headers=dict(head, **{"Upload-Length": str(len(data))}))
        r = conn.getresponse()
        r.read()
        assert r.status == 201, r.status
        url = r.getheader("Location")
        for offset in range(0, len(data), step):
            conn.request("PATCH", url, body=data[offset:offset + step],
                         headers=dict(head, **{"Upload-Offset": str(offset),
                                               "Content-Type": "application/offset+octet-stream"}))
            r = conn.getresponse()
            r.read()
            assert r.status == 204, r.status
        times.append(time.monotonic() - t0)
        conn.close()
    return statistics.median(times)


def cpu_seconds(pid):
    """User plus system CPU seconds `pid` has used (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_use(c, nodes):
    """CPU seconds so far of: the first node, the others, etcd, this client."""
    return (cpu_seconds(nodes[0].proc.pid), sum(cpu_seconds(n.proc.pid) for n in nodes[1:]),
            sum(cpu_seconds(p.pid) for p in c.etcd.procs), time.process_time())


def throughput_round(mode, follower_dir=None):
    extra = dict(TTL, SILO_REPLICATION=mode)
    c, (n1, n2, n3) = new_cluster(("n1", "n2", "n3"), extra, follower_dir)
    try:
        tenant_id, token = make_tenant(n1, [{"name": "title", "type": "string", "max": 200},
                                            {"name": "doc", "type": "file",
                                             "max_bytes": UPLOAD_MIB << 20}])
        if mode != "off":
            harness.wait_until("followers caught up",
                               lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]))
        before = harness.e2e.metric(n1, "silo_repl_bytes_total") if mode != "off" else 0
        cpu_before = cpu_use(c, (n1, n2, n3))
        creates, made = load(n1, token, "POST", SECONDS,
                             lambda w, i: "/api/collections/tickets/records",
                             lambda w, i: {"id": "w%d-%d" % (w, i), "title": "bench %d" % i})
        # Where the machine's CPU went while creating: milliseconds per create
        # (the three nodes, etcd and this client share its cores).
        cpu = tuple((b - a) * 1e3 / max(len(made), 1)
                    for a, b in zip(cpu_before, cpu_use(c, (n1, n2, n3))))
        shipped = (harness.e2e.metric(n1, "silo_repl_bytes_total") - before
                   if mode != "off" else 0)
        ids = ["w%d-%d" % m for m in made]
        rng = random.Random(SEED)
        reads, _ = load(n1, token, "GET", SECONDS,
                        lambda w, i: "/api/collections/tickets/records/" + rng.choice(ids))
        data = random.Random(SEED).randbytes(UPLOAD_MIB << 20)
        upload = upload_seconds(n1, token, data) if UPLOADS else 0.0
        resumable = tus_seconds(n1, token, data) if UPLOADS else 0.0
        return creates, reads, (shipped / len(made) if made else 0.0), upload, resumable, cpu
    finally:
        close_cluster(c)


def ack_buckets(node):
    """silo_repl_ack_seconds of `node`: [(upper bound, cumulative count)]."""
    r = requests.get(node.operator_url + "/metrics", timeout=10,
                     headers={"Authorization": "Bearer " + node.operator_token()})
    r.raise_for_status()
    out = []
    for m in re.finditer(r'^silo_repl_ack_seconds_bucket\{le="([^"]+)"\} (\d+)$', r.text, re.M):
        out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)),
                    int(m.group(2))))
    assert out, "no silo_repl_ack_seconds on " + node.node_id
    return out


def bucket_quantile(buckets, q):
    """The q-quantile of cumulative `buckets`, interpolated linearly inside
    the bucket it falls in (as Prometheus's histogram_quantile)."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0
    for bound, n in buckets:
        if n >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(1, n - below)
        lower, below = bound, n
    return lower


def lag_round(mode):
    """Open-loop creates over LAG_TENANTS tenants led by n1: (p50 s, p99 s,
    acknowledgements measured, creates answered 201 per second, the p99 of
    how late the generator sent)."""
    c, (n1, n2, n3) = new_cluster(("n1", "n2", "n3"), dict(TTL, SILO_REPLICATION=mode))
    try:
        tenants = []
        for k in range(LAG_TENANTS):
            slug = "lag%d" % k
            tenant_id, token = make_tenant(n1, [{"name": "title", "type": "string", "max": 200}],
                                           slug)
            tenants.append((slug, tenant_id, token))
        for _, tenant_id, _ in tenants:
            harness.wait_until("followers caught up",
                               lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]))
        before = ack_buckets(n1)
        total = int(LAG_RATE * LAG_SECONDS)
        lock = threading.Lock()
        next_i = [0]
        late, created = [], []
        t0 = time.monotonic() + 0.2

        def worker():
            client = Client(n1, "", "")
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= total:
                    return
                due = t0 + i / LAG_RATE
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                late.append(time.monotonic() - due)
                slug, _, token = tenants[i % len(tenants)]
                if client.call("POST", "/api/collections/tickets/records",
                               {"id": "l%d" % i, "title": "lag"}, token=token, slug=slug) == 201:
                    created.append(i)
        threads = [threading.Thread(target=worker) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        time.sleep(1)  # the last acknowledgements
        after = ack_buckets(n1)
        diff = [(b, n - m) for (b, n), (_, m) in zip(after, before)]
        late.sort()
        return (bucket_quantile(diff, 0.5), bucket_quantile(diff, 0.99), diff[-1][1],
                len(created) / elapsed, late[int(0.99 * (len(late) - 1))])
    finally:
        close_cluster(c)


def failover_times():
    c, nodes = new_cluster(("n1", "n2", "n3"), TTL)
    by_id = {n.node_id: n for n in nodes}
    times = []
    try:
        tenant_id, token = make_tenant(by_id["n1"], [{"name": "title", "type": "string",
                                                      "max": 200}])
        leader = by_id["n1"]
        for k in range(KILLS):
            others = [n for n in by_id if n != leader.node_id]
            harness.wait_until("followers caught up",
                               lambda: harness.caught_up(c, tenant_id, others))
            client = Client(leader, token)
            for i in range(20):
                client.call("POST", "/api/collections/tickets/records",
                            {"id": "k%d-%d" % (k, i), "title": "x"})
            killed = time.monotonic()
            leader.proc.kill()
            leader.proc.wait()
            # The first write a follower accepts: ask both until one does.
            clients = [Client(by_id[n], token) for n in others]
            i = 0
            while True:
                accepted = None
                for cl, n in zip(clients, others):
                    i += 1
                    if cl.call("POST", "/api/collections/tickets/records",
                               {"id": "after%d-%d" % (k, i), "title": "x"}) == 201:
                        accepted = n
                        break
                if accepted:
                    break
                if time.monotonic() - killed > 60:
                    sys.exit("no failover within 60 s")
                time.sleep(0.02)
            times.append(time.monotonic() - killed)
            old = leader.node_id
            leader = by_id[accepted]
            by_id[old] = c.start_node(old, TTL, data=os.path.join(c.root, "%s-%d" % (old, k)))
    finally:
        close_cluster(c)
    return times


def fill(node, token, tenant_id, mib, slug="acme"):
    """Records of 60 KB in tenant `slug` (WRITERS at a time) until its
    database and WAL hold `mib` MiB; their size."""
    db = os.path.join(node.data_dir, "tenants", tenant_id, "tenant.db")
    rng = random.Random(SEED)
    body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(60000))

    def size():
        return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
    k = 0
    while size() < mib << 20:
        load(node, token, "POST", 2, lambda w, i: "/api/collections/tickets/records",
             lambda w, i: {"id": "f%d-%d-%d" % (k, w, i), "title": "fill", "body": body}, slug)
        k += 1
    return size() / (1 << 20)


def reopen_round():
    """Median seconds of a write that reopens a REOPEN_MIB MiB tenant, of
    the same write to it open, and the snapshots sent during the reopens."""
    c = None
    try:
        root = tempfile.mkdtemp(prefix="silo-bench-cluster-")
        c = harness.Cluster(root)
        c.etcd.start()
        n1 = c.start_node("n1", dict(TTL, SILO_MAX_OPEN_TENANTS="1"))
        c.start_node("n2", TTL)
        c.start_node("n3", TTL)
        fields = [{"name": "title", "type": "string", "max": 200}, {"name": "body", "type": "text"}]
        acme_id, acme = make_tenant(n1, fields, "acme")
        beta_id, beta = make_tenant(n1, fields, "beta")
        mib = fill(n1, acme, acme_id, REOPEN_MIB)
        for tid in (acme_id, beta_id):
            harness.wait_until("followers caught up",
                               lambda: harness.caught_up(c, tid, ["n2", "n3"]), timeout=300)
        a, b = Client(n1, acme, "acme"), Client(n1, beta, "beta")
        snapshots = harness.e2e.metric(n1, "silo_repl_snapshots_total")
        reopened, open_ = [], []
        for i in range(REOPENS):
            assert b.call("POST", "/api/collections/tickets/records",
                          {"id": "b%d" % i, "title": "x"}) == 201
            t0 = time.monotonic()
            assert a.call("POST", "/api/collections/tickets/records",
                          {"id": "r%d" % i, "title": "x"}) == 201
            reopened.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert a.call("POST", "/api/collections/tickets/records",
                          {"id": "o%d" % i, "title": "x"}) == 201
            open_.append(time.monotonic() - t0)
        sent = harness.e2e.metric(n1, "silo_repl_snapshots_total") - snapshots
        return statistics.median(reopened), statistics.median(open_), sent, mib
    finally:
        if c:
            close_cluster(c)


def catch_up_seconds():
    c, (n1, n2) = new_cluster(("n1", "n2"), TTL)
    try:
        tenant_id, token = make_tenant(n1, [{"name": "title", "type": "string", "max": 200},
                                            {"name": "body", "type": "text"}])
        harness.wait_until("n2 caught up", lambda: harness.caught_up(c, tenant_id, ["n2"]))
        mib = fill(n1, token, tenant_id, CATCHUP_MIB)
        t0 = time.monotonic()
        c.start_node("n3", TTL)
        harness.wait_until("n3 caught up", lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]),
                           timeout=600)
        return time.monotonic() - t0, mib
    finally:
        close_cluster(c)


TAKEOVER_MIB = int(os.environ.get("TAKEOVER_MIB", "64"))


def taken_over_by(c, by_id, tenant_id, token, since):
    """The follower (n2 or n3) that leads the tenant once it accepted a
    write, n1 having gone at `since` (exits after 120 s)."""
    while True:
        entry = harness.tenant_entry(c.status(), tenant_id)
        if entry and entry["primary"] in ("n2", "n3"):
            leader = by_id[entry["primary"]]
            if Client(leader, token).call("POST", "/api/collections/tickets/records",
                                          {"id": "after", "title": "x"}) == 201:
                return leader
        if time.monotonic() - since > 120:
            sys.exit("no takeover within 120 s")
        time.sleep(0.05)


def writing_until_gone(node, token):
    """WRITERS threads creating records on `node` until it is gone, started
    a second ago."""
    def write(w):
        client = Client(node, token)
        for i in range(1 << 30):
            if client.call("POST", "/api/collections/tickets/records",
                           {"id": "w%d-%d" % (w, i), "title": "x"}) is None:
                return  # the node is gone
    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in writers:
        t.start()
    time.sleep(1)
    return writers


def snapshot_bytes_sent(node):
    """The database bytes `node`'s snapshots sent (a binary before
    silo_repl_snapshot_bytes_total sent each one whole to each follower)."""
    sent = harness.e2e.metric(node, "silo_repl_snapshot_bytes_total")
    if sent is not None:
        return sent
    return sum(e["bytes"] * e["followers"] for e in
               (json.loads(line) for line in node.output().splitlines() if line.startswith("{"))
               if e.get("msg") == "replication.snapshot_sent")


def takeover_round(binary):
    """A TAKEOVER_MIB MiB tenant's primary is killed: (seconds from the
    first write the new primary accepted (TAKEOVER_CASE=away: from the
    start of the follower that was away) until the follower that was not
    promoted holds its chain, that write included; snapshots the new
    primary sent; the tenant's MiB), with `binary`."""
    harness.SILO_BIN = harness.e2e.SILO_BIN = binary
    c, nodes = new_cluster(("n1", "n2", "n3"), dict(TTL, SILO_REPLICATION="sync"))
    by_id = {n.node_id: n for n in nodes}
    try:
        fields = [{"name": "title", "type": "string", "max": 200}, {"name": "body", "type": "text"}]
        tenant_id, token = make_tenant(by_id["n1"], fields)
        mib = fill(by_id["n1"], token, tenant_id, TAKEOVER_MIB)
        harness.wait_until("followers caught up",
                           lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]), timeout=300)
        writers = []
        if TAKEOVER_CASE == "under_writes":
            writers = writing_until_gone(by_id["n1"], token)
        elif TAKEOVER_CASE == "away":
            by_id["n3"].proc.kill()
            by_id["n3"].proc.wait()
            harness.wait_until("n3's lease gone", lambda: "n3" not in [
                n["id"] for n in c.status()["nodes"]], timeout=30)
            client = Client(by_id["n1"], token)
            for i in range(AWAY_CREATES):
                client.call("POST", "/api/collections/tickets/records",
                            {"id": "a%d" % i, "title": "x"})
            harness.wait_until("n2 alone in the sync set, caught up", lambda: (
                harness.tenant_entry(c.status(), tenant_id)["sync"] == ["n2"] and
                harness.caught_up(c, tenant_id, ["n2"])), timeout=60)
        killed = time.monotonic()
        by_id["n1"].proc.kill()
        by_id["n1"].proc.wait()
        for t in writers:
            t.join()
        leader = taken_over_by(c, by_id, tenant_id, token, killed)
        taken = time.monotonic()
        other = "n3" if leader.node_id == "n2" else "n2"
        if TAKEOVER_CASE == "away":
            c.start_node("n3", dict(TTL, SILO_REPLICATION="sync"), data=by_id["n3"].data_dir)
            taken = time.monotonic()
        harness.wait_until("the other follower holds the new chain",
                           lambda: harness.caught_up(c, tenant_id, [other]), timeout=600,
                           every=0.02)
        seconds = time.monotonic() - taken
        return seconds, harness.e2e.metric(leader, "silo_repl_snapshots_total"), mib
    finally:
        close_cluster(c)


def restart_round(how, binary):
    """A TAKEOVER_MIB MiB tenant's primary n1 is stopped (`how`: "term",
    SIGTERM; "kill", SIGKILL while idle; "kill_writing", SIGKILL while
    WRITERS clients create records), a follower takes it over, n1 starts
    again on its data, with `binary`: (seconds from that start until n1
    streams the new primary's chain with nothing outstanding, snapshots the
    new primary sent, MiB, snapshot bytes it sent)."""
    harness.SILO_BIN = harness.e2e.SILO_BIN = binary
    c, nodes = new_cluster(("n1", "n2", "n3"), dict(TTL, SILO_REPLICATION="sync"))
    by_id = {n.node_id: n for n in nodes}
    n1 = by_id["n1"]
    try:
        fields = [{"name": "title", "type": "string", "max": 200}, {"name": "body", "type": "text"}]
        tenant_id, token = make_tenant(n1, fields)
        mib = fill(n1, token, tenant_id, TAKEOVER_MIB)
        harness.wait_until("followers caught up",
                           lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]), timeout=300)
        writers = writing_until_gone(n1, token) if how == "kill_writing" else []
        if how == "term":
            n1.stop()
        else:
            n1.proc.kill()
            n1.proc.wait()
        stopped = time.monotonic()
        for t in writers:
            t.join()
        leader = taken_over_by(c, by_id, tenant_id, token, stopped)
        other = "n3" if leader.node_id == "n2" else "n2"
        harness.wait_until("n1's lease gone", lambda: "n1" not in [
            n["id"] for n in c.status()["nodes"]], timeout=30)
        started = time.monotonic()
        c.start_node("n1", dict(TTL, SILO_REPLICATION="sync"), data=n1.data_dir)
        harness.wait_until("n1 holds the new primary's chain",
                           lambda: harness.caught_up(c, tenant_id, ["n1", other]), timeout=600,
                           every=0.02)
        seconds = time.monotonic() - started
        return (seconds, harness.e2e.metric(leader, "silo_repl_snapshots_total"), mib,
                snapshot_bytes_sent(leader))
    finally:
        close_cluster(c)


def restart_result():
    binaries = compared_binaries()
    cases = [("term", "new"), ("kill", "new")] + [("kill_writing", n) for n, _ in binaries]
    path = dict(binaries)
    runs = {case: [] for case in cases}
    for r in range(RUNS):
        for case in cases:
            how, name = case
            runs[case].append(restart_round(how, path[name]))
            seconds, snapshots, mib, sent = runs[case][-1]
            print("round %d restart after %s, %s binary, %.0f MiB tenant: the old primary holds "
                  "the new primary's chain %.2f s after its start (%d snapshots sent, %.2f MiB of "
                  "database pages)" % (r + 1, how, name, mib, seconds, snapshots, sent / 2**20),
                  flush=True)
    harness.SILO_BIN = harness.e2e.SILO_BIN = os.environ["SILO_BIN"]
    med = {case: [statistics.median(x[i] for x in v) for i in (0, 3)] for case, v in runs.items()}
    print("restart, medians: SIGTERM %.2f s, SIGKILL idle %.2f s, SIGKILL under writes %.2f s "
          "(%.2f MiB sent)" % (med[("term", "new")][0], med[("kill", "new")][0],
                               med[("kill_writing", "new")][0],
                               med[("kill_writing", "new")][1] / 2**20), flush=True)
    result = ("restart_mib=%.0f restart_term_s=%.2f restart_term_snapshots=%d restart_kill_s=%.2f "
              "restart_kill_snapshots=%d restart_kill_writing_s=%.2f "
              "restart_kill_writing_sent_mib=%.2f" %
              (runs[("term", "new")][0][2], med[("term", "new")][0],
               max(x[1] for x in runs[("term", "new")]), med[("kill", "new")][0],
               min(x[1] for x in runs[("kill", "new")]), med[("kill_writing", "new")][0],
               med[("kill_writing", "new")][1] / 2**20))
    if ("kill_writing", "base") in med:
        base = med[("kill_writing", "base")]
        print("restart under writes, base binary: %.2f s (%.2f MiB sent); new/base %.2f" %
              (base[0], base[1] / 2**20, med[("kill_writing", "new")][0] / base[0]), flush=True)
        result += (" restart_kill_writing_base_s=%.2f restart_kill_writing_base_sent_mib=%.2f" %
                   (base[0], base[1] / 2**20))
    # A kill between two writes leaves files at a known position (no
    # snapshot): the rounds that took one, alone.
    for name, _ in binaries:
        taken = [x for x in runs[("kill_writing", name)] if x[1] > 0]
        if taken:
            print("restart under writes, %s binary, the %d rounds that sent a snapshot: %.2f s, "
                  "%.2f MiB sent (medians)" %
                  (name, len(taken), statistics.median(x[0] for x in taken),
                   statistics.median(x[3] for x in taken) / 2**20), flush=True)
    return result


RETAIN_TENANTS = int(os.environ.get("RETAIN_TENANTS", "40"))
RETAIN_CREATES = int(os.environ.get("RETAIN_CREATES", "100"))


def rss_mib(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def retained_round(binary):
    """RETAIN_TENANTS tenants led by n1 (async), each sent RETAIN_CREATES
    creates of 60 KB records (WRITERS at a time), with `binary`: (n1's RSS
    growth over the creates in MiB, its silo_repl_retained_bytes in MiB or
    None, MiB of segments sent per tenant)."""
    harness.SILO_BIN = harness.e2e.SILO_BIN = binary
    c, (n1, _, _) = new_cluster(("n1", "n2", "n3"), dict(TTL, SILO_REPLICATION="async"))
    try:
        fields = [{"name": "title", "type": "string", "max": 200}, {"name": "body", "type": "text"}]
        tenants = [make_tenant(n1, fields, "keep%d" % k) + ("keep%d" % k,)
                   for k in range(RETAIN_TENANTS)]
        body = "".join(random.Random(SEED).choice("abcdefghijklmnopqrstuvwxyz ")
                       for _ in range(60000))
        for tenant_id, _, _ in tenants:
            harness.wait_until("followers caught up",
                               lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]))
        before = rss_mib(n1)
        sent_before = harness.e2e.metric(n1, "silo_repl_bytes_total")
        for _, token, slug in tenants:
            def worker(w):
                client = Client(n1, token, slug)
                for i in range(w, RETAIN_CREATES, WRITERS):
                    status = client.call("POST", "/api/collections/tickets/records",
                                         {"id": "k%d" % i, "title": "keep", "body": body})
                    assert status == 201, status
            threads = [threading.Thread(target=worker, args=(w,)) for w in range(WRITERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        held = harness.e2e.metric(n1, "silo_repl_retained_bytes")
        sent = harness.e2e.metric(n1, "silo_repl_bytes_total") - sent_before
        return (rss_mib(n1) - before, held / 2**20 if held is not None else None,
                sent / 2**20 / RETAIN_TENANTS)
    finally:
        close_cluster(c)


def retained_result():
    """retained_round for the new binary (and BASE_SILO's, interleaved),
    RUNS rounds; the RESULT fields."""
    def say(r, name, result):
        grown, held, sent = result
        return ("round %d retained segments, %s binary, %d tenants led by one node, %.1f MiB of "
                "segments sent for each: its RSS grew %.0f MiB; segments kept %s" %
                (r + 1, name, RETAIN_TENANTS, sent, grown,
                 "%.0f MiB" % held if held is not None else "(not reported)"))
    runs = interleaved_rounds(retained_round, say)
    med = {n: statistics.median(x[0] for x in v) for n, v in runs.items()}
    result = "retain_tenants=%d retain_rss_growth_mib=%.0f retain_kept_mib=%.0f" % (
        RETAIN_TENANTS, med["new"], statistics.median(x[1] for x in runs["new"]))
    if "base" in med:
        print("retained segments, medians: RSS growth new %.0f MiB, base %.0f MiB" %
              (med["new"], med["base"]), flush=True)
        result += " retain_rss_growth_base_mib=%.0f" % med["base"]
    return result


def compared_binaries():
    """[(name, path)]: BASE_SILO's as "base" first when given, then the new."""
    binaries = [("new", os.environ["SILO_BIN"])]
    if os.environ.get("BASE_SILO"):
        binaries.insert(0, ("base", os.path.abspath(os.environ["BASE_SILO"])))
    return binaries


def takeover_rounds():
    """takeover_round for the new binary (and BASE_SILO's, interleaved),
    RUNS rounds; {name: [(seconds, snapshots, mib), ...]}."""
    def say(r, name, result):
        seconds, snapshots, mib = result
        return ("round %d takeover (%s), %s binary, %.0f MiB tenant: the other follower holds "
                "the new primary's chain %.2f s after %s (%d snapshots sent)" %
                (r + 1, TAKEOVER_CASE, name, mib, seconds,
                 "its own start" if TAKEOVER_CASE == "away" else "the first write", snapshots))
    return interleaved_rounds(takeover_round, say)


def interleaved_rounds(round_of, say):
    """RUNS rounds of round_of(binary) for the new binary and BASE_SILO's,
    alternating, each result printed as say(round, name, result) says;
    {name: [result, ...]}."""
    binaries = compared_binaries()
    runs = {name: [] for name, _ in binaries}
    for r in range(RUNS):
        for name, binary in binaries:
            runs[name].append(round_of(binary))
            print(say(r, name, runs[name][-1]), flush=True)
    harness.SILO_BIN = harness.e2e.SILO_BIN = os.environ["SILO_BIN"]
    return runs


TAKEOVER_CASE = os.environ.get("TAKEOVER_CASE", "caught_up")
AWAY_CREATES = int(os.environ.get("AWAY_CREATES", "50"))
ETCD_TENANTS = int(os.environ.get("ETCD_TENANTS", "2000"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "10"))


def etcd_load_round(binary):
    """(etcd CPU % of a core over IDLE_SECONDS of an idle cluster of
    `binary` with ETCD_TENANTS other tenants, etcd CPU ms of one full list
    of /silo/t/ then)."""
    harness.SILO_BIN = harness.e2e.SILO_BIN = binary
    c, nodes = new_cluster(("n1", "n2", "n3"), dict(TTL, SILO_REPLICATION="sync"))
    try:
        tenant_id, token = make_tenant(nodes[0], [{"name": "title", "type": "string",
                                                   "max": 200}])
        harness.wait_until("followers caught up",
                           lambda: harness.caught_up(c, tenant_id, ["n2", "n3"]))

        def etcd(path, body):
            req = urllib.request.Request(c.etcd.clients[0] + path, data=json.dumps(body).encode())
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.read()
        b64 = lambda text: base64.b64encode(text.encode()).decode()
        ops = []
        for i in range(ETCD_TENANTS):
            other = "%032x" % (i + 1)
            for key, value in (("/silo/t/%s/primary" % other, '{"node":"n9","url":"https://x"}'),
                               ("/silo/t/%s/pos/n2" % other,
                                '{"seq":123456,"lineage":"%s"}' % (other * 2)),
                               ("/silo/t/%s/pos/n3" % other,
                                '{"seq":123456,"lineage":"%s"}' % (other * 2)),
                               ("/silo/t/%s/sync" % other, '{"term":1,"nodes":["n2","n3"]}'),
                               ("/silo/t/%s/chain" % other, '{"term":1,"lineage":"%s"}' % (
                                   other * 2)),
                               ("/silo/slugs/other%d" % i, '{"id":"%s"}' % other)):
                ops.append({"request_put": {"key": b64(key), "value": b64(value)}})
        for k in range(0, len(ops), 100):
            etcd("/v3/kv/txn", {"success": ops[k:k + 100]})
        time.sleep(3)  # every node has read them
        etcd_cpu = lambda: sum(cpu_seconds(p.pid) for p in c.etcd.procs)
        before = etcd_cpu()
        time.sleep(IDLE_SECONDS)
        idle = (etcd_cpu() - before) * 100 / IDLE_SECONDS
        lists = 5
        before = etcd_cpu()
        for _ in range(lists):
            etcd("/v3/kv/range", {"key": b64("/silo/t/"), "range_end": b64("/silo/t0")})
        full_ms = (etcd_cpu() - before) * 1e3 / lists
        status = Client(nodes[0], token).call("POST", "/api/collections/tickets/records",
                                              {"id": "after", "title": "still writable"})
        assert status == 201, status
        return idle, full_ms
    finally:
        close_cluster(c)


def takeover_result(runs):
    new = runs["new"]
    line = ("takeover_mib=%.0f takeover_s=%.2f takeover_snapshots=%d" %
            (new[0][2], statistics.median(x[0] for x in new), max(x[1] for x in new)))
    if "base" in runs:
        print("takeover, medians: new %.2f s, base %.2f s" %
              (statistics.median(x[0] for x in new),
               statistics.median(x[0] for x in runs["base"])), flush=True)
    return line


def throughput_rounds():
    """RUNS rounds of each mode, in each placement of the followers' data
    (None: beside the primary's; then each of FOLLOWER_DIRS), interleaved,
    and with BASE_SILO, each of them with that binary too. Per placement,
    per mode: the medians of throughput_round's figures (the new binary's;
    BASE_SILO's are printed)."""
    modes = ("off", "async", "sync")
    placements = [None] + FOLLOWER_DIRS
    binaries = compared_binaries()
    results = {(b, p): {m: [] for m in modes} for b, _ in binaries for p in placements}
    for r in range(RUNS):
        for p in placements:
            for m in modes:
                for name, binary in binaries:
                    harness.SILO_BIN = harness.e2e.SILO_BIN = binary
                    got = throughput_round(m, p)
                    results[(name, p)][m].append(got)
                    print("round %d %s%s%s: %.0f creates/s, %.0f reads/s, %.0f bytes/create, "
                          "%d MiB upload %.2f s (resumable, %d MiB PATCHes: %.2f s); CPU ms per "
                          "create: primary %.2f, followers %.2f, etcd %.2f, client %.2f" %
                          ((r + 1, m, " (followers' data under %s)" % p if p else "",
                            ", %s binary" % name if len(binaries) > 1 else "") + got[:3] +
                           (UPLOAD_MIB,) + got[3:4] + (TUS_PATCH_MIB,) + got[4:5] + got[5]),
                          flush=True)
    harness.SILO_BIN = harness.e2e.SILO_BIN = os.environ["SILO_BIN"]
    med = {}
    for name, _ in binaries:
        for p in placements:
            runs = results[(name, p)]
            per_mode = {m: [statistics.median(x[i] for x in runs[m]) for i in range(5)] +
                        [statistics.median(x[5][0] for x in runs[m])] for m in modes}
            off, on_async, on_sync = (per_mode[m] for m in modes)
            print("medians%s%s: creates/s off %.0f, async %.0f (%.2f of off), sync %.0f (%.2f); "
                  "primary CPU ms per create off %.2f, async %.2f, sync %.2f (off's over "
                  "async's: %.2f, over sync's: %.2f)" %
                  (" (followers' data under %s)" % p if p else "",
                   ", %s binary" % name if len(binaries) > 1 else "", off[0], on_async[0],
                   on_async[0] / off[0], on_sync[0], on_sync[0] / off[0], off[5], on_async[5],
                   on_sync[5], off[5] / on_async[5], off[5] / on_sync[5]), flush=True)
            if name == "new":
                med[p] = per_mode
    return med


def main():
    if os.environ.get("ONLY") == "throughput":  # this part alone
        med = throughput_rounds()[None]
        print("RESULT off_cps=%.1f async_cps=%.1f sync_cps=%.1f" %
              (med["off"][0], med["async"][0], med["sync"][0]))
        return
    if os.environ.get("ONLY") == "takeover":  # this part alone
        print("RESULT " + takeover_result(takeover_rounds()))
        return
    if os.environ.get("ONLY") == "restart":  # this part alone
        print("RESULT " + restart_result())
        return
    if os.environ.get("ONLY") == "retained":  # this part alone
        print("RESULT " + retained_result())
        return
    med = throughput_rounds()[None]
    lag_runs = {m: [] for m in ("async", "sync")}
    for r in range(RUNS):
        for m in lag_runs:
            lag_runs[m].append(lag_round(m))
            x = lag_runs[m][-1]
            print("round %d replica lag, %s, open loop %.0f creates/s over %d tenants: p50 %.2f ms, "
                  "p99 %.2f ms (%d acknowledgements; %.0f creates/s answered; sends late by p99 "
                  "%.1f ms)" % (r + 1, m, LAG_RATE, LAG_TENANTS, x[0] * 1e3, x[1] * 1e3, x[2],
                                x[3], x[4] * 1e3), flush=True)
    lag = {m: [statistics.median(x[i] for x in v) for i in range(5)] for m, v in lag_runs.items()}
    binaries = compared_binaries()
    etcd_runs = {name: [] for name, _ in binaries}
    for r in range(RUNS):
        for name, binary in binaries:
            etcd_runs[name].append(etcd_load_round(binary))
            idle, full_ms = etcd_runs[name][-1]
            print("round %d etcd load, %s binary, idle cluster, %d other tenants: etcd %.1f %% of a "
                  "core; one full list of /silo/t/ %.1f ms of etcd CPU (4 a second on each of 3 "
                  "nodes: %.0f %% of a core)" % (r + 1, name, ETCD_TENANTS, idle, full_ms,
                                                  full_ms * 12 / 10), flush=True)
    harness.SILO_BIN = harness.e2e.SILO_BIN = os.environ["SILO_BIN"]
    etcd_med = {n: [statistics.median(x[i] for x in v) for i in range(2)]
                for n, v in etcd_runs.items()}
    if "base" in etcd_med:
        print("etcd load, medians: new %.1f %%, base %.1f %% of a core (%d other tenants)" %
              (etcd_med["new"][0], etcd_med["base"][0], ETCD_TENANTS), flush=True)
    times = failover_times()
    print("failover times: " + ", ".join("%.2f s" % t for t in times), flush=True)
    seconds, mib = catch_up_seconds()
    print("catch-up of a %.0f MiB tenant: %.1f s" % (mib, seconds), flush=True)
    takeover = takeover_result(takeover_rounds())
    restart = restart_result()
    retained = retained_result()
    reopen_s, open_s, reopen_snapshots, reopen_mib = reopen_round()
    print("write reopening a %.0f MiB tenant: %.1f ms (open: %.1f ms), %d snapshots in %d reopens"
          % (reopen_mib, reopen_s * 1e3, open_s * 1e3, reopen_snapshots, REOPENS), flush=True)
    print("RESULT off_cps=%.1f async_cps=%.1f sync_cps=%.1f off_rps=%.1f sync_rps=%.1f "
          "bytes_per_create=%.0f failover_p50_s=%.2f failover_max_s=%.2f catchup_s=%.1f "
          "catchup_mib=%.0f lag_async_p50_ms=%.2f lag_async_p99_ms=%.2f lag_sync_p50_ms=%.2f "
          "lag_sync_p99_ms=%.2f lag_rate=%.0f lag_answered_cps=%.0f upload_mib=%d "
          "upload_off_s=%.2f upload_async_s=%.2f upload_sync_s=%.2f tus_off_s=%.2f "
          "tus_async_s=%.2f tus_sync_s=%.2f reopen_ms=%.1f "
          "reopen_open_ms=%.1f reopen_snapshots=%d reopen_mib=%.0f etcd_tenants=%d "
          "etcd_idle_pct=%.1f etcd_full_list_ms=%.1f %s %s %s" %
          (med["off"][0], med["async"][0], med["sync"][0], med["off"][1], med["sync"][1],
           med["sync"][2], statistics.median(times), max(times), seconds, mib,
           lag["async"][0] * 1e3, lag["async"][1] * 1e3, lag["sync"][0] * 1e3,
           lag["sync"][1] * 1e3, LAG_RATE, lag["async"][3], UPLOAD_MIB, med["off"][3],
           med["async"][3], med["sync"][3], med["off"][4], med["async"][4], med["sync"][4],
           reopen_s * 1e3, open_s * 1e3, reopen_snapshots,
           reopen_mib, ETCD_TENANTS, etcd_med["new"][0], etcd_med["new"][1], takeover, restart,
           retained))


if __name__ == "__main__":
    main()
