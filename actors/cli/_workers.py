"""``interlock serve --workers N``: N gateway processes on one port, one supervisor over them.

The supervisor binds the listening socket once (so ``--port 0`` gets one port for all) and starts
N worker processes that inherit it (``pass_fds``): each is a plain ``interlock serve`` with its own
door, accepting from the shared socket, so the kernel hands each connection to whichever worker
accepts first. The workers share what must be shared through the configured stores — the SQLite
state file and ledger on one host, or Redis and PostgreSQL across hosts — exactly as separate
gateways would; nothing passes between them through the supervisor.

Each worker reports on a pipe when its server listens; the supervisor prints the banner once
all have. A worker that dies is started again (at most ``RESTARTS`` times in ``RESTART_PERIOD_S``,
then the supervisor stops them all and exits 1): its requests in flight are closed as
``interrupted`` by the store when the next process opens it. A worker whose supervisor is gone (killed) stops
by itself, as on SIGTERM: it reads the end of a pipe only the supervisor holds. SIGINT or SIGTERM to the supervisor
goes to every worker, each of which stops gracefully (answers in flight get ``--grace`` seconds,
then the door closes and commits its ledger records); the supervisor waits for them all, and
kills only those still running ``--grace`` plus ``STOP_MARGIN_S`` seconds later.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Final

from interlock._clock import RealClock

RESTARTS: Final = 5
RESTART_PERIOD_S: Final = 30.0
READY_TIMEOUT_S: Final = 120.0
STOP_MARGIN_S: Final = 30.0
_POLL_S: Final = 0.2  # how often the supervisor looks at its workers between signals


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker accepts on (inheritable, so the workers get it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class _Worker:
    """One worker process and the read end of its ready pipe."""

    def __init__(self, index: int, process: subprocess.Popen[bytes], ready_fd: int, lifeline_fd: int) -> None:
        self.index = index
        self.process = process
        self.ready_fd = ready_fd
        self.lifeline_fd = lifeline_fd  # held open: the worker stops when it reads EOF (this process died)
        self.ready = False

    def close(self) -> None:
        for fd in (self.ready_fd, self.lifeline_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Supervisor:
    """Starts, watches and stops the workers of one ``interlock serve --workers N``."""

    def __init__(self, worker_argv: Sequence[str], workers: int, sock: socket.socket, grace: float) -> None:
        self._argv = list(worker_argv)
        self._count = workers
        self._sock = sock
        self._grace = grace
        self._workers: list[_Worker] = []
        self._restarts: deque[float] = deque()
        self._stopping = False
        self._clock = RealClock()

    def _start(self, index: int) -> _Worker:
        ready_read, ready_write = os.pipe()
        life_read, life_write = os.pipe()
        fd = self._sock.fileno()
        pipes = ["--ready-fd", str(ready_write), "--lifeline-fd", str(life_read), "--worker-index", str(index)]
        argv = [sys.executable, "-m", "interlock.actors.cli._serve", *self._argv, "--worker-fd", str(fd), *pipes]
        process = subprocess.Popen(argv, pass_fds=(fd, ready_write, life_read))
        os.close(ready_write)
        os.close(life_read)
        return _Worker(index, process, ready_read, life_write)

    def run(self, announce: Callable[[list[int]], None]) -> int:
        """Run the workers until a signal stops them (0) or they keep dying (1)."""
        with _forwarded_signals(self):
            self._workers = [self._start(i) for i in range(self._count)]
            if not self._await_ready():
                self.stop()
                return 1
            announce([w.process.pid for w in self._workers])
            while not self._stopping:
                self._watch()
            return self._wait_all()

    def _await_ready(self) -> bool:
        deadline = self._clock.now() + READY_TIMEOUT_S
        while not all(w.ready for w in self._workers):
            if self._stopping:
                _say("stopped by a signal before every worker listened")
                return False
            if self._clock.now() > deadline:
                _say(f"the workers did not all listen within {READY_TIMEOUT_S:g} s")
                return False
            for w in self._workers:
                if not w.ready and w.process.poll() is not None:
                    _say(f"worker {w.index} exited with code {w.process.returncode} before it listened")
                    return False
            pending = [w.ready_fd for w in self._workers if not w.ready]
            readable, _, _ = select.select(pending, [], [], _POLL_S)
            for w in self._workers:
                if w.ready_fd in readable:
                    w.ready = bool(os.read(w.ready_fd, 64))
        return True

    def _watch(self) -> None:
        """Restart each worker that died; stop everything when they die too often."""
        with contextlib.suppress(InterruptedError):
            select.select([], [], [], _POLL_S)
        for i, w in enumerate(self._workers):
            code = w.process.poll()
            if code is None or self._stopping:
                continue
            now = self._clock.now()
            while self._restarts and now - self._restarts[0] > RESTART_PERIOD_S:
                self._restarts.popleft()
            if len(self._restarts) >= RESTARTS:
                _say(f"worker {w.index} exited ({code}): {RESTARTS} restarts in {RESTART_PERIOD_S:g} s, stopping")
                self.stop()
                return
            self._restarts.append(now)
            w.close()
            _say(f"worker {w.index} (pid {w.process.pid}) exited with code {code}; starting it again")
            self._workers[i] = self._start(w.index)

    def stop(self) -> None:
        """Ask every worker to stop gracefully (SIGTERM)."""
        self._stopping = True
        for w in self._workers:
            if w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(signal.SIGTERM)

    def _wait_all(self) -> int:
        deadline = self._clock.now() + self._grace + STOP_MARGIN_S
        worst = 0
        for w in self._workers:
            try:
                code = w.process.wait(timeout=max(0.0, deadline - self._clock.now()))
            except subprocess.TimeoutExpired:
                _say(f"worker {w.index} (pid {w.process.pid}) did not stop in time: killed")
                w.process.kill()
                code = w.process.wait()
            w.close()
            worst = worst or (0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1)
        return worst


@contextlib.contextmanager
def _forwarded_signals(supervisor: Supervisor) -> Iterator[None]:
    """SIGINT and SIGTERM stop the workers (each flushes its ledger) instead of killing the supervisor."""

    def forward(signum: int, frame: FrameType | None) -> None:
        _say(f"{signal.Signals(signum).name}: stopping the workers")
        supervisor.stop()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(line: str) -> None:
    print(f"interlock serve: {line}", file=sys.stderr, flush=True)
