"""DESIGN: on a platform that keeps the lockbox (SILO_OPERATOR_ACCESS unset or
approval), no operator route reads tenant records without the tenant's
approval.

Checked by behaviour, not by URL spelling: every operator route that
`silo routes --operator` lists is called with the operator token, with a
well-formed body where it takes one, and no answer may carry a record's
contents. The data is written on a development platform
(SILO_OPERATOR_ACCESS=allowed, as the other tests run), then the same data
directory is served as a production platform would serve it. The approval
itself is test_lockbox.py's."""
import json

import requests

from conftest import TOKEN_EXPIRES
from test_records import make_api

# A value only the tenant's records hold (fixed, so a failure is reproducible).
MARKER = "zq-only-in-a-record-7a1c"
REFUSAL = "operator access to tenant data needs the tenant's approval"
APPROVAL = {"SILO_OPERATOR_ACCESS": "approval"}


def operator_call(silo, method, path, body=None):
    headers = {"Authorization": "Bearer " + silo.operator_token()}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return requests.request(method, silo.operator_url + path, timeout=30, headers=headers,
                            data=json.dumps(body).encode() if body is not None else None)


def test_no_operator_route_answers_with_a_tenants_records(silo, make_silo):
    api = make_api(silo)
    for i in range(3):
        r = api.call("POST", "/api/collections/tickets/records",
                     {"id": "t%d" % i, "title": MARKER, "meta": {"note": MARKER}})
        assert r.status_code == 201, r.text
    assert silo.stop() == 0
    silo = make_silo(APPROVAL)
    r = operator_call(silo, "POST", "/v1/tenants/acme/backups")
    assert r.status_code in (200, 201), r.text
    backup_id = r.json()["id"]

    routes = json.loads(silo.cli("routes", "--operator").stdout)
    bodies = {
        ("POST", "/v1/tenants"): {"slug": "other"},
        ("POST", "/v1/tenants/{slug}/tokens"): {
            "name": "t", "permissions": ["records.*.read"], "expires_at": TOKEN_EXPIRES},
        ("POST", "/v1/backups/{id}/restore"): {"as": "copy"},
        ("POST", "/v1/tenants/{slug}/access-requests"): {
            "scopes": ["records.*.read", "records.*.export"], "reason": "sweep",
            "duration_s": 3600},
    }
    # Destructive last, so that every other route still has data to leak.
    routes.sort(key=lambda r: (r["method"] == "DELETE", r["pattern"]))
    called = 0
    for route in routes:
        path = route["pattern"].replace("{slug}", "acme").replace("{id}", backup_id)
        assert "{" not in path, route
        body = bodies.get((route["method"], route["pattern"]))
        if body is None and route["body_limit"] > 0:
            body = {}
        r = operator_call(silo, route["method"], path, body)
        assert r.status_code < 500, (route, r.status_code, r.text)
        assert MARKER not in r.text, (route, r.text[:500])
        called += 1
        if route["pattern"] in ("/v1/tenants/{slug}/export", "/v1/tenants/{slug}/tokens"):
            assert r.status_code == 403 and r.json()["detail"].startswith(REFUSAL), r.text
    assert called == len(routes) >= 15
    # The routes ran on real data: a tenant was created, and the restored
    # copy holds the records.
    listed = silo.cli("tenant", "list").stdout
    assert "copy" in listed and "other" in listed, listed

    # The attempt is in the platform's security log.
    with open(silo.data_dir + "/platform/security.log") as f:
        types = [json.loads(line)["type"] for line in f]
    assert types.count("access.refused") >= 2
