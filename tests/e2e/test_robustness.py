"""Thousands of generated malformed and oversized requests: each gets a 4xx (or
the connection is dropped), never a 5xx, and the server stays up throughout."""
import random
import socket
import ssl
import threading

from conftest import parse_status, tls_connect

METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"TRACE", b"CONNECT", b"G\x00T",
           b"", b"\xff\xfe", b"GET GET", b"get"]
TARGETS = [b"/healthz", b"/t/acme/api/", b"*", b"", b"/" + b"a" * 20000, b"/%00", b"/\r\n",
           b"/t/../../etc/passwd", b"http://evil/", b"/t/acme/api/?" + b"q" * 5000, b"/\xc3\x28"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.1 extra", b"", b"HTTPS/1.1"]
HEADERS = [b"Host: x", b"Host:", b"Content-Length: -1", b"Content-Length: 18446744073709551616",
           b"Content-Length: 5\r\nContent-Length: 6", b"Transfer-Encoding: chunked",
           b"Transfer-Encoding: gzip, chunked", b"Bad Header: x", b": novalue", b"X: \x00\x01",
           b"X-Long: " + b"v" * 20000, b"Host: " + b"h" * 17000, b"\x80\x81: x", b"X:" + b" " * 100,
           b"Expect: 100-continue", b"Connection: close, upgrade", b"Cookie: " + b"c=1;" * 3000]


def make_case(rng):
    method = rng.choice(METHODS)
    target = rng.choice(TARGETS)
    version = rng.choice(VERSIONS)
    lines = [method + b" " + target + b" " + version]
    for _ in range(rng.randint(0, 4)):
        lines.append(rng.choice(HEADERS))
    body = b""
    if rng.random() < 0.3:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if rng.random() < 0.2:
        # raw noise instead of a request
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600)))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port, payload):
    s = tls_connect(port, timeout=5)
    try:
        s.sendall(payload)
        s.settimeout(3)
        data = b""
        try:
            data = s.recv(4096)
        except (socket.timeout, ssl.SSLError, ConnectionResetError, OSError):
            pass
        return data
    finally:
        s.close()


def test_generated_bad_requests(silo):
    rng = random.Random(20261124)
    cases = [make_case(rng) for _ in range(2400)]
    statuses = {}
    errors = []
    lock = threading.Lock()

    def worker(chunk):
        for c in chunk:
            try:
                data = send(silo.port, c)
            except (OSError, ssl.SSLError) as e:
                with lock:
                    errors.append(repr(e))
                continue
            st = parse_status(data) if data else None
            with lock:
                statuses[st] = statuses.get(st, 0) + 1
                if st is not None and st >= 500:
                    errors.append("5xx for %r" % c[:120])

    threads = [threading.Thread(target=worker, args=(cases[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [e for e in errors if "5xx" in e], errors[:5]
    # Real answers came back: mostly 4xx, some 2xx for requests that happened to be valid.
    assert sum(v for k, v in statuses.items() if k and 400 <= k < 500) > 1000, statuses
    assert silo.proc.poll() is None
    assert silo.get("/healthz").status_code == 200


def test_stalled_client_is_dropped(silo):
    # A client that sends half a request line and then nothing must be cut off
    # after the read timeout (1.5 s in tests), freeing its connection.
    s = silo.tls_socket()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    import time
    start = time.time()
    try:
        data = s.recv(4096)
    except (ConnectionResetError, ssl.SSLError, OSError):
        data = b""
    elapsed = time.time() - start
    s.close()
    assert data == b"" and 1.0 <= elapsed < 8, (data, elapsed)


def test_silent_connection_without_handshake_is_dropped(silo):
    import time
    s = socket.create_connection(("127.0.0.1", silo.port), timeout=10)
    start = time.time()
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    assert data == b"" and time.time() - start < 8
    s.close()


def test_connection_limit(make_silo):
    silo = make_silo({"SILO_MAX_CONNECTIONS": "3", "SILO_READ_TIMEOUT_MS": "4000"})
    held = [socket.create_connection(("127.0.0.1", silo.port)) for _ in range(3)]
    import time
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", silo.port), timeout=5)
    try:
        got = extra.recv(10)
    except ConnectionResetError:
        got = b""
    assert got == b""  # closed at once, not served
    extra.close()
    for h in held:
        h.close()
    time.sleep(0.3)
    assert silo.get("/healthz").status_code == 200
