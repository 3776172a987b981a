"""``interlock serve --workers N``: N real gateway processes on one port, supervised, one ledger.

Everything here is a real process: the supervisor is started as ``interlock serve --workers 2``
on the embedded default, clients talk to its one port over loopback, workers are SIGKILLed and
the supervisor is SIGKILLed, and rows are counted in the real SQLite ledger afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process

pytestmark = pytest.mark.anyio

BODY = {"model": "cheap_bulk", "messages": [{"role": "user", "content": "say something short"}], "max_tokens": 16}


class Gateway:
    """A running supervisor: its URL, worker pids, and what it printed so far."""

    def __init__(self, process: Process, url: str, pids: list[int], output: str) -> None:
        self.process = process
        self.url = url
        self.pids = pids
        self.output = output

    async def read_until(self, marker: str, timeout: float = 60.0) -> str:
        """Read the supervisor's stderr until ``marker`` appears; the text after it up to its line's end."""
        assert self.process.stderr is not None
        with anyio.fail_after(timeout):
            while marker not in self.output or "\n" not in self.output.split(marker, 1)[1]:
                try:
                    self.output += (await self.process.stderr.receive()).decode()
                except anyio.EndOfStream:
                    pytest.fail(f"the supervisor closed stderr before {marker!r}; it printed:\n{self.output}")
        return self.output.split(marker, 1)[1].split("\n", 1)[0]


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, workers: int = 2) -> AsyncIterator[Gateway]:
    argv = [sys.executable, "-m", "interlock.actors.cli._main", "serve", "--workers", str(workers), "--port", "0",
            "--ledger", str(tmp_path / "ledger.sqlite"), "--grace", "5"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(argv, env=env, cwd=tmp_path) as process:
        gw = Gateway(process, "", [], "")
        try:
            gw.url = (await gw.read_until("listening on ")).split(";")[0]
            pids = (await gw.read_until(" workers (pids ")).split(")")[0]
            gw.pids = [int(p) for p in pids.split(", ")]
            yield gw
        finally:
            if process.returncode is None:
                process.kill()
            for pid in gw.pids:  # never leave a worker behind, whatever the test did
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def ask_many(url: str, n: int) -> list[int]:
    """``n`` chat requests at once; each one's HTTP status."""
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one() -> None:
            response = await client.post("/v1/chat/completions", json=BODY)
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return statuses


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def until(condition: object, timeout: float = 30.0) -> None:
    """Poll ``condition()`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    assert callable(condition)
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def request_rows(path: Path) -> tuple[int, int]:
    """(request rows, of which interrupted) in the ledger file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        total = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        cut = conn.execute("SELECT COUNT(*) FROM requests WHERE outcome = 'interrupted'").fetchone()[0]
    return int(total), int(cut)


async def test_two_workers_share_one_port_and_one_ledger(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        assert len(set(gw.pids)) == 2
        assert all(running(pid) for pid in gw.pids)
        statuses = await ask_many(gw.url, 40)
        assert statuses == [200] * 40
        gw.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            code = await gw.process.wait()
        assert code == 0
        await until(lambda: not any(running(pid) for pid in gw.pids))
    # Both workers flushed into the one file on their way out: one row per request, none cut.
    assert request_rows(tmp_path / "ledger.sqlite") == (40, 0)


async def test_a_killed_worker_is_started_again_and_no_request_goes_unrecorded(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        assert await ask_many(gw.url, 10) == [200] * 10
        victim = gw.pids[0]
        os.kill(victim, signal.SIGKILL)
        restarted = await gw.read_until(f"(pid {victim}) exited with code -9; ")
        assert restarted.startswith("starting it again")
        # The port keeps answering while (and after) the worker comes back.
        assert await ask_many(gw.url, 20) == [200] * 20
        gw.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            assert await gw.process.wait() == 0
    total, _ = request_rows(tmp_path / "ledger.sqlite")
    assert total == 30  # every request that entered has its row, the killed worker's included


async def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        assert await ask_many(gw.url, 6) == [200] * 6
        gw.process.kill()  # SIGKILL: no chance to forward anything
        await gw.process.wait()
        # Each worker reads the end of its lifeline, stops gracefully and flushes its ledger.
        await until(lambda: not any(running(pid) for pid in gw.pids), timeout=60)
    assert request_rows(tmp_path / "ledger.sqlite") == (6, 0)


async def test_workers_below_one_is_one_line_of_bad_input(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "interlock.actors.cli._main", "serve", "--workers", "0", "--port", "0",
            "--ledger", str(tmp_path / "x.sqlite")]  # fmt: skip
    done = await anyio.run_process(argv, check=False, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == ["interlock serve: config --workers: must be at least 1"]
