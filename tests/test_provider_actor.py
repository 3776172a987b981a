"""Provider actor admission on the fake clock: breaker, cooldown, probes and slots answer at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import interlock
from interlock import (
    AdmissionRejected,
    ChatRequest,
    ErrorClass,
    FakeClock,
    Finish,
    Message,
    ProviderError,
    Runtime,
    TextDelta,
    Usage,
    UsageEvent,
)
from interlock.actors._provider_actor import Call, GetHealth, ProbeNow, ProviderActor, ProviderSettings
from interlock.policies._breaker import BreakerConfig
from interlock.policies._health import CooldownConfig, ProbeConfig

pytestmark = pytest.mark.anyio
REQUEST = ChatRequest(messages=(Message.text("user", "hi"),))


class ScriptedAdapter:
    """A boundary fake: each call takes the next scripted outcome (an error, 'ok', or 'hang')."""

    batches = None  # no batched form: the actor reads ``stream`` (ProviderAdapter.batches)

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.probe_ok = True
        self.closed = False

    @property
    def name(self) -> str:
        return "fake"

    async def stream(self, request: ChatRequest, model_id: str, *, stream: bool = True) -> AsyncIterator[Any]:
        outcome = self.script.pop(0) if self.script else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await anyio.sleep_forever()
        yield TextDelta("hello")
        yield UsageEvent(Usage(3, 1))
        yield Finish("stop")
        if outcome == "linger":  # the answer is complete, but putting the response away takes a while
            await anyio.sleep_forever()

    async def probe(self) -> None:
        if not self.probe_ok:
            raise ProviderError(ErrorClass.CONNECT, "fake")

    async def aclose(self) -> None:
        self.closed = True


async def call(ref: Any) -> list[Any]:
    return [e async for e in await ref.ask_stream(Call(REQUEST, "m"))]


def settings(**kw: Any) -> ProviderSettings:
    base: dict[str, Any] = {
        "breaker": BreakerConfig(window_calls=4, min_calls=2, failure_rate_pct=50, open_wait_s=10),
        "probe": ProbeConfig(interval_s=30, unhealthy_after=1, healthy_after=1),
        "cooldown": CooldownConfig(default_s=1, max_s=60),
        "probe_loop": False,
    }
    base.update(kw)
    return ProviderSettings(**base)


async def test_breaker_opens_and_rejects_at_once_then_recovers() -> None:
    """Failures trip the breaker; calls are refused without reaching the adapter until the wait passes."""
    clock = FakeClock()
    adapter = ScriptedAdapter([ProviderError(ErrorClass.SERVER_ERROR, "fake")] * 2)
    changes: list[tuple[str, str, str]] = []
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(
            lambda: ProviderActor("fake", lambda: adapter, settings(), lambda *c: changes.append(c)), name="p"
        )
        for _ in range(2):
            with pytest.raises(ProviderError):
                await call(ref)
        with pytest.raises(AdmissionRejected) as info:
            await call(ref)
        assert info.value.reason == "breaker_open"
        assert (await ref.ask(GetHealth())).breaker == "open"
        clock.advance(11)
        events = await call(ref)
        assert isinstance(events[-1], Finish)
    # Every transition is reported (for the breaker-transition metric), in order.
    assert changes[:2] == [("fake", "closed", "open"), ("fake", "open", "half_open")]


async def test_rate_limit_cools_the_provider_down() -> None:
    """A 429 with retry-after pauses admissions until then, and not longer."""
    clock = FakeClock()
    adapter = ScriptedAdapter([ProviderError(ErrorClass.RATE_LIMIT, "fake", retry_after=5.0)])
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, settings()), name="p")
        with pytest.raises(ProviderError):
            await call(ref)
        with pytest.raises(AdmissionRejected) as info:
            await call(ref)
        assert info.value.reason == "cooling_down"
        assert info.value.retry_after == pytest.approx(5.0)
        clock.advance(5.0)
        assert isinstance((await call(ref))[-1], Finish)


async def test_failing_probe_takes_provider_out_and_back() -> None:
    """A failed probe marks the provider unhealthy (calls refused); a good probe brings it back."""
    clock = FakeClock()
    adapter = ScriptedAdapter([])
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, settings()), name="p")
        adapter.probe_ok = False
        assert await ref.ask(ProbeNow()) is False
        with pytest.raises(AdmissionRejected) as info:
            await call(ref)
        assert info.value.reason == "unhealthy"
        adapter.probe_ok = True
        assert await ref.ask(ProbeNow()) is True
        assert isinstance((await call(ref))[-1], Finish)
    assert adapter.closed


async def test_probe_loop_runs_on_the_clock() -> None:
    """The probe loop probes on its interval of the injected clock."""
    clock = FakeClock()
    adapter = ScriptedAdapter([])
    adapter.probe_ok = False
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(
            lambda: ProviderActor("fake", lambda: adapter, settings(probe_loop=True)), name="p"
        )
        await anyio.wait_all_tasks_blocked()
        assert (await ref.ask(GetHealth())).healthy
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        assert not (await ref.ask(GetHealth())).healthy


async def test_no_free_slot_is_refused_at_once() -> None:
    """With every slot busy and no slot wait, a call is refused with no_slot immediately."""
    clock = FakeClock()
    adapter = ScriptedAdapter(["hang"])
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(
            lambda: ProviderActor("fake", lambda: adapter, settings(max_concurrency=1)), name="p", shutdown=0.2
        )
        hung = await ref.ask_stream(Call(REQUEST, "m"))
        await anyio.wait_all_tasks_blocked()
        assert (await ref.ask(GetHealth())).free_slots == 0
        with pytest.raises(AdmissionRejected) as info:
            await call(ref)
        assert info.value.reason == "no_slot"
        await hung.aclose()


async def test_a_finished_answer_frees_its_slot_before_the_call_is_put_away() -> None:
    """The slot comes back at the answer's Finish: the caller's next call is admitted at once."""
    clock = FakeClock()
    adapter = ScriptedAdapter(["linger", "ok"])
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(
            lambda: ProviderActor("fake", lambda: adapter, settings(max_concurrency=1)), name="p", shutdown=0.2
        )
        first = await ref.ask_stream(Call(REQUEST, "m"))
        async for event in first:  # a caller stops reading at the Finish, as the request walk does
            if type(event) is Finish:
                break
        assert (await ref.ask(GetHealth())).free_slots == 1  # the adapter is still open, the slot is not held
        second = await call(ref)
        assert type(second[-1]) is Finish
        await first.aclose()


async def test_crash_ends_in_flight_calls_typed_and_restarts() -> None:
    """A provider actor that crashes ends its in-flight calls with ActorStopped and comes back for new ones."""
    clock = FakeClock()
    adapters: list[ScriptedAdapter] = []

    def make() -> ScriptedAdapter:
        adapter = ScriptedAdapter(["hang", RuntimeError("bug in an adapter")] if not adapters else [])
        adapters.append(adapter)
        return adapter

    async with Runtime(clock=clock, max_restarts=5) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", make, settings()), name="p", shutdown=0.2)
        hung = await ref.ask_stream(Call(REQUEST, "m"))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(interlock.InterlockError):
            await call(ref)  # this one crashes the actor
        with anyio.fail_after(2), pytest.raises(interlock.ActorStopped):
            await hung.__anext__()
        events = await call(ref)  # the restarted actor (with a fresh adapter) serves again
        assert isinstance(events[-1], Finish)
        assert len(adapters) == 2
    assert adapters[0].closed  # even the crashed incarnation released its connections
    assert adapters[1].closed
