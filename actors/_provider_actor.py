"""The provider actor: one per provider, owning its slots, probes and adapter, and governing its calls.

Admission answers at once — breaker open, cooling down, unhealthy, no slot — so the request run
moves on without paying a timeout. An admitted call runs in the actor's task group and writes
its events straight into the caller's stream (one hop per event). The pure decisions (breaker,
health, cooldown) live in ``interlock.policies``; this actor reads the clock and applies them.
What they decide (breaker, health, cooldown) is kept in a ``ProviderState`` that outlives the
actor instance, so a crash and restart neither closes an open breaker nor ends a cooldown.
Its own transitions and cooldowns go to the fleet's peers through that state, and theirs are
folded in at the next admission (``_provider_signals``; no store call on the way).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from interlock._actor import Actor
from interlock._errors import AdmissionRejected, ErrorClass, InterlockError, ProviderError
from interlock._records import BreakerRecord
from interlock._streams import EventSink
from interlock._types import (
    ChatRequest,
    Finish,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
)
from interlock.actors._provider_signals import breaker_signal, cooldown_signal, fold_peer_signals
from interlock.actors._provider_state import ProviderHealth as ProviderHealth  # its home before; the API names it here
from interlock.actors._provider_state import ProviderState, probe_once
from interlock.adapters.providers._embed import embedder
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.policies._breaker import (
    BreakerConfig,
    BreakerState,
    CallOutcome,
    admit,
    advance,
    new_transitions,
    on_health_probe,
    record,
)
from interlock.policies._breaker_fleet import is_own
from interlock.policies._health import (
    CooldownConfig,
    ProbeConfig,
    cooldown_after,
    probe_interval,
    record_probe,
)

# The events that end the wait for a first token (a finish without content counts too).
_ANSWERED = frozenset({TextDelta, ThinkingDelta, ToolCallDelta, ToolCallDone, Finish})


class Call(msgspec.Struct, frozen=True, tag=True):
    """Run ``request`` on ``model_id``; sent with ``ask_stream``, answered with stream events.

    ``call_id`` lets the caller ``Cancel`` the call (a lost hedge): the connection closes at once.
    """

    request: ChatRequest
    model_id: str
    call_id: int = 0
    stream: bool = True


class Cancel(msgspec.Struct, frozen=True, tag=True):
    """Cancel the call with ``call_id`` if it is still running."""

    call_id: int


class EmbedCall(msgspec.Struct, frozen=True, tag=True):
    """Embed ``inputs``: governed as a ``Call`` (``ask_stream``), answered with one ``Embedded`` event."""

    inputs: tuple[str, ...]
    model_id: str
    dimensions: int | None = None
    call_id: int = 0


class ProbeNow(msgspec.Struct, frozen=True, tag=True):
    """Run one health probe now (also what the probe loop does on its interval)."""


class GetHealth(msgspec.Struct, frozen=True, tag=True):
    """Ask for a ``ProviderHealth`` snapshot."""


ProviderMsg = Call | EmbedCall | Cancel | ProbeNow | GetHealth


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider actor enforces: slots, slot wait, breaker, probes, cooldown."""

    max_concurrency: int = 16
    slot_wait_s: float = 0.0
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    probe: ProbeConfig = msgspec.field(default_factory=ProbeConfig)
    cooldown: CooldownConfig = msgspec.field(default_factory=CooldownConfig)
    probe_loop: bool = True


class ProviderActor(Actor[ProviderMsg]):
    """Governs every call to one provider.

    ``state`` is what must survive a restart of this actor; the tree makes one per provider and
    hands it to every incarnation (a fresh one when omitted). ``on_transition`` hears every
    breaker transition, as the record the ledger keeps.
    """

    def __init__(
        self,
        name: str,
        adapter: Callable[[], ProviderAdapter],
        settings: ProviderSettings,
        on_transition: Callable[[BreakerRecord], None] | None = None,
        state: ProviderState | None = None,
    ) -> None:
        super().__init__()
        self._on_transition = on_transition
        self._provider = name
        self._make_adapter = adapter
        self._settings = settings
        self._state = state if state is not None else ProviderState()
        self._adapter: ProviderAdapter | None = None
        self._slots = anyio.Semaphore(settings.max_concurrency)
        self._in_flight = 0
        self._calls: dict[int, asyncio.Task[None]] = {}
        self._calls_running = 0
        self._idle: anyio.Event | None = None  # made only when a stop waits for in-flight work
        self._probe_wait: anyio.CancelScope | None = None  # the probe loop's sleep, cut short when the breaker opens
        self._jitter = random.Random()  # spreads the open-breaker probes; not a secret

    async def on_start(self) -> None:
        self._adapter = self._make_adapter()
        self.tasks.start_soon(self._own_adapter, self._adapter)
        if self._settings.probe_loop:
            self.tasks.start_soon(self._probe_loop)

    async def on_stop(self) -> None:
        # In-flight calls finish (the supervisor's shutdown deadline bounds this); the adapter
        # closes when the actor's tasks end.
        while self._calls_running:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _own_adapter(self, adapter: ProviderAdapter) -> None:
        """Close the adapter when this incarnation ends, however it ends (stop, crash, cancel)."""
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await adapter.aclose()

    async def receive(self, msg: ProviderMsg) -> Any:
        match msg:
            case Call() | EmbedCall():
                sink = self.detach_stream()
                if self._state.inbox:  # a peer process's breaker or cooldown news
                    self._fold_peer_signals()
                rejection = self._admission_error()
                if rejection is not None:
                    sink.fail(rejection)
                    return None
                state, admission = admit(self._state.breaker, self.clock.now(), self._settings.breaker)
                self._set_breaker(state)
                if not admission.allowed:
                    sink.fail(AdmissionRejected(self._provider, "breaker_open", retry_after=admission.retry_in_s))
                    return None
                self._calls_running += 1
                running = self.run_soon(self._call, msg, sink, admission.epoch)
                running.add_done_callback(lambda _: self._call_done(msg, sink))
                if msg.call_id:
                    self._calls[msg.call_id] = running
            case Cancel(call_id=call_id):
                cancelled = self._calls.get(call_id)
                if cancelled is not None:
                    cancelled.cancel()
            case ProbeNow():
                return await self._probe()
            case GetHealth():
                return self.health()
        return None

    def _set_breaker(self, breaker: BreakerState) -> None:
        """Keep the breaker's new state; record each transition it made, with its wall time and cause."""
        state = self._state
        old, state.breaker = state.breaker, breaker
        if breaker.transitions == old.transitions:
            return
        now, wall = self.clock.now(), self.clock.wall()
        changes = new_transitions(old, breaker)
        for change in changes:
            entry = BreakerRecord(
                ts=wall - (now - change.at), provider=self._provider,
                from_state=change.source, to_state=change.target, cause=change.reason,
            )
            state.transitions.append(entry)
            if self._on_transition is not None:
                self._on_transition(entry)
        if state.share is not None and changes and is_own(changes[-1]):  # the fleet hears where it ended
            state.share(breaker_signal(self._provider, breaker, changes[-1], now, wall))
        if breaker.name == "open" and self._probe_wait is not None:
            self._probe_wait.cancel()  # the probe loop's long sleep gives way to the open pace

    def _fold_peer_signals(self) -> None:
        clock = self.clock
        self._set_breaker(fold_peer_signals(self._state, clock.now(), clock.wall(), self._settings.breaker))

    def health(self) -> ProviderHealth:
        """A snapshot of breaker, health, cooldown, slots and the breaker's recent transitions."""
        self._fold_peer_signals()
        now = self.clock.now()
        self._set_breaker(advance(self._state.breaker, now, self._settings.breaker))
        state = self._state
        cooling = max(0.0, state.cooldown_until - now)
        return ProviderHealth(
            provider=self._provider,
            breaker=state.breaker.name,
            healthy=state.health.healthy and state.breaker.name != "open",
            cooling_down_s=cooling,
            free_slots=int(self._slots.value),
            in_flight=self._in_flight,
            max_concurrency=self._settings.max_concurrency,
            breaker_transitions=state.breaker.transitions,
            probes_healthy=state.health.healthy,
            cooldown_cause=state.cooldown_cause if cooling > 0 else None,
            recent_transitions=tuple(state.transitions),
        )

    def _admission_error(self) -> AdmissionRejected | None:
        now = self.clock.now()
        state = self._state
        if now < state.cooldown_until:
            return AdmissionRejected(self._provider, "cooling_down", retry_after=state.cooldown_until - now)
        if not state.health.healthy:
            return AdmissionRejected(self._provider, "unhealthy")
        if self._slots.value == 0 and self._settings.slot_wait_s <= 0:
            return AdmissionRejected(self._provider, "no_slot")
        return None

    def _call_done(self, call: Call | EmbedCall, sink: EventSink[Any]) -> None:
        """A call's task ended, however (even cancelled before it ran): free its place, end its stream."""
        self._calls.pop(call.call_id, None)
        self._calls_running -= 1
        if not self._calls_running and self._idle is not None:
            self._idle.set()
        if not sink.closed:  # cancelled before its first step: the reader still waits
            sink.fail(ProviderError(ErrorClass.CANCELLED, self._provider, model=call.model_id, detail="cancelled"))

    async def _call(self, call: Call | EmbedCall, sink: EventSink[Any], epoch: int) -> None:
        start = self.clock.now()
        ttft: float | None = None
        error: ErrorClass | None = None
        try:
            async with sink:
                await self._acquire_slot()
                self._in_flight += 1
                held = True

                def free() -> None:
                    # Once, at the answer's finish: the caller may send its next call at once, and
                    # must find the slot free rather than held while this response is put away.
                    nonlocal held
                    if held:
                        held = False
                        self._in_flight -= 1
                        self._slots.release()

                try:
                    ttft = await self._relay(call, sink, start, free)
                finally:
                    free()
        except AdmissionRejected:
            error = ErrorClass.CANCELLED  # never reached the provider: the breaker must not count it
        except InterlockError as exc:
            error = exc.kind
            if isinstance(exc, ProviderError):
                self._cool_down(exc)
        except anyio.get_cancelled_exc_class():
            error = ErrorClass.CANCELLED
            raise
        except Exception:
            error = ErrorClass.INTERNAL  # an adapter bug (it crashes this actor): says nothing of the provider
            raise
        finally:
            outcome = CallOutcome(error=error, ttft_s=ttft, epoch=epoch)
            self._set_breaker(record(self._state.breaker, outcome, self.clock.now(), self._settings.breaker))

    def _cool_down(self, exc: ProviderError) -> None:
        """A 429 pauses admissions: briefly for a rate limit, for long when the quota is gone."""
        state = self._state
        until = cooldown_after(exc.kind, self.clock.now(), exc.retry_after, self._settings.cooldown,
                               current=state.cooldown_until)
        if until is not None and until > state.cooldown_until:
            state.cooldown_until, state.cooldown_cause = until, exc.kind
            if state.share is not None:
                state.share(cooldown_signal(self._provider, until, exc.kind, self.clock.now(), self.clock.wall()))

    async def _relay(
        self, call: Call | EmbedCall, sink: EventSink[Any], start: float, answered: Callable[[], None]
    ) -> float | None:
        """Copy the adapter's events into the caller's stream; returns the TTFT (first content or finish).

        ``answered`` is called as soon as the ``Finish`` event is handed over.

        An adapter with ``batches`` hands over each network chunk's events as one list, which
        crosses to the caller with one wake-up instead of one per token.
        """
        if isinstance(call, EmbedCall):
            await self._embed(call, sink, answered)
            return None
        adapter = self._adapter
        assert adapter is not None
        ttft: float | None = None
        batches = adapter.batches
        if batches is not None:
            chunks = batches(call.request, call.model_id, stream=call.stream)
            try:
                async for batch in chunks:
                    if ttft is None and any(type(e) in _ANSWERED for e in batch):
                        ttft = self.clock.now() - start
                    if not sink.send_batch_nowait(batch):
                        await sink.send_batch(batch)
                    if type(batch[-1]) is Finish:
                        answered()
            finally:
                await chunks.aclose()  # releases the HTTP response at once
            return ttft
        events = adapter.stream(call.request, call.model_id, stream=call.stream)
        try:
            async for event in events:
                if ttft is None and type(event) in _ANSWERED:
                    ttft = self.clock.now() - start
                if not sink.send_nowait(event):
                    await sink.send(event)
                if type(event) is Finish:
                    answered()
        finally:
            # Closing the generator releases the HTTP response or the process at once.
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        return ttft

    async def _embed(self, call: EmbedCall, sink: EventSink[Any], answered: Callable[[], None]) -> None:
        """Hand the ``Embedded`` over as the call's one event; no TTFT: its latency grows with the batch."""
        embedded = await embedder(self._adapter, self._provider)(call.inputs, call.model_id, call.dimensions)
        answered()
        await sink.send(embedded)

    async def _acquire_slot(self) -> None:
        if self._slots.value > 0:
            self._slots.acquire_nowait()  # cannot block: the actor's tasks share one thread
            return
        try:
            with anyio.fail_after(self._settings.slot_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise AdmissionRejected(self._provider, "no_slot") from None

    async def _probe(self) -> bool:
        """One health probe: its result goes to health and, while the breaker is open, may half-open it."""
        assert self._adapter is not None
        ok = await probe_once(self._adapter, self._settings.probe)
        state = self._state
        state.health = record_probe(state.health, ok, self._settings.probe)
        self._set_breaker(on_health_probe(state.breaker, ok, self.clock.now(), self._settings.breaker))
        return ok

    def _next_probe_in(self) -> float:
        self._fold_peer_signals()
        breaker = advance(self._state.breaker, self.clock.now(), self._settings.breaker)
        return probe_interval(
            self._state.health, self._settings.probe, breaker_open=breaker.name == "open", draw=self._jitter.random()
        )

    async def _probe_loop(self) -> None:
        while True:
            with anyio.CancelScope() as wait:
                self._probe_wait = wait
                await self.clock.sleep(self._next_probe_in())
            self._probe_wait = None
            if not wait.cancelled_caught:  # cut short: the breaker opened, so the pace changed
                await self._probe()
