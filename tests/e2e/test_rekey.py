"""`silo tenant rekey` (issue 22) through the real CLI and API: a tenant gets a
new data key while a client keeps writing. Every page of its database, every
file blob, its TOTP secrets and tenant.meta are sealed again under the new
key and the old key is gone from the keyring; nothing acknowledged is lost,
a write during the pause is refused with 503 (never half-done), the tenant
sees the re-key in its audit log, and a backup taken before still restores in
place (its files and second factors moved to the live key)."""
import glob
import json
import os
import threading

import requests

from identity_util import Client
from test_backups import MARKER, assert_no_plaintext, backup_run, everything, fill
from test_files import png, upload
from test_identity import MANY, OWNER, owner_session
from test_records import TICKETS, Api, token

PAGE = 4096


def key_file(silo, tenant_id):
    [path] = glob.glob(os.path.join(silo.data_dir, "platform", "keyring*.d", tenant_id))
    return path


def pages(path):
    data = open(path, "rb").read()
    return {data[i:i + PAGE] for i in range(0, len(data), PAGE)}


def docs(api):
    r = api.call("POST", "/api/collections",
                 {"name": "docs", "fields": [{"name": "scan", "type": "file"}]})
    assert r.status_code == 201, r.text


def start(make_silo, tmp_path):
    env = dict(MANY)
    env.update({"SILO_BACKUP_TARGET": str(tmp_path / "target"), "SILO_BACKUP_SCHEDULE": "off"})
    silo = make_silo(env)
    _, secret, codes = owner_session(silo)
    api = Api(silo, "acme", token(silo, "acme"))
    assert api.call("POST", "/api/collections", TICKETS).status_code == 201
    docs(api)
    return silo, api, secret, codes


def test_a_rekey_seals_everything_anew_loses_nothing_and_destroys_the_old_key(
        make_silo, tmp_path):
    silo, api, secret, codes = start(make_silo, tmp_path)
    fill(api, 9)
    data = png(200_000, MARKER.encode())
    fid = upload(api, data).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": fid}).status_code == 201
    before = backup_run(silo, "acme")["id"]
    tenant_id = before.rsplit("-", 2)[0]
    tdir = os.path.join(silo.data_dir, "tenants", tenant_id)
    [blob] = glob.glob(os.path.join(tdir, "files", "b", "*", fid + ".sf"))
    old_key_file = open(key_file(silo, tenant_id)).read()
    old_pages = pages(os.path.join(tdir, "tenant.db"))
    old_blob = open(blob, "rb").read()
    old_meta = open(os.path.join(tdir, "tenant.meta")).read()
    records, histories, events, audit = everything(api)

    # A client writes all along; each write is acknowledged (201) or refused
    # whole (503, during the pause), nothing else.
    stop = threading.Event()
    outcomes = []

    def writer():
        i = 0
        while not stop.is_set():
            r = api.call("POST", "/api/collections/tickets/records",
                         {"title": "during %d" % i, "prio": i, "ref": "w%d" % i})
            outcomes.append((r.status_code, r.json().get("id") if r.status_code == 201 else None))
            if r.status_code == 503:
                assert r.headers.get("Retry-After") == "1", r.headers
                assert "data key is being changed" in r.json()["detail"], r.text
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        r = silo.cli("tenant", "rekey", "acme")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("rekeyed acme: key epoch 1, "), r.stdout
    assert "1 files sealed under the new key, 1 TOTP secrets moved, %d recovery codes dropped" \
        % len(codes) in r.stdout, r.stdout
    assert "the old key is destroyed" in r.stdout
    assert {code for code, _ in outcomes} <= {201, 503}, outcomes
    acked = [rid for code, rid in outcomes if code == 201]
    assert outcomes, "the writer never ran"

    # Every file under the tenant's key is sealed anew; the old key is gone.
    new_key_file = open(key_file(silo, tenant_id)).read()
    assert json.loads(new_key_file)["wrapped"] != json.loads(old_key_file)["wrapped"]
    assert json.loads(new_key_file)["epoch"] == 1
    assert not glob.glob(os.path.join(silo.data_dir, "platform", "keyring*.d", "*.next"))
    assert not glob.glob(os.path.join(tdir, "**", "*.rekey*"), recursive=True)
    assert not pages(os.path.join(tdir, "tenant.db")) & old_pages
    new_blob = open(blob, "rb").read()
    assert new_blob != old_blob and len(new_blob) == len(old_blob)
    assert new_blob[12:16] == (1).to_bytes(4, "big")  # the header's key epoch
    assert open(os.path.join(tdir, "tenant.meta")).read() != old_meta
    assert_no_plaintext(silo.data_dir)

    # Nothing lost: what was there, and every acknowledged write.
    after = everything(api)
    ids = {rec["id"] for rec in after[0]}
    assert {rec["id"] for rec in records} <= ids and set(acked) <= ids
    for rid, h in histories.items():
        assert after[1][rid] == h
    assert after[2][:len(events)] == events
    got = api.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid)
    assert got.status_code == 200 and got.content == data
    # The tenant sees the re-key; the platform log has it too.
    mine = [e for e in api.call("GET", "/api/audit?limit=200").json()["items"]
            if e["type"] == "tenant.rekeyed"]
    assert len(mine) == 1 and mine[0]["actor"].startswith("operator"), mine
    assert "tenant.rekeyed" in open(os.path.join(silo.data_dir, "platform", "security.log")).read()
    # The owner's second factor moved with it; recovery codes could not.
    c = Client(silo, "acme")
    c.sign_in(OWNER, secret)
    assert c.call("GET", "/api/auth/me").status_code == 200
    r = c.login(OWNER)
    assert r.status_code == 200 and r.json()["mfa_required"], r.text
    m = c.call("POST", "/api/auth/mfa",
               {"mfa_token": r.json()["mfa_token"], "recovery_code": codes[0]})
    assert m.status_code == 401, m.text

    # Backups: a new one names the re-sealed blob by its epoch; the one from
    # before still restores in place, its files and second factor moved to
    # the live key.
    after_id = backup_run(silo, "acme")["id"]
    assert glob.glob(os.path.join(str(tmp_path / "target"), tenant_id, "files", fid + ".k1.sf"))
    assert silo.cli("backup", "verify", after_id).returncode == 0
    os.remove(blob)
    r = silo.cli("--json", "backup", "restore", before, "--yes")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["secrets_resealed"] == 1, report
    got = api.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid)
    assert got.status_code == 200 and got.content == data
    c = Client(silo, "acme")
    c.sign_in(OWNER, secret)
    assert c.call("GET", "/api/auth/me").status_code == 200

    # The new key is the one kept: a restart opens everything, and a second
    # re-key moves on to the next epoch.
    assert silo.stop() == 0
    silo.start()
    api = Api(silo, "acme", api.h["Authorization"].split()[1])  # the port is new
    r = silo.cli("--json", "tenant", "rekey", "acme")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["key_epoch"] == 2
    assert api.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid).content == data


def test_a_rekey_waits_for_resumable_uploads_and_refuses_bad_input(make_silo, tmp_path):
    """A resumable upload's part is sealed under the key it began with: the
    re-key is refused (409, nothing changed) until it ends."""
    silo, api, _, _ = start(make_silo, tmp_path)
    tus = {"Tus-Resumable": "1.0.0"}
    r = api.call("POST", "/api/uploads?collection=docs&field=scan", raw=b"",
                 headers=dict(tus, **{"Upload-Length": "100000"}))
    assert r.status_code == 201, r.text
    upload_path = r.headers["Location"].split("/t/acme")[1]
    r = silo.cli("tenant", "rekey", "acme")
    assert r.returncode != 0 and "(409)" in r.stderr and "resumable uploads" in r.stderr, r.stderr
    assert not glob.glob(os.path.join(silo.data_dir, "platform", "keyring*.d", "*.next"))
    assert not glob.glob(os.path.join(silo.data_dir, "tenants", "**", "*.rekey*"), recursive=True)
    assert api.call("DELETE", upload_path, headers=tus).status_code == 204
    r = silo.cli("--json", "tenant", "rekey", "acme")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["key_epoch"] == 1
    # The route is the operator's alone: a tenant's own API token, another
    # tenant's, or none reach nothing, on either listener, and stage no key.
    from test_records import tenant as new_tenant
    new_tenant(silo, "beta")
    for tok in (api.h["Authorization"].split()[1], token(silo, "beta"), None):
        h = {"Authorization": "Bearer " + tok} if tok else {}
        r = requests.post(silo.operator_url + "/v1/tenants/acme/rekey", headers=h, timeout=10)
        assert r.status_code == 401, r.text
        for path in ("/v1/tenants/acme/rekey", "/t/beta/v1/tenants/acme/rekey",
                     "/t/acme/v1/tenants/acme/rekey"):
            r = requests.post(silo.url + path, headers=h, timeout=10, verify=False)
            assert r.status_code == 404, (path, r.status_code, r.text)  # no such route there
    assert not glob.glob(os.path.join(silo.data_dir, "platform", "keyring*.d", "*.next"))
    assert json.loads(silo.cli("--json", "tenant", "rekey", "acme").stdout)["key_epoch"] == 2
    r = silo.cli("tenant", "rekey", "nosuch")
    assert r.returncode != 0 and "no such tenant" in r.stderr, r.stderr
    r = silo.cli("tenant", "rekey", "../acme")
    assert r.returncode == 2, r.stderr
