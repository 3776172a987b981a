"""The tree: the composition root behind ``interlock.open``, and the collector tuning it holds.

Opening a door builds, in order, what the door stands on and closing it tears it down in
reverse: the loopback simulator (when the config has simulator providers), the ledger and state
stores, the OpenTelemetry mirror, then the runtime with its actors — the ledger first (it stops
last, after committing every record), the provider supervisor with one actor per enabled
provider, then the router. The rails are folded once here, and the lease renewer runs here,
not in any actor: it belongs to the process, which holds the leases.

Each provider's ``ProviderState`` (breaker, probe health, cooldown) is made here, once, and
held by its child spec, so it outlives every restart of its actor and of the provider
supervisor; its breaker transitions go to the ledger and the mirror through one ``BreakerLog``.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

import anyio
import msgspec

from interlock._actor import ActorRef
from interlock._clock import Clock, RealClock
from interlock._errors import ConfigError
from interlock._runtime import Runtime
from interlock._supervisor import ChildSpec, Restart, Strategy
from interlock.actors._breaker_log import BreakerLog
from interlock.actors._ledger_actor import LedgerActor, LedgerBuffer, LedgerMsg
from interlock.actors._provider_actor import ProviderActor, ProviderMsg, ProviderSettings
from interlock.actors._router_actor import RouterActor
from interlock.actors._shared_signals import SharedSignals, fleet_signals
from interlock.actors._wiring import build_adapter, is_enabled
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.rails._cache import CacheRail
from interlock.actors.rails._chain import AttemptRail, AttemptRails
from interlock.actors.rails._lease import LeaseRail
from interlock.actors.request._in_flight import InFlight
from interlock.actors.request._serving import RequestRails, ServingContext
from interlock.adapters._config_file import default_config, load_config
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.adapters.simulator._server import SimConfig, Simulator
from interlock.adapters.stores._ledger_open import open_ledger_store
from interlock.adapters.stores._state_open import open_state_store
from interlock.adapters.stores._state_store import StateStore
from interlock.adapters.telemetry._otel import OtelMirror, OtelNaming, setup_from_env
from interlock.policies._config import Config, ProviderConfig
from interlock.policies._store_url import (
    LEDGER_ENV,
    LEDGER_KINDS,
    STATE_ENV,
    STATE_KINDS,
    StoreUrl,
    parse_store_url,
    resolve_store_url,
)
from interlock.policies._verify import Verifier

DRAIN_S = 30.0  # how long closing the door waits for requests in flight
D = TypeVar("D")


@dataclass(frozen=True, kw_only=True)
class TreeParts:
    """What a door is handed when its tree is up: every part it talks to, made before the door."""

    context: ServingContext
    providers: dict[str, ActorRef[ProviderMsg]]
    ledger: ActorRef[LedgerMsg]
    buffer: LedgerBuffer
    simulator: Simulator | None
    state: StateStore
    environ: Mapping[str, str]  # where provider keys were read (a batch client reads them too)


@dataclass(frozen=True, kw_only=True)
class TreeOptions:
    """What ``interlock.open`` was asked for, decoded once."""

    config: Config | str | Path | None
    clock: Clock
    ledger_path: str | Path | None
    environ: Mapping[str, str]
    verifiers: Mapping[str, Sequence[Verifier]]
    gc_tuning: bool


async def build_tree(options: TreeOptions, stack: contextlib.AsyncExitStack, in_flight: InFlight) -> TreeParts:
    """Start every part in order on ``stack`` (which stops them in reverse) and return them."""
    config = load(options.config)
    clock = options.clock
    sim = await _maybe_simulator(config, clock, stack)
    ledger_at, state_at = store_urls(config, options.ledger_path, options.environ)
    store = await stack.enter_async_context(open_ledger_store(ledger_at, spool=f"{config.ledger.path}-spool"))
    state = await stack.enter_async_context(open_state_store(state_at, config.state))
    signals = await stack.enter_async_context(fleet_signals(config, state_at, clock))  # stops after the providers
    rails = fold_rails(config, state, clock, options.verifiers)
    mirror = await _maybe_telemetry(config, stack)  # before the runtime: it flushes after the ledger
    rt = await stack.enter_async_context(Runtime(clock=clock))
    buffer = LedgerBuffer()
    lcfg = config.ledger
    ledger = await rt.spawn(
        lambda: LedgerActor(
            store, buffer, batch_size=lcfg.batch_size, flush_interval_s=lcfg.flush_interval_ms / 1000.0, mirror=mirror
        ),
        name="ledger", shutdown=30.0,
    )
    enabled = {n: p for n, p in config.providers.items() if is_enabled(n, p, options.environ)}
    transitions = BreakerLog(ledger, mirror)
    stack.push_async_callback(transitions.flush)  # runs before the runtime stops the ledger
    sim_url = sim.url if sim is not None else None
    specs = [_provider_spec(n, p, options, sim_url, transitions, signals) for n, p in enabled.items()]
    await rt.spawn_supervisor("providers", specs, strategy=Strategy.ONE_FOR_ONE, max_restarts=5, period=10.0)
    providers: dict[str, ActorRef[ProviderMsg]] = {n: rt.lookup(f"provider:{n}") for n in enabled}
    router = await rt.spawn(lambda: RouterActor(config), name="router", shutdown=30.0)
    if rails.lease is not None:
        await _renew_leases(rails.lease, stack)
    context = ServingContext(
        config=config, router=router, ledger=ledger, providers=providers.get, clock=clock, rails=rails,
        in_flight=in_flight,
    )
    return TreeParts(
        context=context, providers=providers, ledger=ledger, buffer=buffer, simulator=sim, state=state,
        environ=options.environ,
    )


def store_urls(config: Config, ledger_path: str | Path | None, environ: Mapping[str, str]) -> tuple[StoreUrl, StoreUrl]:
    """Where the ledger and the state store are: ``interlock.open(ledger=...)``, then the environment, then the config.

    With no state store named, the state lives in the ledger's SQLite file (or, when the ledger
    is a server, in the file ``[ledger] path`` names): one file is the embedded default.
    """
    if ledger_path is not None:
        ledger = parse_store_url(str(ledger_path), key="ledger", allowed=LEDGER_KINDS)
    else:
        found = resolve_store_url(
            configured_url=config.ledger.url, configured_path=config.ledger.path, environ=environ,
            env=LEDGER_ENV, key="ledger.url", allowed=LEDGER_KINDS,
        )  # fmt: skip
        ledger = found or parse_store_url(config.ledger.path, key="ledger.path", allowed=("sqlite",))
    local = ledger.path or config.ledger.path
    state = resolve_store_url(
        configured_url=config.state.url, configured_path=config.state.path, environ=environ,
        env=STATE_ENV, key="state.url", allowed=STATE_KINDS,
    )  # fmt: skip
    return ledger, state if state is not None else parse_store_url(local, key="state.path", allowed=("sqlite",))


def load(config: Config | str | Path | None) -> Config:
    """The configuration in force: the embedded default, a decoded ``Config``, or a TOML file's."""
    if config is None:
        return default_config()
    if isinstance(config, Config):
        return config
    return load_config(config)


def fold_rails(
    config: Config, state: StateStore, clock: Clock, verifiers: Mapping[str, Sequence[Verifier]]
) -> RequestRails:
    """Fold the rails once: cache, then per attempt budget and the cross-process slot; verifiers."""
    for job in verifiers:
        if job not in config.jobs:
            raise ConfigError(f"verifiers.{job}", f"unknown job; expected one of {', '.join(sorted(config.jobs))}")
    # A rail with nothing configured would only cost every attempt a call: it is left out.
    rails: list[AttemptRail] = []
    if BudgetRail.wanted(config):  # a provider's or tenant's budget, or a model's daily token cap
        rails.append(BudgetRail(state.budgets, config.budgets, clock, on_outage=config.state.on_state_outage))
    limits = config.limits
    lease_outage = config.state.on_lease_outage or config.state.on_state_outage
    wanted = limits.max_in_flight is not None or limits.per_provider
    lease = LeaseRail(state.leases, limits, clock, on_outage=lease_outage) if wanted else None
    if lease is not None:
        rails.append(lease)
    extra = {job: tuple(specs) for job, specs in verifiers.items()}
    cache = CacheRail(state.cache, clock)
    return RequestRails(cache=cache, attempt=AttemptRails(tuple(rails)), lease=lease, verifiers=extra)


async def _renew_leases(lease: LeaseRail, stack: contextlib.AsyncExitStack) -> None:
    """Renew this process's machine-wide slots while the door is open; stopped before the stores close."""
    tg = await stack.enter_async_context(anyio.create_task_group())
    tg.start_soon(lease.renew_forever)
    stack.callback(tg.cancel_scope.cancel)


def _provider_spec(
    name: str, cfg: ProviderConfig, options: TreeOptions, sim_url: str | None,
    on_transition: BreakerLog, signals: SharedSignals,
) -> ChildSpec:
    settings = ProviderSettings(
        max_concurrency=cfg.max_concurrency, slot_wait_s=cfg.slot_wait_ms / 1000.0,
        breaker=cfg.breaker, probe=cfg.probe, cooldown=cfg.cooldown,
    )
    environ, clock = options.environ, options.clock
    state = signals.provider_state(name)  # one per provider, outside every incarnation; shared with the fleet

    def start() -> ProviderActor:
        def adapter() -> ProviderAdapter:
            return build_adapter(name, cfg, environ=environ, clock=clock, simulator_url=sim_url)

        return ProviderActor(name, adapter, settings, on_transition, state)

    return ChildSpec(f"provider:{name}", start, Restart.PERMANENT, shutdown=10.0)


async def _maybe_telemetry(config: Config, stack: contextlib.AsyncExitStack) -> OtelMirror | None:
    """OpenTelemetry export when the standard OTEL_* variables ask for it; flushed when the door closes."""
    mirror = setup_from_env(naming=OtelNaming.from_config(config))
    if mirror is not None:
        stack.push_async_callback(anyio.to_thread.run_sync, mirror.shutdown)
    return mirror


async def _maybe_simulator(config: Config, clock: Clock, stack: contextlib.AsyncExitStack) -> Simulator | None:
    if not any(p.kind == "simulator" for p in config.providers.values()):
        return None
    try:
        sim_config = msgspec.convert(config.simulator, SimConfig) if config.simulator else None
    except msgspec.ValidationError as exc:
        raise ConfigError("simulator", str(exc)) from None
    return await stack.enter_async_context(Simulator(sim_config, clock=clock))


class Opened(Generic[D]):
    """The async context manager behind ``interlock.open``: the tree up on enter, down on exit."""

    def __init__(self, options: TreeOptions, make_door: Callable[[TreeParts], D]) -> None:
        self._options = options
        self._make_door = make_door
        self._stack = contextlib.AsyncExitStack()
        self._in_flight = InFlight()

    async def enter(self) -> D:
        """Build the tree and the door on it; anything started is stopped again if a later step fails."""
        try:
            door = self._make_door(await build_tree(self._options, self._stack, self._in_flight))
            if self._options.gc_tuning:
                GC_TUNING.enter()
                self._stack.callback(GC_TUNING.leave)
            return door
        except BaseException:
            await self._stack.aclose()
            raise

    async def exit(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Drain the requests in flight, then stop every part in reverse order."""
        try:
            # Requests run in their callers' tasks: they finish (or are recorded as cut) while
            # the ledger and the providers still run.
            await self._in_flight.drain(DRAIN_S)
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)


def tree_options(
    config: Config | str | Path | None, clock: Clock | None, ledger_path: str | Path | None,
    environ: Mapping[str, str] | None, verifiers: Mapping[str, Sequence[Verifier]] | None, gc_tuning: bool,
) -> TreeOptions:
    """``interlock.open``'s arguments with their defaults filled in."""
    return TreeOptions(
        config=config, clock=clock or RealClock(), ledger_path=ledger_path,
        environ=os.environ if environ is None else environ, verifiers=verifiers or {}, gc_tuning=gc_tuning,
    )


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


GC_TUNING = GcTuning()  # process-wide, as the collector is: one count of open doors
