"""Tenant databases through the real binary: created encrypted with the
tenant, unreadable to the sqlite3 tool, closed on suspend and delete, and the
open-tenant cache bounded by SILO_MAX_OPEN_TENANTS."""
import json
import os
import re
import subprocess

import requests


def metric(silo, name):
    r = requests.get(silo.operator_url + "/metrics", timeout=5,
                     headers={"Authorization": "Bearer " + silo.operator_token()})
    assert r.status_code == 200
    m = re.search(r"^" + name + r" (\S+)$", r.text, re.M)
    assert m, name
    return float(m.group(1))


def all_bytes_under(path):
    out = b""
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out += fh.read()
    return out


def create(silo, slug, name="Globex Secret Name", email="ceo@globex.test"):
    r = silo.cli("--json", "tenant", "create", slug, "--name", name, "--owner-email", email)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_tenant_database_is_created_encrypted(silo):
    t = create(silo, "globex")
    db = os.path.join(silo.data_dir, "tenants", t["id"], "tenant.db")
    with open(db, "rb") as f:
        head = f.read(16)
    assert head.startswith(b"SILODB")
    assert metric(silo, "silo_open_tenants") == 1
    tenants = all_bytes_under(os.path.join(silo.data_dir, "tenants"))
    assert b"SQLite format 3" not in tenants
    assert b"tenant_meta" not in tenants  # the schema is encrypted too
    assert b"Globex Secret Name" not in tenants and b"ceo@globex.test" not in tenants

    silo.stop()
    r = subprocess.run(["sqlite3", db, "SELECT * FROM sqlite_master"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "not a database" in r.stderr, r.stderr


def test_suspend_and_delete_close_the_database(silo):
    t = create(silo, "initech")
    assert metric(silo, "silo_open_tenants") == 1
    assert silo.cli("tenant", "suspend", "initech").returncode == 0
    assert metric(silo, "silo_open_tenants") == 0
    assert silo.cli("tenant", "resume", "initech").returncode == 0
    assert silo.cli("tenant", "delete", "initech", "--yes").returncode == 0
    assert metric(silo, "silo_open_tenants") == 0
    assert not os.path.exists(os.path.join(silo.data_dir, "tenants", t["id"]))


def test_open_tenants_are_bounded(make_silo):
    silo = make_silo({"SILO_MAX_OPEN_TENANTS": "2"})
    for slug in ["one-co", "two-co", "three-co", "four-co"]:
        create(silo, slug)
        assert metric(silo, "silo_open_tenants") <= 2
    assert metric(silo, "silo_open_tenants") == 2
    assert metric(silo, "silo_tenants") == 4


def test_clean_shutdown_checkpoints_and_a_restart_opens_lazily(make_silo, data_dir):
    silo = make_silo()
    t = create(silo, "umbrella")
    db = os.path.join(data_dir, "tenants", t["id"], "tenant.db")
    assert os.path.exists(db + "-wal")  # the tenant's first commits sit in the WAL
    assert not os.path.exists(db + "-shm")  # unix-excl: the WAL index stays in memory
    assert silo.stop() == 0
    assert not os.path.exists(db + "-wal")  # closed cleanly: everything is in the file
    assert os.path.getsize(db) >= 3 * 4096
    silo = make_silo()
    assert metric(silo, "silo_open_tenants") == 0  # opened on first use, not at start
    assert silo.get("/t/umbrella/api/").status_code == 200
