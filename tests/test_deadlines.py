"""Every wait is bounded: the whole-request deadline and the first-token deadline, against a real stalling server.

The upstream is the loopback simulator, a real HTTP server on 127.0.0.1 that sends its headers
and then stops writing (``StallFirstToken``) or writes one token every two seconds. The bounds
asserted are the deadlines themselves, with slack for a loaded 2-core machine; a wait without a
deadline would run for the stall's 30 s and trip ``fail_after``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import interlock
from interlock.adapters.simulator._server import StallFirstToken
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio

SLACK_S = 1.0  # loopback, a loaded machine, and the close of the stalled calls

CONFIG = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.b]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[models.first]
provider = "a"
id = "sim-first-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.second]
provider = "b"
id = "sim-second-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.dribble]
provider = "a"
id = "sim-dribble-1"
class = "slow"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.total_over_two]
chain = ["first", "second"]
first_token_timeout_ms = 1000
total_timeout_ms = 1500

[jobs.first_token]
chain = ["first", "second"]
first_token_timeout_ms = 300

[jobs.first_token_hedged]
chain = ["first", "second"]
first_token_timeout_ms = 300
hedge_after_ms = 5000

[jobs.only_first]
chain = ["first"]
first_token_timeout_ms = 400

[jobs.mid_stream_total]
chain = ["dribble", "second"]
total_timeout_ms = 1000

[simulator.models.sim-dribble-1]
per_token = { kind = "fixed", value = 2.0 }
output_tokens = { kind = "fixed", value = 5 }

[simulator.default]
output_tokens = { kind = "fixed", value = 5 }
"""


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "ledger.sqlite") as d:
        yield d


def _stall(door: interlock.Door, model_id: str, times: int = 1) -> None:
    sim = door._sim  # type: ignore[attr-defined]
    assert sim is not None
    sim.script(model_id, [StallFirstToken(30.0)] * times)


async def test_the_total_deadline_covers_every_attempt(door: interlock.Door, tmp_path: Path) -> None:
    """Two stalling candidates under a 1.5 s total: the request ends at 1.5 s, not 1 s per attempt."""
    _stall(door, "sim-first-1")
    _stall(door, "sim-second-1")
    began = time.monotonic()
    with anyio.fail_after(10), pytest.raises(interlock.DeadlineExceeded) as info:
        await door.ask("hello", task="total_over_two")
    elapsed = time.monotonic() - began
    assert 1.5 <= elapsed <= 1.5 + SLACK_S
    err = info.value
    assert (err.which, err.limit_ms, err.kind) == ("total", 1500, interlock.ErrorClass.TIMEOUT)
    assert [name for name, _ in err.errors] == ["first", "second"]
    assert "first_token deadline (1000 ms)" in str(err.errors[0][1])
    assert "total deadline (1500 ms)" in str(err.errors[1][1])
    await door.flush()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute("SELECT outcome, error, attempts FROM requests").fetchall()
        attempts = db.execute("SELECT model, error FROM attempts ORDER BY attempt").fetchall()
    assert rows == [("error", "timeout", 2)]
    assert attempts == [("first", "timeout"), ("second", "timeout")]


@pytest.mark.parametrize("task", ["first_token", "first_token_hedged"])
async def test_a_late_first_token_moves_on_with_or_without_hedging(door: interlock.Door, task: str) -> None:
    """The first-token deadline fails a stalled attempt (its call cancelled) and the next candidate answers."""
    _stall(door, "sim-first-1")
    began = time.monotonic()
    with anyio.fail_after(10):
        reply = await door.ask("hello", task=task)
    assert time.monotonic() - began <= 0.3 + SLACK_S
    route = reply.route
    assert route is not None
    assert route.model == "second"
    assert route.degraded
    assert route.degraded_reason == "timeout"
    assert [(a.model, a.outcome, a.error) for a in route.attempts] == [
        ("first", "error", "timeout"), ("second", "ok", None)
    ]
    assert not route.hedged  # the hedge was due at 5 s: the deadline came first


async def test_a_first_token_deadline_that_ends_the_chain_says_so(door: interlock.Door) -> None:
    """With no candidate left, the request fails as a first_token timeout, not a generic chain end."""
    _stall(door, "sim-first-1")
    with anyio.fail_after(10), pytest.raises(interlock.DeadlineExceeded) as info:
        await door.ask("hello", task="only_first")
    assert (info.value.which, info.value.limit_ms) == ("first_token", 400)


async def test_the_total_deadline_bounds_a_stream_after_its_first_token(door: interlock.Door) -> None:
    """A stream dribbling a token every 2 s under a 1 s total ends at 1 s with its partial, and no resume."""
    began = time.monotonic()
    seen: list[str] = []
    with anyio.fail_after(10), pytest.raises(interlock.MidStreamError) as info:
        async for event in door.stream("hello", task="mid_stream_total"):
            if isinstance(event, interlock.TextDelta):
                seen.append(event.text)
    elapsed = time.monotonic() - began
    assert 1.0 <= elapsed <= 1.0 + SLACK_S
    err = info.value
    assert err.kind == interlock.ErrorClass.TIMEOUT
    assert "total deadline" in str(err)
    assert seen
    assert err.partial == "".join(seen)
