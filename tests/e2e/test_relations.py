"""Relation fields through the real binary over HTTPS: referential integrity,
on_delete, ?expand (permission-aware, as of ?at=) and filters through a
relation, and that a relation never reaches another tenant."""
import urllib.parse

from test_records import Api, tenant, token

SCHEMAS = [
    {"name": "customers", "fields": [{"name": "name", "type": "string"},
                                     {"name": "country", "type": "string"},
                                     {"name": "owner", "type": "relation",
                                      "collection": "people", "on_delete": "set_null"}]},
    {"name": "tags", "fields": [{"name": "label", "type": "string"}]},
    {"name": "invoices", "fields": [
        {"name": "n", "type": "integer"},
        {"name": "customer", "type": "relation", "collection": "customers", "required": True},
        {"name": "tags", "type": "relation", "collection": "tags", "multiple": True,
         "on_delete": "set_null"}]},
    {"name": "lines", "fields": [
        {"name": "invoice", "type": "relation", "collection": "invoices",
         "on_delete": "cascade"}]},
]


def make_tenant(silo, slug="acme"):
    tenant(silo, slug)
    api = Api(silo, slug, token(silo, slug))
    r = api.call("POST", "/api/collections",
                 {"name": "people", "fields": [{"name": "name", "type": "string"}]})
    assert r.status_code == 201, r.text
    for s in SCHEMAS:
        r = api.call("POST", "/api/collections", s)
        assert r.status_code == 201, r.text
    return api


def post(api, collection, body):
    r = api.call("POST", "/api/collections/%s/records" % collection, body)
    assert r.status_code == 201, r.text
    return r.json()


def test_integrity_on_delete_and_schema_refusals(silo):
    api = make_tenant(silo)
    other = make_tenant(silo, "other")
    post(other, "customers", {"id": "theirs", "name": "secret of other"})
    post(api, "customers", {"id": "c1", "name": "Ana", "country": "CZ"})
    post(api, "tags", {"id": "t1", "label": "urgent"})
    before = len(api.events())
    # A missing id, and an id that exists only in another tenant: the same 422.
    for cid in ["nope", "theirs"]:
        r = api.call("POST", "/api/collections/invoices/records", {"customer": cid})
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"field": "customer",
                                       "message": "no record %s in customers" % cid}]
        assert "secret" not in r.text
    assert len(api.events()) == before
    post(api, "invoices", {"id": "i1", "customer": "c1", "tags": ["t1"]})
    post(api, "lines", {"id": "l1", "invoice": "i1"})
    post(api, "lines", {"id": "l2", "invoice": "i1"})
    # restrict: 409 naming the referrer; nothing written.
    before = len(api.events())
    r = api.call("DELETE", "/api/collections/customers/records/c1")
    assert r.status_code == 409, r.text
    assert "invoices/i1 (customer)" in r.text
    assert len(api.events()) == before
    # set_null, then cascade: one event per affected record.
    assert api.call("DELETE", "/api/collections/tags/records/t1").status_code == 204
    assert "tags" not in api.call("GET", "/api/collections/invoices/records/i1").json()
    assert api.call("DELETE", "/api/collections/invoices/records/i1").status_code == 204
    evs = api.events()[-5:]
    assert [(e["type"], e["subject"]["id"]) for e in evs] == [
        ("record.updated", "invoices/i1"), ("record.deleted", "tags/t1"),
        ("record.deleted", "lines/l1"),
        ("record.deleted", "lines/l2"), ("record.deleted", "invoices/i1")]
    assert api.call("GET", "/api/collections/lines/records/l2").status_code == 404
    # Bad schemas: a missing collection, a cascade cycle, an option elsewhere.
    bad = [
        ({"name": "x", "fields": [{"name": "r", "type": "relation", "collection": "nope"}]},
         "no collection named nope"),
        ({"name": "x", "fields": [{"name": "r", "type": "relation", "collection": "x",
                                   "on_delete": "cascade"}]}, "cycle"),
        ({"name": "x", "fields": [{"name": "r", "type": "string", "collection": "x"}]},
         "relation fields only"),
    ]
    for schema, why in bad:
        r = api.call("POST", "/api/collections", schema)
        assert r.status_code == 422 and why in r.text, r.text
    assert api.call("GET", "/api/collections/x").status_code == 404
    r = api.call("DELETE", "/api/collections/tags")
    assert r.status_code == 409 and "invoices.tags" in r.text, r.text


def test_expand_respects_permissions_and_time(silo):
    api = make_tenant(silo)
    post(api, "people", {"id": "p1", "name": "Pia"})
    post(api, "customers", {"id": "c1", "name": "Ana", "country": "CZ", "owner": "p1"})
    post(api, "customers", {"id": "c2", "name": "Bo", "country": "SE"})
    post(api, "tags", {"id": "t1", "label": "urgent"})
    post(api, "invoices", {"id": "i1", "n": 1, "customer": "c1", "tags": ["t1"]})
    post(api, "invoices", {"id": "i2", "n": 2, "customer": "c2"})
    then = api.call("GET", "/api/collections/invoices/records/i2").json()["updated_at"]
    r = api.call("PATCH", "/api/collections/customers/records/c1", {"name": "Ana B."})
    assert r.status_code == 200

    one = api.call("GET", "/api/collections/invoices/records/i1?expand=customer.owner,tags")
    assert one.status_code == 200, one.text
    x = one.json()["expand"]
    assert x["customer"]["name"] == "Ana B."
    assert x["customer"]["expand"]["owner"]["name"] == "Pia"
    assert [t["label"] for t in x["tags"]] == ["urgent"]
    # As of a time, the related records are as they were then.
    at = urllib.parse.quote(then, safe="")
    old = api.call("GET", "/api/collections/invoices/records/i1?expand=customer&at=" + at)
    assert old.json()["expand"]["customer"]["name"] == "Ana"
    page = api.call("GET", "/api/collections/invoices/records?expand=customer&sort=n").json()
    assert [i["expand"]["customer"]["id"] for i in page["items"]] == ["c1", "c2"]
    # Filter through a relation, paged.
    r = api.call("GET", "/api/collections/invoices/records?filter=customer.country:eq:SE")
    assert [i["id"] for i in r.json()["items"]] == ["i2"]

    # A caller who may read invoices but not customers gets the ids alone,
    # and may not filter through customers.
    reader = Api(silo, "acme", token(silo, "acme", ["records.invoices.read",
                                                     "records.tags.read"]))
    r = reader.call("GET", "/api/collections/invoices/records/i1?expand=customer,tags")
    assert r.status_code == 200, r.text
    assert r.json()["expand"] == {"customer": "c1", "tags": [
        {k: v for k, v in x["tags"][0].items()}]}
    assert "Ana" not in r.text
    r = reader.call("GET", "/api/collections/invoices/records?filter=customer.country:eq:CZ")
    assert r.status_code == 403, r.text
    # Bad expand paths: deeper than 2, not a relation, unknown.
    for q in ["customer.owner.name", "n", "nope", "customer.country"]:
        r = api.call("GET", "/api/collections/invoices/records?expand=" + q)
        assert r.status_code == 422, (q, r.text)
        r = api.call("GET", "/api/collections/invoices/records/i1?expand=" + q)
        assert r.status_code == 422, (q, r.text)
