"""ASVS Level 2 rows of issue 24 that are not elsewhere: request bodies
that parsers could read differently are refused."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import ssl
import subprocess
import time

import requests

from conftest import TOKEN_EXPIRES
from identity_util import PASSWORD, Client, SmtpSink, create_tenant, issue_token, oathtool
from syslog_receiver import Rsyslog

MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}


def call(silo, method, path, token, body=None):
    return requests.request(method, silo.url + "/t/acme" + path, json=body, verify=False,
                            timeout=10, headers={"Authorization": "Bearer " + token})


def test_a_body_with_a_duplicate_key_or_a_control_character_is_refused(make_silo):
    """ASVS 5.1.1 (issue 24): JSON that parsers read differently is refused,
    naming what is wrong; nothing is written."""
    silo = make_silo(MANY)
    create_tenant(silo, "acme", "owner@acme.test")
    admin = issue_token(silo, ["collections.manage", "records.*.create", "records.*.read"])
    assert call(silo, "POST", "/api/collections", admin, {
        "name": "notes", "fields": [{"name": "title", "type": "string"}]}).status_code == 201
    raw = {"Authorization": "Bearer " + admin, "Content-Type": "application/json"}
    url = silo.url + "/t/acme/api/collections/notes/records"
    for body, why in [(b'{"title":"one","title":"two"}', 'duplicate key "title"'),
                      (b'{"title":"a\\u0001b"}', 'U+0001 in the value of "title"'),
                      (b'{"title":"\\u001b[2Jgone"}', "U+001B")]:
        r = requests.post(url, data=body, headers=raw, verify=False, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert why in r.json()["detail"], r.text
    # Tabs and newlines are text; the same key in two objects is fine.
    r = requests.post(url, data=b'{"title":"a\\tb\\nc"}', headers=raw, verify=False, timeout=10)
    assert r.status_code == 201, r.text
    items = call(silo, "GET", "/api/collections/notes/records", admin).json()["items"]
    assert [i["title"] for i in items] == ["a\tb\nc"]


def production_env(data_dir, seed, extra):
    """SILO_ENV=production with fresh secrets and the seed's certificate."""
    os.chmod(data_dir, 0o700)
    cert, key = (os.path.join(seed.data_dir, "dev", n) for n in ("tls.crt", "tls.key"))
    env = {"SILO_ENV": "production",
           "SILO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "SILO_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
           "SILO_OPERATOR_TOKEN": base64.urlsafe_b64encode(os.urandom(32)).decode(),
           "SILO_TLS_CERT": cert, "SILO_TLS_KEY": key, "SILO_SMTP_CA_FILE": cert}
    env.update(extra)
    return env


def reset_mail_requested(silo, env):
    """A tenant whose owner set a password, then asked for a reset mail."""
    r = silo.cli("--json", "tenant", "create", "acme", "--owner-email", "owner@acme.test",
                 env={"SILO_OPERATOR_TOKEN": env["SILO_OPERATOR_TOKEN"]})
    assert r.returncode == 0, r.stderr
    c = Client(silo, "acme")
    assert c.setup(json.loads(r.stdout)["owner_setup_token"]).status_code == 200
    r = Client(silo, "acme").call("POST", "/api/auth/password-reset",
                                  {"email": "owner@acme.test"})
    assert r.status_code == 202, r.text


def test_mail_outside_development_needs_starttls(make_silo, data_dir):
    """ASVS 9.2.2 (issue 24): in production a relay without STARTTLS gets no
    mail (it stays queued with the reason); one that offers it gets it."""
    seed = make_silo(data=data_dir + "-seed")  # borrow a dev certificate
    cert, key = (os.path.join(seed.data_dir, "dev", n) for n in ("tls.crt", "tls.key"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with SmtpSink() as clear, SmtpSink(tls_context=tls) as secure:
        env = production_env(data_dir, seed, {"SILO_SMTP_URL": clear.url})
        silo = make_silo(env)
        reset_mail_requested(silo, env)
        deadline = time.time() + 20
        while "no STARTTLS" not in silo.output() and time.time() < deadline:
            time.sleep(0.1)
        assert "the relay offers no STARTTLS and TLS is required" in silo.output()
        assert clear.messages == []
        silo.stop()
        # Control: the same server and mail with a relay that speaks TLS.
        other = data_dir + "-secure"
        os.makedirs(other)
        env = production_env(other, seed, {"SILO_SMTP_URL": secure.url})
        silo = make_silo(env, data=other)
        reset_mail_requested(silo, env)
        mail = secure.wait(1)[0]
        assert mail.rcpt_tos == ["owner@acme.test"]
        assert "no STARTTLS" not in silo.output()
    for d in (seed.data_dir, other):
        subprocess.run(["rm", "-rf", d])


def subject_of(text):
    return re.search(r"^Subject: (.*)$", text, re.M).group(1).strip()


def test_the_user_is_told_of_every_change_to_their_account(make_silo):
    """ASVS 2.2.3, 2.5.5, 2.8.5 (issue 24): TOTP turned on, a new API token, a
    replayed code, a recovery code used, a password change, TOTP turned off
    and a reset each send the user one mail naming what, when and from where,
    with no secret in it. Before, only the reset code itself was mailed."""
    owner = "owner@acme.test"
    with SmtpSink() as smtp:
        silo = make_silo({"SILO_SMTP_URL": smtp.url, **MANY})
        t = create_tenant(silo, "acme", owner)
        c = Client(silo, "acme")
        assert c.setup(t["owner_setup_token"]).status_code == 200
        c.sign_in(owner)
        secret, codes = c.enrol_totp()
        made = c.call("POST", "/api/tokens", {"name": "deploy", "permissions": ["users.read"],
                                              "expires_at": TOKEN_EXPIRES})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        # An operator-issued token belongs to no user: nobody to tell.
        issue_token(silo, ["users.read"])
        # A code accepted once, then presented again.
        step = int(time.time()) // 30 + 1
        used = oathtool(secret, step * 30)
        first = c.login(owner)
        assert c.call("POST", "/api/auth/mfa", {"mfa_token": first.json()["mfa_token"],
                                                "code": used}).status_code == 200
        again = c.login(owner)
        assert c.call("POST", "/api/auth/mfa", {"mfa_token": again.json()["mfa_token"],
                                                "code": used}).status_code == 401
        rec = c.login(owner)
        signed = c.call("POST", "/api/auth/mfa", {"mfa_token": rec.json()["mfa_token"],
                                                 "recovery_code": codes[0]})
        assert signed.status_code == 200, signed.text
        c.adopt(signed)
        changed = c.call("POST", "/api/auth/password/change",
                         {"current_password": PASSWORD, "new_password": "violet sky at dawn"})
        assert changed.status_code == 200, changed.text
        c.adopt(changed)
        off = c.call("DELETE", "/api/auth/totp", {"recovery_code": codes[1]})
        assert off.status_code == 204, off.text
        assert Client(silo, "acme").call("POST", "/api/auth/password-reset",
                                         {"email": owner}).status_code == 202
        reset = smtp.wait_for(lambda text: "Reset code: " in text)
        code = re.search(r"Reset code: (\S+)", reset.content.decode()).group(1)
        assert Client(silo, "acme").call("POST", "/api/auth/password-reset/confirm", {
            "token": code, "new_password": "amber fields of grain"}).status_code == 200
        expected = [
            "Two-factor sign-in (TOTP) was turned on for your account",
            'An API token named "deploy" was created on your account',
            "A two-factor code already used was presented again and refused",
            "A recovery code was used to sign in to your account",
            "Your password was changed",
            "A recovery code was used to sign in to your account",
            "Two-factor sign-in (TOTP) was turned off for your account",
            "Password reset",
            "Your password was reset",
        ]
        smtp.wait(len(expected))
        time.sleep(1)  # nothing more comes (one mail per event)
        texts = [m.content.decode() for m in smtp.messages]
        assert [subject_of(x).removeprefix("Security notice: ") for x in texts] == expected
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        secrets = [PASSWORD, "violet sky at dawn", "amber fields of grain", secret, token,
                   used, codes[0], codes[1], c.cookie]
        for m, text in zip(smtp.messages, texts):
            assert m.rcpt_tos == [owner]
            if "Security notice" not in text:
                continue
            assert "Account: " + owner in text and "From address: 127.0.0.1" in text, text
            assert "When: " + today in text, text
            leaked = [s for s in secrets if s in text]
            assert not leaked, (leaked, text)
            assert code not in text


def owner_with_totp(silo, owner="owner@acme.test"):
    t = create_tenant(silo, "acme", owner)
    c = Client(silo, "acme")
    assert c.setup(t["owner_setup_token"]).status_code == 200
    c.sign_in(owner)
    secret, codes = c.enrol_totp()
    return c, secret, codes


def test_a_role_that_administers_requires_mfa_whatever_its_flag(make_silo):
    """ASVS 4.3.1 (issue 24): a role holding users.manage, roles.manage or
    tokens.manage cannot be defined without MFA (422 naming them), and its
    holder must enrol before using it."""
    silo = make_silo(MANY)
    owner, _, _ = owner_with_totp(silo)
    r = owner.call("POST", "/api/roles", {"name": "helpdesk", "require_mfa": False,
                                          "permissions": ["users.read", "users.manage"]})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "require_mfa",
                                   "message": "must be true for a role holding users.manage"}]
    r = owner.call("POST", "/api/roles", {"name": "keys", "permissions": [
        "roles.manage", "tokens.manage", "settings.manage"]})  # the flag left out: false
    assert r.status_code == 422
    assert "holding roles.manage, tokens.manage" in r.text
    # With the flag it is a role like any; without an administrative
    # permission the flag stays the tenant's choice.
    made = owner.call("POST", "/api/roles", {"name": "helpdesk", "require_mfa": True,
                                             "permissions": ["users.read", "users.manage"]})
    assert made.status_code == 201, made.text
    assert owner.call("POST", "/api/roles", {"name": "reader", "require_mfa": False,
                                             "permissions": ["users.read"]}).status_code == 201
    r = owner.call("PATCH", "/api/roles/helpdesk", {"require_mfa": False})
    assert r.status_code == 422 and "users.manage" in r.text
    r = owner.call("PATCH", "/api/roles/reader", {"permissions": ["users.read", "tokens.manage"]})
    assert r.status_code == 422 and "tokens.manage" in r.text
    assert owner.call("GET", "/api/roles/helpdesk").json()["require_mfa"] is True
    # The holder of helpdesk must enrol TOTP before administering anyone;
    # the holder of reader need not.
    for email, role, must in [("desk@acme.test", "helpdesk", True),
                              ("read@acme.test", "reader", False)]:
        inv = owner.call("POST", "/api/users", {"email": email, "roles": [role]})
        assert inv.status_code == 201, inv.text
        u = Client(silo, "acme")
        assert u.setup(inv.json()["setup_token"]).status_code == 200
        assert u.sign_in(email)["mfa_enrolment_required"] is must
        assert u.call("GET", "/api/users").status_code == (403 if must else 200)


def test_dangerous_actions_need_a_fresh_proof_of_identity(make_silo):
    """ASVS 4.3.3, 3.3.4, 7.5.1, 7.4.5 (issue 24): once the sign-in is older
    than SILO_STEP_UP_MINUTES, enrolling TOTP, ending other sessions, granting
    a role that administers, minting a token that administers and ending a
    user's sessions are 401 "step_up_required" and change nothing, until
    POST /api/auth/step-up proves the password or a TOTP code."""
    silo = make_silo({"SILO_STEP_UP_MINUTES": "1", **MANY})
    owner, secret, _ = owner_with_totp(silo)
    other = Client(silo, "acme")
    other.sign_in("owner@acme.test", secret)
    inv = owner.call("POST", "/api/users", {"email": "ed@acme.test", "roles": ["editor"]})
    assert inv.status_code == 201, inv.text
    ed_id = inv.json()["user"]["id"]
    ed = Client(silo, "acme")
    assert ed.setup(inv.json()["setup_token"]).status_code == 200
    ed.sign_in("ed@acme.test")
    admin_token = {"name": "admin", "permissions": ["users.manage"],
                   "expires_at": TOKEN_EXPIRES}
    # A sign-in is a proof: just after it, no step-up is asked.
    assert owner.call("POST", "/api/tokens", admin_token).status_code == 201
    time.sleep(61)  # past the one-minute window (real time; nothing races it)
    guarded = [
        ("POST", "/api/auth/totp/enroll", None),
        ("DELETE", "/api/auth/sessions", None),
        ("PUT", "/api/users/%s/roles" % ed_id, {"roles": ["editor", "admin"]}),
        ("POST", "/api/tokens", admin_token),
        ("DELETE", "/api/users/%s/sessions" % ed_id, None),
    ]
    tokens_before = owner.call("GET", "/api/tokens").json()["items"]
    for method, path, body in guarded:
        r = owner.call(method, path, body)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["step_up_required"] is True, r.text
    # Nothing happened: the other session, Ed's roles and session, the tokens.
    assert other.call("GET", "/api/auth/me").status_code == 200
    assert ed.call("GET", "/api/auth/me").status_code == 200
    assert owner.call("GET", "/api/users/" + ed_id).json()["roles"] == ["editor"]
    assert owner.call("GET", "/api/tokens").json()["items"] == tokens_before
    # What does not administer needs no step-up.
    r = owner.call("PUT", "/api/users/%s/roles" % ed_id, {"roles": ["editor", "viewer"]})
    assert r.status_code == 200, r.text
    # A wrong proof is refused and audited; neither member or both is 422.
    r = owner.call("POST", "/api/auth/step-up", {"password": "not my password at all"})
    assert r.status_code == 401 and "step_up_required" not in r.json()
    assert owner.call("POST", "/api/auth/step-up", {}).status_code == 422
    assert owner.call("POST", "/api/auth/step-up",
                      {"password": PASSWORD, "code": "123456"}).status_code == 422
    assert owner.call("PUT", "/api/users/%s/roles" % ed_id,
                      {"roles": ["editor", "admin"]}).status_code == 401
    # The password opens them for the window.
    r = owner.call("POST", "/api/auth/step-up", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["step_up_until"] > datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    r = owner.call("PUT", "/api/users/%s/roles" % ed_id, {"roles": ["editor", "admin"]})
    assert r.status_code == 200 and "admin" in r.json()["roles"], r.text
    assert owner.call("POST", "/api/tokens", admin_token).status_code == 201
    assert owner.call("DELETE", "/api/users/%s/sessions" % ed_id).status_code == 204
    assert ed.call("GET", "/api/auth/me").status_code == 401
    assert owner.call("DELETE", "/api/auth/sessions").status_code == 204
    assert other.call("GET", "/api/auth/me").status_code == 401
    # A TOTP code is a proof too (the sign-in's step is a minute behind).
    r = owner.call("POST", "/api/auth/step-up", {"code": oathtool(secret)})
    assert r.status_code == 200, r.text
    audit = owner.call("GET", "/api/audit?limit=200").json()["items"]
    types = [e["type"] for e in audit]
    assert types.count("session.stepped_up") == 2 and types.count("step_up.failed") == 1
    ended = [e for e in audit if e["type"] == "session.revoked_all"
             and e["subject"]["id"] == ed_id]
    assert len(ended) == 1 and ended[0]["actor"].startswith("user:"), ended


def platform_events(silo, kind):
    with open(os.path.join(silo.data_dir, "platform", "security.log")) as f:
        return [e for e in map(json.loads, f) if e["type"] == kind]


def test_refused_credentials_and_requests_are_security_events_once_per_minute(make_silo):
    """ASVS 7.1.3, 8.1.4 (issue 24): an invalid bearer token, an unknown
    session cookie, a CSRF refusal and a validation failure each leave one
    event with its reason in the tenant's audit log (no secret in it), one
    per minute per client and kind however many come; a throttled client or
    account is one event in the platform security log. Before, only an
    access-log line."""
    silo = make_silo({"SILO_LOGIN_RATE_PER_MINUTE": "3"})
    owner, _, _ = owner_with_totp(silo)
    admin = issue_token(silo, ["collections.manage", "records.*.create", "audit.read"])
    assert call(silo, "POST", "/api/collections", admin, {
        "name": "notes", "fields": [{"name": "title", "type": "string",
                                     "required": True}]}).status_code == 201
    bogus = "silo_" + "x" * 43
    cookie = "y" * 43
    for _ in range(20):  # a flood: one event each kind
        assert call(silo, "GET", "/api/collections", bogus).status_code == 401
        r = requests.get(silo.url + "/t/acme/api/collections", verify=False, timeout=10,
                         headers={"Cookie": "__Host-silo_session_acme=" + cookie})
        assert r.status_code == 401
        r = owner.call("POST", "/api/collections/notes/records", {"title": "x"}, csrf=False)
        assert r.status_code == 403
        assert call(silo, "POST", "/api/collections/notes/records", admin,
                    {"title": 7}).status_code == 422
    # No credential at all is an ordinary anonymous request, not an event.
    assert requests.get(silo.url + "/t/acme/api/collections", verify=False,
                        timeout=10).status_code == 401
    audit = call(silo, "GET", "/api/audit?limit=500", admin).json()["items"]
    seen = {}
    for e in audit:
        if e["type"] in ("auth.token_refused", "auth.session_refused", "auth.csrf_refused",
                         "request.invalid"):
            seen.setdefault(e["type"], []).append(e)
    assert sorted(seen) == ["auth.csrf_refused", "auth.session_refused", "auth.token_refused",
                            "request.invalid"], sorted(seen)
    for kind, entries in seen.items():
        assert len(entries) == 1, (kind, entries)
        e = entries[0]
        reason = [c for c in e["changes"] if c["field"] == "reason"][0]["new"]
        assert reason, e
    assert seen["auth.token_refused"][0]["subject"]["id"] == "GET /api/collections"
    assert seen["auth.csrf_refused"][0]["actor"].startswith("user:")
    text = json.dumps(audit)
    assert bogus not in text and cookie not in text and owner.cookie not in text
    # Throttled sign-ins: one event however many 429s.
    anon = Client(silo, "acme")
    codes = [anon.login("owner@acme.test", "wrong wrong wrong").status_code for _ in range(8)]
    assert 429 in codes, codes
    throttled = platform_events(silo, "rate.throttled")
    assert len(throttled) >= 1 and all(e["client"] == "127.0.0.1" for e in throttled)
    rules = [e["detail"] for e in throttled]
    assert len(rules) == len(set(rules)), rules  # once per window for each rule and key
    assert "owner@acme.test" not in json.dumps(throttled)


class WebhookSink:
    """A real HTTP server on 127.0.0.1 that keeps each POST (headers, body)."""

    def __init__(self):
        import http.server
        import threading
        sink = self
        self.posts = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.posts.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_security_events_reach_syslog_over_tls_and_alerts_a_signed_webhook(make_silo):
    """ASVS 11.1.7, 16.4.2 (issue 24): security events are shipped as RFC
    5424 syslog over TLS to a real rsyslog (gtls driver); the events an
    operator must see at once also reach SILO_ALERT_WEBHOOK, HMAC-signed. A
    receiver that is down blocks no request, and what it missed arrives once
    it is back. Before, the events stayed on the box."""
    secret = base64.b64encode(os.urandom(33)).decode()
    with Rsyslog() as rsyslog, WebhookSink() as hook:
        silo = make_silo({"SILO_SYSLOG_URL": "tls://127.0.0.1:%d" % rsyslog.port,
                          "SILO_SYSLOG_CA_FILE": rsyslog.cert,
                          "SILO_ALERT_WEBHOOK": hook.url,
                          "SILO_ALERT_WEBHOOK_SECRET": secret, **MANY})
        create_tenant(silo, "acme", "owner@acme.test")
        bogus = "silo_" + "z" * 43
        assert call(silo, "GET", "/api/collections", bogus).status_code == 401
        line = rsyslog.wait_for("tenant.created")[0]
        assert line.startswith("85 tenant.created [silo@32473 ")  # authpriv.notice
        refused = rsyslog.wait_for("auth.token_refused")[0]
        assert 'actor="anonymous:127.0.0.1"' in refused and "GET /api/collections" in refused
        issue_token(silo, ["collections.read"])  # token events are identity events too
        issued = rsyslog.wait_for("token.created")[0]
        assert 'actor="operator:operator"' in issued

        # The receiver goes down: requests are still answered, the events
        # wait, and arrive when it is back on the same port.
        rsyslog.stop()
        for i in range(5):
            r = call(silo, "GET", "/api/collections", "silo_%043d" % i)
            assert r.status_code == 401
        r = silo.cli("--json", "tenant", "create", "beta", "--owner-email", "o@beta.test")
        assert r.returncode == 0, r.stderr
        metrics = requests.get(silo.operator_url + "/metrics", timeout=10, headers={
            "Authorization": "Bearer " + silo.operator_token()}).text
        assert "silo_security_events_dropped_total 0" in metrics, metrics
        rsyslog.start()
        rsyslog.wait_for('actor="operator" client="127.0.0.1"] beta')  # created while it was down

        # A honeypot hit bans the client: an alert, to syslog and the webhook.
        assert silo.get("/.env").status_code in (403, 404)
        ban = rsyslog.wait_for("honeypot.hit")[0]
        assert ban.startswith("84 ")  # an alert: authpriv.warning
        deadline = time.time() + 20
        while not hook.posts and time.time() < deadline:
            time.sleep(0.1)
        types = [json.loads(body)["type"] for _, body in hook.posts]
        assert "honeypot.hit" in types and "auth.token_refused" not in types, types
        headers, body = hook.posts[types.index("honeypot.hit")]
        expected = hmac.new(secret.encode(), headers["X-Silo-Timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-Silo-Signature"] == "sha256=" + expected
        assert json.loads(body)["client"] == "127.0.0.1"
        everything = "\n".join(rsyslog.lines()) + json.dumps([b.decode() for _, b in hook.posts])
        assert bogus not in everything and secret not in everything
        assert secret not in silo.output()


def test_each_credential_has_a_call_budget(make_silo):
    """ASVS 11.1.4 (issue 24): authenticated calls are limited per credential
    (SILO_API_RATE_PER_MINUTE; a burst of a sixth of it, at least 10): a
    token calling in a loop gets 429 with Retry-After once its burst is
    spent, while another token and a user's session go on; the throttled
    token is one security event. Before, one token made 300 list calls in
    0.6 s. (At 6 a minute a token earns one call per 10 s: the 11 calls
    below would need to take over 10 s for an 11th to pass.)"""
    silo = make_silo({"SILO_API_RATE_PER_MINUTE": "6", **MANY})
    owner, _, _ = owner_with_totp(silo)
    a = issue_token(silo, ["collections.read"])
    b = issue_token(silo, ["collections.read"])
    statuses = [call(silo, "GET", "/api/collections", a).status_code for _ in range(10)]
    assert statuses == [200] * 10, statuses
    refused = call(silo, "GET", "/api/collections", a)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert call(silo, "GET", "/api/collections", b).status_code == 200
    assert owner.call("GET", "/api/collections").status_code == 200
    throttled = [e for e in platform_events(silo, "rate.throttled") if "rule api" in e["detail"]]
    assert len(throttled) == 1 and "per cred" in throttled[0]["detail"], throttled
    assert a not in json.dumps(throttled)


def test_tokens_and_pending_invitations_per_user_are_capped(make_silo):
    """ASVS 11.1.4 (issue 24): at most 50 live API tokens per owner and 50
    pending invitations per inviter; over that, 409 and nothing is made."""
    silo = make_silo(MANY)
    owner, _, _ = owner_with_totp(silo)
    spec = {"name": "t", "permissions": ["collections.read"], "expires_at": TOKEN_EXPIRES}
    for i in range(50):
        assert owner.call("POST", "/api/tokens", spec).status_code == 201, i
    over = owner.call("POST", "/api/tokens", spec)
    assert over.status_code == 409 and "at most 50 live API tokens" in over.text, over.text
    assert len(owner.call("GET", "/api/tokens").json()["items"]) == 50
    # Revoking one makes room.
    first = owner.call("GET", "/api/tokens").json()["items"][0]["id"]
    assert owner.call("DELETE", "/api/tokens/" + first).status_code == 204
    assert owner.call("POST", "/api/tokens", spec).status_code == 201
    for i in range(50):
        r = owner.call("POST", "/api/users", {"email": "u%d@acme.test" % i, "roles": ["viewer"]})
        assert r.status_code == 201, (i, r.text)
    over = owner.call("POST", "/api/users", {"email": "late@acme.test", "roles": ["viewer"]})
    assert over.status_code == 409 and "pending invitations" in over.text, over.text
    emails = [u["email"] for u in owner.call("GET", "/api/users").json()["items"]]
    assert "late@acme.test" not in emails and len(emails) == 51
    # Another inviter has a budget of its own.
    other = issue_token(silo, ["users.manage", "users.read", "roles.read", "collections.read",
                               "records.*.read"])
    r = call(silo, "POST", "/api/users", other, {"email": "late@acme.test", "roles": ["viewer"]})
    assert r.status_code == 201, r.text


def test_a_collection_export_is_permitted_audited_and_budgeted(make_silo):
    """ASVS 11.1.4 (issue 24): GET /api/collections/{name}/export needs
    records.<name>.export (reading is not enough), gives every field of every
    live record as JSON lines (as of ?at= too), is audited with how many
    records left, and is limited per credential (SILO_EXPORTS_PER_HOUR): the
    fourth of three an hour is 429 with Retry-After while another token goes
    on, and the throttled credential is one security event. Before, one token
    made 20 exports."""
    silo = make_silo({"SILO_EXPORTS_PER_HOUR": "3", **MANY})
    owner, _, _ = owner_with_totp(silo)
    for c in [{"name": "notes", "fields": [{"name": "text", "type": "string"},
                                           {"name": "private", "type": "string"}]},
              {"name": "other", "fields": [{"name": "text", "type": "string"}]}]:
        assert owner.call("POST", "/api/collections", c).status_code == 201
    ids = []
    for i in range(3):
        r = owner.call("POST", "/api/collections/notes/records",
                       {"text": "note %d" % i, "private": "p%d" % i})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert owner.call("POST", "/api/collections/other/records", {"text": "x"}).status_code == 201
    time.sleep(0.01)
    before = datetime.datetime.now(datetime.timezone.utc).isoformat()
    time.sleep(0.01)
    r = owner.call("PATCH", "/api/collections/notes/records/" + ids[0], {"text": "edited"})
    assert r.status_code == 200, r.text
    assert owner.call("DELETE", "/api/collections/notes/records/" + ids[2]).status_code == 204

    reader = issue_token(silo, ["records.notes.read"])
    r = call(silo, "GET", "/api/collections/notes/export", reader)
    assert r.status_code == 403, r.text
    exporter = issue_token(silo, ["records.notes.export"])
    assert call(silo, "GET", "/api/collections/other/export", exporter).status_code == 403
    every = issue_token(silo, ["records.*.export"])
    assert call(silo, "GET", "/api/collections/nope/export", every).status_code == 404
    r = call(silo, "GET", "/api/collections/notes/export?limit=1", exporter)
    assert r.status_code == 422 and "unknown query parameter" in r.text, r.text

    r = call(silo, "GET", "/api/collections/notes/export", exporter)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [(x["id"], x["text"], x["private"]) for x in lines] == sorted(
        [(ids[0], "edited", "p0"), (ids[1], "note 1", "p1")])
    r = call(silo, "GET", "/api/collections/notes/export?at=" + requests.utils.quote(before),
             exporter)
    assert r.status_code == 200, r.text
    assert sorted(json.loads(line)["text"] for line in r.text.splitlines()) == [
        "note 0", "note 1", "note 2"]

    audit = owner.call("GET", "/api/audit?limit=200").json()["items"]
    exported = [e for e in audit if e["type"] == "records.exported"]
    assert len(exported) == 2, exported
    assert all(e["subject"] == {"kind": "collection", "id": "notes"} for e in exported), exported
    assert all(e["actor"].startswith("token:") for e in exported), exported
    assert sorted(json.dumps(e) for e in exported)[0].count('"records"') == 1
    counts = sorted(c["new"] for e in exported for c in e["changes"] if c["field"] == "records")
    assert counts == [2, 3], exported

    assert call(silo, "GET", "/api/collections/notes/export", exporter).status_code == 200
    refused = call(silo, "GET", "/api/collections/notes/export", exporter)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 60
    assert "note" not in refused.text
    another = issue_token(silo, ["records.notes.export"])
    assert call(silo, "GET", "/api/collections/notes/export", another).status_code == 200
    throttled = [e for e in platform_events(silo, "rate.throttled")
                 if "rule export" in e["detail"]]
    assert len(throttled) == 1 and "per cred" in throttled[0]["detail"], throttled
    audit = owner.call("GET", "/api/audit?limit=200").json()["items"]
    assert len([e for e in audit if e["type"] == "records.exported"]) == 4
