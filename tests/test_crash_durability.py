"""SIGKILL mid-load, of a door process and of ``interlock serve``: no answer a client saw is lost.

Real processes, a real SQLite file, a real SIGKILL. Each test runs the load until enough answers
have completed and requests are in flight, kills the process, and reads the file: every answer
the client saw complete has its ``ok`` row; every request begun on file has exactly one row once
the ledger is opened again (those cut by the kill as ``interrupted``, with the attempts they had
sent and the model of the latest), and no begun row is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import anyio
import httpx
import pytest

from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._ledger_writer import WRITE_LOCK

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
DEADLINE_S = 30.0


class Lines:
    """A child's output stream, read line by line in a thread, taken with a deadline."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Once the child is dead: wait for the reader to see the end, then close the pipe."""
        self._thread.join(DEADLINE_S)
        self._stream.close()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def next(self, deadline: float) -> str | None:
        """The next line, or None once the stream has ended; ``TimeoutError`` past ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no line before the deadline; seen: {self.seen[-5:]}")
        try:
            line = self._queue.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError(f"no line before the deadline; seen: {self.seen[-5:]}") from None
        if line is not None:
            self.seen.append(line)
        return line

    def until(self, pattern: str, deadline: float) -> re.Match[str]:
        """Read until a line matches ``pattern``."""
        while (line := self.next(deadline)) is not None:
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"the stream ended before {pattern!r}; seen: {self.seen[-5:]}")

    def rest(self, deadline: float) -> list[str]:
        """Every line left, up to the end of the stream (the child is dead)."""
        while self.next(deadline) is not None:
            pass
        return self.seen


class Child:
    """A child process and its two output streams."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE.parent,
        )  # fmt: skip
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)

    def kill(self) -> None:
        """SIGKILL, and check that this is what it died of."""
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL


@contextlib.contextmanager
def child(*argv: str) -> Iterator[Child]:
    """A child process, killed and reaped (its pipes closed) however the test ends."""
    running = Child(*argv)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
        running.proc.wait(timeout=DEADLINE_S)
        running.out.close()
        running.err.close()


def rows(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def outcomes(path: Path) -> dict[str, str]:
    found = rows(path, "SELECT request_id, outcome FROM requests")
    return {str(rid): str(outcome) for rid, outcome in found}


def begun(path: Path) -> set[str]:
    return {str(rid) for (rid,) in rows(path, "SELECT request_id FROM begun")}


def begun_attempts(path: Path) -> dict[str, int]:
    """Each begun request's count of attempts sent, as committed in the file."""
    return {str(rid): n for rid, n in rows(path, "SELECT request_id, attempts FROM begun") if isinstance(n, int)}


def assert_interrupted_rows_name_their_latest_attempt(path: Path) -> None:
    """An interrupted row names a model and provider exactly when it counts an attempt sent."""
    found = rows(path, "SELECT request_id, attempts, model, provider FROM requests WHERE outcome = 'interrupted'")
    assert found
    for request_id, attempts, model, provider in found:
        assert isinstance(attempts, int), request_id
        assert attempts >= 0, request_id
        assert bool(attempts) == bool(model) == bool(provider), (request_id, attempts, model, provider)


async def test_sigkill_of_a_door_process_loses_no_answer_and_leaves_no_request_open(tmp_path: Path) -> None:
    """After SIGKILL, every printed completion has its ok row; every begun request ends as exactly one row."""
    ledger = tmp_path / "ledger.sqlite"
    spec = json.dumps({"ledger": str(ledger), "loops": 4})
    with child(str(HERE / "crash_worker.py"), spec) as worker:
        out = worker.out
        deadline = time.monotonic() + DEADLINE_S
        stuck = {out.until(r"^begun (\S+)$", deadline).group(1) for _ in range(2)}
        done = 0
        while done < 40:
            done += bool(out.until(r"^done ", deadline))
        # A live session's requests are not closed by another opener (a report, a second server).
        async with SqliteLedgerStore(ledger) as store:
            assert store.recovered == 0
        assert stuck <= begun(ledger)
        worker.kill()
        printed = {line.split()[1] for line in out.rest(deadline) if line.startswith("done ")}
    open_at_kill = begun(ledger)
    assert stuck <= open_at_kill
    assert not open_at_kill & printed  # an end deletes its begun row in its own commit
    async with SqliteLedgerStore(ledger) as store:
        assert store.recovered == len(open_at_kill)
        assert await store.count_begun() == 0
    final = outcomes(ledger)
    assert {rid for rid in printed if final.get(rid) == "ok"} == printed
    assert {rid for rid, outcome in final.items() if outcome == "interrupted"} == open_at_kill
    assert set(final) - printed - open_at_kill <= {rid for rid, o in final.items() if o == "ok"}  # ended, unprinted
    # Stuck in an upstream call: the first model asked, or the fallback after two 500s (one a retry).
    interrupted = "SELECT tenant, task, error, attempts, model, provider FROM requests WHERE request_id = ?"
    assert rows(ledger, interrupted, "stuck-0") == [("acme", "stuck", "interrupted", 1, "stuck_model", "sim")]
    assert rows(ledger, interrupted, "stuck-1") == [("acme", "fallback", "interrupted", 3, "stuck_model", "sim")]
    assert_interrupted_rows_name_their_latest_attempt(ledger)
    # The dead session's lock went with it; the shared write turn stays for the next writer.
    assert [p.name for p in (tmp_path / "ledger.sqlite-sessions").iterdir()] == [WRITE_LOCK]


async def test_sigkill_of_interlock_serve_loses_no_answer_and_restart_closes_the_rest(tmp_path: Path) -> None:
    """Clients load a real gateway process, it is SIGKILLed mid-load and restarted: every 200 it sent is an ok row."""
    ledger = tmp_path / "ledger.sqlite"
    completed: set[str] = set()
    sent = 0
    with child("-m", "interlock.actors.cli._main", "serve", "--port", "0", "--ledger", str(ledger)) as server:
        deadline = time.monotonic() + DEADLINE_S
        port = int(server.err.until(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", deadline).group(1))

        async def client(n: int, http: httpx.AsyncClient) -> None:
            nonlocal sent
            i = 0
            while True:
                sent += 1
                body = {"model": "default", "messages": [{"role": "user", "content": f"client {n} request {i}"}]}
                try:
                    reply = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                if reply.status_code == 200:
                    completed.add(reply.headers["x-interlock-request-id"])
                i += 1

        open_seen: dict[str, int] = {}  # begun on file before the kill, with the attempts counted then
        async with httpx.AsyncClient(timeout=DEADLINE_S) as http, anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(client, n, http)
            with anyio.fail_after(DEADLINE_S):
                while len(completed) < 40 or not any(open_seen.values()):
                    await anyio.sleep(0.01)
                    if len(completed) >= 40:
                        open_seen = begun_attempts(ledger)
            server.kill()  # mid-load: the clients' requests in flight are cut, the loops end
        acknowledged = set(completed)
    open_at_kill = begun(ledger)
    before = outcomes(ledger)
    assert acknowledged <= {rid for rid, o in before.items() if o == "ok"}  # on disk before the kill, not after
    assert open_at_kill  # the kill cut requests in flight
    assert not open_at_kill & set(before)

    with child("-m", "interlock.actors.cli._main", "serve", "--port", "0", "--ledger", str(ledger)) as again:
        again.err.until(r"Uvicorn running on", time.monotonic() + DEADLINE_S)  # opened: the ledger is recovered
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=DEADLINE_S) == 0
    final = outcomes(ledger)
    assert begun(ledger) == set()
    assert {rid for rid, o in final.items() if o == "interrupted"} == open_at_kill
    assert set(open_seen) <= set(final)  # every request seen begun before the kill ended as exactly one row
    assert_interrupted_rows_name_their_latest_attempt(ledger)
    counted = dict(rows(ledger, "SELECT request_id, attempts FROM requests WHERE outcome = 'interrupted'"))
    for rid, n in open_seen.items():
        if rid in counted:  # cut by the kill (not ended before it): it keeps every attempt counted on file
            got = counted[rid]
            assert isinstance(got, int), rid
            assert got >= n, (rid, got, n)
    assert len(final) == len(before) + len(open_at_kill) <= sent
