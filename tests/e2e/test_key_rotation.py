"""silo keys rotate-master (issue 22) through the real CLI: every tenant key
and every tenant's backup key (which wraps its backups' data keys) re-wrapped
under the new master key; afterwards the new key
alone starts the server and restores every backup, and the old key is
refused. Refusals change nothing: the server running, no new key, a
malformed one, the new key equal to the old, a current key that is not the
data directory's. An interrupted run is finished by a rerun (the keyring's
part is KeyringTest.ARotationResumesAndLeavesOnlyTheNewKey; the backups' is
one manifest at a time, here a rerun after a finished keyring)."""
import base64
import glob
import json
import os

from test_backups import backup_run, everything, fill
from test_records import Api, make_api

ROTATE = ("keys", "rotate-master")


def b64key():
    return base64.b64encode(os.urandom(32)).decode()


def fingerprints(data_dir):
    """The master keys that wrap what the target holds: the tenants' backup
    keys (format 2 manifests wrap their data keys under those) and any
    format 1 manifest."""
    keys = glob.glob(os.path.join(data_dir, "backups", "*", "tenant.key"))
    manifests = glob.glob(os.path.join(data_dir, "backups", "*", "*.json"))
    found = {json.load(open(p))["master_fingerprint"] for p in keys}
    for p in manifests:
        m = json.load(open(p))
        assert m["format"] in (1, 2)
        if m["format"] == 1:
            found.add(m["master_fingerprint"])
        else:
            assert "master_fingerprint" not in m and m["tenant_key_id"]
    assert len(keys) == 2 and len(manifests) == 2
    return sorted(found)


def test_rotate_master_rewraps_keys_and_backups_and_the_old_key_opens_nothing(make_silo):
    old = b64key()
    silo = make_silo({"SILO_MASTER_KEY": old})
    api = make_api(silo)
    token = api.h["Authorization"][len("Bearer "):]
    fill(api, 5)
    other = make_api(silo, "globex")
    fill(other, 2)
    before = backup_run(silo, "acme")
    backup_run(silo, "globex")
    live = everything(api)[:3]  # records, histories, events (the audit log grows with reads)
    [old_fp] = fingerprints(silo.data_dir)

    new = b64key()
    # While the server runs: refused, nothing changed.
    r = silo.cli(*ROTATE, env={"SILO_NEW_MASTER_KEY": new})
    assert r.returncode == 1 and "stop silo serve first" in r.stderr, r.stderr
    assert silo.stop() == 0
    for env, why in [({}, "SILO_NEW_MASTER_KEY"),
                     ({"SILO_NEW_MASTER_KEY": "c2hvcnQ="}, "32 bytes"),
                     ({"SILO_NEW_MASTER_KEY": old}, "the current one"),
                     ({"SILO_MASTER_KEY": b64key(), "SILO_NEW_MASTER_KEY": new},
                      "not this data directory's master key")]:
        r = silo.cli(*ROTATE, env=env)
        assert r.returncode == 1 and why in r.stderr, (env.keys(), r.stderr)
        assert old not in r.stderr and new not in r.stderr
    assert fingerprints(silo.data_dir) == [old_fp]

    r = silo.cli(*ROTATE, env={"SILO_NEW_MASTER_KEY": new})
    assert r.returncode == 0, r.stderr
    assert "2 tenant keys re-wrapped, 2 backups re-wrapped (2 tenant backup keys" in r.stdout, \
        r.stdout
    assert new not in r.stdout and old not in r.stdout
    [new_fp] = fingerprints(silo.data_dir)
    assert new_fp != old_fp and new_fp in r.stdout
    # A rerun has nothing left to do.
    r = silo.cli(*ROTATE, env={"SILO_NEW_MASTER_KEY": new})
    assert r.returncode == 0 and "0 tenant keys re-wrapped, 0 backups" in r.stdout, r.stdout

    # The old key starts nothing.
    refused = make_silo({"SILO_MASTER_KEY": old}, data=silo.data_dir, wait=False)
    assert refused.proc.wait(timeout=30) == 1
    assert "wrong master key" in refused.output()
    # The new key alone: the data and every backup.
    silo = make_silo({"SILO_MASTER_KEY": new}, data=silo.data_dir)
    api = Api(silo, "acme", token)
    assert everything(api)[:3] == live
    r = silo.cli("backup", "restore", before["id"], "--as", "restored")
    assert r.returncode == 0, r.stderr
    assert silo.cli("backup", "verify", before["id"]).returncode == 0
    assert silo.cli("audit", "verify").returncode == 0
