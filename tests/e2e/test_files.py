"""Files through the real binary over HTTPS: uploads streamed into sealed
blobs, downloads with ranges and their headers, every refusal with nothing
kept, history and time travel of a file field, and no plaintext on disk."""
import hashlib
import json
import os
import signal
import time

import requests

from conftest import TOKEN_EXPIRES
from test_records import Api, tenant, token

DOCS = {"name": "docs", "fields": [
    {"name": "title", "type": "string"},
    {"name": "scan", "type": "file", "types": ["image/*", "application/pdf"],
     "max_bytes": 1048576},
    {"name": "pdf", "type": "file", "types": ["application/pdf"]},
    {"name": "extra", "type": "file", "max_files": 3},
]}
READ_ONLY = ["collections.read", "records.docs.read"]
ENV = {"SILO_TENANT_FILE_QUOTA_BYTES": "3000000", "SILO_PROGRESS_TIMEOUT_MS": "1000"}


def png(size, canary=b""):
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    body = bytes((i * 7919) % 251 for i in range(size - len(head) - len(canary)))
    return head + canary + body


def upload(api, data, field="scan", ctype="image/png", name="scan.png", collection="docs"):
    return api.call("POST", "/api/files?collection=%s&field=%s&name=%s" % (collection, field, name),
                    raw=data, headers={"Content-Type": ctype})


def blobs(silo):
    out = []
    for root, _, names in os.walk(os.path.join(silo.data_dir, "tenants")):
        out += [os.path.join(root, n) for n in names if "/files/" in os.path.join(root, n)]
    return out


def test_a_blob_that_fails_authentication_is_an_error_not_a_200(make_silo):
    """A blob altered on disk, or another file's blob put in its place, fails
    authentication in its first chunk to send: the answer is a 500 (logged
    with the request id), never a 200 whose body stops short or a byte of
    the wrong file."""
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    data, other = png(150_000, b"ONE"), png(150_000, b"TWO")
    ids = []
    for i, body in enumerate((data, other)):
        fid = upload(api, body).json()["id"]
        assert api.call("POST", "/api/collections/docs/records",
                        {"id": "d%d" % i, "scan": fid}).status_code == 201
        ids.append(fid)
    url = "/api/collections/docs/records/d0/files/scan/" + ids[0]
    [path] = [b for b in blobs(silo) if b.endswith(ids[0] + ".sf")]
    [other_path] = [b for b in blobs(silo) if b.endswith(ids[1] + ".sf")]
    original = open(path, "rb").read()
    flipped = bytearray(original)
    flipped[64 + 100] ^= 1  # in the first chunk's ciphertext
    second = bytearray(original)
    second[64 + 65_576 + 100] ^= 1  # in the second chunk's
    for bad, ranged in ((bytes(flipped), None), (open(other_path, "rb").read(), None),
                        (bytes(second), "bytes=70000-70010")):
        open(path, "wb").write(bad)
        headers = {"Range": ranged} if ranged else None
        r = api.call("GET", url, headers=headers)
        assert r.status_code == 500, (r.status_code, r.content[:40])
        assert b"ONE" not in r.content and b"TWO" not in r.content
    open(path, "wb").write(original)
    r = api.call("GET", url)
    assert r.status_code == 200 and r.content == data


def test_an_upload_round_trips_with_file_headers_and_ranges(make_silo):
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    canary = b"CANARY-FILE-" + os.urandom(6).hex().encode()
    data = png(200_000, canary)
    r = upload(api, data, name="../../x\r\n.png")
    assert r.status_code == 201, r.text
    f = r.json()
    assert set(f) == {"id", "size", "sha256", "type", "name"}
    assert f["size"] == len(data) and f["type"] == "image/png" and f["name"] == "x.png"
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    r = api.call("POST", "/api/collections/docs/records", {"id": "d1", "scan": f["id"]})
    assert r.status_code == 201, r.text
    url = "/api/collections/docs/records/d1/files/scan/" + f["id"]
    r = api.call("GET", url)
    assert r.status_code == 200 and r.content == data
    h = r.headers
    assert h["Content-Type"] == "image/png"
    assert h["Content-Disposition"].startswith("inline; filename=\"x.png\"")
    assert h["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in h["Content-Security-Policy"] and "default-src 'none'" in h[
        "Content-Security-Policy"]
    assert h["Cross-Origin-Resource-Policy"] == "same-site"
    assert h["Cache-Control"].startswith("private") and "no-store" not in h["Cache-Control"]
    assert h["ETag"] == '"%s"' % f["sha256"] and h["Accept-Ranges"] == "bytes"
    assert api.call("GET", url + "?download=1").headers["Content-Disposition"].startswith(
        "attachment")
    r = api.call("GET", url, headers={"Range": "bytes=65530-65545"})
    assert r.status_code == 206 and r.content == data[65530:65546]
    assert r.headers["Content-Range"] == "bytes 65530-65545/%d" % len(data)
    r = api.call("GET", url, headers={"Range": "bytes=-7"})
    assert r.status_code == 206 and r.content == data[-7:]
    r = api.call("GET", url, headers={"Range": "bytes=%d-" % len(data)})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */%d" % len(data)
    r = api.call("GET", url, headers={"If-None-Match": h["ETag"]})
    assert r.status_code == 304 and r.content == b""
    usage = api.call("GET", "/api/files/usage").json()
    assert usage["live_bytes"] == len(data) and usage["files"] == 1
    assert usage["quota_bytes"] == 3000000
    # No plaintext byte of the file, and not its name, anywhere on disk.
    silo.stop()
    for root, _, names in os.walk(silo.data_dir):
        for n in names:
            with open(os.path.join(root, n), "rb") as fh:
                content = fh.read()
            assert canary not in content, os.path.join(root, n)
            assert b"x.png" not in content, os.path.join(root, n)


def test_every_bad_upload_is_refused_with_nothing_kept(make_silo):
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg">' + b" " * 70000 +
           b'<a href="java\nscript:alert(1)">x</a></svg>')
    cases = [
        (upload(api, png(5000), field="pdf", name="renamed.pdf", ctype="application/pdf"), 415,
         "image/png"),
        (upload(api, html, ctype="image/png"), 415, "text/html"),
        (upload(api, svg, field="extra", ctype="image/svg+xml"), 415, "SVG"),
        (upload(api, png(1048577)), 413, "max_bytes"),
        (upload(api, png(100), field="title"), 422, "not a file field"),
        (upload(api, png(100), collection="nope"), 404, ""),
        (api.call("POST", "/api/files?field=scan", raw=png(100)), 422, "collection"),
    ]
    for r, status, word in cases:
        assert r.status_code == status, (status, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert word in r.json()["detail"], r.text
    # Without Content-Length (chunked): 411 before anything else.
    r = api.call("POST", "/api/files?collection=docs&field=scan", raw=iter([png(100)]),
                 headers={"Content-Type": "image/png"})
    assert r.status_code == 411, r.text
    # The quota: reserved from Content-Length, named when refused.
    ok = [upload(api, png(900_000), field="extra") for _ in range(3)]
    assert [r.status_code for r in ok] == [201, 201, 201]
    r = upload(api, png(900_000), field="extra")
    assert r.status_code == 413 and "SILO_TENANT_FILE_QUOTA_BYTES" in r.json()["detail"]
    # A client that stops sending: dropped at the progress deadline.
    s = silo.tls_socket(timeout=10)
    head = ("POST /t/acme/api/files?collection=docs&field=scan HTTP/1.1\r\nHost: x\r\n"
            "Authorization: %s\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
            % api.h["Authorization"]).encode()
    s.sendall(head + png(100000)[:70000])
    got = b""
    while True:  # the server ends the connection; the client never sends more
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    s.close()
    assert b"201" not in got.split(b"\r\n", 1)[0]
    # Nothing of any refused upload is kept: three files, three blobs. (The
    # deadline closes the socket a moment before the server's handler
    # removes the stalled upload's part: wait for that, not for a time.)
    deadline = time.monotonic() + 20
    while len(blobs(silo)) != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    usage = api.call("GET", "/api/files/usage").json()
    assert usage["files"] == 3 and usage["live_bytes"] == 2_700_000
    assert len(blobs(silo)) == 3, blobs(silo)
    assert all(p.endswith(".sf") and "/files/b/" in p for p in blobs(silo))


def test_file_fields_have_history_time_travel_and_revert(make_silo):
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    one, two = png(1000, b"one"), png(2000, b"two")
    f1 = upload(api, one).json()["id"]
    f2 = upload(api, two).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": f1}).status_code == 201
    time.sleep(0.01)
    t1 = api.call("GET", "/api/collections/docs/records/d1").json()["updated_at"]
    time.sleep(0.01)
    r = api.call("PATCH", "/api/collections/docs/records/d1", {"scan": f2})
    assert r.status_code == 200, r.text
    base = "/api/collections/docs/records/d1/files/scan/"
    assert api.call("GET", base + f2).content == two
    assert api.call("GET", base + f1).status_code == 404  # not the record's file now
    at = "?at=" + requests.utils.quote(t1)
    assert api.call("GET", "/api/collections/docs/records/d1" + at).json()["scan"] == f1
    old = api.call("GET", base + f1 + at)
    assert old.status_code == 200 and old.content == one  # kept while retention keeps it
    hist = api.call("GET", "/api/collections/docs/records/d1/history").json()["items"]
    assert hist[-1]["changes"]["scan"] == [f1, f2]
    # A file attached to d1 is d1's: another record cannot take it.
    r = api.call("POST", "/api/collections/docs/records", {"id": "d2", "scan": f1})
    assert r.status_code == 422 and "no such file" in r.text
    # Revert brings the old file back.
    r = api.call("POST", "/api/collections/docs/records/d1/revert", {"version": 1})
    assert r.status_code == 200, r.text
    assert api.call("GET", base + f1).content == one
    # Another caller's upload cannot be attached by someone else.
    other = Api(silo, "acme", token(silo, "acme"))
    mine = upload(other, png(500)).json()["id"]
    r = api.call("PATCH", "/api/collections/docs/records/d1", {"scan": mine})
    assert r.status_code == 422 and "no such file" in r.text
    # Several files in one field.
    ids = [upload(api, png(300 + i), field="extra").json()["id"] for i in range(3)]
    r = api.call("PATCH", "/api/collections/docs/records/d1", {"extra": ids})
    assert r.status_code == 200, r.text
    for i, fid in enumerate(ids):
        got = api.call("GET", "/api/collections/docs/records/d1/files/extra/" + fid)
        assert got.content == png(300 + i)


def test_file_routes_need_their_permissions(make_silo):
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    fid = upload(api, png(1000)).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": fid}).status_code == 201
    reader = Api(silo, "acme", token(silo, "acme", READ_ONLY))
    r = upload(reader, png(1000))
    assert r.status_code == 403
    assert "records.docs.create or records.docs.update" in r.json()["detail"]
    nobody = Api(silo, "acme", token(silo, "acme", ["collections.read"]))
    r = nobody.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid)
    assert r.status_code == 403
    assert reader.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid).status_code == 200
    anonymous = requests.get(api.base + "/api/collections/docs/records/d1/files/scan/" + fid,
                             verify=False, timeout=10)
    assert anonymous.status_code == 401 and b"PNG" not in anonymous.content


def test_links_open_one_file_without_credentials_until_revoked_or_expired(make_silo):
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    data = png(3000)
    fid = upload(api, data).json()["id"]
    pending = upload(api, png(10)).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": fid}).status_code == 201
    r = api.call("POST", "/api/files/%s/links" % fid, {"expires_in": 3600})
    assert r.status_code == 201, r.text
    link = r.json()
    # The token is in the query, which no log line carries.
    assert link["url"].startswith("/t/acme/api/files/link?token=")
    token_text = link["url"].split("token=")[1]
    url = silo.url + link["url"]
    # No cookie, no token, another origin: served, and embeddable there.
    got = requests.get(url, verify=False, timeout=10, headers={"Origin": "https://other.test"})
    assert got.status_code == 200 and got.content == data
    assert got.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    r = requests.get(url, verify=False, timeout=10, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == data[:10]
    # Bounds: at most 24 h; a pending upload has no links; without read
    # permission on the file's collection, no link (and an audit entry).
    assert api.call("POST", "/api/files/%s/links" % fid, {"expires_in": 86401}).status_code == 422
    assert api.call("POST", "/api/files/%s/links" % pending, {}).status_code == 404
    nobody = Api(silo, "acme", token(silo, "acme", ["collections.read"]))
    r = nobody.call("POST", "/api/files/%s/links" % fid, {})
    assert r.status_code == 403 and "records.docs.read" in r.json()["detail"]
    # Revoked: refused at once.
    assert api.call("DELETE", "/api/files/%s/links/%s" % (fid, link["id"])).status_code == 204
    assert requests.get(url, verify=False, timeout=10).status_code == 410
    # Expired: a one-second link, two seconds later.
    short = api.call("POST", "/api/files/%s/links" % fid, {"expires_in": 1}).json()
    time.sleep(2)
    assert requests.get(silo.url + short["url"], verify=False, timeout=10).status_code == 410
    for bad in ["A" * 43, "", "x"]:
        assert requests.get(silo.url + "/t/acme/api/files/link?token=" + bad, verify=False,
                            timeout=10).status_code == 404
    # The audit log has the links, never their tokens.
    audit = api.call("GET", "/api/audit?limit=1000").text
    assert "file.link_created" in audit and "file.link_revoked" in audit
    assert token_text not in audit and token_text not in silo.output()


def test_a_server_killed_mid_download_serves_the_file_whole_after_restart(make_silo):
    silo = make_silo({"SILO_TENANT_FILE_QUOTA_BYTES": "0"})
    tenant(silo, "acme")
    tok = token(silo, "acme")
    api = Api(silo, "acme", tok)
    big = {"name": "docs", "fields": [{"name": "big", "type": "file", "max_bytes": 1 << 30}]}
    assert api.call("POST", "/api/collections", big).status_code == 201
    # 64 MiB: more than the socket buffers can hold (send 4 MiB, receive at
    # most 32 MiB here), so the server is still writing when it is killed.
    data = os.urandom(1 << 20) * 64
    # Generous: under AddressSanitizer (make check-asan) this upload is slow,
    # and its speed is not what this test is about.
    r = requests.post(api.base + "/api/files?collection=docs&field=big&name=big.bin", data=data,
                      headers={**api.h, "Content-Type": "application/octet-stream"},
                      verify=False, timeout=600)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "big": fid}).status_code == 201
    path = "/t/acme/api/collections/docs/records/d1/files/big/" + fid
    s = silo.tls_socket(timeout=30)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % (path, tok)).encode())
    got = b""
    while len(got) < (1 << 20):  # read a MiB, then stop reading
        chunk = s.recv(65536)
        assert chunk, got[:300]
        got += chunk
    silo.proc.send_signal(signal.SIGKILL)
    silo.proc.wait()
    while True:
        try:
            chunk = s.recv(1 << 20)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(data) in head
    assert 0 < len(body) < len(data)  # visibly short, never padded
    assert body == data[:len(body)]   # and never a wrong byte
    silo.start()
    api = Api(silo, "acme", tok)
    again = requests.get(api.base + path.split("/t/acme")[1], headers=api.h, verify=False,
                         timeout=600)
    assert again.status_code == 200 and again.content == data


def test_backups_hold_the_files_and_restore_them_as_of_a_time(make_silo):
    from test_backups import backup_run
    silo = make_silo(ENV)
    tenant(silo, "acme")
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    canary = b"CANARY-BACKUP-FILE-" + os.urandom(6).hex().encode()
    one, two = png(150_000, canary + b"1"), png(90_000, canary + b"2")
    f1 = upload(api, one).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": f1}).status_code == 201
    t1 = api.call("GET", "/api/collections/docs/records/d1").json()["updated_at"]
    time.sleep(0.05)
    f2 = upload(api, two).json()["id"]
    assert api.call("PATCH", "/api/collections/docs/records/d1", {"scan": f2}).status_code == 200
    pending = upload(api, png(1000, canary + b"3")).json()["id"]  # never attached
    link = api.call("POST", "/api/files/%s/links" % f2, {"expires_in": 600}).json()

    answer = backup_run(silo, "acme")
    assert answer["files"] == 2  # the tombstone f1 too: time travel needs it
    backups = os.path.join(silo.data_dir, "backups")
    stored = [p for p in blobs_in(backups)]
    assert sorted(os.path.basename(p) for p in stored) == sorted([f1 + ".sf", f2 + ".sf"])
    assert silo.cli("backup", "verify", answer["id"]).returncode == 0
    r = silo.cli("backup", "drill", "acme")
    assert r.returncode == 0 and "2 files opened" in r.stdout, r.stdout + r.stderr

    # As of t1, as a new tenant: the record names f1 again and f1 downloads
    # byte for byte there, sealed under the new tenant's key.
    r = silo.cli("--json", "backup", "restore", answer["id"], "--as", "acme-past", "--at", t1)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["files"] == 2 and report["files_resealed"] == 2, report
    assert report["links_dropped"] == 1
    past = Api(silo, "acme-past", token(silo, "acme-past"))
    assert past.call("GET", "/api/collections/docs/records/d1").json()["scan"] == f1
    got = past.call("GET", "/api/collections/docs/records/d1/files/scan/" + f1)
    assert got.status_code == 200 and got.content == one
    assert got.headers["ETag"] == '"%s"' % hashlib.sha256(one).hexdigest()
    assert past.call("GET", "/api/collections/docs/records/d1/files/scan/" + f2).status_code == 404
    # A link never comes back with a restore (a revocation is never undone);
    # the live tenant, untouched, still serves it.
    past_link = silo.url + link["url"].replace("/t/acme/", "/t/acme-past/")
    assert requests.get(past_link, verify=False, timeout=10).status_code == 404
    assert requests.get(silo.url + link["url"], verify=False, timeout=10).status_code == 200
    assert api.call("GET", "/api/collections/docs/records/d1/files/scan/" + f2).content == two
    # The pending upload is not part of the backup or of the copy.
    assert not any(pending in p for p in stored)
    # In place, the state of the backup: f2 again, from the live blobs.
    r = silo.cli("--json", "backup", "restore", answer["id"], "--yes")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["files_present"] == 2 and report["files_fetched"] == 0, report
    assert api.call("GET", "/api/collections/docs/records/d1/files/scan/" + f2).content == two

    # A blob altered in the target: verify and drill say which and why.
    [obj] = [p for p in stored if p.endswith(f2 + ".sf")]
    with open(obj, "r+b") as fh:
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 1]))
    r = silo.cli("backup", "verify", answer["id"])
    assert r.returncode == 1 and "altered" in r.stderr and f2 in r.stderr, r.stderr
    # No file content in the clear anywhere: the data directory and its backups.
    for path in files_everywhere(silo.data_dir):
        with open(path, "rb") as fh:
            assert canary not in fh.read(), path


def blobs_in(path):
    for root, _, names in os.walk(path):
        for n in names:
            if n.endswith(".sf"):
                yield os.path.join(root, n)


def files_everywhere(path):
    for root, _, names in os.walk(path):
        for n in names:
            yield os.path.join(root, n)
