"""The harnesses' own promise: a server a test started does not outlive the
test process, even when that process is killed with no teardown (SIGKILL,
an OOM kill, a CI job cancelled). Before DIE_WITH_PARENT such a `silo serve`
ran on with parent 1, holding its ports and data directory."""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")

PYTHON_PARENT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {here!r})
    from conftest import Silo
    silo = Silo(os.path.join(os.environ["TMPDIR"], "data")).start()
    print(silo.proc.pid, flush=True)
    os.kill(os.getpid(), 9)  # killed: no teardown runs
""")

NODE_PARENT = textwrap.dedent("""
    import {{ startSilo }} from {lib!r};
    const silo = await startSilo();
    console.log(silo.pid);
    process.kill(process.pid, 'SIGKILL');
""")


def running(pid):
    """True while `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def server_outlives_its_killed_parent(command):
    """Runs `command`, which starts a server, prints its pid and kills
    itself. Whether that server still runs 10 s later; it is killed here
    either way, and what both left under their TMPDIR is removed."""
    tmp = tempfile.mkdtemp(prefix="silo-harness-")
    env = dict(os.environ, TMPDIR=tmp,
               SILO_BIN=os.path.abspath(os.environ.get("SILO_BIN") or
                                        os.path.join(ROOT, "build", "silo")))
    pid = None
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done.stderr
        pid = int(done.stdout.split()[0])
        deadline = time.monotonic() + 10
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return running(pid)
    finally:
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", tmp])


def test_a_server_started_by_the_python_harness_dies_with_a_killed_pytest():
    script = PYTHON_PARENT.format(here=HERE)
    assert not server_outlives_its_killed_parent([sys.executable, "-c", script]), \
        "silo serve ran on after the process that started it was killed"


def test_a_server_started_by_the_browser_harness_dies_with_a_killed_node():
    lib = os.path.abspath(os.path.join(ROOT, "tests", "browser", "lib", "silo.mjs"))
    script = NODE_PARENT.format(lib=lib)
    assert not server_outlives_its_killed_parent(
        ["node", "--input-type=module", "-e", script]), \
        "silo serve ran on after the node process that started it was killed"
