"""A process SIGKILLed while it holds every machine-wide slot does not block the process that replaces it.

The holder is a real door process (tests/lease_worker.py) whose calls stall upstream, so its
leases are live in the shared state file when it is killed; the replacement is a fresh door
process on the same file. Before leases knew their holders, the replacement was refused
``no_slot`` until the dead leases' TTL ran out (30 s here).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_process import HERE, child

from interlock.adapters.stores._holder import Holder, is_running, this_process
from interlock.adapters.stores._state_schema import MIGRATIONS, SCHEMA_VERSION
from interlock.adapters.stores._state_store import SqliteStateStore

pytestmark = pytest.mark.anyio

SLOTS, TTL_S = 2, 30


def spec(tmp_path: Path, mode: str, ttft_s: float) -> str:
    """The worker's JSON argument."""
    return json.dumps({
        "mode": mode, "state": str(tmp_path / "state.sqlite"), "ledger": str(tmp_path / f"{mode}.sqlite"),
        "slots": SLOTS, "lease_ttl_s": TTL_S, "ttft_s": ttft_s,
    })  # fmt: skip


async def test_a_restarted_process_takes_the_slots_of_a_killed_one_at_once(tmp_path: Path) -> None:
    """After SIGKILL of the process holding every slot, a fresh process gets all of them on its first try."""
    async with SqliteStateStore(tmp_path / "state.sqlite"):
        pass
    async with child("lease_worker.py", spec(tmp_path, "hold", 3600.0)) as holder:
        assert await holder.line() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        assert await holder.wait() == -signal.SIGKILL
    killed = time.monotonic()
    async with SqliteStateStore(tmp_path / "state.sqlite") as state:
        assert await state.leases.holders("all", time.time()) == SLOTS  # the dead process's leases are still there
    async with child("lease_worker.py", spec(tmp_path, "take", 0.2)) as fresh:
        stats: dict[str, Any] = json.loads(await fresh.line())
        assert await fresh.wait() == 0, await fresh.stderr()
    recovered = time.monotonic() - killed
    print(f"recovered {recovered:.2f} s after SIGKILL (process start included); calls took {stats['seconds']:.2f} s")
    assert stats["no_slot"] == 0
    assert stats["ok"] == SLOTS  # both calls held a slot at once: each stalls 0.2 s upstream
    assert stats["seconds"] < 5.0
    assert recovered < TTL_S / 2  # well before the dead leases would have expired
    async with SqliteStateStore(tmp_path / "state.sqlite") as state:
        assert await state.leases.holders("all", time.time()) == 0  # the fresh process gave its slots back


async def test_a_live_holder_keeps_its_slots(tmp_path: Path) -> None:
    """While the holder process runs, a second process is refused no_slot: only dead holders free slots."""
    async with SqliteStateStore(tmp_path / "state.sqlite"):
        pass
    async with child("lease_worker.py", spec(tmp_path, "hold", 3600.0)) as holder:
        assert await holder.line() == "held"
        async with child("lease_worker.py", spec(tmp_path, "take", 0.0)) as other:
            stats: dict[str, Any] = json.loads(await other.line())
            assert await other.wait() == 0, await other.stderr()
        assert holder.process.returncode is None  # still alive, still holding
    assert stats["ok"] == 0
    assert stats["no_slot"] == SLOTS


def proc_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``Z`` for a zombie)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from Linux /proc")
async def test_an_unreaped_killed_holder_is_dead_and_its_pid_reused_is_not_the_holder(tmp_path: Path) -> None:
    """A killed holder still a zombie (its parent has not reaped it) holds nothing, nor does a holder whose
    pid now belongs to another process (another start time); a live one, another host's or an unknown one do."""
    state = tmp_path / "state.sqlite"
    async with SqliteStateStore(state):
        pass
    worker = [sys.executable, str(HERE / "lease_worker.py"), spec(tmp_path, "store", 0.0)]
    # Plain Popen, not anyio's: asyncio's child watcher would reap the child the moment it dies.
    with subprocess.Popen(worker, stdout=subprocess.PIPE, text=True) as proc:  # noqa: ASYNC220
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        me = this_process()
        with contextlib.closing(sqlite3.connect(state)) as conn:
            rows = conn.execute("SELECT DISTINCT holder_host, holder_pid, holder_start FROM leases").fetchall()
        (held,) = [Holder(*row) for row in rows]
        assert (held.host, held.pid) == (me.host, proc.pid)
        assert is_running(held)
        os.kill(proc.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            while proc_state(proc.pid) != "Z":
                await anyio.sleep(0.005)
        assert not is_running(held)
        async with SqliteStateStore(state) as store:
            now = time.time()
            assert [await store.leases.acquire("all", SLOTS, f"mine-{i}", now, TTL_S) for i in range(3)] == [
                True, True, False,
            ]  # fmt: skip
        proc.wait(timeout=10)
    assert is_running(me)
    assert not is_running(Holder(me.host, me.pid, me.start + 1))  # this pid, an earlier process
    assert is_running(Holder("linux:another-boot:pid:[1]", held.pid, held.start))  # not ours to judge
    assert is_running(Holder("", 0, 0))  # a lease row written before holders were recorded


async def test_leases_from_before_holders_were_recorded_expire_by_their_ttl_only(tmp_path: Path) -> None:
    """A version-1 file's leases survive the migration with an empty holder: never judged dead, freed at expiry."""
    state = tmp_path / "state.sqlite"
    with contextlib.closing(sqlite3.connect(state, isolation_level=None)) as conn:
        for statement in MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute("INSERT INTO state_schema_version VALUES (1, 'v1')")
        conn.execute("INSERT INTO leases (lease_id, scope, expires_at) VALUES ('old', 'all', 1000.0)")
    async with SqliteStateStore(state) as store:
        assert await store.leases.acquire("all", 1, "new", 999.0, 30.0) is False
        assert await store.leases.acquire("all", 1, "new", 1000.0, 30.0) is True
    with contextlib.closing(sqlite3.connect(state)) as conn:
        assert conn.execute("SELECT MAX(version) FROM state_schema_version").fetchone() == (SCHEMA_VERSION,)
