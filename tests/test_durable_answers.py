"""A request's end is on disk before the caller hears it; the first token never waits for the disk.

Real doors on real SQLite files, the loopback simulator upstream. The disk is held up for real:
a second connection takes the file's write lock, so the ledger's commits wait behind it. While a
request runs, its begun row on file counts the attempts it has sent.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

import interlock
from interlock import ChainExhausted, Finish, RouteEvent, TextDelta
from interlock.adapters.simulator._server import ServerError, StallFirstToken
from interlock.policies._config import parse_config
from interlock.policies._verify import CallableVerifier, Verdict

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.sim]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.only]
provider = "sim"
id = "sim-only-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[models.broken]
provider = "sim"
id = "sim-broken-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[models.stalling]
provider = "sim"
id = "sim-stalling-1"
class = "smart"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[jobs.answer]
chain = ["only"]

[jobs.fallback]
chain = ["broken", "stalling"]
first_token_timeout_ms = 600000

[simulator.default]
ttft = { kind = "fixed", value = 0.001 }
per_token = { kind = "fixed", value = 0.001 }
output_tokens = { kind = "fixed", value = 4 }
"""


def row(path: Path, request_id: str) -> tuple[object, ...] | None:
    """The request's (outcome, error, error_detail) as a fresh connection reads the file: committed rows only."""
    conn = sqlite3.connect(path)
    try:
        found: tuple[object, ...] | None = conn.execute(
            "SELECT outcome, error, error_detail FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return found
    finally:
        conn.close()


async def test_the_first_token_does_not_wait_for_the_disk_and_the_final_event_does(tmp_path: Path) -> None:
    """With the file's write lock held elsewhere, tokens flow to the end; the route comes once the lock is let go."""
    path = tmp_path / "ledger.sqlite"
    seen: list[object] = []
    finished, routed = anyio.Event(), anyio.Event()
    async with interlock.open(parse_config(CONFIG), ledger_path=path) as door:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every ledger commit now waits for this one

        async def read() -> None:
            async for event in door.stream("hello", task="answer", request_id="r-held"):
                seen.append(event)
                if isinstance(event, Finish):
                    finished.set()
            routed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(10):
                await finished.wait()
            await anyio.wait_all_tasks_blocked()
            assert any(isinstance(e, TextDelta) for e in seen)
            assert not any(isinstance(e, RouteEvent) for e in seen)  # its row cannot be committed yet
            assert row(path, "r-held") is None
            blocker.execute("ROLLBACK")
            blocker.close()
            with anyio.fail_after(10):
                await routed.wait()
        assert isinstance(seen[-1], RouteEvent)
        assert row(path, "r-held") == ("ok", None, "")  # on disk when the caller heard the end


async def test_a_failed_request_raises_only_once_its_row_is_on_disk(tmp_path: Path) -> None:
    """The chain's error reaches the caller after the error row is committed, with no flush asked for."""
    path = tmp_path / "ledger.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=path) as door:
        assert door.simulator is not None
        door.simulator.script("sim-only-1", [ServerError()] * 20)  # more than any retry takes
        with pytest.raises(ChainExhausted):
            await door.ask("hello", task="answer", request_id="r-failed")
        # The exhausted chain's row says which model failed how (the try and its one retry).
        assert row(path, "r-failed") == ("error", "server_error", "only: server_error; only: server_error")


async def test_a_bug_is_recorded_as_an_internal_error_never_as_cancelled(tmp_path: Path) -> None:
    """A KeyError out of a verifier reaches the caller as itself; the row says internal error, naming it."""

    async def buggy(answer: object) -> Verdict:
        raise KeyError("no such field")

    path = tmp_path / "ledger.sqlite"
    verifiers = {"answer": [CallableVerifier(name="buggy", check=buggy)]}
    async with interlock.open(parse_config(CONFIG), ledger_path=path, verifiers=verifiers) as door:
        with pytest.raises(KeyError, match="no such field"):
            await door.ask("hello", task="answer", request_id="r-bug")
        found = row(path, "r-bug")
    assert found is not None
    outcome, error, detail = found
    assert (outcome, error) == ("error", "internal")
    assert "KeyError" in str(detail)


async def test_a_caller_who_leaves_is_recorded_as_cancelled(tmp_path: Path) -> None:
    """Closing the stream after the first token records the request as cancelled, not as an error."""
    path = tmp_path / "ledger.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=path) as door:
        stream = door.stream("hello", task="answer", request_id="r-left")
        async for _ in stream:
            break
        await stream.aclose()
        await door.flush()
        assert row(path, "r-left") == ("cancelled", "cancelled", "cancelled")


def begun_row(path: Path, request_id: str) -> tuple[object, ...] | None:
    """The request's begun (attempts, task, model_class, model, provider), as committed in the file."""
    conn = sqlite3.connect(path)
    try:
        found: tuple[object, ...] | None = conn.execute(
            "SELECT attempts, task, model_class, model, provider FROM begun WHERE request_id = ?", (request_id,)
        ).fetchone()
        return found
    finally:
        conn.close()


async def test_each_attempt_sent_updates_the_begun_row_until_the_end_replaces_it(tmp_path: Path) -> None:
    """On its third attempt (two 500s, then a stalling fallback), a request's begun row counts 3 and names it."""
    path = tmp_path / "ledger.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=path) as door:
        assert door.simulator is not None
        door.simulator.script("sim-broken-1", [ServerError(), ServerError()])  # the first try and its retry
        door.simulator.script("sim-stalling-1", [StallFirstToken(600)])

        async def ask() -> None:
            await door.ask("hello", task="fallback", request_id="r-stuck")

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(10):  # bounded polling: the update rides the ledger's next flush
                while begun_row(path, "r-stuck") != (3, "fallback", "smart", "stalling", "sim"):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # the caller leaves: its end replaces the begun row
        await door.flush()
    assert begun_row(path, "r-stuck") is None
    assert row(path, "r-stuck") == ("cancelled", "cancelled", "cancelled")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT attempts FROM requests WHERE request_id = 'r-stuck'").fetchone() == (3,)
    finally:
        conn.close()
