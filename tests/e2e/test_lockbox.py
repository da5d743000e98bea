"""The lockbox (issue 22): the operator reaches a tenant's data only with an
approved access request, through the real CLI and API and a real SMTP
server. The sequence: refused without a request; request (the approvers are
mailed); a user without the right, and approvals without a current TOTP
code, refused; approved with one; a replayed approval refused; export and a
token within the scope work, outside it are refused; the tenant revokes;
the token dies at once and the export is refused; everything in the
tenant's audit log; "never" refuses the next request.

The platform keeps the lockbox (SILO_OPERATOR_ACCESS=approval, the
default; the other black-box tests run a development platform)."""
import json
import time

from conftest import TOKEN_EXPIRES
from identity_util import Client, SmtpSink, oathtool
from test_identity import OWNER, owner_session

APPROVAL = {"SILO_OPERATOR_ACCESS": "approval", "SILO_LOGIN_RATE_PER_MINUTE": "1000"}
MARKER = "lockbox-marker-5d2e"  # only the tenant's record holds it
REFUSAL = "operator access to tenant data needs the tenant's approval"


def next_code(secret):
    """A code for the step after now's: accepted once, and only after every
    code this account used so far (each step counts once)."""
    return oathtool(secret, (int(time.time()) // 30 + 1) * 30)


def member(owner, silo, email, roles):
    """An active user with `roles`, signed in (and, for a role that requires
    MFA, enrolled); returns (client, TOTP secret or None)."""
    r = owner.call("POST", "/api/users", {"email": email, "roles": roles})
    assert r.status_code == 201, r.text
    c = Client(silo, "acme")
    assert c.setup(r.json()["setup_token"]).status_code == 200
    body = c.sign_in(email)
    if body.get("mfa_enrolment_required"):
        secret, _ = c.enrol_totp()
        return c, secret
    return c, None


def operator(silo, *args):
    return silo.cli(*args)


def token_args(request=None, perms=("records.*.read",)):
    args = ["tenant", "token", "acme", "--name", "support", "--expires", TOKEN_EXPIRES]
    for p in perms:
        args += ["--permission", p]
    if request:
        args += ["--access-request", request]
    return args


def audit_of(owner):
    r = owner.call("GET", "/api/audit?limit=1000")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_the_operator_reads_data_only_with_the_tenants_approval(make_silo):
    with SmtpSink() as smtp:
        silo = make_silo({**APPROVAL, "SILO_SMTP_URL": smtp.url,
                          "SILO_SMTP_FROM": "silo@acme.test"})
        owner, owner_secret, _ = owner_session(silo)
        sec, sec_secret = member(owner, silo, "sec@acme.test", ["security_admin"])
        editor, _ = member(owner, silo, "editor@acme.test", ["editor"])
        r = owner.call("POST", "/api/collections",
                       {"name": "tickets", "fields": [{"name": "title", "type": "string"}]})
        assert r.status_code == 201, r.text
        r = owner.call("POST", "/api/collections/tickets/records", {"title": MARKER})
        assert r.status_code == 201, r.text
        settings = owner.call("GET", "/api/settings").json()
        assert settings["operator_access"] == "approval", settings
        assert settings["operator_access_source"] == "platform", settings

        # 1. No request: no token, no export; both refusals audited.
        r = operator(silo, *token_args())
        assert r.returncode == 1 and REFUSAL in r.stderr and r.stdout == "", (r.stdout, r.stderr)
        r = operator(silo, "tenant", "export", "acme")
        assert r.returncode == 1 and REFUSAL in r.stderr and MARKER not in r.stdout, r.stderr

        # 2. The request; the tenant's approvers get a mail naming it.
        mails_before = len(smtp.messages)
        r = operator(silo, "--json", "access", "request", "acme", "--scope", "records.*.export",
                     "--scope", "records.tickets.read", "--reason", "ticket 4711: slow export",
                     "--duration", "2h")
        assert r.returncode == 0, r.stderr
        req = json.loads(r.stdout)
        assert req["state"] == "pending" and req["duration_s"] == 7200, req
        rid = req["id"]
        for address in (OWNER, "sec@acme.test"):
            mail = smtp.wait_for(lambda text, a=address: rid in text and a in text,
                                 start=mails_before)
            assert "ticket 4711" in mail.content.decode()
        assert not any("editor@acme.test" in m.content.decode() and rid in m.content.decode()
                       for m in smtp.messages[mails_before:])
        # A pending request opens nothing.
        assert operator(silo, *token_args(rid)).returncode == 1

        # 3. Who may see and decide: the owner and the security admin; not an
        # editor, not an API token, not without a current code.
        listed = sec.call("GET", "/api/access-requests")
        assert listed.status_code == 200 and listed.json()["items"][0]["id"] == rid
        assert editor.call("GET", "/api/access-requests").status_code == 403
        r = editor.call("POST", "/api/access-requests/%s/approve" % rid, {"code": "123456"})
        assert r.status_code == 403, r.text
        r = owner.call("POST", "/api/tokens", {"name": "mine", "permissions":
                       ["access_requests.manage"], "expires_at": TOKEN_EXPIRES})
        assert r.status_code == 201, r.text
        by_token = Client(silo, "acme")
        by_token.bearer = r.json()["token"]
        r = by_token.call("POST", "/api/access-requests/%s/approve" % rid,
                          {"code": next_code(owner_secret)})
        assert r.status_code == 403, r.text
        assert owner.call("POST", "/api/access-requests/%s/approve" % rid, {}).status_code == 403
        r = owner.call("POST", "/api/access-requests/%s/approve" % rid, {"code": "000000"})
        assert r.status_code == 403, r.text
        assert operator(silo, "access", "show", "acme", rid).stdout.split()[1] == "pending"

        # 4. Approved with a current code; the same code again is refused,
        # and so is a second decision with another user's fresh code.
        code = next_code(owner_secret)
        r = owner.call("POST", "/api/access-requests/%s/approve" % rid, {"code": code})
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        assert r.json()["decided_by"] == owner.call("GET", "/api/auth/me").json()["user"]["id"]
        r = owner.call("POST", "/api/access-requests/%s/approve" % rid, {"code": code})
        assert r.status_code == 403, r.text
        r = sec.call("POST", "/api/access-requests/%s/deny" % rid, {"code": next_code(sec_secret)})
        assert r.status_code == 409, r.text
        shown = json.loads(operator(silo, "--json", "access", "show", "acme", rid).stdout)
        assert shown["state"] == "approved" and "decided_by" not in shown, shown

        # 5. Within the scope: the export and a token; outside it: refused.
        r = operator(silo, "tenant", "export", "acme", "--access-request", rid)
        assert r.returncode == 0 and MARKER in r.stdout, r.stderr
        r = operator(silo, *token_args(rid, ("records.tickets.update",)))
        assert r.returncode == 1 and "scope" in r.stderr, r.stderr
        r = operator(silo, *token_args(rid, ("records.tickets.read",)))
        assert r.returncode == 0, r.stderr
        support = Client(silo, "acme")
        support.bearer = r.stdout.strip()
        r = support.call("GET", "/api/collections/tickets/records")
        assert r.status_code == 200 and MARKER in r.text, r.text

        # 6. The tenant revokes: the token dies at once, the export is refused.
        r = owner.call("POST", "/api/access-requests/%s/revoke" % rid)
        assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
        assert support.call("GET", "/api/collections/tickets/records").status_code == 401
        r = operator(silo, "tenant", "export", "acme", "--access-request", rid)
        assert r.returncode == 1 and MARKER not in r.stdout and "revoked" in r.stderr, r.stderr
        assert operator(silo, *token_args(rid)).returncode == 1

        # 7. Every step is in the tenant's audit log, which the tenant reads.
        types = [e["type"] for e in audit_of(owner)]
        for t in ("access.requested", "access.approved", "access.used", "tenant.exported",
                  "access.revoked", "token.revoked"):
            assert t in types, (t, types)
        assert types.count("access.refused") >= 5, types
        assert types.count("access.decision_refused") >= 2, types
        # ...and in the platform's security log, without the reason's text.
        with open(silo.data_dir + "/platform/security.log") as f:
            log = f.read()
        for t in ("access.requested", "access.approved", "access.revoked", "access.refused",
                  "tenant.exported"):
            assert '"type":"%s"' % t in log.replace(" ", ""), t
        assert "ticket 4711" not in log

        # 8. "never" (an owner's, within the step-up window): the next
        # request is refused, and an editor cannot set it.
        assert editor.call("PATCH", "/api/settings",
                           {"operator_access": "allowed"}).status_code == 403
        r = owner.call("PATCH", "/api/settings", {"operator_access": "allowed"})
        assert r.status_code == 422, r.text  # not permitted on this platform
        r = owner.call("PATCH", "/api/settings", {"operator_access": "never"})
        assert r.status_code == 200 and r.json()["operator_access"] == "never", r.text
        r = operator(silo, "access", "request", "acme", "--scope", "records.*.read",
                     "--reason", "again", "--duration", "1h")
        assert r.returncode == 1 and "does not allow" in r.stderr, r.stderr


def test_a_tenant_on_a_development_platform_can_close_itself(make_silo):
    """SILO_OPERATOR_ACCESS=allowed: a new tenant starts open (and says so);
    its owner closes it, and the operator's tokens then need a request."""
    silo = make_silo({"SILO_OPERATOR_ACCESS": "allowed", "SILO_LOGIN_RATE_PER_MINUTE": "1000"})
    owner, _, _ = owner_session(silo)
    settings = owner.call("GET", "/api/settings").json()
    assert settings == {"cors_origins": [], "operator_access": "allowed",
                        "operator_access_source": "platform"}, settings
    assert operator(silo, *token_args()).returncode == 0
    r = owner.call("PATCH", "/api/settings", {"operator_access": "approval"})
    assert r.status_code == 200 and r.json()["operator_access_source"] == "tenant", r.text
    r = operator(silo, *token_args())
    assert r.returncode == 1 and REFUSAL in r.stderr, r.stderr
    changed = [e for e in audit_of(owner) if e["type"] == "settings.updated"]
    assert changed and changed[-1]["subject"]["id"] == "operator_access", changed


def test_bad_access_requests_get_clear_refusals(make_silo):
    silo = make_silo(APPROVAL)
    owner_session(silo)
    for args, why in [
        (["--duration", "2x"], "--duration"),
        (["--duration", "25h"], "duration_s"),
        (["--scope", "records.x.drop"], "unknown permission"),
        (["--reason", "a\nb"], "reason"),
    ]:
        base = {"--scope": "records.*.read", "--reason": "why", "--duration": "1h"}
        extra = dict(zip(args[::2], args[1::2]))
        base.update(extra)
        flat = [x for kv in base.items() for x in kv]
        r = operator(silo, "access", "request", "acme", *flat)
        assert r.returncode in (1, 2) and why in r.stderr, (args, r.stderr)
    r = operator(silo, "access", "show", "acme", "../x")
    assert r.returncode == 2, r.stderr
    r = operator(silo, "access", "show", "acme", "nosuchrequest")
    assert r.returncode == 1 and "no such access request" in r.stderr, r.stderr
    assert operator(silo, "access", "list", "nosuch").returncode == 1
