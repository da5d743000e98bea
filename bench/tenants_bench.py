"""make bench-tenants (issue 23): many tenants on one node.

Creates SCALE_TENANTS tenants (default 10,000) through the operator API, each
with an API token, then restarts the server (every tenant database closed)
and touches each tenant once, in a seeded random order, with one
authenticated read (GET /api/collections): the cold read. Then reads the
most recently touched tenants again: the warm read. Reports
  - creation rate over the first 2,000 and over all (tenants/s),
  - cold read p50 and p99, warm read p50 (ms), next to /healthz p50 on the
    same kept-alive connection (the client's and TLS's share of a request),
  - server RSS after creation, after the restart, and after touching all,
  - disk per empty tenant after a clean stop (its directory, and the
    keyring's share).
One run: the cold-read figures are percentiles of SCALE_TENANTS samples.
The server runs with SILO_SYNCHRONOUS=full (the default) and the default
SILO_MAX_OPEN_TENANTS unless the environment sets it.

Usage: tenants_bench.py <silo binary>   (env: SCALE_TENANTS, SEED)"""
import datetime
import http.client
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

SILO = sys.argv[1] if len(sys.argv) > 1 else "build/silo"
N = int(os.environ.get("SCALE_TENANTS", "10000"))
SEED = int(os.environ.get("SEED", "23"))
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE  # the development certificate of the server this started


class Server:
    def __init__(self, data):
        self.data = data
        self.proc = None

    def start(self):
        info = os.path.join(self.data, "platform", "server.json")
        if os.path.exists(info):
            os.remove(info)
        env = dict(os.environ, SILO_DATA_DIR=self.data, SILO_LISTEN="127.0.0.1:0",
                   SILO_OPERATOR_LISTEN="127.0.0.1:0", SILO_API_RATE_PER_MINUTE="1000000",
                   SILO_OPERATOR_ACCESS="allowed", SILO_BACKUP_SCHEDULE="off")
        self.log = open(os.path.join(os.path.dirname(self.data), "server.log"), "ab")
        # setpriv: the server dies with this process, even one killed without
        # reaching stop() (as tests/e2e/conftest.py's DIE_WITH_PARENT).
        self.proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", SILO, "serve"],
                                     env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with open(info) as f:
                    j = json.load(f)
                break
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.time() > deadline:
                    sys.exit("silo serve did not start")
                time.sleep(0.05)
        self.listen, self.operator = j["listen"], j["operator_listen"]
        with open(os.path.join(self.data, "dev", "operator.token")) as f:
            self.operator_token = f.read().strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()

    def rss_mib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def operator_call(conn, server, method, path, body):
    conn.request(method, path, body=json.dumps(body), headers={
        "Authorization": "Bearer " + server.operator_token, "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status // 100 != 2:
        sys.exit("%s %s: %d %s" % (method, path, r.status, data[:200]))
    return json.loads(data)


def timed_get(conn, path, headers=None):
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    r.read()
    ms = (time.perf_counter() - t0) * 1000
    if r.status != 200:
        sys.exit("GET %s: %d" % (path, r.status))
    return ms


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def main():
    work = tempfile.mkdtemp(prefix="silo-tenants-bench-")
    data = os.path.join(work, "d")
    server = Server(data)
    try:
        server.start()
        op = http.client.HTTPConnection(server.operator, timeout=60)
        expires = (datetime.datetime.now(datetime.timezone.utc) +
                   datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        tokens = {}
        t0 = time.perf_counter()
        first_2000 = None
        for i in range(N):
            slug = "t%05d" % i
            operator_call(op, server, "POST", "/v1/tenants",
                          {"slug": slug, "name": slug, "owner_email": "owner@%s.test" % slug})
            if i + 1 == min(2000, N):
                first_2000 = (i + 1) / (time.perf_counter() - t0)
            if (i + 1) % 1000 == 0:
                print("created %d (%.0f/s)" % (i + 1, (i + 1) / (time.perf_counter() - t0)),
                      file=sys.stderr, flush=True)
        create_all = N / (time.perf_counter() - t0)
        rss_created = server.rss_mib()
        for i in range(N):
            slug = "t%05d" % i
            tokens[slug] = operator_call(op, server, "POST", "/v1/tenants/%s/tokens" % slug, {
                "name": "bench", "permissions": ["collections.read"], "expires_at": expires})["token"]
        op.close()
        server.stop()  # every tenant database closed (and checkpointed)
        disk_tenant = du(os.path.join(data, "tenants")) / N
        keyring = os.path.join(data, "platform", "keyring")
        # Format 1 keeps every key in the header file; format 2 one file per
        # key in keyring.d/ (counted in disk blocks, as the tenants are).
        disk_keyring = (du(keyring + ".d") +
                        (os.path.getsize(keyring) if os.path.exists(keyring) else 0)) / N
        server.start()
        rss_restart = server.rss_mib()
        conn = http.client.HTTPSConnection(server.listen, context=CTX, timeout=60)
        healthz = [timed_get(conn, "/healthz") for _ in range(2000)]
        order = list(tokens)
        random.Random(SEED).shuffle(order)
        cold = [timed_get(conn, "/t/%s/api/collections" % slug,
                          {"Authorization": "Bearer " + tokens[slug]}) for slug in order]
        rss_touched = server.rss_mib()
        recent = order[-100:]
        warm = [timed_get(conn, "/t/%s/api/collections" % slug,
                          {"Authorization": "Bearer " + tokens[slug]})
                for _ in range(10) for slug in recent]
        conn.close()
        server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("tenants %d, seed %d, SILO_MAX_OPEN_TENANTS %s" % (
        N, SEED, os.environ.get("SILO_MAX_OPEN_TENANTS", "256 (default)")))
    print("creation: %.0f/s over the first %d, %.0f/s over %d" % (
        first_2000, min(2000, N), create_all, N))
    print("cold read p50 %.2f ms, p99 %.2f ms; warm read p50 %.2f ms; /healthz p50 %.2f ms" % (
        pct(cold, 50), pct(cold, 99), pct(warm, 50), pct(healthz, 50)))
    print("RSS: %.0f MiB after creation, %.0f after a restart, %.0f after touching all" % (
        rss_created, rss_restart, rss_touched))
    print("disk per empty tenant: %.1f KiB (+ %.0f B of keyring)" % (
        disk_tenant / 1024, disk_keyring))
    print("RESULT create_first_rps=%.1f create_all_rps=%.1f cold_p50_ms=%.3f cold_p99_ms=%.3f "
          "warm_p50_ms=%.3f healthz_p50_ms=%.3f rss_created_mib=%.1f rss_restart_mib=%.1f "
          "rss_touched_mib=%.1f disk_tenant_kib=%.1f disk_keyring_b=%.0f tenants=%d" % (
              first_2000, create_all, pct(cold, 50), pct(cold, 99), pct(warm, 50),
              pct(healthz, 50), rss_created, rss_restart, rss_touched, disk_tenant / 1024,
              disk_keyring, N))


if __name__ == "__main__":
    main()
