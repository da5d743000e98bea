"""Tenant lifecycle through the CLI (a client of the operator API) and both
resolution forms on the public listener."""
import json
import os

import requests


def test_cli_lifecycle(silo):
    r = silo.cli("--json", "tenant", "create", "acme", "--name", "Acme Corp",
                 "--owner-email", "owner@acme.test")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)  # --json prints the API's JSON and nothing else
    assert created["slug"] == "acme" and len(created["id"]) == 32
    assert os.path.isdir(os.path.join(silo.data_dir, "tenants", created["id"]))

    r = silo.cli("--json", "tenant", "list")
    assert r.returncode == 0
    assert [t["slug"] for t in json.loads(r.stdout)["items"]] == ["acme"]

    assert silo.get("/t/acme/api/").json() == {"tenant": "acme"}

    r = silo.cli("tenant", "suspend", "acme")
    assert r.returncode == 0 and "suspended" in r.stdout
    suspended = silo.get("/t/acme/api/")
    unknown = silo.get("/t/zzzz/api/")
    assert suspended.status_code == unknown.status_code == 404
    assert suspended.json()["detail"] == unknown.json()["detail"]

    assert silo.cli("tenant", "resume", "acme").returncode == 0
    assert silo.get("/t/acme/api/").status_code == 200

    r = silo.cli("tenant", "delete", "acme")
    assert r.returncode == 2  # usage: --yes is required
    assert silo.get("/t/acme/api/").status_code == 200

    key_file = os.path.join(silo.data_dir, "platform", "keyring.d", created["id"])
    with open(key_file) as f:
        assert json.load(f)["tenant"] == created["id"]
    r = silo.cli("--json", "tenant", "delete", "acme", "--yes")
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] is True
    assert not os.path.exists(os.path.join(silo.data_dir, "tenants", created["id"]))
    assert not os.path.exists(key_file)  # wrapped key destroyed
    with open(os.path.join(silo.data_dir, "platform", "keyring")) as f:
        assert created["id"] not in f.read()
    assert silo.get("/t/acme/api/").status_code == 404

    with open(os.path.join(silo.data_dir, "platform", "security.log")) as f:
        types = [json.loads(line)["type"] for line in f]
    assert types == ["tenant.created", "tenant.suspended", "tenant.resumed", "tenant.deleted"]


def test_cli_refusals_and_usage(silo):
    assert silo.cli("tenant", "create", "acme").returncode == 0
    dup = silo.cli("tenant", "create", "acme")
    assert dup.returncode == 1 and "taken" in dup.stderr
    for bad in ["ab", "Acme", "admin", "www", "a_b", "abc-", "xn--abc", "a" * 64]:
        r = silo.cli("--json", "tenant", "create", bad)
        assert r.returncode == 1, bad
        assert json.loads(r.stdout)["status"] == 422
    assert silo.cli("tenant", "create", "okay", "--owner-email", "nope").returncode == 1
    assert silo.cli("tenant", "suspend", "nobody").returncode == 1
    assert silo.cli("tenant", "suspend", "acme/../x").returncode == 2
    assert silo.cli("tenant", "delete", "acme?x", "--yes").returncode == 2
    assert silo.cli("tenant").returncode == 2
    assert silo.cli("tenant", "frobnicate").returncode == 2
    assert silo.cli("nonsense").returncode == 2
    assert silo.cli("tenant", "create").returncode == 2
    assert silo.get("/t/acme/api/").status_code == 200


def test_cli_without_server_is_refused(data_dir):
    from conftest import Silo
    s = Silo(data_dir)
    os.makedirs(os.path.join(data_dir, "dev"))
    with open(os.path.join(data_dir, "dev", "operator.token"), "w") as f:
        f.write("x" * 43)
    r = s.cli("tenant", "list", env={"SILO_OPERATOR_LISTEN": "127.0.0.1:1"})
    assert r.returncode == 1 and "cannot reach" in r.stderr


def test_operator_api_requires_token(silo):
    r = requests.get(silo.operator_url + "/v1/tenants", timeout=5)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = requests.get(silo.operator_url + "/v1/tenants", timeout=5,
                     headers={"Authorization": "Bearer " + "x" * 43})
    assert r.status_code == 401
    tok = {"Authorization": "Bearer " + silo.operator_token()}
    r = requests.post(silo.operator_url + "/v1/tenants", timeout=5, headers=tok, data="slug=acme")
    assert r.status_code == 415
    r = requests.post(silo.operator_url + "/v1/tenants", timeout=5, headers=tok,
                      json={"slug": "acme", "is_admin": True})
    assert r.status_code == 422 and "is_admin" in r.json()["detail"]
    r = requests.post(silo.operator_url + "/v1/tenants", timeout=5, headers=tok, json=["acme"])
    assert r.status_code == 400
    r = requests.post(silo.operator_url + "/v1/tenants", timeout=5, headers=tok, json={"slug": 5})
    assert r.status_code == 422
    r = requests.get(silo.operator_url + "/v1/tenants", timeout=5, headers=tok)
    assert r.json() == {"items": []}


def test_host_and_path_resolution(make_silo):
    silo = make_silo({"SILO_BASE_DOMAIN": "silo.test"})
    assert silo.cli("tenant", "create", "acme").returncode == 0
    assert silo.cli("tenant", "create", "beta").returncode == 0
    r = silo.get("/api/", headers={"Host": "acme.silo.test"})
    assert r.status_code == 200 and r.json() == {"tenant": "acme"}
    r = silo.get("/api/", headers={"Host": "BETA.silo.test:8443"})
    assert r.json() == {"tenant": "beta"}
    assert silo.get("/t/beta/api/", headers={"Host": "beta.silo.test"}).json() == {"tenant": "beta"}
    # Host and path naming different tenants: refused, never silently one of them.
    r = silo.get("/t/beta/api/", headers={"Host": "acme.silo.test"})
    assert r.status_code == 400 and "acme" not in r.text and "beta" not in r.text
    assert silo.get("/api/", headers={"Host": "nobody.silo.test"}).status_code == 404
    assert silo.get("/api/", headers={"Host": "acme.evil.test"}).status_code == 404
    assert silo.get("/api/", headers={"Host": "x.acme.silo.test"}).status_code == 404


def test_metrics_on_operator_listener_only(silo):
    silo.get("/healthz")
    silo.get("/nothing")
    assert silo.get("/metrics").status_code == 404
    assert requests.get(silo.operator_url + "/metrics", timeout=5).status_code == 401
    r = requests.get(silo.operator_url + "/metrics", timeout=5,
                     headers={"Authorization": "Bearer " + silo.operator_token()})
    assert r.status_code == 200
    assert 'silo_http_requests_total{listener="public",route="/healthz",status="200"}' in r.text
    assert 'route="unmatched",status="404"' in r.text
    assert "silo_http_request_duration_seconds_bucket" in r.text
    assert "silo_tenants 0" in r.text
