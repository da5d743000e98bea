"""The OpenAPI documents as served (issue 20): GET /api/openapi.json is the
static document plus the caller's own collections, typed, for only the
record operations the caller holds and only the fields it may read;
GET /v1/openapi.json is the operator's. Every other e2e answer is checked
against these documents by conftest (openapi_check.py). Also here: a session
cookie per tenant, so one browser stays signed in to two tenants."""
import json

import requests

from identity_util import PASSWORD, Client, create_tenant, issue_token

OWNER = "owner@acme.test"
MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}


def operator(silo, method, path, body=None):
    return requests.request(method, silo.operator_url + path, json=body, timeout=10,
                            headers={"Authorization": "Bearer " + silo.operator_token()})


def test_served_documents_match_the_cli_and_type_the_callers_collections(make_silo):
    silo = make_silo(MANY)
    create_tenant(silo, "acme", OWNER)
    admin = issue_token(silo, ["collections.manage", "collections.read"])
    h = {"Authorization": "Bearer " + admin}
    for name, fields in [
            ("notes", [{"name": "title", "type": "string", "required": True},
                       {"name": "secret", "type": "text"},
                       {"name": "level", "type": "enum", "values": ["low", "high"]}]),
            ("payroll", [{"name": "salary", "type": "integer"}])]:
        r = requests.post(silo.url + "/t/acme/api/collections", verify=False, timeout=10,
                          headers=h, json={"name": name, "fields": fields})
        assert r.status_code == 201, r.text

    # Every route of the document is called by some test (conftest lists
    # those none called): readiness here.
    assert silo.get("/readyz").json() == {"status": "ready"}
    # No credentials: refused (the static document is `silo openapi`).
    assert silo.get("/t/acme/api/openapi.json").status_code == 401

    # A reader of notes only: notes is typed for reading, payroll is absent.
    reader = issue_token(silo, ["records.notes.read"])
    r = silo.get("/t/acme/api/openapi.json", headers={"Authorization": "Bearer " + reader})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["servers"][0]["url"] == "/t/acme"
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert set(paths["/api/collections/notes/records"]) == {"get"}
    assert set(paths["/api/collections/notes/records/{id}"]) == {"get"}
    assert not any("payroll" in p for p in paths)
    assert "Record_payroll" not in schemas and "payroll" not in json.dumps(doc)
    notes = schemas["Record_notes"]["properties"]
    assert notes["level"]["enum"] == ["low", "high"]
    assert notes["title"]["type"] == "string"
    assert notes["secret"]["type"] == ["string", "null"]
    # The generic part is exactly the CLI's document.
    static = json.loads(silo.cli("openapi").stdout)
    assert doc["paths"]["/api/collections/{name}/records"] == \
        static["paths"]["/api/collections/{name}/records"]
    assert set(static["paths"]) <= set(paths)
    assert schemas["Problem"] == static["components"]["schemas"]["Problem"]

    # A writer gets the write operations with the typed input (required
    # fields required, unknown fields refused by the schema).
    writer = issue_token(silo, ["records.notes.create", "records.notes.update",
                                        "records.notes.delete"])
    doc = silo.get("/t/acme/api/openapi.json",
                   headers={"Authorization": "Bearer " + writer}).json()
    assert set(doc["paths"]["/api/collections/notes/records"]) == {"post"}
    assert set(doc["paths"]["/api/collections/notes/records/{id}"]) == {"patch", "delete"}
    made = doc["components"]["schemas"]["RecordInput_notes"]
    assert made["required"] == ["title"] and made["additionalProperties"] is False

    # The operator's document, on the operator listener only.
    r = operator(silo, "GET", "/v1/openapi.json")
    assert r.status_code == 200
    assert r.json() == json.loads(silo.cli("openapi", "--operator").stdout)
    assert "/v1/tenants" in r.json()["paths"]
    assert silo.get("/v1/openapi.json").status_code == 404
    assert requests.get(silo.operator_url + "/v1/openapi.json", timeout=10).status_code == 401


def test_a_field_grant_hides_the_fields_it_withholds_from_the_document(make_silo):
    silo = make_silo(MANY)
    create_tenant(silo, "acme", OWNER)
    # A role's grants lie within its maker's: the token holds records.*.read.
    admin = issue_token(silo, ["collections.manage", "roles.manage", "users.manage",
                                       "users.read", "roles.read", "records.*.read"])
    h = {"Authorization": "Bearer " + admin}

    def call(method, path, body=None):
        return requests.request(method, silo.url + "/t/acme" + path, json=body, headers=h,
                                verify=False, timeout=10)

    assert call("POST", "/api/collections", {"name": "staff", "fields": [
        {"name": "name", "type": "string"}, {"name": "salary", "type": "integer"}]}
    ).status_code == 201
    assert call("POST", "/api/roles", {"name": "directory", "permissions": [
        {"permission": "records.staff.read", "fields": ["name"]}]}).status_code == 201
    invited = call("POST", "/api/users", {"email": "ann@acme.test", "roles": ["directory"]})
    assert invited.status_code == 201, invited.text
    ann = Client(silo, "acme")
    assert ann.setup(invited.json()["setup_token"]).status_code == 200
    ann.sign_in("ann@acme.test")
    r = ann.call("GET", "/api/openapi.json")
    assert r.status_code == 200, r.text
    staff = r.json()["components"]["schemas"]["Record_staff"]["properties"]
    assert "name" in staff and "salary" not in staff, sorted(staff)


def test_one_browser_stays_signed_in_to_two_tenants(make_silo):
    """Two tenants under /t/<slug>/ on one host, one cookie jar: each
    sign-in sets its own tenant's cookie, so neither replaces the other."""
    silo = make_silo(MANY)
    jar = requests.Session()
    jar.verify = False
    jar.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
    for slug in ("acme", "beta"):
        t = create_tenant(silo, slug, "owner@%s.test" % slug)
        r = jar.post(silo.url + "/t/%s/api/auth/setup" % slug, timeout=30,
                     json={"token": t["owner_setup_token"], "password": PASSWORD})
        assert r.status_code == 200, r.text
        r = jar.post(silo.url + "/t/%s/api/auth/login" % slug, timeout=30,
                     json={"email": "owner@%s.test" % slug, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.headers["Set-Cookie"].startswith("__Host-silo_session_%s=" % slug)
    names = sorted(c.name for c in jar.cookies if c.name.startswith("__Host-silo_session"))
    assert names == ["__Host-silo_session_acme", "__Host-silo_session_beta"]
    for slug in ("acme", "beta"):
        me = jar.get(silo.url + "/t/%s/api/auth/me" % slug, timeout=10)
        assert me.status_code == 200, (slug, me.text)
        assert me.json()["user"]["email"] == "owner@%s.test" % slug
    # Signing out of one leaves the other signed in.
    me = jar.get(silo.url + "/t/acme/api/auth/me", timeout=10).json()
    out = jar.post(silo.url + "/t/acme/api/auth/logout", timeout=10,
                   headers={"X-CSRF-Token": me["csrf_token"], "Sec-Fetch-Site": "same-origin"})
    assert out.status_code == 204
    assert jar.get(silo.url + "/t/acme/api/auth/me", timeout=10).status_code == 401
    assert jar.get(silo.url + "/t/beta/api/auth/me", timeout=10).status_code == 200
