"""silo incident report (issue 22) through the real CLI: a timeline from the
platform's security log and the tenants' audit logs, the tenants and users
concerned, the 72-hour deadline from the discovery time, a notification
draft per tenant, as JSON and Markdown signed with the platform key (checked
here with python3-cryptography too); a changed report is refused by
`silo incident verify`; every affected tenant's audit log records that a
report read it."""
import base64
import datetime
import json
import os
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from identity_util import Client
from test_identity import OWNER, owner_session

MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def report(silo, *args):
    out = tempfile.mkdtemp(prefix="silo-incident-")
    r = silo.cli("incident", "report", "--out", out, *args)
    assert r.returncode == 0, r.stderr
    [name] = [n for n in os.listdir(out) if n.endswith(".json")]
    # A report names users and client addresses: the owner's alone, and
    # nothing half-written beside it.
    assert sorted(os.listdir(out)) == [name, name[:-5] + ".md"]
    for n in (name, name[:-5] + ".md"):
        assert os.stat(os.path.join(out, n)).st_mode & 0o777 == 0o600, n
    with open(os.path.join(out, name)) as f:
        signed = json.load(f)
    with open(os.path.join(out, name[:-5] + ".md")) as f:
        assert f.read() == signed["markdown"]
    return os.path.join(out, name), signed, r.stdout


def test_an_incident_report_is_a_signed_timeline_with_drafts_and_a_deadline(make_silo):
    silo = make_silo(MANY)
    start = now() - datetime.timedelta(seconds=2)
    owner, _, _ = owner_session(silo)
    # Failed sign-ins against the owner, from the test client.
    intruder = Client(silo, "acme")
    for _ in range(3):
        assert intruder.login(OWNER, "not the password at all").status_code == 401
    r = silo.cli("tenant", "create", "globex")
    assert r.returncode == 0, r.stderr
    # The operator exports acme (a development platform allows it).
    assert silo.cli("tenant", "export", "acme").returncode == 0
    end = now() + datetime.timedelta(seconds=1)
    discovered = datetime.datetime(2026, 11, 30, 8, 15, tzinfo=datetime.timezone.utc)

    path, signed, stdout = report(silo, "--from", rfc3339(start), "--to", rfc3339(end),
                                  "--discovered", rfc3339(discovered))
    rep = signed["report"]
    assert rep["notify_by"] == "2026-12-03T08:15:00.000000Z", rep["notify_by"]
    assert "notify by 2026-12-03T08:15:00.000000Z" in stdout
    types = [(e["source"], e["type"]) for e in rep["timeline"]]
    assert types.count(("acme", "login.failed")) == 3, types
    assert ("acme", "tenant.exported") in types and ("platform", "tenant.exported") in types
    assert [e["at"] for e in rep["timeline"]] == sorted(e["at"] for e in rep["timeline"])
    [acme] = [t for t in rep["affected_tenants"] if t["tenant"] == "acme"]
    owner_id = owner.call("GET", "/api/auth/me").json()["user"]["id"]
    assert owner_id in acme["users"], acme
    names = {c["category"] for c in acme["categories"]}
    assert {"failed sign-ins and second factors", "exports of records"} <= names, names
    draft = rep["drafts"]["acme"]
    assert "failed sign-ins" in draft and "2026-12-03T08:15:00.000000Z" in draft
    assert "the records of the exported collections" in draft
    assert "# Incident report " + rep["id"] in signed["markdown"]
    assert "**Notify by: 2026-12-03T08:15:00.000000Z**" in signed["markdown"]

    # The signature, checked with another implementation: it covers the
    # report as serialised and the Markdown (docs/formats.md).
    text = ("silo-incident-1\n" + json.dumps(rep, separators=(",", ":"), ensure_ascii=False) +
            "\n" + signed["markdown"]).encode()
    Ed25519PublicKey.from_public_bytes(base64.b64decode(signed["public_key"])).verify(
        base64.b64decode(signed["signature"]), text)
    r = silo.cli("incident", "verify", path)
    assert r.returncode == 0 and "unchanged" in r.stdout, (r.stdout, r.stderr)
    # Any change is refused: the Markdown, a timeline entry.
    for change in (lambda s: s["markdown"].replace("acme", "acne"),
                   lambda s: s["report"]["timeline"].pop()):
        altered = json.loads(json.dumps(signed))
        if isinstance(change(altered), str):
            altered["markdown"] = change(altered)
        with open(path, "w") as f:
            json.dump(altered, f)
        r = silo.cli("incident", "verify", path)
        assert r.returncode == 1 and "NOT VALID" in r.stdout, r.stdout

    # The tenant sees that its log went into a report.
    audit = owner.call("GET", "/api/audit?type=incident.reported").json()["items"]
    assert len(audit) == 1 and audit[0]["subject"]["id"] == rep["id"], audit

    # One tenant: the others, and platform events about them, stay out.
    _, one, _ = report(silo, "--from", rfc3339(start), "--to", rfc3339(end),
                       "--discovered", rfc3339(discovered), "--tenant", "globex")
    assert one["report"]["tenant"] == "globex"
    assert all(e["source"] in ("globex", "platform") for e in one["report"]["timeline"])
    assert all("acme" not in e["about"] for e in one["report"]["timeline"])
    assert "acme" not in one["report"]["drafts"]


def test_bad_incident_requests_are_refused(make_silo):
    silo = make_silo()
    t = rfc3339(now())
    earlier = rfc3339(now() - datetime.timedelta(hours=1))
    for args, why in [
        (["--from", t, "--to", earlier, "--discovered", t], "must be after from"),
        (["--from", "yesterday", "--to", t, "--discovered", t], "from: must be an RFC 3339"),
        (["--from", earlier, "--to", t, "--discovered", t, "--tenant", "nosuch"],
         "no such tenant"),
    ]:
        r = silo.cli("incident", "report", *args)
        assert r.returncode == 1 and why in r.stderr, (args, r.stderr)
    r = silo.cli("incident", "report", "--from", earlier, "--to", t, "--discovered", t,
                 "--tenant", "../x")
    assert r.returncode == 2
