"""Tenant isolation through the real binary. Two tenants are built
identically: the same collection, the same record ids, the same user e-mails,
the same role names; only their secrets and a marker in their data differ.
Then every route of the tenant route table (`silo routes`) is called on one
tenant with the other's session cookie, API token, setup token, reset token,
MFA challenge and password, and with the other's user, session, token, role
and record ids under the tenant's own valid credentials. Each is refused;
nothing of the other tenant appears in any answer; neither tenant changed;
the other tenant's credentials still work at home (a refusal consumed
nothing). Finally the tenant from Host and the tenant from the path never
disagree silently."""
import json
import re
import subprocess

import requests

from conftest import SILO_BIN, TOKEN_EXPIRES, raw_exchange
from identity_util import Client, SmtpSink, create_tenant, oathtool

BASE = "isolation.test"
OWNER = "owner@same.test"
EDITOR = "editor@same.test"
PENDING = "pending@same.test"
SLUGS = ("acme", "beta")
PASSWORDS = {"acme": "acme plum tree over the river", "beta": "beta plum tree over the river"}
ENV = {"SILO_LOGIN_RATE_PER_MINUTE": "1000", "SILO_PUBLIC_FORM_RATE_PER_MINUTE": "1000",
       "SILO_BASE_DOMAIN": BASE,
       "SILO_PUBLIC_URL": "https://" + BASE}


class Tenant:
    """Everything one tenant has that another must never see or use."""

    def __init__(self, silo, smtp, slug):
        self.slug = slug
        self.marker = "%s-ONLY-%s" % (slug.upper(), "7f3a91c2")
        password = PASSWORDS[slug]
        created = create_tenant(silo, slug, OWNER)
        self.tenant_id = created["id"]
        assert re.fullmatch(r"[0-9a-f]{32}", self.tenant_id)  # else the leak check misses it
        self.owner = Client(silo, slug)
        assert self.owner.setup(created["owner_setup_token"], password).status_code == 200
        self.owner.sign_in(OWNER, password=password)
        self.totp_secret, self.recovery_codes = self.owner.enrol_totp()
        o = self.owner
        assert o.call("POST", "/api/collections", {"name": "tickets", "fields": [
            {"name": "title", "type": "string", "required": True},
            {"name": "note", "type": "text"},
            {"name": "doc", "type": "file", "types": ["text/plain"]}]}).status_code == 201
        for rid in ("r1", "r2"):
            r = o.call("POST", "/api/collections/tickets/records",
                       {"id": rid, "title": rid, "note": self.marker})
            assert r.status_code == 201, r.text
        self.only_record = "only-" + slug[0] * 4  # an id the other tenant lacks
        # A collection and a CORS origin only this tenant has: neither may
        # appear in the other's OpenAPI document, settings or preflights.
        self.only_collection = "private_%s_7f3a91c2" % slug
        assert o.call("POST", "/api/collections", {"name": self.only_collection, "fields": [
            {"name": "secret_field_7f3a91c2", "type": "string"}]}).status_code == 201
        self.origin = "https://%s-only-7f3a91c2.example" % slug
        assert o.call("PATCH", "/api/settings", {"cors_origins": [self.origin]}).status_code == 200
        # At home both show, so their absence from the other's answers means something.
        doc = o.call("GET", "/api/openapi.json").json()
        assert "/api/collections/%s/records" % self.only_collection in doc["paths"]
        # A file holding the marker, attached to the record only this tenant has.
        up = o.call("POST", "/api/files?collection=tickets&field=doc&name=only.txt",
                    raw=("file of " + self.marker).encode(), headers={"Content-Type": "text/plain"})
        assert up.status_code == 201, up.text
        self.file_id = up.json()["id"]
        # A resumable upload in progress, its URL the other tenant must not use.
        tus = o.call("POST", "/api/uploads?collection=tickets&field=doc", raw=b"",
                     headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"})
        assert tus.status_code == 201, tus.text
        self.upload_id = tus.headers["Location"].split("/")[-1].split("?")[0]
        assert o.call("POST", "/api/collections/tickets/records",
                      {"id": self.only_record, "title": "x", "note": self.marker,
                       "doc": self.file_id}).status_code == 201
        link = o.call("POST", "/api/files/%s/links" % self.file_id, {"expires_in": 3600})
        assert link.status_code == 201, link.text
        self.link_id = link.json()["id"]
        self.link_token = link.json()["url"].split("token=")[1]
        assert o.call("PATCH", "/api/collections/tickets/records/r1",
                      {"note": self.marker + " edited"},
                      headers={"If-Match": '"1"'}).status_code == 200
        assert o.call("POST", "/api/roles", {"name": "support", "description": self.marker,
                                             "permissions": ["records.tickets.read"]}
                      ).status_code == 201
        self.only_role = "only_" + slug
        assert o.call("POST", "/api/roles", {"name": self.only_role,
                                             "permissions": []}).status_code == 201
        inv = o.call("POST", "/api/users", {"email": EDITOR, "roles": ["editor"]})
        assert inv.status_code == 201, inv.text
        self.editor_id = inv.json()["user"]["id"]
        self.editor = Client(silo, slug)
        assert self.editor.setup(inv.json()["setup_token"], password).status_code == 200
        self.editor.sign_in(EDITOR, password=password)
        pending = o.call("POST", "/api/users", {"email": PENDING, "roles": ["viewer"]})
        assert pending.status_code == 201
        self.pending_id = pending.json()["user"]["id"]
        # An operator's access request waiting for this tenant's decision (its
        # reason carries the marker): the other tenant can neither see nor
        # decide nor revoke it.
        asked = silo.cli("--json", "access", "request", slug, "--scope", "records.*.read",
                         "--reason", self.marker + " access", "--duration", "1h")
        assert asked.returncode == 0, asked.stderr
        self.access_request_id = json.loads(asked.stdout)["id"]
        self.setup_token = pending.json()["setup_token"]  # never used before the end
        made = o.call("POST", "/api/tokens", {"name": "ci", "expires_at": TOKEN_EXPIRES,
                                              "permissions": ["records.tickets.read",
                                                              "records.tickets.update",
                                                              "records.tickets.delete",
                                                              "users.read", "users.manage",
                                                              "roles.read", "audit.read",
                                                              "events.read"]})
        assert made.status_code == 201, made.text
        self.token, self.token_id = made.json()["token"], made.json()["id"]
        self.api = Client(silo, slug)
        self.api.bearer = self.token
        sessions = o.call("GET", "/api/auth/sessions").json()["items"]
        self.session_id = [s for s in sessions if s["current"]][0]["id"]
        # A reset link for the editor, through real SMTP, never used before the end.
        before = len(smtp.messages)
        assert Client(silo, slug).call("POST", "/api/auth/password-reset",
                                       {"email": EDITOR}).status_code == 202
        mail = smtp.wait_for(lambda text: "Reset code: " in text, before).content.decode()
        self.reset_token = re.search(r"Reset code: (\S+)", mail).group(1)
        # A password-checked login waiting for its second factor.
        login = Client(silo, slug).login(OWNER, password)
        assert login.status_code == 200 and login.json()["mfa_required"]
        self.mfa_token = login.json()["mfa_token"]

    def secrets(self):
        """Strings of this tenant that no answer of the other may contain."""
        return [self.marker, self.tenant_id, self.only_collection, self.origin,
                self.owner.cookie, self.owner.csrf,
                self.editor.cookie, self.token, self.setup_token, self.reset_token,
                self.mfa_token, self.totp_secret, PASSWORDS[self.slug],
                self.link_token] + self.recovery_codes

    def state(self):
        """What a refused request must not have changed."""
        o = self.owner
        return {
            "records": o.call("GET", "/api/collections/tickets/records?limit=200").json(),
            "history": o.call("GET", "/api/collections/tickets/records/r1/history").json(),
            "collections": o.call("GET", "/api/collections").json(),
            "users": o.call("GET", "/api/users").json(),
            "roles": o.call("GET", "/api/roles").json(),
            "tokens": o.call("GET", "/api/tokens").json(),
            "sessions": len(o.call("GET", "/api/auth/sessions").json()["items"]),
            "audit": [(a["seq"], a["type"]) for a in
                      o.call("GET", "/api/audit?limit=1000").json()["items"]],
            "events": len(o.call("GET", "/api/events?limit=1000").json()["items"]),
            "files": o.call("GET", "/api/files/usage").json(),
            "settings": o.call("GET", "/api/settings").json(),
            "access_requests": o.call("GET", "/api/access-requests").json(),
        }


def concrete(route, ids):
    """The route's path with the given tenant's ids filled in."""
    path = route["pattern"]
    if path.startswith("/api/roles/"):
        path = path.replace("{name}", ids.only_role)
    elif path.startswith("/api/users/"):
        path = path.replace("{id}", ids.editor_id)
    elif path.startswith("/api/auth/sessions/"):
        path = path.replace("{id}", ids.session_id)
    elif path.startswith("/api/tokens/"):
        path = path.replace("{id}", ids.token_id)
    elif path.startswith("/api/access-requests/"):
        path = path.replace("{id}", ids.access_request_id)
    path = path.replace("{field}", "doc").replace("{file}", ids.file_id)
    path = path.replace("{upload}", ids.upload_id)
    path = path.replace("{link}", ids.link_id)
    if path == "/api/files/link":  # the link's token is its query
        path += "?token=" + ids.link_token
    if path.startswith("/api/files/"):
        path = path.replace("{id}", ids.file_id)
    if route.get("query"):  # the upload URL names the collection
        path += "?collection=tickets&field=doc"
    if path == "/api/realtime/sse":  # a channel, so that credentials are what is checked
        path += "?channel=records:tickets"
    return path.replace("{name}", "tickets").replace("{id}", ids.only_record)


def body_for(route, foreign):
    """A body that carries the other tenant's secrets where the route takes one."""
    p = route["pattern"]
    if p == "/api/auth/setup":
        return {"token": foreign.setup_token, "password": "a brand new long password"}
    if p == "/api/auth/login":
        return {"email": OWNER, "password": PASSWORDS[foreign.slug]}
    if p == "/api/auth/mfa":
        return {"mfa_token": foreign.mfa_token, "code": oathtool(foreign.totp_secret)}
    if p == "/api/auth/password-reset/confirm":
        return {"token": foreign.reset_token, "new_password": "a brand new long password"}
    if p == "/api/auth/password-reset":
        return {"email": PENDING}
    if route["body_limit"] == 0:
        return None  # a streamed upload too: sent with Content-Length 0
    if p.endswith("/records") or p.endswith("/records/{id}") or p.startswith("/api/public/"):
        return {"title": "intruder", "note": "intruder"}
    return {}


# What the attacks may add to the home tenant's audit log: its refusals (the
# other tenant's token and cookie are security events here, ASVS 7.1.3), and
# the reset the public reset route was asked for (for the home tenant's own
# pending user, answered like any other).
EXPECTED_AUDIT = {"login.failed", "access.denied", "password.reset_requested",
                  "auth.token_refused", "auth.session_refused", "auth.csrf_refused",
                  "request.invalid"}


# Valid bodies for the home tenant's own owner, so that only the foreign id
# can be what is refused.
OWN_BODIES = {
    "/api/users/{id}": {"disabled": True},
    "/api/users/{id}/roles": {"roles": ["viewer"]},
    "/api/roles/{name}": {"permissions": []},
    "/api/collections/{name}/records/{id}": {"note": "intruder"},
    "/api/collections/{name}/records/{id}/revert": {"version": 1},
    # A wrong code: were the other's request found, the answer would be 403.
    "/api/access-requests/{id}/approve": {"code": "000000"},
    "/api/access-requests/{id}/deny": {"code": "000000"},
}


def leaks(resp, foreign):
    text = resp.text + json.dumps(dict(resp.headers))
    return [s for s in foreign.secrets() if s and s in text]


def attack(home, foreign, routes):
    """Calls every route on `home` with `foreign`'s credentials and ids;
    returns the failures."""
    failures = []
    with_cookie = Client(home.owner.silo, home.slug)
    with_cookie.cookie, with_cookie.csrf = foreign.owner.cookie, foreign.owner.csrf
    with_token = Client(home.owner.silo, home.slug)
    with_token.bearer = foreign.token
    for route in routes:
        method, access = route["method"], route["access"]
        path = concrete(route, foreign)
        body = body_for(route, foreign)
        # The WebSocket route answers 426 before any credential to a request
        # that is not an upgrade: these make it one.
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} \
            if route["pattern"] == "/api/realtime" else None
        for who, client in (("foreign cookie", with_cookie), ("foreign token", with_token),
                            ("anonymous with foreign secrets", Client(home.owner.silo, home.slug))):
            r = client.call(method, path, body, headers=upgrade)
            if leaks(r, foreign):
                failures.append((who, method, path, r.status_code, "leak", leaks(r, foreign)))
            if access == "public":
                # Public routes take their credentials in the body: the other
                # tenant's setup, reset and MFA tokens, its password.
                # The console's files are the same for everyone (redirects
                # followed).
                ok = {"/api/": 200, "/api/auth/password-reset": 202,
                      "/api/uploads": 204, "/console": 200, "/console/": 200,
                      "/reset": 200}.get(route["pattern"])
                if ok is not None and r.status_code != ok:
                    failures.append((who, method, path, r.status_code, "want", ok))
                if ok is None and r.status_code < 400:
                    failures.append((who, method, path, r.status_code, "accepted"))
                # The realtime upgrades prove their caller themselves: refused
                # for the credentials, not for the shape of the request.
                if route["pattern"].startswith("/api/realtime") and r.status_code not in (401, 403):
                    failures.append((who, method, path, r.status_code, "want 401 or 403"))
            elif r.status_code != 401:
                failures.append((who, method, path, r.status_code, "want 401"))
        # The home tenant's own valid credentials with the other's ids.
        # Routes named by the collection alone are the home tenant's own
        # collection (the same name): not a foreign id.
        if ("{id}" in route["pattern"] or "{upload}" in route["pattern"] or
                route["pattern"].startswith("/api/roles/")):
            body = OWN_BODIES.get(route["pattern"]) if route["body_limit"] else None
            headers = {"If-Match": '"1"'}
            if "{upload}" in route["pattern"]:  # a well-formed tus request: only the id is wrong
                headers.update({"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                "Content-Type": "application/offset+octet-stream"})
            r = home.owner.call(method, path, body, headers=headers)
            if r.status_code != 404:
                failures.append(("own credentials, foreign id", method, path, r.status_code,
                                 r.text[:120]))
            if leaks(r, foreign):
                failures.append(("own credentials", method, path, "leak", leaks(r, foreign)))
    # The home tenant's own record with the other's file id, and an upload
    # that names the other's file: refused, nothing of it shown.
    r = home.owner.call("GET", "/api/collections/tickets/records/%s/files/doc/%s"
                        % (home.only_record, foreign.file_id))
    if r.status_code != 404 or leaks(r, foreign):
        failures.append(("own record, foreign file", r.status_code, leaks(r, foreign)))
    r = home.owner.call("PATCH", "/api/collections/tickets/records/r2", {"doc": foreign.file_id})
    if r.status_code != 422 or leaks(r, foreign):
        failures.append(("attach foreign file", r.status_code, r.text[:120]))
    # The other's CORS origin is not listed here: its preflight is refused,
    # and a call from it gets no Access-Control-Allow-Origin.
    anon = Client(home.owner.silo, home.slug)
    r = anon.call("OPTIONS", "/api/collections/tickets/records", headers={
        "Origin": foreign.origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    if r.status_code != 403 or "Access-Control-Allow-Origin" in r.headers:
        failures.append(("foreign origin preflight", r.status_code, dict(r.headers)))
    r = home.api.call("GET", "/api/collections/tickets/records", headers={"Origin": foreign.origin})
    if "Access-Control-Allow-Origin" in r.headers:
        failures.append(("foreign origin call", r.status_code, dict(r.headers)))
    # Everything the home tenant can read: none of it is the other's (its own
    # OpenAPI document types its own collections only).
    for path in ["/api/openapi.json", "/api/settings",
                 "/api/collections/tickets/records?limit=200", "/api/users", "/api/roles",
                 "/api/audit?limit=1000", "/api/events?limit=1000", "/api/auth/sessions",
                 "/api/tokens", "/api/collections/tickets/records/r1/history",
                 "/api/collections/tickets/records/r1"]:
        r = home.owner.call("GET", path)
        if r.status_code != 200 or leaks(r, foreign):
            failures.append(("home read", "GET", path, r.status_code, leaks(r, foreign)))
    return failures


def test_two_identical_tenants_never_see_or_touch_each_other(make_silo):
    routes = json.loads(subprocess.run([SILO_BIN, "routes"], capture_output=True, text=True,
                                       check=True).stdout)
    assert len(routes) >= 40
    with SmtpSink() as smtp:
        silo = make_silo({**ENV, "SILO_SMTP_URL": smtp.url, "SILO_SMTP_FROM": "silo@same.test"})
        tenants = {slug: Tenant(silo, smtp, slug) for slug in SLUGS}
        a, b = tenants["acme"], tenants["beta"]
        # Identical where it matters: the same record ids, users, roles.
        for t in (a, b):
            t.api.call("GET", "/api/users")  # the token's first use is audited once
        sa, sb = a.state(), b.state()
        ids = {t: {r["id"] for r in st["records"]["items"]} for t, st in (("a", sa), ("b", sb))}
        assert ids["a"] & ids["b"] == {"r1", "r2"}
        assert ({u["email"] for u in sa["users"]["items"]} ==
                {u["email"] for u in sb["users"]["items"]} == {OWNER, EDITOR, PENDING})

        failures = attack(a, b, routes) + attack(b, a, routes)
        assert not failures, "\n".join(map(str, failures))
        # Nothing changed in either tenant: no record, user, role, token,
        # session or audit entry was written by the other's credentials.
        for t, before in ((a, sa), (b, sb)):
            after = t.state()
            added = [x for x in after.pop("audit") if x not in before["audit"]]
            assert after == {k: v for k, v in before.items() if k != "audit"}
            assert {typ for _, typ in added} <= EXPECTED_AUDIT, added
            assert any(typ == "login.failed" for _, typ in added)  # the foreign password
            assert any(typ == "auth.token_refused" for _, typ in added)  # the foreign token

        # The refusals consumed nothing: every credential still works at home.
        for t in (a, b):
            assert t.owner.call("GET", "/api/auth/me").status_code == 200
            assert t.api.call("GET", "/api/collections/tickets/records/r1").status_code == 200
            mfa = Client(silo, t.slug).call("POST", "/api/auth/mfa", {
                "mfa_token": t.mfa_token, "recovery_code": t.recovery_codes[0]})
            assert mfa.status_code == 200, mfa.text
            assert Client(silo, t.slug).setup(t.setup_token, "a pending user's password").status_code == 200
            done = Client(silo, t.slug).call("POST", "/api/auth/password-reset/confirm", {
                "token": t.reset_token, "new_password": "the editor's new password"})
            assert done.status_code == 200, done.text
        # The server's output holds none of those secrets either.
        out = silo.output()
        for t in (a, b):
            for s in t.secrets()[1:]:
                assert s not in out


def test_host_and_path_never_disagree_silently(make_silo):
    silo = make_silo(ENV)
    tokens = {}
    for slug in SLUGS:
        create_tenant(silo, slug, OWNER)
        args = ["tenant", "token", slug, "--name", "x", "--expires", TOKEN_EXPIRES,
                "--permission", "collections.read"]
        tokens[slug] = silo.cli(*args).stdout.strip()
        assert tokens[slug].startswith("silo_")

    def get(path, host, slug):
        return requests.get(silo.url + path, headers={"Host": host,
                                                      "Authorization": "Bearer " + tokens[slug]},
                            verify=False, timeout=10)

    # Each form alone, and both agreeing.
    assert get("/api/", "acme." + BASE, "acme").json() == {"tenant": "acme"}
    assert get("/api/collections", "acme." + BASE, "acme").status_code == 200
    assert get("/t/acme/api/collections", "ACME.%s:443" % BASE, "acme").status_code == 200
    assert get("/t/acme/api/collections", "127.0.0.1", "acme").status_code == 200
    assert get("/api/collections", "beta." + BASE, "acme").status_code == 401
    # Disagreeing in every spelling of the host: refused, never resolved.
    for host in ["beta." + BASE, "BETA.%s:8443" % BASE, "beta.%s." % BASE, "Beta.%s.:443" % BASE]:
        for slug in SLUGS:
            r = get("/t/acme/api/collections", host, slug)
            assert r.status_code == 400, (host, slug, r.status_code)
            assert "disagree" in r.json()["detail"]
    # A path slug is not decoded or case-folded into a tenant (sent raw: the
    # client library would normalise %61 to "a" itself).
    for path in ["/t/%61cme/api/", "/t/ACME/api/", "/t/acme%2F..%2Fbeta/api/",
                 "/t/%62eta/api/collections"]:
        out = raw_exchange(silo, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s"
                                  "\r\nConnection: close\r\n\r\n" % (path, tokens["beta"])).encode())
        assert out.split(b"\r\n", 1)[0] == b"HTTP/1.1 404 Not Found", (path, out[:200])
        assert b"acme" not in out and b"beta" not in out, path
    # Two Host headers: refused whichever comes first.
    for first, second in [("acme", "beta"), ("beta", "acme")]:
        out = raw_exchange(silo, ("GET /api/ HTTP/1.1\r\nHost: %s.%s\r\nHost: %s.%s\r\n"
                                  "Connection: close\r\n\r\n" % (first, BASE, second, BASE)).encode())
        assert out.split(b"\r\n", 1)[0] == b"HTTP/1.1 400 Bad Request", out[:200]
        assert b'"tenant"' not in out
