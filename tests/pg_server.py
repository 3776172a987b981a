"""A real PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temp dir, on a free loopback port.

``PgServer.start()`` finds the binaries (on ``PATH`` or in ``/usr/lib/postgresql/*/bin``),
makes a cluster in a fresh temporary directory with a random superuser password (host
connections authenticate with it, so every URL the tests use carries a password the redaction
must hide), starts it on a free 127.0.0.1 port with its socket in the same directory, fsync off
(a test needs no power-cut durability, only a real server), and creates the ``interlock``
database. Waits poll with a deadline. ``stop()`` is ``pg_ctl stop -m immediate`` (what a crash
looks like to the clients); ``start_again()`` restarts the same cluster on the same port;
``close()`` stops it and removes the directory; a test process killed before its teardown (a
timeout) leaves its cluster behind, and the next ``running_pg`` stops and removes it.

PostgreSQL refuses to run as root. Run as root (a container, a CI machine), the cluster belongs
to an unprivileged OS user: ``postgres`` (which Debian's package creates) when it exists, else
one made with ``useradd``. The ``pg_server`` fixture skips only when the binaries are absent
and ``CI`` is unset; in CI a missing server fails the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEADLINE_S = 30.0
_OS_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on ``PATH``, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent  # a symlink on PATH points into the real bin directory
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(installed[-1]).parent if installed else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _os_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when this process is root; None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _OS_USER], check=True, capture_output=True)
        return pwd.getpwnam(_OS_USER)


class PgServer:
    """One PostgreSQL cluster of a test run; ``url`` holds the password, ``url_without_password`` does not."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.user = _os_user()
        self.root = Path(tempfile.mkdtemp(prefix="interlock-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = "pw-" + secrets.token_hex(8)
        self.database = "interlock"

    @property
    def url(self) -> str:
        """The URL to the test database, password included (as ``$INTERLOCK_LEDGER_URL`` would give it)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def url_without_password(self) -> str:
        """The same URL as ``StoreUrl.shown`` prints it."""
        return f"postgresql://postgres:***@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]], check=check, capture_output=True, text=True,
            cwd=self.root, timeout=DEADLINE_S, **extra,
        )  # fmt: skip

    def start(self) -> PgServer:
        """Make the cluster, start it, create the database; returns self."""
        (self.root / "owner.pid").write_text(str(os.getpid()))  # for ``reap_orphans`` if this process is killed
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        self.start_again()
        self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", self.database)
        return self

    def start_again(self) -> None:
        """Start the (stopped) cluster on its port, and wait until it accepts connections."""
        # fsync off (tests): an immediate stop is a crash of the server's processes, not of the machine, so
        # the page cache keeps every commit; synchronous_commit stays on, as the ledger's durability needs.
        # A benchmark keeps fsync on, as a production server does.
        durability = "" if self.fsync else " -c fsync=off -c full_page_writes=off"
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1{durability}"
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w")
        deadline = time.monotonic() + DEADLINE_S
        while not self.running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL on port {self.port} not ready: {self.log()[-2000:]}")
            time.sleep(0.05)

    def running(self) -> bool:
        """Whether the server accepts connections now."""
        return self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0

    def fresh_database(self) -> str:
        """A new, empty database on this server (started again first if a test left it stopped); its URL."""
        if not self.running():
            self.start_again()
        name = f"t_{secrets.token_hex(6)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: clients see their connections cut, as in a crash)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def psql(self, sql: str) -> str:
        """Run ``sql`` on the test database through the local socket; its unaligned, tuples-only output."""
        done = self._run(
            "psql", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", self.database,
            "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        return done.stdout.strip()

    def log(self) -> str:
        """What the server logged so far."""
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        """Stop the server (if running) and remove its directory."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def reap_orphans(bin_dir: Path) -> None:
    """Stop and remove the clusters this helper made for processes that are gone (killed before their teardown)."""
    for owner in Path(tempfile.gettempdir()).glob("interlock-pg-*/owner.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(owner.read_text())
            if pid == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            orphan = PgServer.__new__(PgServer)
            orphan.bin_dir, orphan.user, orphan.root = bin_dir, _os_user(), owner.parent
            orphan.data = owner.parent / "data"
            orphan.close()


@contextlib.contextmanager
def running_pg() -> Iterator[PgServer]:
    """A started ``PgServer`` for the block; skipped when PostgreSQL is not installed and ``CI`` is unset."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (initdb, pg_ctl) is not installed, and CI must run every test")
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    reap_orphans(bin_dir)
    server = PgServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server per test module."""
    with running_pg() as server:
        yield server
