"""Rollback detection (issue 22): signed checkpoints of each tenant's chains,
kept off the tenant's disk (platform/checkpoints/ and beside every backup).
A tenant.db swapped for an older authentic copy passes every chain check and
integrity_check; the checkpoint names it, in `silo audit verify` and at
start. A forged or altered checkpoint is refused. The signatures are checked
here with another implementation (python3-cryptography) against the format
docs/formats.md describes."""
import base64
import glob
import json
import os
import shutil
import tempfile
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from test_records import Api, make_api


def canonical(c):
    return ("silo-checkpoint-1\ntenant %s\nslug %s\nevents %d %s\naudit %d %s\nat %d\n"
            "reason %s\n" % (c["tenant"], c["slug"], c["events"]["seq"], c["events"]["hash"],
                             c["audit"]["seq"], c["audit"]["hash"], c["at_us"], c["reason"]))


def verify(c, public_key_b64):
    """Raises unless `c` is signed by the key (independently of Silo)."""
    assert c["public_key"] == public_key_b64
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64)).verify(
        base64.b64decode(c["signature"]), canonical(c).encode())


def signing_public_key(silo):
    """The development platform's public key, from its signing key file."""
    with open(os.path.join(silo.data_dir, "dev", "signing.key")) as f:
        seed = base64.b64decode(f.read().strip())
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def tenant_dir(silo, tenant_id):
    return os.path.join(silo.data_dir, "tenants", tenant_id)


def security_types(silo):
    with open(os.path.join(silo.data_dir, "platform", "security.log")) as f:
        return [json.loads(line) for line in f]


def wait_for_security_event(silo, type_, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [e for e in security_types(silo) if e["type"] == type_]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("no %s in the security log" % type_)


def test_checkpoints_are_signed_kept_off_the_tenant_and_name_a_swapped_in_old_copy(
        silo, make_silo):
    api = make_api(silo)
    token = api.h["Authorization"][len("Bearer "):]
    tenant_id = json.loads(silo.cli("--json", "tenant", "list").stdout)["items"][0]["id"]
    pk = signing_public_key(silo)
    for i in range(3):
        assert api.call("POST", "/api/collections/tickets/records",
                        {"title": "t%d" % i}).status_code == 201

    # A backup stores a signed checkpoint beside it and keeps it in platform/.
    r = silo.cli("--json", "backup", "run", "acme")
    assert r.returncode == 0, r.stderr
    [stored] = glob.glob(os.path.join(silo.data_dir, "backups", tenant_id, "*.checkpoint"))
    with open(stored) as f:
        at_backup = json.loads(f.read())
    verify(at_backup, pk)
    assert at_backup["tenant"] == tenant_id and at_backup["reason"] == "backup"
    kept_path = os.path.join(silo.data_dir, "platform", "checkpoints", tenant_id + ".json")
    with open(kept_path) as f:
        assert json.load(f) == at_backup
    # Nothing of it lives in the tenant's own directory.
    assert not any(n.endswith(".json") for n in os.listdir(tenant_dir(silo, tenant_id)))

    # The tenant fetches one of its own chains, as evidence.
    r = api.call("GET", "/api/audit/checkpoint")
    assert r.status_code == 200, r.text
    mine = r.json()
    verify(mine, pk)
    assert mine["reason"] == "request" and mine["audit"]["seq"] >= at_backup["audit"]["seq"]
    r = silo.cli("audit", "verify", "acme")
    assert r.returncode == 0 and "holds the checkpoint of" in r.stdout, r.stdout

    # An older authentic copy of tenant.db, taken now...
    assert silo.stop() == 0
    old = os.path.join(tempfile.mkdtemp(prefix="silo-old-copy-"), tenant_id)
    shutil.copytree(tenant_dir(silo, tenant_id), old)
    # ...then more work, and a checkpoint that saw it.
    silo = make_silo()
    api = Api(silo, "acme", token)
    for i in range(3, 6):
        assert api.call("POST", "/api/collections/tickets/records",
                        {"title": "t%d" % i}).status_code == 201
    assert api.call("GET", "/api/audit/checkpoint").status_code == 200
    assert silo.cli("audit", "verify", "acme").returncode == 0
    assert silo.stop() == 0

    # The old copy swapped in: every chain and integrity_check pass, the
    # checkpoint does not.
    shutil.rmtree(tenant_dir(silo, tenant_id))
    shutil.move(old, tenant_dir(silo, tenant_id))
    silo = make_silo()
    api = Api(silo, "acme", token)
    found = wait_for_security_event(silo, "audit.rollback_detected")
    assert "acme" in found[0]["detail"] and "audit log ends at entry" in found[0]["detail"]
    assert "a tenant's log lost entries it once had" in silo.output()
    r = silo.cli("--json", "audit", "verify", "acme")
    assert r.returncode == 1, r.stdout
    [verdict] = json.loads(r.stdout)["tenants"]
    assert verdict["events_first_broken"] is None and verdict["audit_first_broken"] is None
    assert verdict["integrity"] == "ok" and verdict["checkpoint"]["ok"] is False, verdict
    r = silo.cli("audit", "verify")
    assert r.returncode == 1 and "acme: ROLLED BACK" in r.stdout, r.stdout
    # No new checkpoint blesses it (the verifications above appended audit
    # entries to the old copy: the checkpoint's entry now exists, and differs).
    r = api.call("GET", "/api/audit/checkpoint")
    assert r.status_code == 409 and "is not the one the checkpoint" in r.text, r.text
    assert silo.cli("audit", "verify", "acme").returncode == 1


def test_a_forged_or_altered_checkpoint_is_refused(silo):
    api = make_api(silo)
    tenant_id = json.loads(silo.cli("--json", "tenant", "list").stdout)["items"][0]["id"]
    r = api.call("GET", "/api/audit/checkpoint")
    assert r.status_code == 200
    good = r.json()
    path = os.path.join(silo.data_dir, "platform", "checkpoints", tenant_id + ".json")

    # Signed by another key, claiming a longer log than the tenant has.
    forger = Ed25519PrivateKey.generate()
    forged = dict(good, audit={"seq": good["audit"]["seq"] + 100, "hash": "00" * 32})
    forged["signature"] = base64.b64encode(forger.sign(canonical(forged).encode())).decode()
    forged["public_key"] = base64.b64encode(forger.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    with open(path, "w") as f:
        json.dump(forged, f)
    r = silo.cli("audit", "verify", "acme")
    assert r.returncode == 1 and "signed by another key" in r.stdout, r.stdout
    # The same, claiming the platform's public key.
    forged["public_key"] = good["public_key"]
    with open(path, "w") as f:
        json.dump(forged, f)
    r = silo.cli("audit", "verify", "acme")
    assert r.returncode == 1 and "does not match its contents" in r.stdout, r.stdout

    # The platform's own signature over other contents.
    altered = dict(good, audit={"seq": good["audit"]["seq"] + 100, "hash": "00" * 32})
    with open(path, "w") as f:
        json.dump(altered, f)
    r = silo.cli("audit", "verify", "acme")
    assert r.returncode == 1 and "does not match its contents" in r.stdout, r.stdout

    # The real one verifies again.
    with open(path, "w") as f:
        json.dump(good, f)
    assert silo.cli("audit", "verify", "acme").returncode == 0
