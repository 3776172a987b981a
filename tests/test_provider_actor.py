"""Provider actor admission on the fake clock: breaker, cooldown, probes and slots answer at once."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import interlock
from interlock import (
    AdmissionRejected,
    ChatRequest,
    ChildSpec,
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
from interlock._records import BreakerRecord
from interlock.actors._provider_actor import Call, GetHealth, ProbeNow, ProviderActor, ProviderSettings
from interlock.actors._provider_state import ProviderState
from interlock.policies._breaker import BreakerConfig
from interlock.policies._health import CooldownConfig, ProbeConfig

pytestmark = pytest.mark.anyio
REQUEST = ChatRequest(messages=(Message.text("user", "hi"),))


class ScriptedAdapter:
    """A boundary fake: each call takes the next scripted outcome (an error, 'ok', or 'hang')."""

    batches = None  # no batched form: the actor reads ``stream`` (ProviderAdapter.batches)

    def __init__(self, script: list[Any], clock: FakeClock | None = None) -> None:
        self.script = script
        self.probe_ok = True
        self.probe_bug: Exception | None = None  # an unexpected error, as a buggy adapter raises
        self.probe_times: list[float] = []
        self.clock = clock
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
        if self.clock is not None:
            self.probe_times.append(self.clock.now())
        if self.probe_bug is not None:
            raise self.probe_bug
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
    changes: list[BreakerRecord] = []
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, settings(), changes.append), name="p")
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
    # Every transition is reported (for the ledger and the metric), in order, with its time and cause.
    assert [(c.provider, c.from_state, c.to_state, c.cause) for c in changes[:2]] == [
        ("fake", "closed", "open", "failure_rate"),
        ("fake", "open", "half_open", "wait_elapsed"),
    ]
    assert [c.ts for c in changes[:2]] == [clock.wall() - 11, clock.wall()]


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


async def test_a_passing_probe_half_opens_an_open_breaker_within_seconds() -> None:
    """Once the breaker opens, the probe loop probes within the short open pace, and a good probe half-opens it."""
    clock = FakeClock()
    adapter = ScriptedAdapter([ProviderError(ErrorClass.SERVER_ERROR, "fake")] * 2)
    loop = settings(probe_loop=True, breaker=BreakerConfig(window_calls=4, min_calls=2, open_wait_s=30))
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, loop), name="p")
        for _ in range(2):
            with pytest.raises(ProviderError):
                await call(ref)
        assert (await ref.ask(GetHealth())).breaker == "open"
        clock.advance(3.0)  # the longest jittered open interval (2 s + 50 %), far inside the 30 s wait
        await anyio.wait_all_tasks_blocked()
        health = await ref.ask(GetHealth())
        assert health.breaker == "half_open"
        assert health.recent_transitions[-1].cause == "health_probe_passed"
        assert health.recent_transitions[-1].ts <= clock.wall()
        assert isinstance((await call(ref))[-1], Finish)  # a half-open trial goes through


async def test_open_breaker_probes_at_a_jittered_pace_until_one_passes() -> None:
    """While open and failing probes, the loop probes every 1 to 3 s of the clock, not at one fixed interval."""
    clock = FakeClock()
    adapter = ScriptedAdapter([ProviderError(ErrorClass.SERVER_ERROR, "fake")] * 2, clock)
    adapter.probe_ok = False
    probes = adapter.probe_times
    loop = settings(
        probe_loop=True,
        probe=ProbeConfig(interval_s=30, unhealthy_after=100, healthy_after=1),
        breaker=BreakerConfig(window_calls=4, min_calls=2, open_wait_s=300, open_wait_max_s=300),
    )
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, loop), name="p")
        for _ in range(2):
            with pytest.raises(ProviderError):
                await call(ref)
        while len(probes) < 12:
            clock.advance(0.25)
            await anyio.wait_all_tasks_blocked()
        gaps = [b - a for a, b in itertools.pairwise(probes)]
        assert all(1.0 - 0.25 <= gap <= 3.0 + 0.25 for gap in gaps), gaps
        assert len({round(gap, 2) for gap in gaps}) > 1  # jittered, not one fixed step
        assert (await ref.ask(GetHealth())).breaker == "open"
        adapter.probe_ok = True
        clock.advance(3.25)
        await anyio.wait_all_tasks_blocked()
        assert (await ref.ask(GetHealth())).breaker == "half_open"


async def test_a_quota_429_cools_the_key_for_long_and_spares_the_breaker() -> None:
    """insufficient_quota (kind quota) refuses calls as cooling_down for quota_s, not 1 s, and spares the breaker."""
    clock = FakeClock()
    quota = ProviderError(ErrorClass.QUOTA, "fake", status=429, detail="You exceeded your current quota")
    adapter = ScriptedAdapter([quota])
    cfg = settings(cooldown=CooldownConfig(default_s=1, max_s=60, quota_s=300),
                   breaker=BreakerConfig(window_calls=1, min_calls=1, failure_rate_pct=1))
    async with Runtime(clock=clock) as rt:
        ref = await rt.spawn(lambda: ProviderActor("fake", lambda: adapter, cfg), name="p")
        with pytest.raises(ProviderError) as failed:
            await call(ref)
        assert failed.value.kind is ErrorClass.QUOTA
        clock.advance(60.0)  # well past any rate-limit cooldown
        with pytest.raises(AdmissionRejected) as info:
            await call(ref)
        assert info.value.reason == "cooling_down"
        assert info.value.retry_after == pytest.approx(240.0)
        health = await ref.ask(GetHealth())
        assert (health.cooldown_cause, health.breaker, health.breaker_transitions) == ("quota", "closed", 0)
        clock.advance(240.0)
        assert isinstance((await call(ref))[-1], Finish)


async def test_breaker_probe_health_and_cooldown_survive_a_crash_of_the_actor() -> None:
    """An adapter bug crashes the actor; the restarted one keeps the open breaker, failed probes and cooldown."""
    clock = FakeClock()
    adapters: list[ScriptedAdapter] = []
    state = ProviderState()

    def make() -> ScriptedAdapter:
        script: list[Any] = [ProviderError(ErrorClass.SERVER_ERROR, "fake")] * 2
        script.append(ProviderError(ErrorClass.RATE_LIMIT, "fake", retry_after=50.0))
        adapter = ScriptedAdapter(script if not adapters else [])
        adapters.append(adapter)
        return adapter

    cfg = settings(breaker=BreakerConfig(window_calls=4, min_calls=3, failure_rate_pct=50, open_wait_s=100))
    async with Runtime(clock=clock) as rt:
        await rt.spawn_supervisor(
            "providers", [ChildSpec("provider:fake", lambda: ProviderActor("fake", make, cfg, None, state))],
            max_restarts=5, period=10.0,
        )
        ref = rt.lookup("provider:fake")
        for _ in range(3):
            with pytest.raises(ProviderError):
                await call(ref)
        adapters[0].probe_ok = False
        assert await ref.ask(ProbeNow()) is False  # unhealthy_after = 1
        before = await ref.ask(GetHealth())
        assert (before.breaker, before.healthy, before.cooldown_cause) == ("open", False, "rate_limit")
        adapters[0].probe_bug = RuntimeError("bug in an adapter")
        await ref.tell(ProbeNow())  # a told message that raises crashes the actor
        with anyio.fail_after(5):
            while len(adapters) < 2:
                await anyio.sleep(0.001)
        after = await ref.ask(GetHealth())
        assert after.breaker == "open"
        assert after.recent_transitions == before.recent_transitions
        assert not after.probes_healthy
        assert after.cooling_down_s == pytest.approx(50.0)
        with pytest.raises(AdmissionRejected):
            await call(ref)
