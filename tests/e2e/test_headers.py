"""Security headers and problem+json on every kind of answer."""
import json

from conftest import parse_headers, parse_status, raw_exchange

REQUIRED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def check_headers(h):
    for k, v in REQUIRED.items():
        assert h.get(k) == v, (k, h)
    hsts = h["strict-transport-security"]
    max_age = int(hsts.split("max-age=")[1].split(";")[0])
    assert max_age >= 31536000
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    # An API answer opened as a document runs sandboxed (ASVS 5.0 3.2.1).
    assert "sandbox" in [d.strip() for d in csp.split(";")], csp
    assert len(h["x-request-id"]) == 32
    assert "server" not in h and "x-powered-by" not in h


def check_problem(raw, status):
    assert parse_status(raw) == status, raw[:200]
    h = parse_headers(raw)
    check_headers(h)
    assert h["content-type"].startswith("application/problem+json")
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["status"] == status
    assert body["request_id"] == h["x-request-id"]
    text = json.dumps(body).lower()
    for leak in ("boost", "beast", "exception", ".cc", "/work/", "asio"):
        assert leak not in text


def test_200_and_404(silo):
    r = silo.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    check_headers({k.lower(): v for k, v in r.headers.items()})
    r = silo.get("/no/such/path")
    assert r.status_code == 404
    check_headers({k.lower(): v for k, v in r.headers.items()})
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_400_malformed(silo):
    check_problem(raw_exchange(silo, b"GARBAGE\r\n\r\n"), 400)


def test_413_declared_length_refused_before_reading(silo):
    # A route that takes a body (16 KiB at most); a path with no route for
    # the method answers 404 or 405 instead, whatever the body.
    raw = raw_exchange(silo, b"POST /t/acme/api/collections HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 100000000\r\n\r\n")
    check_problem(raw, 413)


def test_413_chunked_body_over_limit(silo):
    chunk = b"x" * 1000
    payload = (b"POST /t/acme/api/auth/logout HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"3e8\r\n" + chunk + b"\r\n")
    check_problem(raw_exchange(silo, payload), 413)


def test_431_header_too_large(silo):
    payload = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    check_problem(raw_exchange(silo, payload), 431)


def test_405_has_allow(silo):
    r = silo.get("/healthz")
    import requests
    r = requests.post(silo.url + "/healthz", verify=False, timeout=5)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    r = requests.request("TRACE", silo.url + "/healthz", verify=False, timeout=5)
    assert r.status_code == 405
