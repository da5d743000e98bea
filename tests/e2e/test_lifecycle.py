"""Start-up refusals, the data-directory lock, SIGHUP reload, SIGTERM drain,
and secrets kept out of the logs."""
import base64
import os
import signal
import socket
import ssl
import subprocess
import time

from conftest import SILO_BIN, Silo, tls_connect


def run_serve(env, timeout=20):
    return subprocess.run([SILO_BIN, "serve"], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_production_refuses_and_lists_every_problem(data_dir):
    os.chmod(data_dir, 0o755)
    r = run_serve({"SILO_ENV": "production", "SILO_DATA_DIR": data_dir,
                   "SILO_OPERATOR_TOKEN": "short", "SILO_RESET_TOKEN_MINUTES": "11"})
    assert r.returncode == 1
    for word in ["SILO_MASTER_KEY", "SILO_SIGNING_KEY", "at least 32 bytes", "SILO_TLS_CERT", "other users",
                 "SILO_RESET_TOKEN_MINUTES must be at most 10"]:
        assert word in r.stderr, (word, r.stderr)
    assert "short" not in r.stderr  # the token's value is never echoed
    assert not os.path.exists(os.path.join(data_dir, "dev"))  # nothing generated


def test_production_starts_with_proper_configuration(make_silo, data_dir):
    os.chmod(data_dir, 0o700)
    seed = Silo(data_dir + "-seed").start()  # borrow a dev certificate
    cert, key = (os.path.join(seed.data_dir, "dev", n) for n in ("tls.crt", "tls.key"))
    master = base64.b64encode(os.urandom(32)).decode()
    signing = base64.b64encode(os.urandom(32)).decode()
    token = base64.urlsafe_b64encode(os.urandom(32)).decode()
    silo = make_silo({"SILO_ENV": "production", "SILO_MASTER_KEY": master,
                      "SILO_SIGNING_KEY": signing, "SILO_OPERATOR_TOKEN": token,
                      "SILO_TLS_CERT": cert, "SILO_TLS_KEY": key})
    assert silo.get("/healthz").status_code == 200
    r = silo.cli("--json", "tenant", "create", "acme", env={"SILO_OPERATOR_TOKEN": token})
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(data_dir, "dev"))
    seed.stop()
    silo.stop()
    log = silo.output()
    assert master not in log and token not in log and signing not in log
    # A different master key on the same data directory: a clean refusal.
    other = base64.b64encode(os.urandom(32)).decode()
    env = dict(silo.env, SILO_MASTER_KEY=other)
    r = run_serve(env)
    assert r.returncode == 1 and "wrong master key" in r.stderr
    subprocess.run(["rm", "-rf", seed.data_dir])


def test_second_server_on_same_data_dir_refuses(silo):
    r = run_serve(dict(silo.env))
    assert r.returncode == 1 and "another silo process" in r.stderr
    assert silo.get("/healthz").status_code == 200


def test_dev_secrets_are_private_and_not_logged(silo):
    dev = os.path.join(silo.data_dir, "dev")
    for name in ("master.key", "operator.token", "tls.key", "tls.crt"):
        assert os.stat(os.path.join(dev, name)).st_mode & 0o777 == 0o600
    assert os.stat(silo.data_dir).st_mode & 0o077 == 0
    token = silo.operator_token()
    assert silo.cli("tenant", "create", "acme").returncode == 0
    with open(os.path.join(dev, "master.key")) as f:
        master = f.read().strip()
    silo.stop()
    log = silo.output()
    assert token not in log and master not in log
    assert "Bearer" not in log and "authorization" not in log.lower()


def cert_der(port):
    with tls_connect(port, timeout=5) as s:
        return s.getpeercert(binary_form=True)


def test_sighup_reloads_certificate(silo):
    before = cert_der(silo.port)
    other = Silo(silo.data_dir + "-other").start()
    dev = os.path.join(silo.data_dir, "dev")
    for name in ("tls.crt", "tls.key"):
        with open(os.path.join(other.data_dir, "dev", name), "rb") as src:
            data = src.read()
        with open(os.path.join(dev, name), "wb") as dst:
            dst.write(data)
    other.stop()
    silo.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while time.time() < deadline and cert_der(silo.port) == before:
        time.sleep(0.1)
    assert cert_der(silo.port) != before
    # A broken certificate on reload keeps the working one.
    with open(os.path.join(dev, "tls.crt"), "w") as f:
        f.write("garbage")
    current = cert_der(silo.port)
    silo.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert cert_der(silo.port) == current
    assert silo.proc.poll() is None
    subprocess.run(["rm", "-rf", other.data_dir])


def test_sigterm_drains_in_flight_then_exits_zero(silo):
    # In flight: headers sent, body half sent (an unknown path accepts a body
    # up to the global limit, and answers 404 once the body is complete).
    busy = silo.tls_socket()
    busy.sendall(b"POST /drain-probe HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    # Idle keep-alive connection: one answered request, then nothing.
    idle = silo.tls_socket()
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in idle.recv(4096)
    time.sleep(0.2)
    silo.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # New connections are refused once draining starts.
    refused = False
    try:
        c = socket.create_connection(("127.0.0.1", silo.port), timeout=2)
        c.settimeout(2)
        refused = c.recv(1) == b""
        c.close()
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
        refused = True
    assert refused
    # The idle connection is closed by the server.
    try:
        assert idle.recv(4096) == b""
    except (ConnectionResetError, ssl.SSLError):
        pass
    assert silo.proc.poll() is None  # still draining the in-flight request
    busy.sendall(b"67890")
    answer = busy.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404"), answer
    assert b"Connection: close" in answer
    assert silo.proc.wait(timeout=10) == 0
    assert not os.path.exists(os.path.join(silo.data_dir, "platform", "server.json"))
