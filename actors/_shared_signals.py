"""Breakers and cooldowns shared per provider across a fleet: a breaker one process opens is open in all.

Each process stays the decision-maker for its own calls: admission reads only its own
``ProviderState`` (no store call per request). What crosses between processes are signals
(``interlock.adapters.stores._signals``), moved by two background tasks that ``share_signals``
runs while a door is open:

- the **publisher** wakes as soon as a provider actor reports its own breaker transition or a
  new cooldown (``ProviderState.share``, a dict write and an event) and writes it to the store;
  only the latest per provider and kind waits, so a flapping breaker never queues up writes;
- the **reader** takes the peers' signals written since its last read and appends each to its
  provider's ``ProviderState.inbox``, which the actor folds in at its next admission: on Redis
  it waits on the stream (a signal arrives within a round trip), on SQLite it reads every
  ``refresh_s`` (``[state] signals_refresh_ms``, 250 ms by default).

When the store cannot be reached, breakers and cooldowns are local to each process (as with no
shared store at all); the outage is logged once when it starts and once when it ends, never per
request, and the latest own signal per provider and kind is written when the store is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Final

import anyio
from msgspec.structs import replace

from interlock._clock import Clock
from interlock.actors._provider_state import ProviderState
from interlock.adapters.stores._signals import ProviderSignal, ProviderSignals, SignalsStoreError
from interlock.adapters.stores._signals_open import open_signals
from interlock.policies._config import Config
from interlock.policies._store_url import StoreUrl

LOG: Final = logging.getLogger("interlock.signals")
_KEEP_S: Final = 86_400.0  # signals whose instants passed a day ago are purged at start
_SEEN_MAX: Final = 10_000  # peers' signals remembered before the day-old ones are forgotten
_FLUSH_S: Final = 2.0  # how long closing waits to write the last own signals


def new_origin() -> str:
    """A name for this process among its peers: host, pid and a random part (two doors of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SharedSignals:
    """One door's link to its fleet's provider signals: the states it shares, what it has seen, what it must tell.

    ``provider_state(name)`` makes the ``ProviderState`` the tree hands to a provider's actors;
    ``run`` moves the signals until cancelled. ``outage`` is the error of a running outage.
    """

    def __init__(self, store: ProviderSignals, clock: Clock, *, refresh_s: float = 0.25, origin: str = "") -> None:
        if not refresh_s > 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s!r}")
        self._store = store
        self._clock = clock
        self.refresh_s = refresh_s
        self.origin = origin or new_origin()
        self.outage: SignalsStoreError | None = None
        self._states: dict[str, ProviderState] = {}
        self._seen: dict[tuple[str, str, str], ProviderSignal] = {}  # latest per provider, kind, origin
        self._pending: dict[tuple[str, str], ProviderSignal] = {}  # own, not yet written
        self._wake = anyio.Event()
        self._cursor = ""

    @property
    def pending(self) -> int:
        """How many own signals wait to be written (more than none only briefly, or while the store is down)."""
        return len(self._pending)

    def provider_state(self, name: str) -> ProviderState:
        """The shared state of provider ``name``: its own signals go to the fleet, the fleet's land in its inbox."""
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = ProviderState(share=self.publish)
            state.inbox.extend(sorted((s for s in self._seen.values() if s.provider == name), key=lambda s: s.at))
        return state

    def publish(self, signal: ProviderSignal) -> None:
        """Take one of this process's own signals; the publisher writes it at once (synchronous: no wait here)."""
        signal = replace(signal, origin=self.origin)
        self._pending[(signal.provider, signal.kind)] = signal
        self._wake.set()

    def deliver(self, signals: Iterable[ProviderSignal]) -> int:
        """Hand peers' signals to their providers' inboxes, each once and oldest first; return how many went."""
        count = 0
        for signal in sorted(signals, key=lambda s: s.at):
            if signal.origin == self.origin:
                continue  # our own, read back
            key = (signal.provider, signal.kind, signal.origin)
            seen = self._seen.get(key)
            if seen is not None and seen.at >= signal.at:
                continue  # already had it (a Redis snapshot and its stream may both hold it)
            self._seen[key] = signal
            state = self._states.get(signal.provider)
            if state is not None:
                state.inbox.append(signal)
                count += 1
        return count

    async def run(self) -> None:
        """Publish and read until cancelled; purge day-old signals first."""
        with contextlib.suppress(SignalsStoreError):
            await self._store.purge(self._clock.wall() - _KEEP_S)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._publish_forever)
            tg.start_soon(self._read_forever)

    async def flush(self) -> None:
        """Write what waits to be told (as the door closes), for at most a couple of seconds."""
        with anyio.move_on_after(_FLUSH_S, shield=True):
            await self._publish_pending()

    async def read_once(self, *, wait: bool = True) -> int:
        """One read of the peers' signals (waiting for one where the store pushes); return how many were new."""
        wait_s = self.refresh_s if self._store.pushes and wait else 0.0
        try:
            signals, self._cursor = await self._store.changes(self._cursor, wait_s)
        except SignalsStoreError as exc:
            self._down(exc)
            return 0
        self._up()
        if len(self._seen) > _SEEN_MAX:
            self._forget(self._clock.wall() - _KEEP_S)
        return self.deliver(signals)

    def _forget(self, before: float) -> None:
        """Drop what was heard of peers whose every instant is older than ``before`` (restarted peers' old names)."""
        self._seen = {k: s for k, s in self._seen.items() if s.at >= before or s.until >= before}

    async def _read_forever(self) -> None:
        while True:
            await self.read_once()
            if self.outage is not None or not self._store.pushes:
                await self._clock.sleep(self.refresh_s)

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if not await self._publish_pending():
                await self._clock.sleep(self.refresh_s)  # the store is down: try again in a while
                self._wake.set()

    async def _publish_pending(self) -> bool:
        """Write every pending own signal; False when the store failed (what is left stays pending)."""
        while self._pending:
            key, signal = next(iter(self._pending.items()))
            try:
                await self._store.publish(signal)
            except SignalsStoreError as exc:
                self._down(exc)
                return False
            self._up()
            if self._pending.get(key) is signal:  # a newer one may have come meanwhile: it goes next
                del self._pending[key]
        return True

    def _down(self, exc: SignalsStoreError) -> None:
        if self.outage is None:
            LOG.warning(
                "provider signals store %s unreachable (%s): breakers and cooldowns are this process's own "
                "until it answers again", self._store.shown, exc.problem,
            )  # fmt: skip
        self.outage = exc

    def _up(self) -> None:
        if self.outage is not None:
            LOG.warning("provider signals store %s is back: breakers and cooldowns are shared again", self._store.shown)
            self.outage = None


@contextlib.asynccontextmanager
async def share_signals(
    where: StoreUrl, clock: Clock, *, refresh_s: float = 0.25, key_prefix: str = "interlock", timeout_s: float = 0.5
) -> AsyncIterator[SharedSignals]:
    """Open the signals store at ``where`` (the state store's address) and move signals for the block.

    Enter it before the runtime (so it stops after the provider actors) and make each
    provider's state with ``provider_state``. On exit the last own signals are written, then
    the tasks stop and the store closes.
    """
    async with open_signals(where, key_prefix=key_prefix, timeout_s=timeout_s) as store:
        shared = SharedSignals(store, clock, refresh_s=refresh_s)
        # What the fleet knows now is read before any provider state is made: a process started
        # while a peer's breaker is open starts with it open, not one refresh later.
        await shared.read_once(wait=False)
        failed: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(shared.run)
            try:
                yield shared
            except BaseException as exc:
                failed = exc  # raised below, past the task group, so the caller gets it as it was, not in a group
            finally:
                await shared.flush()
                tg.cancel_scope.cancel()
        if failed is not None:
            raise failed


def fleet_signals(config: Config, where: StoreUrl, clock: Clock) -> AbstractAsyncContextManager[SharedSignals]:
    """``share_signals`` with the ``[state]`` settings of ``config`` (refresh, Redis key prefix and timeout)."""
    state = config.state
    return share_signals(
        where, clock, refresh_s=state.signals_refresh_ms / 1000.0, key_prefix=state.key_prefix,
        timeout_s=state.timeout_ms / 1000.0,
    )  # fmt: skip
