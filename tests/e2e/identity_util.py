"""Helpers for the identity black-box tests: a signed-in browser-like client
(cookie handled by hand, so nothing about the cookie jar is assumed), real
TOTP codes from oathtool, a real SMTP server (aiosmtpd) on loopback, and API
tokens issued on the operator API."""
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse

import requests

from conftest import TOKEN_EXPIRES

PASSWORD = "plum tree over the river"


def oathtool(secret_b32, at=None):
    args = ["oathtool", "--totp", "-b"]
    if at is not None:
        args += ["--now", "@%d" % int(at)]
    return subprocess.run(args + [secret_b32], capture_output=True, text=True,
                          check=True).stdout.strip()


def create_tenant(silo, slug, owner):
    r = silo.cli("--json", "tenant", "create", slug, "--owner-email", owner)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["owner_setup_token"]) == 43
    return out


def issue_token(silo, permissions, slug="acme"):
    """An API token of `slug` with `permissions`, issued on the operator API."""
    r = requests.post(silo.operator_url + "/v1/tenants/%s/tokens" % slug, timeout=10,
                      headers={"Authorization": "Bearer " + silo.operator_token()},
                      json={"name": "t", "permissions": permissions,
                            "expires_at": TOKEN_EXPIRES})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def cookie_from(resp):
    header = resp.headers.get("Set-Cookie", "")
    m = re.match(r"__Host-silo_session_[a-z0-9-]+=([^;]*);", header)
    return m.group(1) if m else None


class Client:
    """One tenant's API as a browser would use it (same-origin requests)."""

    def __init__(self, silo, slug):
        self.silo = silo
        self.base = silo.url + "/t/" + slug
        self.cookie_name = "__Host-silo_session_" + slug  # one per tenant
        self.cookie = None
        self.csrf = None
        self.bearer = None

    def call(self, method, path, body=None, headers=None, raw=None, csrf=True,
             same_origin=True):
        h = {}
        if self.bearer:
            h["Authorization"] = "Bearer " + self.bearer
        if self.cookie:
            h["Cookie"] = self.cookie_name + "=" + self.cookie
            if csrf and self.csrf:
                h["X-CSRF-Token"] = self.csrf
            if same_origin:
                h["Sec-Fetch-Site"] = "same-origin"
        if body is not None:
            raw = json.dumps(body).encode()
        if raw is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        return requests.request(method, self.base + path, data=raw, headers=h,
                                verify=False, timeout=30)

    def adopt(self, resp):
        """Takes the session a login-like answer set."""
        c = cookie_from(resp)
        assert c, resp.headers
        self.cookie = c
        self.csrf = resp.json()["csrf_token"]
        return resp.json()

    def setup(self, token, password=PASSWORD):
        return self.call("POST", "/api/auth/setup", {"token": token, "password": password})

    def login(self, email, password=PASSWORD):
        return self.call("POST", "/api/auth/login", {"email": email, "password": password})

    def enrol_totp(self):
        """Enrols TOTP on the current session; returns (secret, codes)."""
        r = self.call("POST", "/api/auth/totp/enroll")
        assert r.status_code == 200, r.text
        secret = r.json()["secret"]
        code = oathtool(secret)
        r = self.call("POST", "/api/auth/totp/confirm", {"code": code})
        assert r.status_code == 200, r.text
        codes = r.json()["recovery_codes"]
        self.adopt(r)
        return secret, codes

    def sign_in(self, email, secret=None, password=PASSWORD):
        """Password, then (with a secret) a TOTP code one step ahead, which
        the server accepts once (steps used before are refused)."""
        r = self.login(email, password)
        assert r.status_code == 200, r.text
        if r.json().get("mfa_required"):
            step = int(time.time()) // 30
            for ahead in (1, 0):
                code = oathtool(secret, (step + ahead) * 30)
                m = self.call("POST", "/api/auth/mfa",
                              {"mfa_token": r.json()["mfa_token"], "code": code})
                if m.status_code == 200:
                    return self.adopt(m)
            raise AssertionError(m.text)
        return self.adopt(r)


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it gets.
    With a TLS context it offers STARTTLS and accepts mail only after it."""

    def __init__(self, tls_context=None):
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(envelope)
                return "250 OK"

        self.messages = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        tls = {"tls_context": tls_context, "require_starttls": True} if tls_context else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **tls)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def url(self):
        return "smtp://127.0.0.1:%d" % self.port

    def wait(self, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.messages) >= n:
                return self.messages
            time.sleep(0.1)
        raise AssertionError("only %d mails arrived" % len(self.messages))

    def wait_for(self, predicate, start=0, timeout=20):
        """The first message from index `start` on whose text satisfies
        `predicate` (security notices may arrive in between)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.messages[start:]:
                if predicate(m.content.decode()):
                    return m
            time.sleep(0.1)
        raise AssertionError("no matching mail among %d" % len(self.messages))
