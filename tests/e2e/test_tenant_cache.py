"""The tenant cache (cache/tenant_cache.h) through the real binary: a
tenant's own roles are served from memory between writes, and a stale
permission never survives the change that replaced it: a role edit, a
restore that brings an older role back, or another tenant's role of the
same name (the cross-tenant permission-cache leak of
spatie/laravel-permission#2964)."""
from conftest import TOKEN_EXPIRES
from identity_util import Client, create_tenant
from test_backups import backup_run

MANY = {"SILO_LOGIN_RATE_PER_MINUTE": "1000"}
NOTES = {"name": "notes", "fields": [{"name": "text", "type": "string"}]}


def tenant_with_reader(silo, slug, reader_permissions):
    """A tenant with a notes collection, one note, a role "reader" with
    `reader_permissions`, and a client with the token of a user holding only
    that role (a token, not the user's session: a role edit ends the
    sessions of its holders, while a token lives on within its owner's
    current permissions, resolved on every request)."""
    t = create_tenant(silo, slug, "owner@" + slug + ".test")
    owner = Client(silo, slug)
    owner.setup(t["owner_setup_token"])
    owner.sign_in("owner@" + slug + ".test")
    owner.enrol_totp()
    assert owner.call("POST", "/api/collections", NOTES).status_code == 201
    r = owner.call("POST", "/api/collections/notes/records", {"id": "n1", "text": slug + " note"})
    assert r.status_code == 201, r.text
    r = owner.call("POST", "/api/roles", {"name": "reader", "permissions": reader_permissions})
    assert r.status_code == 201, r.text
    inv = owner.call("POST", "/api/users", {"email": "ann@" + slug + ".test", "roles": ["reader"]})
    assert inv.status_code == 201, inv.text
    ann = Client(silo, slug)
    assert ann.setup(inv.json()["setup_token"]).status_code == 200
    ann.sign_in("ann@" + slug + ".test")
    made = ann.call("POST", "/api/tokens", {"name": "ci", "expires_at": TOKEN_EXPIRES,
                                            "permissions": reader_permissions})
    assert made.status_code == 201, made.text
    tok = Client(silo, slug)
    tok.bearer = made.json()["token"]
    # The owner's token edits the role (a restore ends the owner's session).
    made = owner.call("POST", "/api/tokens", {"name": "roles", "expires_at": TOKEN_EXPIRES,
                                              "permissions": ["roles.manage", "collections.read",
                                                              "records.notes.read"]})
    assert made.status_code == 201, made.text
    admin = Client(silo, slug)
    admin.bearer = made.json()["token"]
    return admin, tok


def reads(client, times=3):
    """The status of `times` reads in a row (the first fills the cache)."""
    return {client.call("GET", "/api/collections/notes/records/n1").status_code
            for _ in range(times)}


def test_a_stale_permission_never_survives_a_role_edit_a_restore_or_another_tenant(make_silo):
    silo = make_silo(MANY)
    owner, ann = tenant_with_reader(silo, "acme", ["collections.read", "records.notes.read"])
    _, bea = tenant_with_reader(silo, "beta", ["collections.read"])
    # The same role name in two tenants: each user gets its own tenant's.
    assert reads(ann) == {200}
    assert reads(bea) == {403}
    assert reads(ann) == {200}
    assert ann.call("GET", "/api/collections/notes/records/n1").json()["text"] == "acme note"

    backup = backup_run(silo, "acme")
    for round in range(2):
        # Taken away: the very next request is refused, no grace period.
        r = owner.call("PATCH", "/api/roles/reader", {"permissions": ["collections.read"]})
        assert r.status_code == 200, r.text
        assert reads(ann) == {403}, round
        # Given back: the very next request reads.
        r = owner.call("PATCH", "/api/roles/reader",
                       {"permissions": ["collections.read", "records.notes.read"]})
        assert r.status_code == 200, r.text
        assert reads(ann) == {200}, round
    assert reads(bea) == {403}

    # Taken away again, then a restore brings back the role as it was at the
    # backup: the restored permission holds at once, and so does the next edit.
    r = owner.call("PATCH", "/api/roles/reader", {"permissions": ["collections.read"]})
    assert r.status_code == 200 and reads(ann) == {403}
    r = silo.cli("backup", "restore", backup["id"], "--yes")
    assert r.returncode == 0, r.stderr
    assert reads(ann) == {200}
    r = owner.call("PATCH", "/api/roles/reader", {"permissions": ["collections.read"]})
    assert r.status_code == 200, r.text
    assert reads(ann) == {403}
    assert reads(bea) == {403}
