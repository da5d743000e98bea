"""ASVS Level 2 rows of issue 24 that are not elsewhere: request bodies
that parsers could read differently are refused."""
import requests

from identity_util import create_tenant, issue_token

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
