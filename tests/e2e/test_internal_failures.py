"""Internal failures answer a generic problem; the cause goes to the log only.

A Status has a public message and a private cause (src/base/status.h). These
tests break the server's storage for real and check both halves: the caller
gets a bare 5xx problem with a request id and none of SQLite's words, no path
and no key material, while the server's log has the cause under that same
request id."""
import fcntl
import json
import os
import resource
import signal

from test_records import Api, tenant, token

# What an answer must never carry, whatever broke (lower-cased).
PRIVATE_WORDS = ("sqlite", "tenant.db", "/tenants/", "not a database", "disk i/o",
                 "database disk image", "authentication", "constraint", "errno", "no space",
                 "file too large", "wal")


def assert_generic_problem(r, data_dir):
    assert r.status_code in (500, 503), (r.status_code, r.text)
    body = r.json()
    rid = body.get("request_id")
    assert rid, body
    assert set(body) == {"type", "title", "status", "detail", "request_id"}, body
    assert body["status"] == r.status_code
    text = r.text.lower()
    for word in PRIVATE_WORDS + (data_dir.lower(),):
        assert word not in text, (word, r.text)
    return rid


def cause_lines(silo, rid):
    """The server's log lines for request `rid` that carry a cause."""
    found = []
    for line in silo.output().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("request_id") == rid and entry.get("cause"):
            found.append(entry)
    return found


def stopped_tenant_with_a_note(make_silo, data_dir):
    """A tenant "acme" with one record, its server stopped cleanly: the path of
    its database file and an API token that reads it."""
    silo = make_silo()
    info = tenant(silo, "acme")
    tok = token(silo, "acme")
    api = Api(silo, "acme", tok)
    r = api.call("POST", "/api/collections", {"name": "notes", "fields": [
        {"name": "body", "type": "text"}]})
    assert r.status_code == 201, r.text
    assert api.call("POST", "/api/collections/notes/records",
                    {"id": "n1", "body": "hello"}).status_code == 201
    assert silo.stop() == 0
    return os.path.join(data_dir, "tenants", info["id"], "tenant.db"), tok


def test_an_unreadable_tenant_database_is_a_bare_500_and_the_log_has_why(make_silo, data_dir):
    path, tok = stopped_tenant_with_a_note(make_silo, data_dir)

    # Every page after the first is overwritten: the header still reads as a
    # silo database, but no page after it authenticates any more.
    assert not os.path.exists(path + "-wal")  # a clean stop checkpointed
    size = os.path.getsize(path)
    assert size > 8192
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))

    silo = make_silo()
    r = Api(silo, "acme", tok).call("GET", "/api/collections/notes/records/n1")
    rid = assert_generic_problem(r, data_dir)
    assert r.status_code == 500 and r.json()["detail"] == "internal error", r.text
    logged = cause_lines(silo, rid)
    assert logged, silo.output()[-3000:]
    assert any("tenant.db" in e["cause"] for e in logged), logged


def test_a_locked_tenant_database_is_a_bare_503_and_nothing_is_lost(make_silo, data_dir):
    """SQLite's "database is locked" once reached the caller as a 503 detail,
    with the file's path. Another process holding the file's lock is the
    honest way to make it happen."""
    path, tok = stopped_tenant_with_a_note(make_silo, data_dir)

    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the whole file
        silo = make_silo()
        api = Api(silo, "acme", tok)
        r = api.call("GET", "/api/collections/notes/records/n1")  # waits out busy_timeout
        rid = assert_generic_problem(r, data_dir)
        assert r.status_code == 503, r.text
        assert "locked" not in r.text, r.text
        logged = cause_lines(silo, rid)
        assert any("database is locked" in e["cause"] and "tenant.db" in e["cause"]
                   for e in logged), logged
    # The lock is gone: the same request reads the record.
    r = api.call("GET", "/api/collections/notes/records/n1")
    assert r.status_code == 200 and r.json()["body"] == "hello", r.text


def limit_file_size(limit):
    def apply():
        # A write past `limit` bytes fails with EFBIG, as on a full disk; the
        # signal the kernel would also send is ignored, as a server must.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_a_bare_5xx_writes_nothing_half_and_the_log_has_why(make_silo, data_dir):
    # The server's files may not grow past 1 MiB; the test itself is not
    # limited. Each record below adds about 150 KiB to the tenant database.
    silo = make_silo(preexec=limit_file_size(1 << 20))
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    r = api.call("POST", "/api/collections", {"name": "notes", "fields": [
        {"name": "body", "type": "text"}]})
    assert r.status_code == 201, r.text

    stored, failed = [], None
    for i in range(40):  # 6 MiB of records: far past the limit
        r = api.call("POST", "/api/collections/notes/records",
                     {"id": "n%d" % i, "body": ("%d" % i) * 50000})
        if r.status_code == 201:
            stored.append("n%d" % i)
            continue
        failed = r
        break
    assert failed is not None, "no write failed under a 1 MiB file size limit"
    assert stored, "the limit left no room for a single record"
    rid = assert_generic_problem(failed, data_dir)
    logged = cause_lines(silo, rid)
    assert logged, silo.output()[-3000:]

    # What was answered 201 is there; the refused record is not, not even half.
    assert any("tenant.db" in e["cause"] for e in logged), logged

    # What was answered 201 is there; the refused record is not, not even
    # half of it; and the tenant still reads.
    listed = api.call("GET", "/api/collections/notes/records?limit=100")
    assert listed.status_code == 200, listed.text
    assert sorted(x["id"] for x in listed.json()["items"]) == sorted(stored)


def limit_open_files(soft, hard):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def test_the_server_raises_its_open_files_limit_to_the_hard_one(make_silo):
    """Started with a soft limit of 256 open files (a shell's is often
    1,024) under a hard one of 4,096, the server asks for the hard one: a
    node with many open tenants and copies needs the descriptors."""
    silo = make_silo(preexec=limit_open_files(256, 4096))
    with open("/proc/%d/limits" % silo.proc.pid) as f:
        line = [l for l in f if l.startswith("Max open files")][0]
    assert line.split()[3:5] == ["4096", "4096"], line
    assert '"msg":"open_files_limit","limit":4096' in silo.output()

