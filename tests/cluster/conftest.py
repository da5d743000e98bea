"""Cluster harness: a real etcd and three `silo serve` nodes on 127.0.0.1.

Each node has its own data directory, port 0 for every listener (the public
and operator ports come back through platform/server.json, the node link's
through etcd), the same master key (generated here, passed in the
environment) and a node certificate signed by a CA made here with openssl.
The harness stops what it started, and only that: SIGTERM, then SIGKILL.
"""
import base64
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

E2E = os.path.join(os.path.dirname(__file__), "..", "e2e")
sys.path.insert(0, E2E)
_spec = importlib.util.spec_from_file_location("e2e_harness", os.path.join(E2E, "conftest.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

SILO_BIN = e2e.SILO_BIN
TTL_S = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_call(endpoint, path, body, timeout=1):
    """POSTs JSON to etcd's gateway with urllib (not requests: every
    `requests` answer is checked against Silo's OpenAPI documents, see
    e2e/conftest.py). The answer's JSON, or None when it did not answer."""
    try:
        with urllib.request.urlopen(endpoint + path, json.dumps(body).encode(),
                                    timeout=timeout) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except OSError:
        return None


class Etcd:
    """etcd (Debian's etcd-server): `members` members on free loopback
    ports, forming one cluster. `endpoint` lists every member's client URL,
    as SILO_ETCD_ENDPOINTS takes them."""

    def __init__(self, root, members=1):
        self.dir = os.path.join(root, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        self.members = members
        self.procs = []

    def start(self):
        clients = ["http://127.0.0.1:%d" % free_port() for _ in range(self.members)]
        peers = ["http://127.0.0.1:%d" % free_port() for _ in range(self.members)]
        self.clients = clients
        self.endpoint = ",".join(clients)
        initial = ",".join("e%d=%s" % (i, p) for i, p in enumerate(peers))
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.args = [
            ["etcd", "--name", "e%d" % i, "--data-dir", os.path.join(self.dir, "data%d" % i),
             "--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
             "--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
             "--initial-cluster", initial, "--log-level", "error"]
            for i in range(self.members)]
        self.procs = [self._launch(i) for i in range(self.members)]
        self._wait()
        return self

    def _launch(self, i):
        return subprocess.Popen([*e2e.DIE_WITH_PARENT, *self.args[i]], stdout=self.log,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def restart(self):
        """Starts again every member that was killed, on its data directory
        and ports (what etcd's operator does after an outage)."""
        for i in range(self.members):
            if self.procs[i].poll() is not None:
                self.procs[i] = self._launch(i)
        self._wait()

    def _wait(self):
        clients = self.clients
        deadline = time.time() + 30
        ping = {"key": base64.b64encode(b"/ping").decode()}
        waiting = list(clients)
        while waiting and time.time() < deadline:
            assert all(p.poll() is None for p in self.procs), "etcd exited early"
            waiting = [c for c in waiting if etcd_call(c, "/v3/kv/range", ping) is None]
            time.sleep(0.1)
        if waiting:
            raise RuntimeError("etcd did not answer in 30 s")

    def leader(self):
        """The index of the member that leads etcd's own consensus now."""
        for i, c in enumerate(self.clients):
            if self.procs[i].poll() is not None:
                continue
            st = etcd_call(c, "/v3/maintenance/status", {})
            if st and st.get("leader") == st.get("header", {}).get("member_id"):
                return i
        return None

    def kill(self, i):
        if self.procs[i].poll() is None:
            self.procs[i].kill()
            self.procs[i].wait()

    def stop(self):
        for i in range(len(self.procs)):
            self.kill(i)


def make_certs(d):
    """A cluster CA and a certificate for each of n1..n4 naming 127.0.0.1."""
    def run(cmd):
        subprocess.run(cmd, shell=True, check=True, cwd=d, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
        "-out ca.pem -days 2 -subj /CN=silo-test-ca")
    for n in ("n1", "n2", "n3", "n4"):
        run("printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > %s.ext && "
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
            "-out %s.csr -subj /CN=%s && openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
            "-CAcreateserial -days 2 -extfile %s.ext -out %s.pem" % ((n,) * 7))


class Cluster:
    def __init__(self, root, etcd_members=1):
        self.root = root
        self.certs = os.path.join(root, "certs")
        os.makedirs(self.certs)
        make_certs(self.certs)
        self.master_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.etcd = Etcd(root, etcd_members)
        self.nodes = []

    def node_env(self, node_id, extra=None):
        env = {
            "SILO_MASTER_KEY": self.master_key,
            "SILO_NODE_ID": node_id,
            "SILO_ETCD_ENDPOINTS": self.etcd.endpoint,
            "SILO_LEASE_TTL_S": str(TTL_S),
            "SILO_CLUSTER_LISTEN": "127.0.0.1:0",
            "SILO_CLUSTER_TLS_CERT": os.path.join(self.certs, node_id + ".pem"),
            "SILO_CLUSTER_TLS_KEY": os.path.join(self.certs, node_id + ".key"),
            "SILO_CLUSTER_TLS_CA": os.path.join(self.certs, "ca.pem"),
        }
        env.update(extra or {})
        return env

    def start_node(self, node_id, extra=None, wait=True, data=None, keyless=False):
        """A node; `keyless` starts it with SILO_KEYLESS=1 and no master key
        (no HTTP: it is ready once etcd lists it)."""
        data = data or os.path.join(self.root, node_id)
        env = self.node_env(node_id, extra)
        if keyless:
            del env["SILO_MASTER_KEY"]
            env["SILO_KEYLESS"] = "1"
        s = e2e.Silo(data, env)
        s.node_id = node_id
        self.nodes.append(s)
        s.start(wait=wait and not keyless)
        if keyless and wait:
            wait_until("%s announced" % node_id,
                       lambda: s.proc.poll() is None and
                       node_id in [n["id"] for n in self.status()["nodes"]])
        return s

    def status(self):
        r = subprocess.run([SILO_BIN, "cluster", "status", "--json"],
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                "SILO_ETCD_ENDPOINTS": self.etcd.endpoint},
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def stop(self):
        problems = []
        for s in self.nodes:
            running = s.proc is not None and s.proc.poll() is None
            try:
                rc = s.stop()
            except Exception as e:  # did not stop on SIGTERM
                problems.append("%s did not stop: %s" % (s.node_id, e))
                continue
            if running and rc != 0:
                problems.append("%s: exit status %s after SIGTERM" % (s.node_id, rc))
            report = e2e.sanitizer_report(s.output())
            if report:
                problems.append(report)
        self.etcd.stop()
        return problems


def wait_until(what, predicate, timeout=30, every=0.1):
    """Polls `predicate` until it returns a true value (returned), or fails."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise AssertionError("not within %d s: %s" % (timeout, what))
        time.sleep(every)


PERMS = ["collections.manage", "records.*.create", "records.*.read", "audit.read"]


def make_tenant(node, slug):
    r = node.cli("--json", "tenant", "create", slug)
    assert r.returncode == 0, r.stderr
    tenant = json.loads(r.stdout)
    args = ["tenant", "token", slug, "--name", "t", "--expires", e2e.TOKEN_EXPIRES]
    for p in PERMS:
        args += ["--permission", p]

    def issued():
        # A node at its open-tenant limit (SILO_MAX_OPEN_TENANTS) answers 503
        # until another tenant has closed: a client tries again.
        r = node.cli(*args)
        assert r.returncode == 0 or "(503)" in r.stderr, r.stderr
        return r if r.returncode == 0 else None

    r = wait_until("a token for " + slug, issued)
    return tenant["id"], r.stdout.strip()


def tenant_entry(status, tenant_id):
    for t in status["tenants"]:
        if t["id"] == tenant_id:
            return t
    return None


def caught_up(cluster, tenant_id, followers, after_seq=0):
    """The tenant's status entry once exactly `followers` stream it with
    nothing outstanding, its last segment is past `after_seq` and, in sync
    mode, every one that could take over is in its sync set."""
    status = cluster.status()
    t = tenant_entry(status, tenant_id)
    if t is None or t["seq"] <= after_seq:
        return None
    states = {f["node"]: f for f in t["followers"]}
    if sorted(states) != sorted(followers):
        return None
    if not all(f["state"] == "streaming" and f["lag"] == 0 for f in states.values()):
        return None
    keyless = {n["id"] for n in status["nodes"] if n["keyless"]}
    if t["sync"] is not None and not set(followers) - keyless <= set(t["sync"]):
        return None
    return t


def _cluster(etcd_members):
    root = tempfile.mkdtemp(prefix="silo-cluster-")
    c = Cluster(root, etcd_members)
    c.etcd.start()
    yield c
    problems = c.stop()
    shutil.rmtree(root, ignore_errors=True)
    assert not problems, "\n".join(problems)


@pytest.fixture
def cluster():
    yield from _cluster(1)


@pytest.fixture
def cluster_etcd3():
    """The same, with an etcd of three members."""
    yield from _cluster(3)
