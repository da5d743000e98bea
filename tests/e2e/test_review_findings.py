"""The outside review's findings, each as the attack or the mistake it found,
through the real binary: request smuggling, honeypot bans on another site's
behalf, one client taking every connection, account lock-out by a third
party, 405 before 413, numbers, list shapes, file modes, token lifetimes,
keyed e-mail tags, TLS tickets, and the CLI's words."""
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import SILO_BIN, TOKEN_EXPIRES, insecure_client_context, parse_status
from identity_util import PASSWORD, Client, create_tenant
from test_identity import owner_session
from test_records import Api, make_api, tenant, token


def tls_from(silo, source="127.0.0.1", timeout=10):
    """A TLS connection to the public listener from a given loopback address."""
    raw = socket.create_connection(("127.0.0.1", silo.port), timeout=timeout,
                                   source_address=(source, 0))
    return insecure_client_context().wrap_socket(raw)


def request_from(silo, method, path, source="127.0.0.1", headers=None, body=None):
    """One HTTPS request from `source`; returns (status, headers, text)."""
    conn = http.client.HTTPSConnection("127.0.0.1", silo.port, timeout=15,
                                       context=insecure_client_context(),
                                       source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def read_until_closed(s, limit_s=8):
    """Everything the server sends until it closes the connection (or the
    limit passes, which a server that keeps the connection open makes happen)."""
    s.settimeout(limit_s)
    chunks = []
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        pass
    return b"".join(chunks)


def answers(raw):
    """How many HTTP responses `raw` holds (status lines)."""
    return len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", raw))


# --- 2. request smuggling -------------------------------------------------

SMUGGLING_SHAPES = [
    ("te gzip", "Transfer-Encoding: gzip\r\n"),
    ("te identity", "Transfer-Encoding: identity\r\n"),
    ("te xchunked", "Transfer-Encoding: xchunked\r\n"),
    ("te chunked, identity", "Transfer-Encoding: chunked, identity\r\n"),
    ("te twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
    ("te and cl", "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"),
    ("cl twice", "Content-Length: 0\r\nContent-Length: 0\r\n"),
    ("cl malformed", "Content-Length: +0\r\n"),
    ("cl list", "Content-Length: 0, 0\r\n"),
]


@pytest.mark.parametrize("name,framing", SMUGGLING_SHAPES, ids=[n for n, _ in SMUGGLING_SHAPES])
def test_ambiguous_framing_is_refused_and_the_bytes_after_it_never_run(silo, name, framing):
    api = make_api(silo)
    assert api.call("POST", "/api/collections", {"name": "victim", "fields": []}).status_code == 201
    auth = api.h["Authorization"]
    smuggled = ("DELETE /t/acme/api/collections/victim HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Authorization: %s\r\nContent-Length: 0\r\n\r\n" % auth)
    first = ("POST /t/acme/api/collections HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Authorization: %s\r\nContent-Type: application/json\r\n%s\r\n" % (auth, framing))
    s = silo.tls_socket()
    try:
        s.sendall((first + smuggled).encode())
        got = read_until_closed(s)
    finally:
        s.close()
    assert parse_status(got) == 400, got[:300]
    assert answers(got) == 1, got  # one answer, then the connection closed
    assert api.call("GET", "/api/collections/victim").status_code == 200


def test_http11_without_host_and_te_in_http10_are_refused(silo):
    api = make_api(silo)
    auth = api.h["Authorization"]
    for head in ["GET /t/acme/api/collections HTTP/1.1\r\nAuthorization: %s\r\n\r\n" % auth,
                 "POST /t/acme/api/collections HTTP/1.0\r\nHost: x\r\nAuthorization: %s\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % auth]:
        s = silo.tls_socket()
        try:
            s.sendall(head.encode() + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = read_until_closed(s)
        finally:
            s.close()
        assert parse_status(got) == 400 and answers(got) == 1, got


def test_well_framed_pipelined_requests_all_run(silo):
    """The control: the smuggling test's "never runs" means something, since a
    correctly framed request followed by another gets both answered."""
    api = make_api(silo)
    auth = api.h["Authorization"]
    body = json.dumps({"name": "pipelined", "fields": []}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    s = silo.tls_socket()
    try:
        s.sendall(b"POST /t/acme/api/collections HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: " + auth.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunked +
                  b"GET /t/acme/api/collections/pipelined HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: " + auth.encode() + b"\r\nConnection: close\r\n\r\n")
        got = read_until_closed(s)
    finally:
        s.close()
    assert got.count(b"HTTP/1.1 201") == 1 and got.count(b"HTTP/1.1 200") == 1, got


# --- 3. honeypot bans -----------------------------------------------------

def test_a_honeypot_hit_made_for_another_site_bans_nobody_but_a_scanner_is_banned(silo):
    # An <img src="https://silo/wp-login.php"> on someone else's page.
    for headers in [{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                     "Sec-Fetch-Dest": "image"},
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Dest": "script"}]:
        status, _, _ = request_from(silo, "GET", "/wp-login.php", "127.0.0.3", headers)
        assert status == 404
    assert request_from(silo, "GET", "/healthz", "127.0.0.3")[0] == 200
    with open(os.path.join(silo.data_dir, "platform", "security.log")) as f:
        log = f.read()
    assert "honeypot.hit_not_banned" in log
    # Variants of the paths still catch a scanner (no Fetch Metadata).
    for i, variant in enumerate(["/.ENV", "/.env/", "//.env", "/%2eenv", "/x/../.git/config",
                                 "/t/acme/WP-LOGIN.PHP"]):
        source = "127.0.1.%d" % (i + 1)
        assert request_from(silo, "GET", variant, source)[0] == 404
        assert request_from(silo, "GET", "/healthz", source)[0] == 403, variant
    # Others are not affected.
    assert request_from(silo, "GET", "/healthz", "127.0.0.5")[0] == 200


# --- 4. connections per client --------------------------------------------

def test_one_client_cannot_take_every_connection_slot(make_silo):
    silo = make_silo({"SILO_MAX_CONNECTIONS_PER_CLIENT": "4", "SILO_IDLE_TIMEOUT_MS": "20000"})
    held = [tls_from(silo, "127.0.0.1") for _ in range(4)]
    try:
        # The fifth from the same address is closed at accept.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            extra = tls_from(silo, "127.0.0.1")
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if not extra.recv(1):
                raise ConnectionError("closed")
        # Another address is still served.
        assert request_from(silo, "GET", "/healthz", "127.0.0.2")[0] == 200
        # A slot freed is a slot again (the server sees the close, then counts it).
        held.pop().close()
        deadline = time.time() + 10
        while True:
            try:
                assert request_from(silo, "GET", "/healthz", "127.0.0.1")[0] == 200
                break
            except (ssl.SSLError, ConnectionError, OSError, http.client.HTTPException):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for s in held:
            s.close()


# --- 5. device cookies ----------------------------------------------------

def device_cookie(resp_headers):
    for k, v in resp_headers:
        if k.lower() == "set-cookie" and v.startswith("__Host-silo_device_acme="):
            return v.split(";", 1)[0].split("=", 1)[1], v
    return None, None


def login_from(silo, source, email, password, cookie=None):
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = "__Host-silo_device_acme=" + cookie
    conn = http.client.HTTPSConnection("127.0.0.1", silo.port, timeout=30,
                                       context=insecure_client_context(),
                                       source_address=(source, 0))
    try:
        conn.request("POST", "/t/acme/api/auth/login",
                     body=json.dumps({"email": email, "password": password}), headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, r.getheaders()
    finally:
        conn.close()


def test_a_third_party_cannot_lock_out_a_user_whose_browser_signed_in_before(make_silo):
    silo = make_silo({"SILO_LOGIN_RATE_PER_MINUTE": "3"})
    victim = "owner@acme.test"
    made = create_tenant(silo, "acme", victim)
    assert Client(silo, "acme").setup(made["owner_setup_token"]).status_code == 200
    status, headers = login_from(silo, "127.0.0.2", victim, PASSWORD)
    assert status == 200
    cookie, line = device_cookie(headers)
    assert cookie and all(a in line for a in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"))
    assert victim not in cookie
    # The flood: wrong passwords for the victim from one client until refused.
    codes = [login_from(silo, "127.0.0.1", victim, "wrong guess number %d" % i)[0]
             for i in range(5)]
    assert 429 in codes and set(codes[:codes.index(429)]) == {401}, codes
    # Control: without the device cookie the account is locked (this is the
    # lock-out the device cookie must prevent), and a forged cookie or one
    # bound to another address is no cookie.
    assert login_from(silo, "127.0.0.3", victim, PASSWORD)[0] == 429
    forged = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
    assert login_from(silo, "127.0.0.4", victim, PASSWORD, forged)[0] == 429
    # The victim's browser signs in first try, and gets a fresh cookie.
    status, headers = login_from(silo, "127.0.0.2", victim, PASSWORD, cookie)
    assert status == 200
    assert device_cookie(headers)[0] not in (None, cookie)
    # A device's own failures are limited on their own too.
    codes = [login_from(silo, "127.0.0.6", victim, "device guess %d" % i, cookie)[0]
             for i in range(5)]
    assert codes[-1] == 429, codes


# --- 8, 9, 10, 19. answers ------------------------------------------------

def test_wrong_method_is_405_whatever_the_body_and_the_reason_matches_the_title(silo):
    api = make_api(silo)
    rid = api.call("POST", "/api/collections/tickets/records", {"title": "x"}).json()["id"]
    status, headers, text = request_from(
        silo, "PUT", "/t/acme/api/collections/tickets/records/" + rid,
        headers={"Authorization": api.h["Authorization"], "Content-Type": "application/json"},
        body=b'{"title":"y"}')  # 13 bytes
    assert status == 405, (status, text)
    assert "PATCH" in headers["allow"] and json.loads(text)["title"] == "Method Not Allowed"
    # Bodies of any size: the answer comes after the headers, before the body.
    for method, path, size, want in [
            ("PUT", "/t/acme/api/collections/tickets/records/" + rid, 70_000, 405),
            ("PUT", "/t/acme/api/collections/tickets/records/" + rid, 3_000_000, 405),
            ("POST", "/nothing/here", 3_000_000, 404)]:
        s = silo.tls_socket()
        try:
            s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                       % (method, path, api.h["Authorization"], size)).encode())
            got = read_until_closed(s)
        finally:
            s.close()
        assert parse_status(got) == want and answers(got) == 1, (size, got)
    # The status line says what the problem's title says (413 included).
    s = silo.tls_socket()
    try:
        s.sendall(b"POST /t/acme/api/collections HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 99999999\r\n\r\n")
        got = read_until_closed(s)
    finally:
        s.close()
    status_line = got.split(b"\r\n", 1)[0].decode()
    title = json.loads(got.split(b"\r\n\r\n", 1)[1])["title"]
    assert status_line == "HTTP/1.1 413 " + title and title == "Content Too Large", got


def test_numbers_lists_and_errors_name_what_they_mean(silo):
    api = make_api(silo)
    r = api.call("POST", "/api/collections/tickets/records",
                 {"title": "n", "meta": {"ratio": 1.5, "whole": 3.0, "tiny": 0.1, "big": 1e21}})
    assert r.status_code == 201
    assert '"ratio":1.5' in r.text and '"whole":3' in r.text and '"tiny":0.1' in r.text
    assert "E0" not in r.text and "E-1" not in r.text, r.text
    listed = api.call("GET", "/api/collections/tickets/records").text
    assert '"ratio":1.5' in listed

    # Errors name the parameter, the field, the allowed values, the offset.
    bad = api.call("GET", "/api/collections/tickets/records?colour=red")
    assert bad.status_code == 422 and "colour" in bad.text and "filter" in bad.text, bad.text
    bad = api.call("GET", "/api/collections/tickets/records?sort=nope")
    assert bad.status_code == 422 and "nope" in bad.text and "title" in bad.text, bad.text
    bad = api.call("GET", "/api/collections/tickets/records?filter=nope:eq:1")
    assert bad.status_code == 422 and "nope" in bad.text and "prio" in bad.text, bad.text
    bad = api.call("GET", "/api/collections/tickets/records/x?limit=1")
    assert bad.status_code == 422 and "limit" in bad.text and "at" in bad.text, bad.text
    bad = api.call("POST", "/api/collections/tickets/records", {"title": "e", "state": "maybe"})
    assert bad.status_code == 422 and "open, closed" in bad.text, bad.text
    bad = api.call("POST", "/api/collections/tickets/records", raw=b'{"title": }')
    assert bad.status_code == 400 and "at byte 10" in bad.text, bad.text


def test_every_list_answer_is_items(make_silo):
    silo = make_silo({"SILO_LOGIN_RATE_PER_MINUTE": "1000"})
    c, _, _ = owner_session(silo)
    for path in ["/api/users", "/api/roles", "/api/tokens", "/api/auth/sessions",
                 "/api/collections", "/api/audit", "/api/events"]:
        r = c.call("GET", path)
        assert r.status_code == 200 and isinstance(r.json().get("items"), list), (path, r.text)
    h = {"Authorization": "Bearer " + silo.operator_token()}
    assert silo.cli("backup", "run", "acme").returncode == 0
    for path in ["/v1/tenants", "/v1/backups"]:
        r = requests.get(silo.operator_url + path, headers=h, timeout=10)
        assert isinstance(r.json().get("items"), list), (path, r.text)


# --- 11. file modes -------------------------------------------------------

def test_every_file_in_the_data_directory_is_the_owners_alone(silo):
    api = make_api(silo)
    api.call("POST", "/api/collections/tickets/records", {"title": "mode"})
    assert silo.cli("backup", "run", "acme").returncode == 0
    assert silo.cli("audit", "verify").returncode == 0
    seen = 0
    for root, dirs, files in os.walk(silo.data_dir):
        for d in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
            assert mode == 0o700, (os.path.join(root, d), oct(mode))
        for f in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode)
            assert mode == 0o600, (os.path.join(root, f), oct(mode))
            seen += 1
    assert seen >= 6  # keyring, tenant.db (+ WAL), backups, logs, dev secrets
    names = {f for _, _, files in os.walk(silo.data_dir) for f in files}
    assert "tenant.db" in names and "keyring" in names


# --- 12. token lifetimes --------------------------------------------------

def test_api_tokens_expire_within_the_configured_limit(make_silo):
    silo = make_silo({"SILO_LOGIN_RATE_PER_MINUTE": "1000"})
    tenant(silo, "acme")
    far = "2999-01-01T00:00:00Z"
    r = silo.cli("tenant", "token", "acme", "--name", "x", "--permission", "records.*.read",
                 "--expires", far)
    assert r.returncode == 1 and "expires_at: must be at most 365 days ahead" in r.stderr, r.stderr
    assert silo.cli("tenant", "token", "acme", "--name", "x", "--permission", "records.*.read",
                    "--expires", TOKEN_EXPIRES).returncode == 0
    c, _, _ = owner_session(silo, "beta", "owner@beta.test")
    r = c.call("POST", "/api/tokens", {"name": "t", "permissions": ["users.read"],
                                       "expires_at": far})
    assert r.status_code == 422 and "365" in r.text, r.text
    assert c.call("POST", "/api/tokens", {"name": "t", "permissions": ["users.read"],
                                          "expires_at": TOKEN_EXPIRES}).status_code == 201


def test_the_token_limit_is_configurable(make_silo):
    silo = make_silo({"SILO_TOKEN_MAX_DAYS": "10"})
    tenant(silo, "acme")
    r = silo.cli("tenant", "token", "acme", "--name", "x", "--permission", "records.*.read",
                 "--expires", TOKEN_EXPIRES)  # 30 days
    assert r.returncode == 1 and "at most 10 days" in r.stderr, r.stderr


# --- 13. failed logins are keyed tags --------------------------------------

def test_a_failed_login_for_an_unknown_address_cannot_be_confirmed_from_the_audit_log(make_silo):
    silo = make_silo({"SILO_LOGIN_RATE_PER_MINUTE": "1000"})
    c, _, _ = owner_session(silo)
    guess = "guessed.person@example.org"
    for _ in range(2):
        assert Client(silo, "acme").login(guess, "not the password at all").status_code == 401
    audit = c.call("GET", "/api/audit?limit=500").json()["items"]
    failed = [a for a in audit if a["type"] == "login.failed"]
    assert len(failed) == 2 and failed[0]["subject"] == failed[1]["subject"]
    tag = failed[0]["subject"]["id"]
    unkeyed = hashlib.sha256(("email:" + guess).encode()).hexdigest()
    assert tag not in unkeyed and unkeyed[:16] not in json.dumps(audit)
    assert guess not in json.dumps(audit)


# --- 15. no TLS session tickets -------------------------------------------

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_no_session_tickets_and_no_resumption(silo, version):
    ctx = insecure_client_context()
    ctx.minimum_version = ctx.maximum_version = version

    def connect(session=None):
        raw = socket.create_connection(("127.0.0.1", silo.port), timeout=10)
        s = ctx.wrap_socket(raw, session=session)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = read_until_closed(s)  # TLS 1.3 tickets arrive after the handshake
        assert parse_status(got) == 200
        out = (s.session, s.session_reused)
        s.close()
        return out
    session, _ = connect()
    assert session is not None and not session.has_ticket
    _, reused = connect(session)
    assert reused is False


# --- 16, 17. the CLI's words ------------------------------------------------

def test_the_cli_names_mistakes_and_prints_its_versions(silo):
    r = silo.cli("tenants", "list")
    assert r.returncode == 2 and "'silo tenants'" in r.stderr and "tenant" in r.stderr, r.stderr
    assert "backup" in r.stderr and "audit" in r.stderr
    r = silo.cli("tenant", "lst")
    assert r.returncode == 2 and "'silo tenant lst'" in r.stderr and "create" in r.stderr
    r = silo.cli("--version")
    assert r.returncode == 0
    for name in ("silo ", "openssl OpenSSL 3", "sqlite 3.", "libsodium ", "boost 1.81",
                 "zstd 1.", "libcurl 7."):
        assert name in r.stdout, (name, r.stdout)
    v = json.loads(silo.cli("--json", "--version").stdout)
    assert set(v) >= {"silo", "openssl", "sqlite", "libsodium", "boost", "zstd", "libcurl"}
    tenant(silo, "acme")
    r = silo.cli("tenant", "token", "acme", "--name", "x", "--permission", "records.nope",
                 "--expires", "2001-01-01T00:00:00Z")
    assert r.returncode == 1
    assert "permissions: unknown permission records.nope" in r.stderr, r.stderr
    assert "expires_at: must be in the future" in r.stderr, r.stderr


def test_the_cli_names_the_data_directory_it_looked_in(silo):
    elsewhere = tempfile.mkdtemp(prefix="silo-cwd-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        r = subprocess.run([SILO_BIN, "tenant", "list"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert os.path.join(elsewhere, "silo-data") in r.stderr, r.stderr
        assert "SILO_DATA_DIR" in r.stderr
        # Pointed at the server's data directory, it works from anywhere.
        env["SILO_DATA_DIR"] = silo.data_dir
        r = subprocess.run([SILO_BIN, "tenant", "list"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["rm", "-rf", elsewhere])
