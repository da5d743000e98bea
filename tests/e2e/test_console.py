"""The web console's files through the real binary (issue 20): served
under /t/<slug>/console/ from the embedded console/dist with the console's
CSP (no inline code, Trusted Types), revalidated HTML, immutable hashed
assets, gzip when asked for; the API keeps its own no-store, default-src
'none' answers. The console's behaviour is tested in a real browser
(tests/browser)."""
import gzip
import os
import re

import requests

from identity_util import create_tenant

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "font-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; "
       "require-trusted-types-for 'script'; trusted-types svelte-trusted-html")


def get(silo, path, **headers):
    return requests.get(silo.url + path, headers=headers, verify=False, timeout=10,
                        allow_redirects=False)


def test_console_files_headers_caching_and_compression(silo):
    create_tenant(silo, "acme", "owner@acme.test")
    r = get(silo, "/t/acme/console")
    assert r.status_code == 308 and r.headers["Location"] == "console/"
    r = get(silo, "/t/acme/reset")
    assert r.status_code == 308 and r.headers["Location"] == "console/"

    index = get(silo, "/t/acme/console/", **{"Accept-Encoding": "identity"})
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Content-Security-Policy"] == CSP
    assert "unsafe" not in index.headers["Content-Security-Policy"]
    assert index.headers["Cache-Control"] == "no-cache"
    assert index.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert index.headers["X-Frame-Options"] == "DENY"
    with open(os.path.join(ROOT, "console", "dist", "index.html"), "rb") as f:
        assert index.content == f.read()  # the committed build, byte for byte
    assert "<script>" not in index.text and " style=" not in index.text
    etag = index.headers["ETag"]
    again = get(silo, "/t/acme/console/", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""

    assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index.text)
    assert len(assets) >= 2
    for a in assets:
        plain = get(silo, "/t/acme/console/" + a, **{"Accept-Encoding": "identity"})
        assert plain.status_code == 200, a
        assert plain.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Content-Encoding" not in plain.headers
        packed = requests.get(silo.url + "/t/acme/console/" + a, verify=False, timeout=10,
                              headers={"Accept-Encoding": "gzip"}, stream=True)
        assert packed.headers["Content-Encoding"] == "gzip"
        assert packed.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(packed.raw.read()) == plain.content
        refused = get(silo, "/t/acme/console/" + a, **{"Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in refused.headers
    for missing in ["/t/acme/console/assets/none.js", "/t/acme/console/assets/..%2findex.html",
                    "/t/acme/console/index.html", "/t/nobody/console/"]:
        assert get(silo, missing).status_code == 404, missing

    # The API's answers keep the API's policy.
    api = get(silo, "/t/acme/api/auth/me")
    assert api.status_code == 401
    assert api.headers["Cache-Control"] == "no-store"
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_console_on_a_tenants_own_host(make_silo):
    """`<slug>.<base domain>/console/` serves the same console (its asset
    URLs are relative), and that tenant's document names the host's root as
    its server."""
    silo = make_silo({"SILO_BASE_DOMAIN": "silo.test"})
    create_tenant(silo, "acme", "owner@acme.test")
    host = {"Host": "acme.silo.test"}
    index = get(silo, "/console/", **host)
    assert index.status_code == 200
    with open(os.path.join(ROOT, "console", "dist", "index.html"), "rb") as f:
        assert index.content == f.read()
    for a in re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index.text):
        assert get(silo, "/console/" + a, **host).status_code == 200, a
    r = get(silo, "/console", **host)
    assert r.status_code == 308 and r.headers["Location"] == "console/"
    # Another tenant's host is another tenant: its own console, nothing of acme.
    assert get(silo, "/console/", Host="nobody.silo.test").status_code == 404
