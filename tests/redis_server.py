"""A real ``redis-server`` for tests and benchmarks: a free loopback port, a temp dir, persistence off.

``RedisServer(workdir)`` starts nothing until ``start()``; ``start()`` runs the binary on
127.0.0.1 with ``--save '' --appendonly no`` (a stop loses everything, as a fresh server would)
and waits, with a deadline, until it answers PING; ``stop()`` ends it (SIGTERM, then SIGKILL) and
``start()`` again brings it back on the same port, so a test can take the server away mid-run
and return it; ``with RedisServer(dir) as server:`` starts it for a block. Tests that need it
are skipped only when the binary is absent and ``CI`` is unset (in CI, where .ci/run installs
it, they always run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

BINARY = shutil.which("redis-server")
_DEADLINE_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need_redis() -> str:
    """The redis-server binary; skips the test when it is absent outside CI, fails it in CI."""
    if BINARY is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must run every test")
        pytest.skip("redis-server is not installed (CI installs it; these tests always run there)")
    return BINARY


def _ping(port: int) -> bool:
    """Whether a server on ``port`` answers PING with PONG (raw RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # A server with a password answers NOAUTH: it is up all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a fixed free port; ``start`` and ``stop`` as often as a test needs."""

    def __init__(self, workdir: Path, *extra: str, binary: str | None = None) -> None:
        self.binary = binary or need_redis()
        self.extra = extra  # more server arguments, e.g. ("--requirepass", secret)
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running server's pid, or None while it is stopped."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most 10 s)."""
        assert self._proc is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--protected-mode", "yes", "--loglevel", "warning", *self.extra,
        ]  # fmt: skip
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _DEADLINE_S
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING: {tail}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
