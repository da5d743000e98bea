"""Resumable uploads (tus 1.0) through the real binary over HTTPS, with the
reference client (tus-js-client under Node) and by hand where the protocol's
refusals are the point; and a server killed mid-upload that resumes from the
last durable chunk."""
import base64
import hashlib
import json
import os
import signal
import subprocess
import time


from test_files import DOCS, ENV, png
from test_records import Api, tenant, token

TUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tus")
CHUNK = 65536


def node_upload(silo, tok, path, **kw):
    """Runs tests/tus/upload.mjs; returns its JSON line."""
    args = ["node", os.path.join(TUS, "upload.mjs"), "--file", path, "--token", tok]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=os.path.join(silo.data_dir, "dev", "tls.crt"))
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=TUS)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def start(make_silo, extra=None):
    silo = make_silo({**ENV, **(extra or {})})
    tenant(silo, "acme")
    tok = token(silo, "acme")
    api = Api(silo, "acme", tok)
    assert api.call("POST", "/api/collections", DOCS).status_code == 201
    return silo, tok, api


def tus(api, method, path, body=None, **headers):
    h = {"Tus-Resumable": "1.0.0"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return api.call(method, path, raw=body, headers=h)


def test_tus_js_client_uploads_in_chunks_and_the_file_attaches(make_silo, tmp_path):
    silo, tok, api = start(make_silo)
    data = png(700_000, b"TUS-CANARY-" + os.urandom(4).hex().encode())
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    endpoint = api.base + "/api/uploads?collection=docs&field=scan"
    # Chunks that are not multiples of 64 KiB: the server keeps whole chunks
    # and the client resends from the offset it answers.
    done = node_upload(silo, tok, path, endpoint=endpoint, chunk=100_000)
    assert done["done"], done
    file_id = done["url"].split("/")[-1].split("?")[0]
    r = api.call("POST", "/api/collections/docs/records", {"id": "d1", "scan": file_id})
    assert r.status_code == 201, r.text
    got = api.call("GET", "/api/collections/docs/records/d1/files/scan/" + file_id)
    assert got.status_code == 200 and got.content == data
    assert got.headers["ETag"] == '"%s"' % hashlib.sha256(data).hexdigest()
    assert api.call("GET", "/api/files/usage").json()["live_bytes"] == len(data)
    # The upload is gone once complete.
    assert tus(api, "HEAD", done["url"].split("/t/acme")[1]).status_code == 404


def test_the_protocol_refuses_what_it_must(make_silo, tmp_path):
    silo, tok, api = start(make_silo, {"SILO_UPLOAD_EXPIRE_HOURS": "1"})
    opts = api.call("OPTIONS", "/api/uploads")
    assert opts.status_code == 204 and opts.headers["Tus-Version"] == "1.0.0"
    assert "checksum" in opts.headers["Tus-Extension"]
    base = "/api/uploads?collection=docs&field=scan"
    assert tus(api, "POST", base).status_code == 400  # no Upload-Length
    r = api.call("POST", base, headers={"Upload-Length": "10"})
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    assert tus(api, "POST", base, Upload_Length="2000000").status_code == 413  # max_bytes 1 MiB
    r = tus(api, "POST", base, Upload_Length=str(3 * CHUNK), Upload_Metadata="filename " +
            base64.b64encode(b"a.png").decode())
    assert r.status_code == 201, r.text
    url = r.headers["Location"].split("/t/acme")[1]
    assert "collection=docs" in url and r.headers["Upload-Expires"].endswith("GMT")
    data = png(3 * CHUNK)
    head = tus(api, "HEAD", url)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(3 * CHUNK)
    assert head.headers["Cache-Control"] == "no-store"
    octet = {"Content-Type": "application/offset+octet-stream"}
    # Wrong offset 409, wrong content type 415, wrong checksum 460 (nothing kept).
    r = tus(api, "PATCH", url, data[:CHUNK], Upload_Offset="5", **octet)
    assert r.status_code == 409, r.text
    r = tus(api, "PATCH", url, data[:CHUNK], Upload_Offset="0", Content_Type="image/png")
    assert r.status_code == 415
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    r = tus(api, "PATCH", url, data[:CHUNK], Upload_Offset="0", Upload_Checksum="sha256 " + bad,
            **octet)
    assert r.status_code == 460, r.text
    assert tus(api, "HEAD", url).headers["Upload-Offset"] == "0"
    good = base64.b64encode(hashlib.sha256(data[:CHUNK + 10]).digest()).decode()
    r = tus(api, "PATCH", url, data[:CHUNK + 10], Upload_Offset="0",
            Upload_Checksum="sha256 " + good, **octet)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(CHUNK)  # whole chunks
    # Another caller, or the URL under another collection: no such upload.
    other = Api(silo, "acme", token(silo, "acme"))
    assert tus(other, "HEAD", url).status_code == 404
    assert tus(api, "HEAD", url.replace("collection=docs", "collection=nope")).status_code == 404
    # Termination, then the upload is gone and its reservation freed.
    assert api.call("GET", "/api/files/usage").json()["live_bytes"] == 0
    assert tus(api, "DELETE", url).status_code == 204
    assert tus(api, "HEAD", url).status_code == 404
    assert tus(api, "PATCH", url, data[:CHUNK], Upload_Offset=str(CHUNK), **octet).status_code == 404
    # A PNG for the PDF field is refused at its first bytes, and removed.
    r = tus(api, "POST", "/api/uploads?collection=docs&field=pdf", Upload_Length=str(CHUNK))
    url = r.headers["Location"].split("/t/acme")[1]
    r = tus(api, "PATCH", url, png(CHUNK), Upload_Offset="0", **octet)
    assert r.status_code == 415 and "image/png" in r.text
    assert tus(api, "HEAD", url).status_code == 404
    parts = os.path.join(silo.data_dir, "tenants")
    assert not [n for _, _, ns in os.walk(parts) for n in ns if n.endswith(".part")]


def test_an_upload_resumes_after_the_server_is_killed_mid_patch(make_silo, tmp_path):
    silo, tok, api = start(make_silo)
    data = png(600_000, b"CRASH-CANARY")
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    r = tus(api, "POST", "/api/uploads?collection=docs&field=scan", Upload_Length=str(len(data)))
    assert r.status_code == 201, r.text
    url = r.headers["Location"]  # a path: /t/acme/api/uploads/<id>?collection=docs&field=scan
    assert url.startswith("/t/acme/api/uploads/")
    upload_id = url.split("/")[-1].split("?")[0]
    part = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(silo.data_dir, "tenants"))
            for n in ns if n == upload_id + ".part"][0]
    # A PATCH that sends 200,000 bytes and then nothing; the server is killed
    # once three sealed chunks are in the part file (the client never sends
    # more, so this waits on the file, not on a clock).
    s = silo.tls_socket(timeout=30)
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nTus-Resumable: 1.0.0\r\n"
               "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
               "Content-Length: %d\r\n\r\n" % (url, api.h["Authorization"], len(data))).encode()
              + data[:200_000])
    sealed = 64 + 3 * (CHUNK + 40)
    deadline = time.monotonic() + 60
    while os.path.getsize(part) < sealed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.getsize(part) >= sealed
    silo.proc.send_signal(signal.SIGKILL)
    silo.proc.wait()
    s.close()
    silo.start()
    api = Api(silo, "acme", tok)  # the restarted server has another port
    head = tus(api, "HEAD", url.split("/t/acme")[1])
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(3 * CHUNK)
    # The reference client resumes from there and the file arrives whole.
    done = node_upload(silo, tok, path, url=api.base + url.split("/t/acme")[1])
    assert done["done"], done
    r = api.call("POST", "/api/collections/docs/records", {"id": "d1", "scan": upload_id})
    assert r.status_code == 201, r.text
    got = api.call("GET", "/api/collections/docs/records/d1/files/scan/" + upload_id)
    assert got.content == data
    silo.stop()
    for d, _, names in os.walk(silo.data_dir):
        for n in names:
            with open(os.path.join(d, n), "rb") as fh:
                assert b"CRASH-CANARY" not in fh.read(), n
