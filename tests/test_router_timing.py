"""Router timing: TTFT/TTLT against scripted latencies, the hedge budget cap, the p95 hedge delay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import interlock
from interlock.adapters.simulator._server import StallFirstToken
from interlock.policies._config import JobConfig, parse_config
from interlock.policies._hedge import hedge_delay_s
from interlock.policies._latency import RollingLatency

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.b]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[models.slowpoke]
provider = "a"
id = "sim-timed-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.backup]
provider = "b"
id = "sim-quick-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.timed]
chain = ["slowpoke"]

[jobs.hedged]
chain = ["slowpoke", "backup"]
hedge_after_ms = 100

[models.dribble]
provider = "a"
id = "sim-dribble-1"
class = "slow"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.stalls]
chain = ["dribble", "backup"]
inter_token_timeout_ms = 150

[jobs.stalls_fail]
chain = ["dribble", "backup"]
inter_token_timeout_ms = 150
mid_stream = "fail"

[hedge_budget]
max_tokens = 2
token_ratio = 0.1

[simulator.models.sim-timed-1]
ttft = { kind = "fixed", value = 0.3 }
per_token = { kind = "fixed", value = 0.02 }
output_tokens = { kind = "fixed", value = 10 }

[simulator.models.sim-dribble-1]
per_token = { kind = "fixed", value = 2.0 }
output_tokens = { kind = "fixed", value = 5 }

[simulator.default]
output_tokens = { kind = "fixed", value = 5 }
"""


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    """A door on a fleet with one model of known latency."""
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "ledger.sqlite") as d:
        yield d


async def test_ttft_and_ttlt_match_scripted_timings(door: interlock.Door) -> None:
    """Route TTFT and TTLT are within tolerance of the simulator's scripted first-token and per-token delays."""
    reply = await door.ask("hello", task="timed")
    assert reply.route is not None
    assert reply.route.ttft_ms is not None
    assert reply.route.ttlt_ms is not None
    # 300 ms to the first token, then 9 more tokens 20 ms apart (~480 ms). The lower bounds are exact
    # (a sleep never ends early); the upper ones allow for loopback and a loaded 2-core machine.
    assert 300 <= reply.route.ttft_ms <= 300 + 500
    assert 480 <= reply.route.ttlt_ms <= 480 + 700
    assert reply.route.ttlt_ms - reply.route.ttft_ms >= 9 * 20


async def test_hedge_budget_caps_hedges(door: interlock.Door) -> None:
    """Once the hedge budget is spent, a late first token is waited for instead of hedged."""
    sim = door._sim  # type: ignore[attr-defined]
    assert sim is not None
    # max_tokens 2: a hedge needs more than 1 token; each costs 1 and each success refunds 0.1.
    sim.script("sim-timed-1", [StallFirstToken(0.6)] * 3)
    hedged = []
    with anyio.fail_after(10):
        for i in range(3):
            reply = await door.ask(f"ask {i}", task="hedged")
            assert reply.route is not None
            hedged.append(reply.route.hedged)
    assert hedged == [True, True, False]
    assert reply.route.model == "slowpoke"


def _delay(job: JobConfig, window: RollingLatency | None) -> float | None:
    """The router's delay for ``job``: the job's one hedge-delay spec, read against the TTFT window."""
    spec = job.hedge_delay
    return None if spec is None else hedge_delay_s(spec, window)


def test_p95_hedge_delay_follows_the_first_candidate_ttft() -> None:
    """A p95 hedge delay is the rolling p95 TTFT, clamped to the job's range, with a fallback before samples."""
    job = JobConfig(chain=("x",), hedge_after_ms="p95", hedge_min_ms=100, hedge_max_ms=2000)
    assert _delay(job, None) == pytest.approx(2.0)
    window = RollingLatency()
    for i in range(100):
        window.add(0.2 + i * 0.001)
    delay = _delay(job, window)
    assert delay is not None
    assert 0.28 <= delay <= 0.3
    fast = RollingLatency()
    for _ in range(100):
        fast.add(0.01)
    assert _delay(job, fast) == pytest.approx(0.1)
    assert _delay(JobConfig(chain=("x",)), window) is None
    assert _delay(JobConfig(chain=("x",), hedge_after_ms=750), window) == pytest.approx(0.75)


async def test_stall_after_the_first_token_resumes_elsewhere(door: interlock.Door) -> None:
    """A stream that goes quiet past the inter-token deadline is cut and resumed on the next model."""
    with anyio.fail_after(5):
        reply = await door.ask("hello", task="stalls")
    assert reply.route is not None
    assert reply.route.model == "backup"
    assert reply.route.degraded_reason == "mid_stream_resume"
    assert reply.route.attempts[0].error == "timeout"


async def test_stall_with_fail_policy_raises_with_the_partial(door: interlock.Door) -> None:
    """With mid_stream = fail, a stalled stream raises MidStreamError (timeout) carrying what arrived."""
    with anyio.fail_after(5), pytest.raises(interlock.MidStreamError) as info:
        await door.ask("hello", task="stalls_fail")
    assert info.value.kind == "timeout"
    assert info.value.partial
