"""The role x route matrix, generated from the route table (`silo routes`)
and the policy the server publishes (GET /api/roles): every permission route,
every built-in role, anonymous, a token used where a session is needed, and
valid credentials of another tenant. Allowed exactly where the policy says."""
import json
import subprocess

from identity_util import Client, create_tenant
from conftest import SILO_BIN, TOKEN_EXPIRES

MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}
ALL_PERMS = ["collections.read", "collections.manage", "events.read", "audit.read",
             "audit.verify", "users.read", "users.manage", "roles.read", "roles.manage",
             "records.*.read", "records.*.create"]


def grants(held, wanted):
    """The policy's wildcard rules, restated: records.*.<a> grants every
    collection's <a>; channels.<prefix>*.<a> grants <a> on every channel
    whose name starts with the prefix; "a|b" is granted by either."""
    if "|" in wanted:
        return any(grants(held, w) for w in wanted.split("|"))
    for p in held:
        if p == wanted:
            return True
        if p.startswith("records.*.") and wanted.startswith("records."):
            if wanted.rsplit(".", 1)[1] == p[len("records.*."):]:
                return True
        if p.startswith("channels.") and wanted.startswith("channels."):
            (pattern, action), (name, wanted_action) = (
                p[len("channels."):].rsplit(".", 1), wanted[len("channels."):].rsplit(".", 1))
            if action == wanted_action and pattern.endswith("*") and \
                    name.startswith(pattern[:-1]):
                return True
    return False


def concrete(route):
    path = route["pattern"]
    if path.startswith("/api/roles/"):
        path = path.replace("{name}", "nosuch_role")
    path = path.replace("{name}", "tickets").replace("{id}", "nosuchid")
    path = path.replace("{field}", "title").replace("{file}", "0" * 32)
    path = path.replace("{upload}", "0" * 32).replace("{link}", "nosuchlink")
    path = path.replace("/api/files/nosuchid/", "/api/files/" + "0" * 32 + "/")
    # Captures a route takes from the query (the upload's collection and field).
    values = {"collection": "tickets", "field": "title"}
    if route.get("query"):
        path += "?" + "&".join("%s=%s" % (q, values[q]) for q in route["query"])
    perm = route["access"].replace("{name}", "tickets").replace("{collection}", "tickets")
    return path, perm


def user_with_role(silo, owner, role):
    email = role + "@acme.test"
    inv = owner.call("POST", "/api/users", {"email": email, "roles": [role]})
    assert inv.status_code == 201, inv.text
    c = Client(silo, "acme")
    assert c.setup(inv.json()["setup_token"]).status_code == 200
    body = c.sign_in(email)
    if body["mfa_enrolment_required"]:
        c.enrol_totp()
    return c


def test_role_route_matrix(make_silo):
    silo = make_silo(MANY)
    routes = json.loads(subprocess.run([SILO_BIN, "routes"], capture_output=True, text=True,
                                       check=True).stdout)
    perm_routes = [r for r in routes if r["access"] not in ("public", "session", "authenticated")]
    # Routes whose permission the data names (a file's links): proven callers only.
    data_routes = [r for r in routes if r["access"] == "authenticated"]
    session_routes = [r for r in routes if r["access"] == "session"]
    assert len(perm_routes) >= 25 and len(session_routes) >= 10

    t = create_tenant(silo, "acme", "owner@acme.test")
    owner = Client(silo, "acme")
    owner.setup(t["owner_setup_token"])
    owner.sign_in("owner@acme.test")
    owner.enrol_totp()
    assert owner.call("POST", "/api/collections", {"name": "tickets", "fields": [
        {"name": "title", "type": "string", "required": True}]}).status_code == 201
    assert owner.call("POST", "/api/collections/tickets/records",
                      {"title": "keep the collection"}).status_code == 201
    policy = {r["name"]: r["permissions"] for r in owner.call("GET", "/api/roles").json()["items"]}
    assert set(policy) >= {"owner", "admin", "security_admin", "auditor", "editor", "viewer"}
    principals = {"owner": owner}
    for role in ["admin", "security_admin", "auditor", "editor", "viewer"]:
        principals[role] = user_with_role(silo, owner, role)

    # Another tenant's valid credentials: its owner's session and a token.
    tb = create_tenant(silo, "beta", "owner@acme.test")  # same e-mail, unrelated account
    beta = Client(silo, "beta")
    beta.setup(tb["owner_setup_token"])
    beta.sign_in("owner@acme.test")
    args = ["tenant", "token", "beta", "--name", "x", "--expires", TOKEN_EXPIRES]
    for p in ALL_PERMS:
        args += ["--permission", p]
    beta_token = silo.cli(*args).stdout.strip()
    assert beta_token.startswith("silo_")
    foreign_cookie = Client(silo, "acme")
    foreign_cookie.cookie, foreign_cookie.csrf = beta.cookie, beta.csrf
    foreign_token = Client(silo, "acme")
    foreign_token.bearer = beta_token
    anonymous = Client(silo, "acme")
    acme_args = ["tenant", "token", "acme", "--name", "x", "--expires", TOKEN_EXPIRES]
    for p in ALL_PERMS:
        acme_args += ["--permission", p]
    acme_token = Client(silo, "acme")
    acme_token.bearer = silo.cli(*acme_args).stdout.strip()

    failures = []
    checked = 0
    outcomes = {True: 0, False: 0}

    def call(client, route):
        path, _ = concrete(route)
        body = {} if route["body_limit"] > 0 else None
        return client.call(route["method"], path, body)

    for route in perm_routes:
        path, perm = concrete(route)
        for role, client in principals.items():
            allowed = grants(policy[role], perm)
            status = call(client, route).status_code
            checked += 1
            outcomes[allowed] += 1
            if allowed and status in (401, 403) or not allowed and status != 403:
                failures.append((role, route["method"], path, perm, allowed, status))
        for who, client, want in [("anonymous", anonymous, 401),
                                  ("beta session", foreign_cookie, 401),
                                  ("beta token", foreign_token, 401)]:
            status = call(client, route).status_code
            checked += 1
            if status != want:
                failures.append((who, route["method"], path, perm, want, status))
    for route in data_routes:
        path, _ = concrete(route)
        for who, client, want in [("anonymous", anonymous, 401),
                                  ("beta session", foreign_cookie, 401),
                                  ("beta token", foreign_token, 401)]:
            status = call(client, route).status_code
            checked += 1
            if status != want:
                failures.append((who, route["method"], path, "authenticated", want, status))
    for route in session_routes:
        path, _ = concrete(route)
        for who, client, want in [("anonymous", anonymous, 401),
                                  ("beta session", foreign_cookie, 401),
                                  ("beta token", foreign_token, 401),
                                  ("acme token", acme_token, 403)]:
            status = call(client, route).status_code
            checked += 1
            if status != want:
                failures.append((who, route["method"], path, "session", want, status))
    assert not failures, "\n".join(map(str, failures))
    assert checked >= 250
    assert outcomes[True] >= 60 and outcomes[False] >= 40, outcomes
    # Nothing of acme in any answer to beta's credentials.
    r = foreign_token.call("GET", "/api/collections/tickets/records")
    assert "keep the collection" not in r.text
