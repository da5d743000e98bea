"""Backups through the real binary: `silo backup run|list|verify|restore|drill|prune`
against a directory and against a real S3-compatible server (s3rver, from
tests/s3) on loopback; the schedule inside `silo serve`."""
import base64
import datetime
import glob
import json
import os
import pty
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import DIE_WITH_PARENT, TOKEN_EXPIRES, metric
from test_records import Api, make_api, token

MARKER = "BACKUP-PLAINTEXT-MARKER-91c2"
S3RVER = os.path.join(os.path.dirname(__file__), "..", "s3", "node_modules", ".bin", "s3rver")


def fill(api, n=12):
    """Records created, updated and deleted; returns their ids."""
    ids = []
    for i in range(n):
        r = api.call("POST", "/api/collections/tickets/records",
                     {"title": "%s %d" % (MARKER, i), "prio": i, "ref": "r%d" % i})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for i in range(0, n, 3):
        assert api.call("PATCH", "/api/collections/tickets/records/" + ids[i],
                        {"prio": 100 + i}).status_code == 200
    assert api.call("DELETE", "/api/collections/tickets/records/" + ids[1]).status_code == 204
    return ids


def everything(api):
    """Every record with its history, every event, every audit entry."""
    records = api.call("GET", "/api/collections/tickets/records?limit=100").json()["items"]
    histories = {r["id"]: api.call("GET", "/api/collections/tickets/records/%s/history"
                                   % r["id"]).json()["items"] for r in records}
    audit = api.call("GET", "/api/audit?limit=100").json()["items"]
    return records, histories, api.events(), audit


def backup_run(silo, slug):
    r = silo.cli("--json", "backup", "run", slug)
    assert r.returncode == 0, r.stderr
    [answer] = json.loads(r.stdout)
    return answer


def files_under(path):
    for root, _, names in os.walk(path):
        for n in names:
            yield os.path.join(root, n)


def assert_no_plaintext(path):
    for f in files_under(path):
        with open(f, "rb") as fh:
            assert MARKER.encode() not in fh.read(), f


def data_object(silo, backup_id):
    [path] = glob.glob(os.path.join(silo.data_dir, "backups", "*", backup_id + ".data"))
    return path


def test_backup_wipe_restore_gives_back_every_record_history_event_and_audit_entry(silo):
    api = make_api(silo)
    fill(api)
    records, histories, events, audit = everything(api)
    answer = backup_run(silo, "acme")
    assert answer["events"]["count"] == len(events)
    assert answer["events"]["head"] == events[-1]["hash"]
    assert answer["target"] == "dir:" + os.path.join(silo.data_dir, "backups")

    r = silo.cli("backup", "list", "acme")
    assert r.returncode == 0 and answer["id"] in r.stdout and "yes" in r.stdout
    r = silo.cli("backup", "verify", answer["id"])
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr

    # The wipe: every record deleted through the API.
    for rec in records:
        assert api.call("DELETE", "/api/collections/tickets/records/" + rec["id"]).status_code == 204
    assert api.call("GET", "/api/collections/tickets/records").json()["items"] == []

    r = silo.cli("backup", "restore", answer["id"], "--yes")
    assert r.returncode == 0, r.stderr
    assert "into acme (in place)" in r.stdout
    records2, histories2, events2, audit2 = everything(api)
    assert records2 == records
    assert histories2 == histories
    assert events2 == events
    # The audit log is never rolled back: all of it, the backup, the backup of
    # the state the restore replaced, then the restore.
    assert audit2[:len(audit)] == audit
    assert [a["type"] for a in audit2[len(audit):]] == [
        "backup.created", "backup.created", "backup.restored"]
    assert silo.cli("audit", "verify", "acme").returncode == 0
    # Writes go on after the restore.
    assert api.call("POST", "/api/collections/tickets/records",
                    {"title": "after", "ref": "after"}).status_code == 201

    assert_no_plaintext(os.path.join(silo.data_dir, "backups"))
    assert_no_plaintext(os.path.join(silo.data_dir, "tenants"))
    assert MARKER not in silo.output()


def test_the_operator_cannot_erase_its_trail_and_a_restore_can_be_undone(silo):
    """Back up, mint a token, read with it, rebuild, then restore in place:
    the tenant's audit log keeps the token, its use and the rebuild, and the
    chain verifies; the restore asked for --yes, took a backup of what it
    replaced, and restoring that one brings back the record written after."""
    api = make_api(silo)
    fill(api, 3)
    answer = backup_run(silo, "acme")
    late = api.call("POST", "/api/collections/tickets/records",
                    {"id": "late", "title": "written after the backup", "ref": "late"})
    assert late.status_code == 201, late.text
    snoop = silo.cli("tenant", "token", "acme", "--name", "snoop", "--permission",
                     "records.*.read", "--expires", TOKEN_EXPIRES)
    assert snoop.returncode == 0, snoop.stderr
    spy = Api(silo, "acme", snoop.stdout.strip())
    assert spy.call("GET", "/api/collections/tickets/records").status_code == 200
    rebuilt = silo.cli("tenant", "rebuild", "acme")
    assert rebuilt.returncode == 0, rebuilt.stderr
    trail = {"token.created", "token.used", "tenant.rebuilt"}
    before = api.call("GET", "/api/audit?limit=500").json()["items"]
    assert trail <= {a["type"] for a in before}, {a["type"] for a in before}

    # In place without --yes: refused as a usage error, nothing changed.
    r = silo.cli("backup", "restore", answer["id"])
    assert r.returncode == 2 and "--yes" in r.stderr, (r.returncode, r.stderr)
    assert api.call("GET", "/api/collections/tickets/records/late").status_code == 200

    r = silo.cli("--json", "backup", "restore", answer["id"], "--yes")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    undo = report["pre_restore_backup_id"]
    assert undo and undo != answer["id"] and report["audit_dropped"] == 0
    assert api.call("GET", "/api/collections/tickets/records/late").status_code == 404
    after = api.call("GET", "/api/audit?limit=500").json()["items"]
    # Every entry written before the restore is still there, unchanged, in order.
    assert after[:len(before)] == before
    assert trail <= {a["type"] for a in after}
    restored = [a for a in after if a["type"] == "backup.restored"]
    assert len(restored) == 1 and after[-1]["type"] == "backup.restored"
    assert silo.cli("audit", "verify", "acme").returncode == 0

    # The restore is itself undone from the backup it took first.
    r = silo.cli("backup", "restore", undo, "--yes")
    assert r.returncode == 0, r.stderr
    got = api.call("GET", "/api/collections/tickets/records/late")
    assert got.status_code == 200 and got.json()["title"] == "written after the backup"
    final = api.call("GET", "/api/audit?limit=500").json()["items"]
    assert final[:len(after)] == after
    assert [a["type"] for a in final].count("backup.restored") == 2
    assert silo.cli("audit", "verify", "acme").returncode == 0


def test_tampered_truncated_wrong_key_and_wrong_tenant_backups_are_refused(make_silo, data_dir):
    silo = make_silo()
    api = make_api(silo)
    fill(api, 6)
    other = make_api(silo, "globex")
    fill(other, 3)
    a = backup_run(silo, "acme")
    g = backup_run(silo, "globex")
    live = everything(api)
    path = data_object(silo, a["id"])
    original = open(path, "rb").read()

    def refused(why):
        r = silo.cli("backup", "verify", a["id"])
        assert r.returncode == 1 and why in r.stderr, r.stderr
        r = silo.cli("backup", "restore", a["id"], "--yes")
        assert r.returncode == 1 and why in r.stderr, r.stderr
        r = silo.cli("backup", "restore", a["id"], "--as", "copy")
        assert r.returncode == 1, r.stdout
        assert "copy" not in silo.cli("tenant", "list").stdout
        assert everything(api) == live

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 1
    open(path, "wb").write(bytes(flipped))
    refused("altered")
    open(path, "wb").write(original[:-50])
    refused("truncated")
    shutil.copyfile(data_object(silo, g["id"]), path)
    refused("backup data")
    open(path, "wb").write(original)
    assert silo.cli("backup", "verify", a["id"]).returncode == 0

    # Another installation with another master key, pointed at these backups.
    elsewhere = tempfile.mkdtemp(prefix="silo-e2e-other-")
    try:
        thief = make_silo({"SILO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                           "SILO_BACKUP_TARGET": os.path.join(data_dir, "backups"),
                           "SILO_BACKUP_SCHEDULE": "off"}, data=elsewhere)
        r = thief.cli("backup", "restore", a["id"], "--as", "stolen")
        assert r.returncode == 1 and "another master key" in r.stderr, r.stderr
        # Which keys they were is for the server's log, not for the answer.
        # (The master key wraps the tenant's backup key, which wraps the
        # backup's data key: docs/formats.md "Backups".)
        tenant_key = os.path.join(data_dir, "backups", a["id"].rsplit("-", 2)[0], "tenant.key")
        fingerprint = json.load(open(tenant_key))["master_fingerprint"]
        assert len(fingerprint) >= 8 and fingerprint not in r.stderr, r.stderr
        assert fingerprint in thief.output()
        r = thief.cli("backup", "list")
        assert "NO:" in r.stdout
        assert "stolen" not in thief.cli("tenant", "list").stdout
        thief.stop()
    finally:
        subprocess.run(["rm", "-rf", elsewhere])
    # Bad ids never reach the server as paths; the server refuses them itself too.
    assert silo.cli("backup", "verify", "../../etc/passwd").returncode == 2
    h = {"Authorization": "Bearer " + silo.operator_token()}
    for bad in ("..%2F..%2F..%2Fetc%2Fpasswd", a["id"][:-4] + "zzzz",
                g["id"][:32] + "%2F..%2F" + a["id"]):
        r = requests.post(silo.operator_url + "/v1/backups/%s/restore" % bad, headers=h,
                          json={"as": "escaped"}, timeout=10)
        assert r.status_code == 422 and "not a backup id" in r.text, (bad, r.status_code, r.text)
    assert "escaped" not in silo.cli("tenant", "list").stdout
    # An id of the right shape that no backup has: the last hex digit changed
    # to one that makes it differ from every id the target lists (changing it
    # to a fixed digit was the real id whenever the id already ended in it).
    listed = json.loads(silo.cli("--json", "backup", "list").stdout)["items"]
    known = {b["id"] for b in listed}
    assert a["id"] in known
    unknown = next(a["id"][:-1] + d for d in "0123456789abcdef" if a["id"][:-1] + d not in known)
    r = silo.cli("backup", "verify", unknown)
    assert r.returncode == 1 and "(404): no backup " + unknown in r.stderr, (r.stdout, r.stderr)


def test_restore_as_a_new_slug_as_of_a_time(silo):
    api = make_api(silo)
    r = api.call("POST", "/api/collections/tickets/records", {"id": "early", "title": "early"})
    assert r.status_code == 201
    t_between = r.json()["updated_at"]
    time.sleep(0.05)
    assert api.call("POST", "/api/collections/tickets/records",
                    {"id": "late", "title": "late"}).status_code == 201
    assert api.call("PATCH", "/api/collections/tickets/records/early",
                    {"title": "changed later"}).status_code == 200
    answer = backup_run(silo, "acme")
    r = silo.cli("--json", "backup", "restore", answer["id"], "--as", "acme-past",
                 "--at", t_between)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["tenant"] == "acme-past" and report["new_tenant"]
    assert report["events_dropped"] == 2  # the later create and update
    assert report["events"] + 2 == answer["events"]["count"]
    past = Api(silo, "acme-past", token(silo, "acme-past"))
    items = past.call("GET", "/api/collections/tickets/records").json()["items"]
    assert [(x["id"], x["title"]) for x in items] == [("early", "early")]
    history = past.call("GET", "/api/collections/tickets/records/early/history").json()["items"]
    assert len(history) == 1
    # The live tenant is unchanged.
    items = api.call("GET", "/api/collections/tickets/records").json()["items"]
    assert sorted(x["id"] for x in items) == ["early", "late"]
    # A taken slug and a bad time are refused, and leave nothing behind.
    r = silo.cli("backup", "restore", answer["id"], "--as", "acme-past")
    assert r.returncode == 1 and "exists" in r.stderr
    r = silo.cli("backup", "restore", answer["id"], "--as", "acme-x", "--at", "yesterday")
    assert r.returncode == 1
    assert "acme-x" not in silo.cli("tenant", "list").stdout


def test_drill_reports_to_cli_metrics_file_and_audit(silo):
    api = make_api(silo)
    fill(api, 5)
    r = silo.cli("backup", "drill", "acme")
    assert r.returncode == 1 and "no good backup" in r.stdout + r.stderr
    answer = backup_run(silo, "acme")
    r = silo.cli("--json", "backup", "drill")
    assert r.returncode == 0, r.stderr
    [report] = json.loads(r.stdout)
    assert report["ok"] and report["backup_id"] == answer["id"]
    assert report["events"] == report["events_expected"] == answer["events"]["count"]
    assert report["chain_head"] == answer["events"]["head"]
    assert report["integrity"] == "ok" and report["restore_seconds"] > 0
    saved = os.path.join(silo.data_dir, "platform", "drills", answer["id"] + "-drill.json")
    assert json.load(open(saved))["ok"] is True
    assert metric(silo, "silo_restore_drills_total") == 1
    assert metric(silo, "silo_restore_drill_failures_total") == 1
    assert metric(silo, "silo_restore_drill_last_seconds") > 0
    types = [a["type"] for a in api.call("GET", "/api/audit?limit=100").json()["items"]]
    assert "backup.created" in types and types[-1] == "backup.drill_passed"
    # A damaged newest backup: the drill fails, says why, exits 1.
    path = data_object(silo, answer["id"])
    b = bytearray(open(path, "rb").read())
    b[-3] ^= 0x80
    open(path, "wb").write(bytes(b))
    r = silo.cli("backup", "drill", "acme")
    assert r.returncode == 1 and "drill FAILED" in r.stdout and "altered" in r.stdout
    security = open(os.path.join(silo.data_dir, "platform", "security.log")).read()
    assert "backup.drill_failed" in security


def test_progress_bar_on_a_terminal_plain_lines_otherwise(silo):
    for slug in ("acme", "globex", "initech"):
        assert silo.cli("tenant", "create", slug).returncode == 0
    r = silo.cli("backup", "run")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout + r.stderr and "[#" not in r.stderr
    assert len([l for l in r.stdout.splitlines() if ": backed up " in l]) == 3
    main, sub = pty.openpty()
    p = subprocess.Popen([os.environ["SILO_BIN"], "backup", "run"], env=silo.env, stdin=sub,
                         stdout=sub, stderr=sub, close_fds=True)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(timeout=60) == 0
    os.close(main)
    text = out.decode()
    assert "\r" in text and re.search(r"\[#*-+\] \d/3 backing up", text), text
    assert text.count(": backed up ") == 3


@pytest.fixture
def s3rver():
    if not os.path.exists(S3RVER):
        pytest.fail("s3rver is not installed: run scripts/bootstrap.sh")
    d = tempfile.mkdtemp(prefix="silo-s3-")
    # -s: no request log (nobody reads the pipe after the port line).
    p = subprocess.Popen([*DIE_WITH_PARENT, S3RVER, "-s", "-d", d, "-a", "127.0.0.1",
                          "-p", "0",
                          "--configure-bucket", "silo-backups"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    m = None
    for _ in range(20):  # it prints a blank line first
        line = p.stdout.readline()
        seen += line
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m or not line:
            break
    assert m, seen
    yield {"port": int(m.group(1)), "dir": d, "proc": p}
    p.kill()
    p.wait()
    subprocess.run(["rm", "-rf", d])


def test_s3_target_round_trip_against_a_real_s3_server(make_silo, s3rver):
    secret = "S3RVER"
    silo = make_silo({"SILO_BACKUP_TARGET": "s3://silo-backups/prod/eu",
                      "SILO_S3_ENDPOINT": "http://127.0.0.1:%d" % s3rver["port"],
                      "SILO_S3_REGION": "us-east-1",
                      "SILO_S3_ACCESS_KEY_ID": "S3RVER",
                      "SILO_S3_SECRET_ACCESS_KEY": secret,
                      "SILO_BACKUP_SCHEDULE": "off"})
    api = make_api(silo)
    fill(api, 8)
    before = everything(api)
    # A file too: its blob goes to the bucket and comes back sealed anew.
    from test_files import png, upload
    assert api.call("POST", "/api/collections",
                    {"name": "docs", "fields": [{"name": "scan", "type": "file"}]}
                    ).status_code == 201
    scan = png(100_000, MARKER.encode())
    fid = upload(api, scan).json()["id"]
    assert api.call("POST", "/api/collections/docs/records",
                    {"id": "d1", "scan": fid}).status_code == 201
    answer = backup_run(silo, "acme")
    assert answer["target"] == "s3://silo-backups/prod/eu/"
    assert answer["files"] == 1
    assert [f for f in files_under(s3rver["dir"]) if fid in f]
    # The objects are in the bucket under the prefix, sealed.
    stored = [f for f in files_under(s3rver["dir"]) if answer["id"] in f]
    assert stored, list(files_under(s3rver["dir"]))
    assert_no_plaintext(s3rver["dir"])
    r = silo.cli("--json", "backup", "list")
    listed = json.loads(r.stdout)["items"]
    assert [b["id"] for b in listed] == [answer["id"]] and listed[0]["good"]
    assert silo.cli("backup", "verify", answer["id"]).returncode == 0
    r = silo.cli("backup", "restore", answer["id"], "--as", "acme-from-s3")
    assert r.returncode == 0, r.stderr
    copy = Api(silo, "acme-from-s3", token(silo, "acme-from-s3"))
    assert everything(copy)[0] == before[0]
    assert copy.call("GET", "/api/collections/docs/records/d1/files/scan/" + fid).content == scan
    assert silo.cli("backup", "drill", "acme").returncode == 0
    second = backup_run(silo, "acme")
    assert second["id"] != answer["id"]
    assert silo.cli("backup", "prune").returncode == 0  # both are younger than 30 days
    assert len(json.loads(silo.cli("--json", "backup", "list", "acme").stdout)["items"]) == 2
    # The server goes away: a clear failure, counted; the secret is never printed.
    s3rver["proc"].kill()
    s3rver["proc"].wait()
    r = silo.cli("backup", "run", "acme")
    assert r.returncode == 1 and re.search(r"S3 (GET|PUT) failed", r.stdout + r.stderr), (
        r.stdout + r.stderr)
    assert metric(silo, "silo_backup_failures_total") == 1
    out = silo.output()
    assert "SILO_S3_SECRET_ACCESS_KEY" not in out
    assert not re.search(r"S3RVER:S3RVER", out)


def test_scheduled_backup_retries_logs_and_drills(make_silo, data_dir):
    # The tenant exists before the scheduled server starts, and the schedule
    # is set a few seconds after that start. A start slower than the offset
    # (a loaded machine, a sanitizer build) is not a verdict: the server is
    # stopped and started again with a longer offset.
    first = make_silo({"SILO_BACKUP_SCHEDULE": "off"})
    fill(make_api(first), 3)
    assert first.stop() == 0
    target = os.path.join(data_dir, "offsite")
    open(target, "w").write("not a directory")  # the first attempt fails
    for offset in (4, 8, 16, 32):
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
        silo = make_silo({"SILO_BACKUP_SCHEDULE": "on", "SILO_BACKUP_TARGET": target,
                          "SILO_BACKUP_TIME": at.strftime("%H:%M:%S"),
                          "SILO_BACKUP_WEEKLY_DAY": at.strftime("%A").lower(),
                          "SILO_BACKUP_RETRY_SECONDS": "3"})
        if datetime.datetime.now(datetime.timezone.utc) < at - datetime.timedelta(seconds=1):
            break
        assert silo.stop() == 0
    else:
        pytest.fail("the server never started within 32 s")
    deadline = time.time() + 20 + offset
    while "scheduled backup failed" not in silo.output() and time.time() < deadline:
        time.sleep(0.2)
    assert "scheduled backup failed" in silo.output()
    assert metric(silo, "silo_backup_failures_total") >= 1
    os.remove(target)  # the operator fixes the target; the retry succeeds
    while "restore drill passed" not in silo.output() and time.time() < deadline + 10:
        time.sleep(0.2)
    out = silo.output()
    assert "scheduled backup" in out and "restore drill passed" in out, out[-3000:]
    assert metric(silo, "silo_backups_total") == 1
    assert metric(silo, "silo_restore_drills_total") == 1
    security = open(os.path.join(data_dir, "platform", "security.log")).read()
    assert "backup.backup_failed" in security
    assert glob.glob(os.path.join(target, "*", "*.data"))


def test_a_copy_restored_as_another_tenant_keeps_its_users_second_factor(make_silo):
    """A TOTP secret is sealed under its tenant's key: a copy restored as
    another tenant (with its own key) gets it re-sealed under that key, so
    its users still pass MFA there (before, the copy answered 500). Recovery
    codes are hashes keyed with the original's key and cannot move: they are
    dropped in the copy and still work in the original."""
    from identity_util import Client
    from test_identity import MANY, OWNER, owner_session
    silo = make_silo(MANY)
    _, secret, codes = owner_session(silo)
    answer = backup_run(silo, "acme")
    r = silo.cli("--json", "backup", "restore", answer["id"], "--as", "acme-copy")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["secrets_resealed"] == 1, report
    assert report["recovery_codes_dropped"] == len(codes) > 0, report
    copy = Client(silo, "acme-copy")
    copy.sign_in(OWNER, secret)
    assert copy.call("GET", "/api/auth/me").status_code == 200
    # A recovery code: refused in the copy, accepted in the original.
    for slug, status in (("acme-copy", 401), ("acme", 200)):
        c = Client(silo, slug)
        r = c.login(OWNER)
        assert r.status_code == 200 and r.json()["mfa_required"], r.text
        m = c.call("POST", "/api/auth/mfa",
                   {"mfa_token": r.json()["mfa_token"], "recovery_code": codes[0]})
        assert m.status_code == status, (slug, m.status_code, m.text)
