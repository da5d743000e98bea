"""A real syslog receiver for the tests: Debian's rsyslogd with its gtls
driver (rsyslog-gnutls), listening for RFC 5425 syslog over TLS on 127.0.0.1,
writing what it gets to a file. Started and stopped by the test (only the
process it started), with a throwaway certificate for 127.0.0.1."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import DIE_WITH_PARENT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rsyslog:
    def __init__(self, port=None):
        self.dir = tempfile.mkdtemp(prefix="silo-rsyslog-")
        self.port = port or free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.out = os.path.join(self.dir, "received.log")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write("""
global(workDirectory="{d}"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{cert}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.Authmode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="raw" type="string"
         string="%pri% %msgid% %structured-data% %msg%\\n")
action(type="omfile" file="{out}" template="raw")
""".format(d=self.dir, cert=self.cert, key=self.key, port=self.port, out=self.out))
        self.proc = subprocess.Popen(
            [*DIE_WITH_PARENT, "rsyslogd", "-n", "-f", conf, "-i", os.path.join(self.dir, "pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rsyslogd exited: " + self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rsyslogd did not listen")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None

    def lines(self):
        try:
            with open(self.out, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, text, timeout=40):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [l for l in self.lines() if text in l]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError("rsyslog never got %r; it has: %s" % (text, self.lines()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
