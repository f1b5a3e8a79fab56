"""Fixtures: a real walmmapd on a temporary directory.

The daemon is $WALMMAPD (the build tree's daemon/walmmapd, as
tests/check_python sets it) or walmmapd from PATH; the package loads
libwalmmap from $WALMMAP_LIBRARY or the installed one.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


class Daemon:
    """A walmmapd started with -f on a fresh directory and socket."""

    def __init__(self, base: str, *extra: str) -> None:
        self.base = base
        self.dir = os.path.join(base, "data")
        self.sock = os.path.join(base, "walmmapd.sock")
        self.log = os.path.join(base, "walmmapd.log")
        self.extra = list(extra)
        self.proc = None

    def start(self) -> None:
        """Start it and wait (at most 30 s) until it accepts."""
        prog = os.environ.get("WALMMAPD") or shutil.which("walmmapd")
        if not prog:
            pytest.fail("walmmapd not found: set WALMMAPD to its path")
        argv = [prog, "-f", "-d", self.dir, "-s", self.sock,
                "--segment-size", "1M", "-o", "prefault=no"] + self.extra
        env = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
            env.pop(k, None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log,
                                         env=env)
        deadline = time.monotonic() + 30
        while not self._accepts():
            if self.proc.poll() is not None:
                pytest.fail("walmmapd exited at start (%d): %s" %
                            (self.proc.returncode, self.log_text()))
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("walmmapd did not accept within 30 s: %s" %
                            self.log_text())
            time.sleep(0.01)

    def _accepts(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError as e:
            return str(e)

    def pause(self) -> None:
        """SIGSTOP: the daemon answers nothing until resume()."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 30 s); return its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def tmpbase():
    """A short temporary directory (socket paths are limited to 107
    bytes), removed afterwards."""
    base = tempfile.mkdtemp(prefix="wmpy-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon(tmpbase):
    """A running walmmapd, stopped after the test (also when it fails);
    a test fails when the daemon did not exit cleanly."""
    d = Daemon(tmpbase)
    d.start()
    yield d
    rc = d.stop()
    assert rc == 0, "walmmapd exited %d: %s" % (rc, d.log_text())


def pytest_report_header(config):
    """Say which package and library the run tests."""
    import walmmap
    return ["walmmap package: %s" % os.path.dirname(walmmap.__file__),
            "libwalmmap: %s" % (os.environ.get("WALMMAP_LIBRARY") or
                                "the installed libwalmmap.so.0"),
            "walmmapd: %s" % (os.environ.get("WALMMAPD") or
                              shutil.which("walmmapd"))]
