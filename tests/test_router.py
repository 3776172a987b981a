"""The router through the door, on the loopback simulator: chains, fallback, hedging, resume, ledger rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import interlock
from interlock import ChainExhausted, ConfigError, MidStreamError, RequestError, RouteEvent, TextDelta
from interlock.adapters.simulator._server import Drop, Normal, Overloaded, RateLimit, ServerError, StallFirstToken
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.p_openai]
kind = "simulator"
format = "openai"
max_concurrency = 8
probe = { interval_s = 3600 }

[providers.p_anthropic]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[providers.p_gemini]
kind = "simulator"
format = "gemini"
probe = { interval_s = 3600 }

[providers.p_local]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.first]
provider = "p_openai"
id = "sim-a-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.second]
provider = "p_anthropic"
id = "sim-b-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.third]
provider = "p_gemini"
id = "sim-c-1"
class = "backup"
context_window = 100000
max_output_tokens = 1000
price = { input = 0.5, output = 1.0 }

[models.onbox]
provider = "p_local"
id = "sim-l-1"
class = "local"
context_window = 100000
max_output_tokens = 1000
price = { input = 0.0, output = 0.0 }

[jobs.default]
chain = ["fast", "backup"]

[[rules]]
when = { sensitivity = "pii" }
use_chain = ["local"]

[jobs.hedged]
chain = ["first", "second"]
hedge_after_ms = 100

[jobs.strict]
chain = ["first", "second"]
mid_stream = "fail"

[jobs.stall]
chain = ["first", "second"]
inter_token_timeout_ms = 300

[simulator.default]
output_tokens = { kind = "fixed", value = 12 }
"""


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    """A door on the test fleet with its ledger in a temporary file."""
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "ledger.sqlite") as d:
        yield d


def sim(door: interlock.Door):  # type: ignore[no-untyped-def]
    """The simulator behind the door's simulator providers."""
    return door._sim  # type: ignore[attr-defined]


async def rows(door: interlock.Door, tmp_path: Path) -> tuple[list, list]:  # type: ignore[type-arg]
    await door.flush()
    async with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        return await store.fetch_requests(None, None, None), await store.fetch_attempts(None, None, None)


async def test_first_candidate_serves_when_healthy(door: interlock.Door, tmp_path: Path) -> None:
    """A healthy chain is served by its first model, undegraded, with cost and timings recorded."""
    reply = await door.ask("hello", task="default")
    assert reply.content
    assert reply.route is not None
    assert reply.route.model == "first"
    assert not reply.route.degraded
    assert reply.route.cost_cents > 0
    assert reply.route.ttft_ms is not None
    requests, attempts = await rows(door, tmp_path)
    assert len(requests) == 1
    assert len(attempts) == 1
    assert requests[0].outcome == "ok"
    assert requests[0].ttlt_ms is not None


@pytest.mark.parametrize(
    ("fault", "tries"), [(ServerError(), 2), (Overloaded(), 1), (RateLimit(retry_after=0.2), 2)]
)
async def test_fallback_before_first_token_is_degraded(
    door: interlock.Door, tmp_path: Path, fault: object, tries: int
) -> None:
    """A failover cause on the first model (after its one same-provider retry, where it gets one)
    moves on to the next, labelled degraded with the reason."""
    sim(door).script("sim-a-1", [fault] * tries)
    reply = await door.ask("hello", task="default")
    assert reply.route is not None
    assert reply.route.model == "second"
    assert reply.route.degraded
    assert reply.route.degraded_reason
    assert [(a.model, a.outcome) for a in reply.route.attempts] == [("first", "error")] * tries + [("second", "ok")]
    requests, attempts = await rows(door, tmp_path)
    assert len(requests) == 1
    assert requests[0].degraded
    assert requests[0].attempts == tries + 1
    assert len(attempts) == tries + 1


@pytest.mark.parametrize("fault", [ServerError(), RateLimit(retry_after=0.2)])
async def test_a_transient_failure_is_retried_once_on_the_same_provider(
    door: interlock.Door, tmp_path: Path, fault: object
) -> None:
    """A 500, or a 429 with a short Retry-After, gets one more try on the same model before the chain
    moves on; the retry is an attempt row of its own, and the answer is not degraded."""
    sim(door).script("sim-a-1", [fault])
    reply = await door.ask("hello", task="default")
    assert reply.route is not None
    assert [(a.model, a.outcome) for a in reply.route.attempts] == [("first", "error"), ("first", "ok")]
    assert not reply.route.degraded
    _, attempts = await rows(door, tmp_path)
    assert [a.model for a in attempts] == ["first", "first"]


async def test_a_rate_limit_with_a_long_retry_after_moves_on_at_once(door: interlock.Door) -> None:
    """A Retry-After longer than a same-provider retry may wait is the next candidate's chance."""
    sim(door).script("sim-a-1", [RateLimit(retry_after=30)])
    with anyio.fail_after(5):
        reply = await door.ask("hello", task="default")
    assert reply.route is not None
    assert [(a.model, a.outcome) for a in reply.route.attempts] == [("first", "error"), ("second", "ok")]


async def test_exhausted_chain_lists_every_attempt(door: interlock.Door, tmp_path: Path) -> None:
    """When every candidate fails the caller gets one error holding each attempt's cause, and one row."""
    for model in ("sim-a-1", "sim-b-1", "sim-c-1"):
        sim(door).script(model, [ServerError(), ServerError()])  # each 500 gets one retry
    with pytest.raises(ChainExhausted) as info:
        await door.ask("hello", task="default")
    assert [name for name, _ in info.value.errors] == ["first", "first", "second", "second", "third", "third"]
    requests, _ = await rows(door, tmp_path)
    assert len(requests) == 1
    assert requests[0].outcome == "error"


async def test_hedge_wins_when_first_token_is_late(door: interlock.Door, tmp_path: Path) -> None:
    """A late first token starts a hedge; the hedge wins and the loser's connection is closed."""
    sim(door).script("sim-a-1", [StallFirstToken(5.0)])
    with anyio.fail_after(4):
        reply = await door.ask("hello", task="hedged")
    assert reply.route is not None
    assert reply.route.hedged
    assert reply.route.model == "second"
    outcomes = {a.model: a.outcome for a in reply.route.attempts}
    assert outcomes == {"first": "cancelled", "second": "ok"}
    with anyio.fail_after(3):
        while sim(door).stats("sim-a-1").disconnected < 1:
            await anyio.sleep(0.01)
    requests, attempts = await rows(door, tmp_path)
    assert requests[0].hedged
    assert {a.cancel_reason for a in attempts if a.model == "first"} == {"hedge_lost"}


async def test_mid_stream_resume_continues_on_next_candidate(door: interlock.Door) -> None:
    """A stream that breaks after its first tokens resumes on the next model, marked degraded.

    The next model speaks Anthropic's wire, which continues an assistant prefill: it is sent the
    delivered text as the start of its reply, and the answer is that text followed by its own.
    """
    sim(door).script("sim-a-1", [Drop(after_tokens=3)])
    seen: list[str] = []
    async for event in door.stream("hello", task="default"):
        if isinstance(event, TextDelta):
            seen.append(event.text)
        elif isinstance(event, RouteEvent):
            route = event.route
    assert route.degraded
    assert route.degraded_reason == "mid_stream_resume"
    assert route.model == "second"
    body = sim(door).stats("sim-b-1").bodies[-1]
    last = body["messages"][-1]
    assert last["role"] == "assistant"
    prefill = last["content"] if isinstance(last["content"], str) else "".join(b["text"] for b in last["content"])
    assert prefill
    assert "".join(seen).startswith(prefill)


async def test_mid_stream_fail_policy_keeps_the_partial(door: interlock.Door) -> None:
    """With mid_stream = fail, the caller gets a MidStreamError with the partial answer."""
    sim(door).script("sim-a-1", [Drop(after_tokens=3)])
    seen: list[str] = []
    with pytest.raises(MidStreamError) as info:
        async for event in door.stream("hello", task="strict"):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert info.value.partial == "".join(seen)
    assert info.value.partial


async def test_pii_never_leaves_local_models(door: interlock.Door) -> None:
    """A PII request is served only by a local model, whatever the job's chain says."""
    reply = await door.ask("my ssn is 123", task="default", sensitivity="pii")
    assert reply.route is not None
    assert reply.route.model_class == "local"


async def test_stream_ends_with_a_route_event(door: interlock.Door) -> None:
    """door.stream yields text deltas and ends with exactly one RouteEvent."""
    sim(door).script("sim-a-1", [Normal()])
    events = [e async for e in door.stream("hello", task="default")]
    assert isinstance(events[-1], RouteEvent)
    assert sum(isinstance(e, RouteEvent) for e in events) == 1
    assert any(isinstance(e, TextDelta) for e in events)


async def test_unknown_task_is_a_request_error(door: interlock.Door, tmp_path: Path) -> None:
    """An unknown task raises RequestError naming the field, and still leaves one request row."""
    with pytest.raises(RequestError) as info:
        await door.ask("hello", task="nope")
    assert info.value.field == "task"
    requests, _ = await rows(door, tmp_path)
    assert len(requests) == 1
    assert requests[0].error == "bad_request"


async def test_one_row_per_request_under_concurrency_and_faults(door: interlock.Door, tmp_path: Path) -> None:
    """Many concurrent requests with faults sprinkled in leave exactly one request row each."""
    sim(door).script("sim-a-1", [ServerError(), Drop(after_tokens=2), RateLimit(retry_after=0.1)])
    results: list[object] = []

    async def one(i: int) -> None:
        try:
            results.append(await door.ask(f"hello {i}", task="default"))
        except interlock.InterlockError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)
    requests, _ = await rows(door, tmp_path)
    assert len(results) == 40
    assert len({r.request_id for r in requests}) == 40


async def test_client_cancellation_is_recorded(door: interlock.Door, tmp_path: Path) -> None:
    """A caller that walks away mid-stream leaves a cancelled request row, and the upstream is closed."""
    sim(door).script("sim-a-1", [StallFirstToken(5.0)])
    with anyio.move_on_after(0.3):
        await door.ask("hello", task="strict")
    with anyio.fail_after(3):
        while True:
            requests, _ = await rows(door, tmp_path)
            if requests:
                break
            await anyio.sleep(0.01)
    assert requests[0].outcome == "cancelled"


def test_config_error_names_the_key() -> None:
    """A bad config value is a ConfigError naming its key path."""
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace('price = { input = 0.5, output = 1.0 }', 'price = { input = -1, output = 1.0 }'))
    assert "models.third.price" in info.value.key


async def test_resume_context_is_exactly_what_the_caller_saw(door: interlock.Door) -> None:
    """After a break, the next model is told the partial answer the caller received, no more."""
    sim(door).script("sim-a-1", [Drop(after_tokens=3)])
    reply = await door.ask("hello", task="default")
    assert reply.route is not None
    assert reply.route.degraded_reason == "mid_stream_resume"
    body = sim(door).stats("sim-b-1").bodies[-1]
    told = next(m for m in body["messages"] if m["role"] == "assistant")["content"]
    told_text = told if isinstance(told, str) else "".join(part["text"] for part in told)
    assert told_text
    assert reply.content.startswith(told_text)


async def test_closing_the_door_records_a_stream_left_unread(tmp_path: Path) -> None:
    """A stream its caller holds but no longer reads is recorded once, as cut, and does not hold the close."""
    ledger = tmp_path / "ledger.sqlite"
    with anyio.fail_after(10):  # the door's drain deadline is 30 s: an unread stream must not wait for it
        async with interlock.open(parse_config(CONFIG), ledger_path=ledger) as door:
            events = door.stream("hello", task="default")
            first = await events.__anext__()
            assert isinstance(first, TextDelta)
    async with SqliteLedgerStore(ledger) as store:
        requests = await store.fetch_requests(None, None, None)
        attempts = await store.fetch_attempts(None, None, None)
    assert len(requests) == 1
    assert requests[0].outcome == "cancelled"
    assert len(attempts) == 1
    await events.aclose()  # the request was already recorded: closing it late adds nothing
    async with SqliteLedgerStore(ledger) as store:
        assert len(await store.fetch_requests(None, None, None)) == 1


async def test_closing_the_door_waits_for_streams_being_read(tmp_path: Path) -> None:
    """A request still being served when the door closes finishes, and is recorded as answered."""
    ledger = tmp_path / "ledger.sqlite"
    answers: list[str] = []
    async with anyio.create_task_group() as tg, interlock.open(parse_config(CONFIG), ledger_path=ledger) as door:
        door.simulator.script("sim-a-1", [StallFirstToken(0.3)])  # type: ignore[union-attr]
        started = anyio.Event()

        async def caller() -> None:
            started.set()
            answers.append((await door.ask("hello", task="default")).content)

        tg.start_soon(caller)
        await started.wait()
        await anyio.lowlevel.checkpoint()  # the caller is inside the door when it starts closing
    assert len(answers) == 1
    assert answers[0]
    async with SqliteLedgerStore(ledger) as store:
        requests = await store.fetch_requests(None, None, None)
    assert [r.outcome for r in requests] == ["ok"]
