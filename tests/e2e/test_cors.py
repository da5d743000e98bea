"""CORS for API-token clients (issue 20): a tenant admin lists origins
(PATCH /api/settings, settings.manage, audited); preflights are answered from
the route table; answers to a listed origin carry Access-Control-Allow-Origin
and never Access-Control-Allow-Credentials; a session cookie that comes with
another origin is refused whatever the method."""
import requests

from identity_util import Client, create_tenant, issue_token

APP = "https://app.example.test"
DEV = "http://localhost:5173"
MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}


def call(silo, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    return requests.request(method, silo.url + "/t/acme" + path, json=body, headers=h,
                            verify=False, timeout=10)


def preflight(silo, path, origin, method="POST", headers="authorization, content-type"):
    return requests.options(silo.url + "/t/acme" + path, verify=False, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


def test_settings_list_origins_and_refuse_bad_ones(make_silo):
    silo = make_silo(MANY)
    create_tenant(silo, "acme", "owner@acme.test")
    admin = issue_token(silo, ["settings.read", "settings.manage", "audit.read"])
    reader = issue_token(silo, ["settings.read"])
    assert call(silo, "GET", "/api/settings", admin).json() == {
        "cors_origins": [], "operator_access": "allowed", "operator_access_source": "platform"}
    for bad, why in [("*", "https://"), ("https://app.example.test/", "no path"),
                     ("http://app.example.test", "localhost"), ("https://APP.test", "lower-case"),
                     ("null", "https://"), ("https://a.test:0", "port"),
                     ("https://a.test:99999", "port")]:
        r = call(silo, "PATCH", "/api/settings", admin, {"cors_origins": [APP, bad]})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"] == [{"field": "cors_origins[1]", "message": r.json()[
            "errors"][0]["message"]}] and why in r.json()["errors"][0]["message"], r.text
    assert call(silo, "PATCH", "/api/settings", admin,
                {"cors_origins": [APP] * 21}).status_code == 422
    assert call(silo, "PATCH", "/api/settings", admin, {"cors": [APP]}).status_code == 422
    assert call(silo, "GET", "/api/settings", admin).json() == {
        "cors_origins": [], "operator_access": "allowed", "operator_access_source": "platform"}
    # Without settings.manage: refused.
    r = call(silo, "PATCH", "/api/settings", reader, {"cors_origins": [APP]})
    assert r.status_code == 403
    r = call(silo, "PATCH", "/api/settings", admin, {"cors_origins": [DEV, APP, APP]})
    assert r.status_code == 200 and r.json()["cors_origins"] == [DEV, APP]  # sorted, once
    assert call(silo, "GET", "/api/settings", reader).json()["cors_origins"] == [DEV, APP]
    # Audited with the old and new lists.
    audit = call(silo, "GET", "/api/audit?type=settings.updated", admin).json()["items"]
    assert len(audit) == 1
    assert audit[0]["changes"] == [{"field": "cors_origins", "old": [], "new": [DEV, APP]}]


def test_preflights_and_answers_for_listed_origins_only(make_silo):
    silo = make_silo(MANY)
    create_tenant(silo, "acme", "owner@acme.test")
    admin = issue_token(silo, ["settings.manage", "collections.manage", "collections.read",
                               "records.*.read", "records.*.create"])
    assert call(silo, "POST", "/api/collections", admin, {
        "name": "notes", "fields": [{"name": "t", "type": "string"}]}).status_code == 201

    # Nothing listed yet: refused, with no CORS header to let the browser on.
    r = preflight(silo, "/api/collections/notes/records", APP)
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    assert call(silo, "PATCH", "/api/settings", admin, {"cors_origins": [APP]}).status_code == 200

    r = preflight(silo, "/api/collections/notes/records", APP)
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST"  # the route table's
    assert "authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "if-match" in r.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "Origin" in r.headers["Vary"]
    # A method the path does not have, a header Silo does not read, an
    # unlisted origin, and a listed one's look-alike: refused.
    assert preflight(silo, "/api/collections/notes/records", APP, "PUT").status_code == 403
    assert preflight(silo, "/api/collections/notes/records", APP,
                     headers="authorization, x-secret").status_code == 403
    for other in ["https://evil.example.test", APP + ":443", APP.replace("https", "http"),
                  "https://app.example.test.evil.test"]:
        r = preflight(silo, "/api/collections/notes/records", other)
        assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers, other

    # The actual calls with the token.
    r = call(silo, "POST", "/api/collections/notes/records", admin, {"t": "x"},
             headers={"Origin": APP})
    assert r.status_code == 201
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in r.headers
    r = call(silo, "GET", "/api/collections/notes/records", admin,
             headers={"Origin": "https://evil.example.test"})
    assert "Access-Control-Allow-Origin" not in r.headers and "Origin" in r.headers["Vary"]
    # No Origin (not a browser) or the tenant's own: no CORS headers at all.
    r = call(silo, "GET", "/api/collections/notes/records", admin)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers

    # Taking the origin off applies to the very next preflight (the cached
    # settings are dropped by the write).
    assert call(silo, "PATCH", "/api/settings", admin, {"cors_origins": []}).status_code == 200
    assert preflight(silo, "/api/collections/notes/records", APP).status_code == 403


def test_a_session_cookie_never_works_across_origins(make_silo):
    silo = make_silo(MANY)
    t = create_tenant(silo, "acme", "owner@acme.test")
    admin = issue_token(silo, ["settings.manage"])
    assert call(silo, "PATCH", "/api/settings", admin, {"cors_origins": [APP]}).status_code == 200
    owner = Client(silo, "acme")
    assert owner.setup(t["owner_setup_token"]).status_code == 200
    owner.sign_in("owner@acme.test")
    own_origin = "https://127.0.0.1:%d" % silo.port
    assert owner.call("GET", "/api/auth/me", headers={"Origin": own_origin}).status_code == 200
    # Even from a listed origin, and even for a read: refused.
    for origin in [APP, "https://evil.example.test"]:
        r = owner.call("GET", "/api/auth/me", headers={"Origin": origin})
        assert r.status_code == 403, r.text
        assert "another origin" in r.json()["detail"]
        assert "Access-Control-Allow-Credentials" not in r.headers
    assert owner.call("GET", "/api/auth/me").status_code == 200

