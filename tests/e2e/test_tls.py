"""TLS: 1.2 and 1.3 accepted, 1.0 and 1.1 refused, only forward-secret AEAD suites."""
import socket
import ssl

import pytest

from conftest import DIE_WITH_PARENT


def handshake(silo, version, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = version
    ctx.maximum_version = version
    # Let the client *offer* old protocols and weak suites; the server must refuse.
    ctx.set_ciphers(ciphers or "ALL:@SECLEVEL=0")
    raw = socket.create_connection(("127.0.0.1", silo.port), timeout=5)
    try:
        s = ctx.wrap_socket(raw)
        info = (s.version(), s.cipher())
        s.close()
        return info
    finally:
        raw.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_refused(silo, version):
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(silo, version)
    assert silo.get("/healthz").status_code == 200  # still up


def test_tls12_and_tls13_accepted(silo):
    v12, cipher12 = handshake(silo, ssl.TLSVersion.TLSv1_2)
    assert v12 == "TLSv1.2"
    assert cipher12[0].startswith("ECDHE-") and ("GCM" in cipher12[0] or "CHACHA20" in cipher12[0])
    v13, _ = handshake(silo, ssl.TLSVersion.TLSv1_3)
    assert v13 == "TLSv1.3"


@pytest.mark.parametrize("suite", ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                                   "ECDHE-ECDSA-AES128-SHA256", "DHE-RSA-AES128-GCM-SHA256"])
def test_weak_or_non_pfs_tls12_suites_refused(silo, suite):
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(silo, ssl.TLSVersion.TLSv1_2, suite + ":@SECLEVEL=0")


def test_plain_http_on_tls_port_gets_no_data(silo):
    s = socket.create_connection(("127.0.0.1", silo.port), timeout=5)
    s.sendall(b"GET /t/acme/api/ HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        data = b""
    s.close()
    assert b"tenant" not in data and b"HTTP/1.1 200" not in data


@pytest.mark.parametrize("version,flag", [(ssl.TLSVersion.TLSv1, "-tls1"),
                                          (ssl.TLSVersion.TLSv1_1, "-tls1_1")])
def test_control_client_really_offers_old_tls(tmp_path, version, flag):
    """Control for test_old_tls_refused: against `openssl s_server` that allows
    the old protocol, the same client handshake succeeds, so silo's refusal is
    silo's doing and not the client's."""
    import subprocess
    import time
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=control"],
                   check=True, capture_output=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = subprocess.Popen([*DIE_WITH_PARENT, "openssl", "s_server",
                               "-accept", "127.0.0.1:%d" % port, "-cert", str(crt),
                               "-key", str(key), flag,
                               "-cipher", "ALL:@SECLEVEL=0", "-www"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    try:
        class Fake:
            pass
        fake = Fake()
        fake.port = port
        deadline = time.time() + 5
        while True:
            try:
                got, _ = handshake(fake, version)
                break
            except (ConnectionRefusedError, ssl.SSLError):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert got in ("TLSv1", "TLSv1.1")
    finally:
        server.kill()
        server.wait()
