"""Providers seen through a real door: brownouts, crash loops and breaker records, against a loopback server.

The upstream is a real aiohttp server on 127.0.0.1 speaking OpenAI's wire: ``GET /v1/models``
always answers 200, while ``POST /v1/chat/completions`` answers as the test says (an answer,
a 500). The door runs on a ``FakeClock`` so probe and breaker timing move only when the test
advances it; the HTTP exchanges themselves are real, so a test waits for their effect by bounded
polling on ``door.health()``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import msgspec
import pytest
from aiohttp import web
from rich.console import Console

import interlock
import interlock._runtime
from interlock import FakeClock, ProviderHealth, Supervisor
from interlock._errors import ChainExhausted
from interlock._types import ChatRequest, StreamEvent
from interlock.actors import _tree
from interlock.actors.cli._report import print_report
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio
SERVER_ERROR = {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
# OpenAI's documented body for an account out of credit (HTTP 429).
INSUFFICIENT_QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}


class Upstream:
    """One OpenAI-compatible server: the model list always answers; generations as ``generations`` says."""

    def __init__(self) -> None:
        self.generations = "answer"  # "fail": a 500 with OpenAI's server_error body; "quota": its 429
        self.model_lists = 0
        self.posts = 0
        self.url = ""

    async def models(self, request: web.Request) -> web.Response:
        self.model_lists += 1
        listed = {"id": "m-2025-01-01", "object": "model", "owned_by": "test"}
        return web.json_response({"object": "list", "data": [listed]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.posts += 1
        if self.generations == "fail":
            return web.json_response(SERVER_ERROR, status=500)
        if self.generations == "quota":
            return web.json_response(INSUFFICIENT_QUOTA, status=429)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-2025-01-01"}
        for choices, usage in (
            ([{"index": 0, "delta": {"role": "assistant", "content": "hello"}, "finish_reason": None}], None),
            ([{"index": 0, "delta": {}, "finish_reason": "stop"}], None),
            ([], {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}),
        ):
            chunk = head | {"choices": choices} | ({"usage": usage} if usage else {})
            await response.write(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def serving(upstream: Upstream) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def door_on(
    upstream: Upstream, ledger: Path, clock: FakeClock, probe: str = "interval_s = 30"
) -> AsyncIterator[interlock.Door]:
    """The upstream served, and a door on it whose one provider has the given probe settings."""
    async with serving(upstream), interlock.open(config(upstream, probe), clock=clock, ledger_path=ledger) as door:
        yield door


def config(upstream: Upstream, probe: str) -> interlock.Config:
    return parse_config(f"""
[providers.up]
kind = "openai_compatible"
base_url = "{upstream.url}"
breaker = {{ window_calls = 4, min_calls = 2, open_wait_s = 30 }}
probe = {{ unhealthy_after = 1, healthy_after = 1, {probe} }}

[models.m]
provider = "up"
id = "m-2025-01-01"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = {{ input = 1.0, output = 2.0 }}

[jobs.default]
chain = ["m"]

# One process: the fleet's signal reader sleeps through the test (its FakeClock sleeps counted once).
[state]
signals_refresh_ms = 3600000
""")


async def health_until(door: interlock.Door, check: Callable[[ProviderHealth], bool]) -> ProviderHealth:
    """Poll the provider's health (real HTTP runs behind it) until ``check`` holds, within 5 s."""
    with anyio.fail_after(5):
        while True:
            with contextlib.suppress(interlock.ActorStopped):  # its actor may be restarting
                health = (await door.health())["up"]
                if check(health):
                    return health
            await anyio.sleep(0.005)


async def failing(ask: Awaitable[Any]) -> interlock.InterlockError:
    with pytest.raises(interlock.InterlockError) as info:
        await ask
    return info.value


# -- brownout --------------------------------------------------------------------------------------


async def test_a_generation_probe_sees_a_brownout_the_model_list_hides(tmp_path: Path) -> None:
    """With probe.model set, a provider whose model list answers but whose generations 500 turns unhealthy."""
    upstream, clock = Upstream(), FakeClock()
    upstream.generations = "fail"
    probe = 'interval_s = 30, model = "m-2025-01-01"'
    async with door_on(upstream, tmp_path / "l.sqlite", clock, probe) as door:
        assert (await door.health())["up"].healthy
        clock.advance(30.0)  # the probe loop's healthy interval
        health = await health_until(door, lambda h: not h.probes_healthy)
        assert not health.healthy
        assert (upstream.posts, upstream.model_lists) == (1, 0)  # the probe was a generation
        error = await failing(door.ask("hi"))
        assert isinstance(error, ChainExhausted)
        assert [getattr(e, "reason", None) for _, e in error.errors] == ["unhealthy"]
        assert upstream.posts == 1  # refused at admission: no request reached the provider


async def test_a_brownout_behind_a_model_list_probe_is_unhealthy_from_real_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without probe.model, failing real calls open the breaker: unhealthy; one probe-led trial, then the open wait."""
    upstream, clock, ledger = Upstream(), FakeClock(), tmp_path / "l.sqlite"
    upstream.generations = "fail"
    async with door_on(upstream, ledger, clock) as door:
        await failing(door.ask("hi"))
        opened = await health_until(door, lambda h: h.breaker == "open")
        assert not opened.healthy  # its real calls fail, though its model list answers
        assert opened.probes_healthy
        assert [(t.from_state, t.to_state, t.cause) for t in opened.recent_transitions] == [
            ("closed", "open", "failure_rate")
        ]
        assert opened.recent_transitions[0].ts == clock.wall()
        clock.advance(3.0)  # the open pace: the model list answers, so the breaker half-opens
        await health_until(door, lambda h: h.breaker == "half_open")
        posts = upstream.posts
        clock.advance(0.5)
        await failing(door.ask("hi"))  # the trial call fails: open again, with a longer wait
        assert upstream.posts == posts + 1
        await anyio.wait_all_tasks_blocked()
        steady = clock.sleepers  # the probe loop and the ledger's flush timer, both waiting
        for _ in range(3):
            lists = upstream.model_lists
            clock.advance(3.0)
            await health_until(door, lambda h, lists=lists: upstream.model_lists > lists and clock.sleepers == steady)
            reopened = await health_until(door, lambda h: True)
            assert reopened.breaker == "open"  # the probe passed, yet it stays open: probes were shown wrong
        assert not reopened.healthy
        causes = [t.cause for t in reopened.recent_transitions]
        assert causes == ["failure_rate", "health_probe_passed", "probe_failed"]
    # The ledger holds every transition with its time and cause, and the report shows them.
    async with SqliteLedgerStore(ledger) as store:
        rows = await store.breaker_transitions()
    assert sorted((r.from_state, r.to_state, r.cause) for r in rows) == sorted(
        (t.from_state, t.to_state, t.cause) for t in reopened.recent_transitions
    )
    assert {r.provider for r in rows} == {"up"}
    out = io.StringIO()
    await print_report(ledger, console=Console(file=out, width=160))
    text = out.getvalue()
    assert "Breaker transitions" in text
    assert text.index("failure_rate") < text.index("health_probe_passed") < text.index("probe_failed")
    await print_report(ledger, as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert [(t["provider"], t["cause"]) for t in report["breaker_transitions"]] == [("up", c) for c in causes]
    assert report["breaker_transitions"][0]["ts"] == reopened.recent_transitions[0].ts
    assert report["requests"] == 2


# -- quota ------------------------------------------------------------------------------------------


async def test_an_insufficient_quota_429_cools_the_key_for_minutes_and_is_not_retried(tmp_path: Path) -> None:
    """OpenAI's insufficient_quota 429 is one attempt, then calls are refused cooling_down for quota_s (300 s)."""
    upstream, clock = Upstream(), FakeClock()
    upstream.generations = "quota"
    async with door_on(upstream, tmp_path / "l.sqlite", clock) as door:
        error = await failing(door.ask("hi"))
        assert isinstance(error, ChainExhausted)
        assert [e.kind for _, e in error.errors] == [interlock.ErrorClass.QUOTA]
        assert upstream.posts == 1  # not retried on the same key
        clock.advance(60.0)  # far past a rate limit's cooldown
        error = await failing(door.ask("hi"))
        assert [getattr(e, "reason", None) for _, e in error.errors] == ["cooling_down"]
        assert upstream.posts == 1
        health = (await door.health())["up"]
        assert (health.cooldown_cause, health.breaker) == ("quota", "closed")
        assert health.cooling_down_s == pytest.approx(240.0)
        upstream.generations = "answer"  # the account was topped up
        clock.advance(240.0)
        assert (await door.ask("hi")).content == "hello"


# -- crash loops --------------------------------------------------------------------------------


class Bugs:
    """How many more calls and probes of the wrapped adapters raise an unexpected error; adapters built."""

    def __init__(self, calls: int = 0, probes: int = 0) -> None:
        self.calls = calls
        self.probes = probes
        self.built = 0


class BuggyAdapter:
    """The real HTTP adapter, but the first few calls and probes raise a RuntimeError (an adapter bug)."""

    batches = None  # the actor reads ``stream``, where the bug is

    def __init__(self, inner: ProviderAdapter, bugs: Bugs) -> None:
        self._inner = inner
        self._bugs = bugs

    @property
    def name(self) -> str:
        return self._inner.name

    async def stream(self, request: ChatRequest, model_id: str, *, stream: bool = True) -> AsyncIterator[StreamEvent]:
        if self._bugs.calls > 0:
            self._bugs.calls -= 1
            raise RuntimeError("bug in an adapter")
        async for event in self._inner.stream(request, model_id, stream=stream):
            yield event

    async def probe(self) -> None:
        if self._bugs.probes > 0:
            self._bugs.probes -= 1
            raise RuntimeError("bug in an adapter probe")
        await self._inner.probe()

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def bugs(monkeypatch: pytest.MonkeyPatch) -> Bugs:
    """Every provider adapter the tree builds is wrapped in a ``BuggyAdapter`` sharing one ``Bugs``."""
    found = Bugs()
    real = _tree.build_adapter

    def build(*args: Any, **kwargs: Any) -> ProviderAdapter:
        found.built += 1
        return BuggyAdapter(real(*args, **kwargs), found)

    monkeypatch.setattr(_tree, "build_adapter", build)
    return found


class CountedSupervisor(Supervisor):
    """A supervisor that notes each instance made, by name: a restart of a supervisor makes a new one."""

    made: ClassVar[list[str]] = []

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        CountedSupervisor.made.append(name)


async def test_the_door_answers_after_its_provider_supervisor_gave_up_and_restarted(
    tmp_path: Path, bugs: Bugs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crashing the provider actor past its supervisor's intensity restarts the supervisor; the door still serves."""
    monkeypatch.setattr(interlock._runtime, "Supervisor", CountedSupervisor)
    CountedSupervisor.made.clear()
    upstream = Upstream()
    bugs.calls = 7  # the providers supervisor allows 5 restarts in 10 s; all of these come at one fake instant
    async with door_on(upstream, tmp_path / "l.sqlite", FakeClock()) as door:
        with anyio.fail_after(10):
            while bugs.calls:
                await failing(door.ask("hi"))
        assert CountedSupervisor.made.count("providers") == 2  # it escalated and the root started it again
        with anyio.fail_after(5):
            while True:
                with contextlib.suppress(interlock.InterlockError):  # answered ActorStopped mid-restart
                    reply = await door.ask("hi")
                    break
                await anyio.sleep(0.005)
        assert reply.content == "hello"
        health = await health_until(door, lambda h: True)
        assert (health.breaker, health.healthy, health.breaker_transitions) == ("closed", True, 0)
        assert bugs.built >= 8


async def test_a_breaker_opened_before_a_crash_is_still_open_after_the_restart(tmp_path: Path, bugs: Bugs) -> None:
    """The provider actor crashes in a probe while its breaker is open; restarted, it refuses calls all the same."""
    upstream, clock = Upstream(), FakeClock()
    upstream.generations = "fail"
    async with door_on(upstream, tmp_path / "l.sqlite", clock, "interval_s = 5") as door:
        await failing(door.ask("hi"))
        before = await health_until(door, lambda h: h.breaker == "open")
        bugs.probes = 1
        clock.advance(5.0)  # the next probe raises the bug: the actor crashes and is restarted
        after = await health_until(door, lambda h: bugs.built == 2)
        assert after.breaker == "open"
        assert after.recent_transitions == before.recent_transitions
        posts = upstream.posts
        error = await failing(door.ask("hi"))
        assert isinstance(error, ChainExhausted)
        assert [getattr(e, "reason", None) for _, e in error.errors] == ["breaker_open"]
        assert upstream.posts == posts
