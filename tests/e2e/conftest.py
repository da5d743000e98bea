"""Black-box harness: runs the real `silo` binary over real TLS on 127.0.0.1.

Every server gets a fresh data directory, port 0 for both listeners (the bound
ports are read back from <data>/platform/server.json), short timeouts, and is
stopped (SIGTERM, then SIGKILL) when the test ends.
"""
import datetime
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import requests
import urllib3

from openapi_check import Checker

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

# An API token expiry inside the default SILO_TOKEN_MAX_DAYS (365).
TOKEN_EXPIRES = (datetime.datetime.now(datetime.timezone.utc) +
                 datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")

SILO_BIN = os.environ.get("SILO_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "silo")


# Every answer a test receives through `requests` is checked against the
# OpenAPI documents (openapi_check.py): an undocumented status, media type or
# body shape fails the test that got it.
_contract = None


def contract():
    global _contract
    if _contract is None:
        _contract = Checker(SILO_BIN)
    return _contract


_send = requests.Session.send


def _checked_send(self, request, **kw):
    response = _send(self, request, **kw)
    contract().check(response, bool(kw.get("stream")))
    return response


requests.Session.send = _checked_send


# Under pytest-xdist (make e2e runs two workers) each worker checks its own
# answers: it hands the operations it saw to the controller, which reports
# what no worker called.
_worker_seen = []


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and _contract is not None:
        workeroutput["openapi_seen"] = json.dumps(_contract.seen())


def pytest_testnodedown(node, error):
    seen = getattr(node, "workeroutput", {}).get("openapi_seen")
    if seen:
        _worker_seen.append(json.loads(seen))


def pytest_terminal_summary(terminalreporter):
    if _contract is None and not _worker_seen:
        return
    for seen in _worker_seen:
        contract().add_seen(seen)
    missed = contract().unexercised()
    terminalreporter.write_line("openapi: %d operations no test called%s" % (
        len(missed), (": " + ", ".join(missed)) if missed else ""))


def insecure_client_context():
    """A TLS client context that accepts the development self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_connect(port, timeout=10):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return insecure_client_context().wrap_socket(raw)


# Every server the harnesses start dies with the process that started it,
# even one killed with no teardown (SIGKILL, an OOM kill): setpriv(1) sets
# the parent-death signal, then execs the server under the same pid. The
# signal comes when the *thread* that started the server ends, so servers
# are started from a test's own thread (pytest's, which lives as long as
# the process), never from a helper thread that ends first.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


class Silo:
    def __init__(self, data_dir, extra_env=None, preexec=None):
        self.data_dir = data_dir
        self.preexec = preexec  # run in the child before exec (resource limits)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SILO_DATA_DIR": data_dir,
            "SILO_LISTEN": "127.0.0.1:0",
            # Tests call faster than any client should; the per-credential
            # limit has its own test (test_asvs_l2.py), which sets it.
            "SILO_API_RATE_PER_MINUTE": "1000000",
            # The tests mint operator tokens into their tenants (a development
            # platform's setting); the lockbox, which a production platform
            # keeps, has its own tests (test_lockbox.py), which set approval.
            "SILO_OPERATOR_ACCESS": "allowed",
            "SILO_OPERATOR_LISTEN": "127.0.0.1:0",
            "SILO_READ_TIMEOUT_MS": "1500",
            "SILO_IDLE_TIMEOUT_MS": "3000",
            "SILO_DRAIN_TIMEOUT_MS": "5000",
            # The daily backup runs at 02:00 UTC (a restore drill follows on
            # Sundays): a test running then would find backup events in an
            # audit log it checks. The schedule's own test turns it on.
            "SILO_BACKUP_SCHEDULE": "off",
        }
        if extra_env:
            self.env.update(extra_env)
        self.proc = None
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="silo-log-"), "server.log")

    def start(self, wait=True):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*DIE_WITH_PARENT, SILO_BIN, "serve"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=self.preexec)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        info_path = os.path.join(self.data_dir, "platform", "server.json")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("silo exited early:\n" + self.output())
            if os.path.exists(info_path):
                with open(info_path) as f:
                    try:
                        info = json.load(f)
                    except ValueError:
                        info = None
                if info and info.get("pid") == self.proc.pid:
                    self.listen = info["listen"]
                    self.operator_listen = info["operator_listen"]
                    self.port = int(self.listen.rsplit(":", 1)[1])
                    self.operator_port = int(self.operator_listen.rsplit(":", 1)[1])
                    return
            time.sleep(0.05)
        raise RuntimeError("silo did not become ready:\n" + self.output())

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def operator_url(self):
        return "http://127.0.0.1:%d" % self.operator_port

    def get(self, path, **kw):
        kw.setdefault("verify", False)
        kw.setdefault("timeout", 10)
        return requests.get(self.url + path, **kw)

    def operator_token(self):
        with open(os.path.join(self.data_dir, "dev", "operator.token")) as f:
            return f.read().strip()

    def cli(self, *args, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        done = subprocess.run([SILO_BIN, *args], env=e, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        report = sanitizer_report(done.stderr)
        assert report is None, report
        return done

    def tls_socket(self, timeout=10):
        return tls_connect(self.port, timeout)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def metric(silo, name):
    """One value of a server's /metrics (Prometheus text), or None."""
    r = requests.get(silo.operator_url + "/metrics",
                     headers={"Authorization": "Bearer " + silo.operator_token()}, timeout=10)
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.text, re.M)
    return float(m.group(1)) if m else None


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def sanitizer_report(text):
    """The first sanitizer report in a process's output, or None."""
    for marker in SANITIZER_MARKERS:
        at = text.find(marker)
        if at >= 0:
            return text[max(0, at - 200):at + 2000]
    return None


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="silo-e2e-")
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def make_silo(data_dir):
    started = []

    def make(extra_env=None, data=None, wait=True, preexec=None):
        s = Silo(data or data_dir, extra_env, preexec)
        started.append(s)
        return s.start(wait=wait)

    yield make
    problems = []
    for s in started:
        running = s.proc is not None and s.proc.poll() is None
        try:
            rc = s.stop()
        except Exception as e:
            problems.append("did not stop on SIGTERM: %s" % e)
            continue
        if running and rc != 0:
            problems.append("exit status %s after SIGTERM" % rc)
        report = sanitizer_report(s.output())
        if report:
            problems.append(report)
    # Why: a sanitizer build (make check-asan) reports leaks and undefined
    # behaviour in the server's output, often only at exit; a test that passed
    # while the server reported one has not passed.
    assert not problems, "\n".join(problems)


@pytest.fixture
def silo(make_silo):
    return make_silo()


def raw_exchange(silo, payload, read_timeout=5):
    """Sends raw bytes over TLS; returns what came back until close or timeout."""
    s = silo.tls_socket(timeout=read_timeout)
    try:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (socket.timeout, ssl.SSLError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)
    finally:
        s.close()


def _complete(buf):
    head, _, body = buf.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return True


def parse_status(raw):
    line = raw.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def parse_headers(raw):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    out = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out
