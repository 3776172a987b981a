"""The one door: ``interlock.open()`` starts the runtime tree; ``door.ask`` / ``door.stream`` call through it.

::

    async with interlock.open("interlock.toml") as door:   # or interlock.open() for the embedded default
        reply = await door.ask("summarize this", task="cheap_bulk", tenant="acme")
        async for event in door.stream(messages, model="planner"):   # pinned, still governed
            ...

The tree: the ledger starts first and stops last (it flushes every record), then the provider
supervisor with one actor per enabled provider, then the router. With simulator providers in
the config, a loopback simulator is started first and stopped after everything else.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, final

import anyio
import msgspec

from interlock._actor import ActorRef
from interlock._clock import Clock, RealClock
from interlock._errors import ConfigError, InterlockError, RequestError
from interlock._runtime import Runtime
from interlock._supervisor import ChildSpec, Restart, Strategy
from interlock._types import (
    ChatRequest,
    ChatResponse,
    Message,
    RouteEvent,
    StreamEvent,
    ToolSpec,
)
from interlock.actors._ledger_actor import Flush, LedgerActor, LedgerBuffer, LedgerStatistics
from interlock.actors._provider_actor import GetHealth, ProviderActor, ProviderHealth, ProviderSettings
from interlock.actors._router_actor import RouterActor, new_request_id
from interlock.actors._wiring import build_adapter, is_enabled
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.rails._cache import CacheRail
from interlock.actors.rails._chain import AttemptRail, AttemptRails
from interlock.actors.rails._lease import LeaseRail
from interlock.actors.request._assemble import collect
from interlock.actors.request._serving import InFlight, RouterRails, ServingContext, serve
from interlock.adapters.simulator._server import SimConfig, Simulator
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.adapters.telemetry._otel import OtelMirror, OtelNaming, setup_from_env
from interlock.policies._config import Config, ProviderConfig, default_config, load_config
from interlock.policies._verify import Verifier

Prompt = str | Message | Sequence[Message]
_DRAIN_S = 30.0  # how long closing the door waits for requests in flight


@final
class Door:
    """The handle callers use; made by ``interlock.open``, valid inside its ``async with``."""

    def __init__(self, context: ServingContext, providers: dict[str, ActorRef[Any]]) -> None:
        self._context = context
        self._config = context.config
        self._providers = providers
        self._ledger: ActorRef[Any] | None = None
        self._buffer: LedgerBuffer | None = None
        self._sim: Simulator | None = None
        self._clock: Clock = RealClock()
        self._state: SqliteStateStore | None = None

    @property
    def simulator(self) -> Simulator | None:
        """The loopback simulator behind simulator providers (script faults on it), if any."""
        return self._sim

    @property
    def config(self) -> Config:
        """The decoded configuration in force."""
        return self._config

    async def ask(self, prompt: Prompt, **options: Any) -> ChatResponse:
        """Send one request and return the whole answer with its ``route``.

        Options are ``ChatRequest`` fields: ``task``, ``model``, ``model_class``, ``tenant``,
        ``caller``, ``sensitivity``, ``max_tokens``, ``tools``, ``temperature``, ...
        """
        return await collect(self.stream(prompt, **options))

    async def map(
        self,
        inputs: Sequence[Prompt],
        *,
        concurrency: int = 16,
        progress: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> list[ChatResponse | InterlockError]:
        """Run one request per input under the job's rails, at most ``concurrency`` at once.

        Results come back in input order: each a ``ChatResponse``, or the ``InterlockError`` that
        item ended with — one failure never loses the others. ``progress(done, total)`` is called
        after each item. Re-running a map is resumable through the response cache: items already
        answered (on a job with ``cache_ttl_s``) replay at no cost.
        """
        if concurrency < 1:
            raise RequestError("concurrency", "must be at least 1")
        results: list[ChatResponse | InterlockError | None] = [None] * len(inputs)
        limiter = anyio.CapacityLimiter(concurrency)
        done = 0

        async def one(index: int, prompt: Prompt) -> None:
            nonlocal done
            async with limiter:
                try:
                    results[index] = await self.ask(prompt, **options)
                except InterlockError as exc:
                    results[index] = exc
            done += 1
            if progress is not None:
                progress(done, len(inputs))

        async with anyio.create_task_group() as tg:
            for index, prompt in enumerate(inputs):
                tg.start_soon(one, index, prompt)
        return [r for r in results if r is not None]

    def stream(self, prompt: Prompt, **options: Any) -> AsyncGenerator[StreamEvent | RouteEvent]:
        """Yield the answer's events as they arrive, then one ``RouteEvent``."""
        if "request_id" not in options:  # the id is made here, not by a copy of the request later
            options = {**options, "request_id": new_request_id(self._context.clock.wall())}
        return self.send(build_request(prompt, options))

    def send(self, request: ChatRequest) -> AsyncGenerator[StreamEvent | RouteEvent]:
        """Like ``stream``, for a ready-made ``ChatRequest``; leaving early cancels the upstream call.

        The request runs in the task that iterates the stream: close it (``aclose``, or leave an
        ``async for`` by ``break`` inside ``contextlib.aclosing``) to cancel it at once.
        """
        return serve(self._context, request)

    async def health(self) -> dict[str, ProviderHealth]:
        """Each enabled provider's breaker state, cooldown, health and free slots."""
        return {name: await ref.ask(GetHealth(), timeout=5.0) for name, ref in self._providers.items()}

    async def flush(self) -> int:
        """Write every pending ledger record now; returns how many were written."""
        assert self._ledger is not None
        written: int = await self._ledger.ask(Flush(), timeout=60.0)
        return written

    def ledger_statistics(self) -> LedgerStatistics:
        """Records accepted, written and pending."""
        assert self._buffer is not None
        return self._buffer.statistics()


def build_request(prompt: Prompt, options: Mapping[str, Any]) -> ChatRequest:
    """A ``ChatRequest`` from a prompt and keyword options; a bad option names its field."""
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message.text("user", prompt),)
    elif isinstance(prompt, Message):
        messages = (prompt,)
    else:
        messages = tuple(prompt)
    if not messages:
        raise RequestError("messages", "at least one message is required")
    fields = dict(options)
    if "tools" in fields:
        fields["tools"] = tuple(t if isinstance(t, ToolSpec) else msgspec.convert(t, ToolSpec) for t in fields["tools"])
    try:
        return ChatRequest(messages=messages, **fields)
    except TypeError as exc:
        raise RequestError(str(exc).split("'")[1] if "'" in str(exc) else "options", str(exc)) from None


class _Opened:
    """The async context manager behind ``interlock.open``."""

    def __init__(
        self, config: Config | str | Path | None, clock: Clock | None, ledger_path: str | Path | None,
        environ: Mapping[str, str] | None,
        verifiers: Mapping[str, Sequence[Verifier]] | None = None,
        gc_tuning: bool = True,
    ) -> None:
        self._gc_tuning = gc_tuning
        self._verifiers = verifiers or {}
        self._config_arg = config
        self._clock = clock or RealClock()
        self._ledger_path = ledger_path
        self._environ = os.environ if environ is None else environ
        self._stack = contextlib.AsyncExitStack()
        self._in_flight = InFlight()

    async def __aenter__(self) -> Door:
        try:
            door = await self._start()
            if self._gc_tuning:
                _gc_tuning.enter()
                self._stack.callback(_gc_tuning.leave)
            return door
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> Door:
        config = _load(self._config_arg)
        clock, stack = self._clock, self._stack
        sim = await self._maybe_simulator(config, stack)
        sim_url = sim.url if sim is not None else None
        ledger_file = self._ledger_path or config.ledger.path
        store = await stack.enter_async_context(SqliteLedgerStore(ledger_file))
        state = await stack.enter_async_context(SqliteStateStore(config.state.path or ledger_file))
        rails = _rails(config, state, clock, self._verifiers)
        mirror = await self._maybe_telemetry(config, stack)  # before the runtime: it flushes after the ledger
        rt = await stack.enter_async_context(Runtime(clock=clock))
        buffer = LedgerBuffer()
        lcfg = config.ledger
        ledger = await rt.spawn(
            lambda: LedgerActor(
                store, buffer, batch_size=lcfg.batch_size, flush_interval_s=lcfg.flush_interval_ms / 1000.0,
                mirror=mirror,
            ),
            name="ledger", shutdown=30.0,
        )
        enabled = {n: p for n, p in config.providers.items() if is_enabled(n, p, self._environ)}
        transition = mirror.breaker_transition if mirror is not None else None
        specs = [self._provider_spec(n, p, sim_url, transition) for n, p in enabled.items()]
        await rt.spawn_supervisor("providers", specs, strategy=Strategy.ONE_FOR_ONE, max_restarts=5, period=10.0)
        providers = {n: rt.lookup(f"provider:{n}") for n in enabled}
        router = await rt.spawn(lambda: RouterActor(config, rails.lease), name="router", shutdown=30.0)
        context = ServingContext(
            config=config, router=router, ledger=ledger, providers=providers.get, clock=clock, rails=rails,
            in_flight=self._in_flight,
        )
        door = Door(context, providers)
        door._ledger, door._buffer, door._sim, door._clock = ledger, buffer, sim, clock
        door._state = state
        return door

    def _provider_spec(
        self, name: str, cfg: ProviderConfig, sim_url: str | None, on_transition: Callable[[str, str, str], None] | None
    ) -> ChildSpec:
        settings = ProviderSettings(
            max_concurrency=cfg.max_concurrency, slot_wait_s=cfg.slot_wait_ms / 1000.0,
            breaker=cfg.breaker, probe=cfg.probe, cooldown=cfg.cooldown,
        )
        environ, clock = self._environ, self._clock

        def start() -> ProviderActor:
            def adapter() -> Any:
                return build_adapter(name, cfg, environ=environ, clock=clock, simulator_url=sim_url)

            return ProviderActor(name, adapter, settings, on_transition)

        return ChildSpec(f"provider:{name}", start, Restart.PERMANENT, shutdown=10.0)

    async def _maybe_telemetry(self, config: Config, stack: contextlib.AsyncExitStack) -> OtelMirror | None:
        """OpenTelemetry export when the standard OTEL_* variables ask for it; flushed when the door closes."""
        mirror = setup_from_env(naming=OtelNaming.from_config(config))
        if mirror is not None:
            stack.push_async_callback(anyio.to_thread.run_sync, mirror.shutdown)
        return mirror

    async def _maybe_simulator(self, config: Config, stack: contextlib.AsyncExitStack) -> Simulator | None:
        if not any(p.kind == "simulator" for p in config.providers.values()):
            return None
        try:
            sim_config = msgspec.convert(config.simulator, SimConfig) if config.simulator else None
        except msgspec.ValidationError as exc:
            raise ConfigError("simulator", str(exc)) from None
        return await stack.enter_async_context(Simulator(sim_config, clock=self._clock))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # Requests run in their callers' tasks: they finish (or are recorded as cut) while
            # the ledger and the providers still run.
            await self._in_flight.drain(_DRAIN_S)
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)


def open(  # the door's name is part of the public contract: interlock.open()
    config: Config | str | Path | None = None,
    *,
    clock: Clock | None = None,
    ledger_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    verifiers: Mapping[str, Sequence[Verifier]] | None = None,
    gc_tuning: bool = True,
) -> _Opened:
    """Open the door: ``async with interlock.open(path) as door``; no path = the embedded default.

    ``verifiers`` adds Python-side verifiers per job (e.g. ``msgspec_verifier(MyType)`` or a
    ``CallableVerifier``) to the ones its config declares. ``gc_tuning`` (on by default) tunes
    Python's garbage collector while a door is open, and restores it when the last door closes:
    see ``GcTuning``. Pass False to leave the collector alone.
    """
    return _Opened(config, clock, ledger_path, environ, verifiers, gc_tuning)


class GcTuning:
    """The collector settings a busy door wants, held while any door is open.

    Requests allocate many short-lived containers (coroutines, futures, frames) that die by
    reference counting; yet with CPython's default young-generation threshold (700) a door
    streaming 64 requests at once ran a collection every few requests, each traversing every
    request in flight, and full collections traversed every object made at start-up: together a
    third of the door's CPU in ``benchmarks/overhead.py``. So while a door is open the objects
    alive at start-up are frozen (``gc.freeze()``) and the young threshold is at least
    ``YOUNG_THRESHOLD``; cyclic garbage is still collected, just in larger, rarer passes.
    """

    YOUNG_THRESHOLD = 10_000

    def __init__(self) -> None:
        self._open = 0
        self._saved: tuple[int, int, int] | None = None

    def enter(self) -> None:
        """A door opened: tune on the first one."""
        self._open += 1
        if self._open == 1:
            young, middle, old = self._saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(young, self.YOUNG_THRESHOLD), middle, old)

    def leave(self) -> None:
        """A door closed: restore the collector after the last one."""
        self._open -= 1
        if self._open == 0 and self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None


_gc_tuning = GcTuning()


def _rails(
    config: Config, state: SqliteStateStore, clock: Clock, verifiers: Mapping[str, Sequence[Verifier]]
) -> RouterRails:
    """Fold the rails once: cache, then per attempt budget and the cross-process slot; verifiers."""
    for job in verifiers:
        if job not in config.jobs:
            raise ConfigError(f"verifiers.{job}", f"unknown job; expected one of {', '.join(sorted(config.jobs))}")
    # A rail with nothing configured would only cost every attempt a call: it is left out.
    rails: list[AttemptRail] = []
    budgets = config.budgets
    if budgets.providers or budgets.tenants:
        rails.append(BudgetRail(state.budgets, budgets, clock))
    limits = config.limits
    lease = LeaseRail(state.leases, limits, clock) if limits.max_in_flight is not None or limits.per_provider else None
    if lease is not None:
        rails.append(lease)
    extra = {job: tuple(specs) for job, specs in verifiers.items()}
    cache = CacheRail(state.cache, clock)
    return RouterRails(cache=cache, attempt=AttemptRails(tuple(rails)), lease=lease, verifiers=extra)


def _load(config: Config | str | Path | None) -> Config:
    if config is None:
        return default_config()
    if isinstance(config, Config):
        return config
    return load_config(config)
