"""Crypto-shredding (issue 22) through the real CLI: `silo tenant delete
--shred --yes` destroys the tenant's backup key in the target, so that no
backup of the tenant (database, files list, file blobs) opens any more,
under any key: `silo backup list` shows them as shredded, a restore and a
verify fail, and so does a restore by a new server with the same master key
and target after the shredded marker is removed (anyone with the target can
remove it). Another tenant's backups are untouched."""
import base64
import glob
import json
import os

from test_backups import MARKER, assert_no_plaintext, backup_run, everything, fill
from test_backups import s3rver  # noqa: F401 (a fixture, used by name)
from test_files import png, upload
from test_records import Api, make_api, token

MASTER = base64.b64encode(os.urandom(32)).decode()  # a fresh test key per run


def test_shred_leaves_no_backup_that_the_master_key_opens(make_silo, tmp_path):
    target = str(tmp_path / "target")
    env = {"SILO_MASTER_KEY": MASTER, "SILO_BACKUP_TARGET": target,
           "SILO_BACKUP_SCHEDULE": "off"}
    silo = make_silo(env)
    acme = make_api(silo)
    fill(acme, 6)
    assert acme.call("POST", "/api/collections",
                     {"name": "docs", "fields": [{"name": "scan", "type": "file"}]}
                     ).status_code == 201
    fid = upload(acme, png(70_000, MARKER.encode())).json()["id"]
    assert acme.call("POST", "/api/collections/docs/records",
                     {"id": "d1", "scan": fid}).status_code == 201
    globex = make_api(silo, "globex")
    fill(globex, 3)
    globex_before = everything(globex)[0]
    ours = [backup_run(silo, "acme")["id"], backup_run(silo, "acme")["id"]]
    theirs = backup_run(silo, "globex")["id"]
    acme_id = ours[0].rsplit("-", 2)[0]
    assert os.path.exists(os.path.join(target, acme_id, "tenant.key"))
    assert glob.glob(os.path.join(target, acme_id, "files", "*.sf"))

    # --shred needs --yes like every delete; nothing happens without it.
    r = silo.cli("tenant", "delete", "acme", "--shred")
    assert r.returncode == 2 and "--yes" in r.stderr, r.stderr
    assert silo.cli("backup", "verify", ours[0]).returncode == 0

    r = silo.cli("tenant", "delete", "acme", "--shred", "--yes")
    assert r.returncode == 0, r.stderr
    assert "deleted tenant acme" in r.stdout
    assert "shredded: 2 backups in dir:" in r.stdout, r.stdout
    assert not os.path.exists(os.path.join(target, acme_id, "tenant.key"))
    assert not glob.glob(os.path.join(target, acme_id, "files", "*.sf"))  # sealed, and gone
    marker = json.load(open(os.path.join(target, acme_id, "tenant.shredded")))
    assert marker["tenant"] == acme_id and marker["slug"] == "acme"

    r = silo.cli("backup", "list")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    for b in ours:
        assert "SHREDDED" in rows[b], r.stdout
    assert rows[theirs].rstrip().endswith("yes"), r.stdout
    listed = {b["id"]: b for b in json.loads(silo.cli("--json", "backup", "list").stdout)["items"]}
    assert all(listed[b]["shredded"] and not listed[b]["good"] for b in ours)
    assert "shredded" not in listed[theirs] and listed[theirs]["good"]

    for b in ours:
        r = silo.cli("backup", "restore", b, "--as", "acme-back")
        assert r.returncode != 0 and "crypto-shredded" in r.stderr, r.stderr
        r = silo.cli("backup", "verify", b)
        assert r.returncode != 0 and "crypto-shredded" in r.stdout + r.stderr
    # The slug is free again; a new tenant under it has no backup to inherit.
    r = silo.cli("tenant", "create", "acme", "--name", "Acme again",
                 "--owner-email", "owner@acme.test")
    assert r.returncode == 0, r.stderr
    security = open(os.path.join(silo.data_dir, "platform", "security.log")).read()
    assert "tenant.shredded" in security
    assert silo.stop() == 0

    # A new server, same master key, same target, the marker removed: the
    # key that wrapped the backups' data keys is gone, nothing opens them.
    os.remove(os.path.join(target, acme_id, "tenant.shredded"))
    fresh = make_silo(env, data=str(tmp_path / "fresh"))
    for b in ours:
        r = fresh.cli("backup", "restore", b, "--as", "acme-back")
        assert r.returncode != 0 and "backup key is missing" in r.stderr, r.stderr
        assert fresh.cli("backup", "verify", b).returncode != 0
    r = fresh.cli("backup", "restore", theirs, "--as", "globex-back")
    assert r.returncode == 0, r.stderr
    assert everything(Api(fresh, "globex-back", token(fresh, "globex-back")))[0] == globex_before
    assert_no_plaintext(target)


def test_shred_on_an_s3_target_deletes_the_key_object_from_the_bucket(make_silo, s3rver):
    """The same against a real S3 server (s3rver): the key object is deleted
    from the bucket (the S3 target's List, Get, Put and Delete), the
    backups are listed as shredded and do not restore."""
    silo = make_silo({"SILO_BACKUP_TARGET": "s3://silo-backups/shred",
                      "SILO_S3_ENDPOINT": "http://127.0.0.1:%d" % s3rver["port"],
                      "SILO_S3_REGION": "us-east-1",
                      "SILO_S3_ACCESS_KEY_ID": "S3RVER",
                      "SILO_S3_SECRET_ACCESS_KEY": "S3RVER",
                      "SILO_BACKUP_SCHEDULE": "off"})
    fill(make_api(silo), 4)
    first = backup_run(silo, "acme")["id"]
    acme_id = first.rsplit("-", 2)[0]

    def bucket_objects():
        return [os.path.relpath(os.path.join(root, n), s3rver["dir"])
                for root, _, names in os.walk(s3rver["dir"]) for n in names]
    assert [o for o in bucket_objects() if "tenant.key" in o and acme_id in o], bucket_objects()
    r = silo.cli("tenant", "delete", "acme", "--shred", "--yes")
    assert r.returncode == 0, r.stderr
    assert "shredded: 1 backups in s3://silo-backups/shred/" in r.stdout, r.stdout
    assert not [o for o in bucket_objects() if "tenant.key" in o and acme_id in o], \
        bucket_objects()
    assert [o for o in bucket_objects() if "tenant.shredded" in o and acme_id in o]
    [listed] = json.loads(silo.cli("--json", "backup", "list").stdout)["items"]
    assert listed["id"] == first and listed["shredded"] and not listed["good"]
    r = silo.cli("backup", "restore", first, "--as", "acme-back")
    assert r.returncode != 0 and "crypto-shredded" in r.stderr, r.stderr
