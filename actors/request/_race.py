"""The first-token race of a hedging request: first event wins, late first tokens hedge, losers are cancelled.

The run (``interlock.actors.request._run``) owns the attempts and decides failover; the race
only sequences them: each attempt's first read runs in a helper task that reports a
``FirstEvent`` or an ``AttemptFailed``, and a timer reports ``HedgeDue`` after the hedge delay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from interlock._clock import Clock
from interlock._errors import ErrorClass, InterlockError, ProviderError
from interlock._types import StreamEvent
from interlock.actors.request._attempt import Attempt


class HedgePolicy:
    """What the run may do about a late first token: the delay, and whether the budget allows a hedge."""

    def __init__(self, delay_s: float | None, max_hedges: int, spend: Callable[[], Awaitable[bool]]) -> None:
        self.delay_s = delay_s
        self.max_hedges = max_hedges
        self.spend = spend


# -- the first-token race: what its helper tasks tell the run -----------------------------------


class FirstEvent(msgspec.Struct, frozen=True):
    """``attempt`` produced its first event: it wins the race."""

    attempt: Attempt
    event: StreamEvent


class AttemptFailed(msgspec.Struct, frozen=True):
    """``attempt`` failed before its first event."""

    attempt: Attempt
    error: InterlockError


class HedgeDue(msgspec.Struct, frozen=True):
    """The hedge delay passed without a first token."""


RaceMsg = FirstEvent | AttemptFailed | HedgeDue
_HEDGE_DUE = HedgeDue()


class RaceWalk(Protocol):
    """What the race needs from the run that owns the attempts."""

    @property
    def has_pending(self) -> bool:
        """Whether an untried candidate remains."""
        ...

    async def start_next(self, *, hedge: bool) -> Attempt | None:
        """Start the next candidate that admits the call (None: the chain is spent)."""
        ...

    async def read_first(self, attempt: Attempt) -> StreamEvent:
        """The attempt's first event within its deadlines, or its failure raised."""
        ...

    def fail(self, attempt: Attempt, error: InterlockError) -> None:
        """Record that ``attempt`` failed before its first event."""
        ...

    def cancel_losers(self, losers: Iterable[Attempt], reason: str) -> None:
        """Cancel the attempts that lost."""
        ...


async def race_first_token(
    walk: RaceWalk, hedge: HedgePolicy, clock: Clock
) -> tuple[tuple[Attempt, StreamEvent] | None, int]:
    """The winner and its first event (None when every candidate failed), and how many hedges started."""
    send, recv = anyio.create_memory_object_stream[RaceMsg](16)
    async with send, recv, anyio.create_task_group() as tg:
        race = _Race(walk, hedge, clock, tg, send)
        won = await race.run(recv)
        tg.cancel_scope.cancel()
    return won, race.hedges


class _Race:
    """The first-token race of one ``start`` with hedging: each attempt's first read runs in a helper task.

    The first attempt to produce an event wins and the others are cancelled; a failure starts
    the next candidate when nothing else is in flight; a due hedge starts one more candidate in
    parallel while the hedge budget allows.
    """

    def __init__(
        self, walk: RaceWalk, hedge: HedgePolicy, clock: Clock, tg: TaskGroup, send: MemoryObjectSendStream[RaceMsg]
    ) -> None:
        self._walk = walk
        self._hedge = hedge
        self._clock = clock
        self._tg = tg
        self._send = send
        self._active: set[Attempt] = set()
        self.hedges = 0
        self._timer = anyio.CancelScope()

    async def run(self, recv: MemoryObjectReceiveStream[RaceMsg]) -> tuple[Attempt, StreamEvent] | None:
        """The winner and its first event, or None when every candidate failed."""
        await self._launch(hedge=False, arm=True)
        while self._active:
            match await recv.receive():
                case FirstEvent(attempt=attempt, event=event):
                    self._walk.cancel_losers(self._active - {attempt}, "hedge_lost")
                    return attempt, event
                case AttemptFailed(attempt=attempt, error=error):
                    self._active.discard(attempt)
                    self._walk.fail(attempt, error)
                    if not self._active:
                        self._timer.cancel()
                        await self._launch(hedge=False, arm=True)
                case HedgeDue():
                    await self._maybe_hedge()
        return None

    async def _maybe_hedge(self) -> None:
        if self.hedges >= self._hedge.max_hedges or not self._walk.has_pending or not await self._hedge.spend():
            return
        if await self._launch(hedge=True, arm=False):
            self.hedges += 1

    async def _launch(self, *, hedge: bool, arm: bool) -> bool:
        """Start the next answering candidate and a task that reads its first event (and the hedge timer)."""
        attempt = await self._walk.start_next(hedge=hedge)
        if attempt is None:
            return False
        self._active.add(attempt)
        self._tg.start_soon(self._read_first, attempt, self._send.clone())
        if arm:
            self._timer = anyio.CancelScope()
            delay = self._hedge.delay_s
            assert delay is not None  # a race is run only for a hedging policy
            self._tg.start_soon(self._hedge_timer, self._timer, self._send.clone(), delay)
        return True

    async def _read_first(self, attempt: Attempt, send: MemoryObjectSendStream[RaceMsg]) -> None:
        async with send:
            try:
                event = await self._walk.read_first(attempt)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # this attempt lost the race and its stream was closed under it
            except InterlockError as exc:
                await send.send(AttemptFailed(attempt, exc))
            else:
                await send.send(FirstEvent(attempt, event))

    async def _hedge_timer(self, scope: anyio.CancelScope, send: MemoryObjectSendStream[RaceMsg], delay: float) -> None:
        async with send:
            with scope:
                for _ in range(self._hedge.max_hedges):
                    await self._clock.sleep(delay)
                    await send.send(_HEDGE_DUE)


def empty_stream_error(attempt: Attempt) -> ProviderError:
    """The failure of an attempt whose stream ended before any event."""
    return ProviderError(
        ErrorClass.SERVER_ERROR, attempt.candidate.provider, model=attempt.candidate.name, detail="empty stream"
    )


def late_first_token(attempt: Attempt, which: str, limit_ms: int | None) -> ProviderError:
    """The failure of an attempt whose first token did not come within the ``which`` deadline."""
    return ProviderError(
        ErrorClass.TIMEOUT, attempt.candidate.provider, model=attempt.candidate.name,
        detail=f"no first token within the {which} deadline ({limit_ms} ms)",
    )
