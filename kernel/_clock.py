"""Clocks: the one place interlock reads time, so tests can move it by hand.

``RealClock`` reads the monotonic clock for durations and the wall clock for timestamps.
``FakeClock`` only moves when a test calls ``advance``; sleepers and timers fire in deadline order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, final, runtime_checkable

import anyio


class Timer(Protocol):
    """A pending ``call_at``; ``cancel`` stops it from firing (a no-op once it fired)."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """Time as interlock sees it: ``now`` for durations, ``wall`` for timestamps."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch, for records and reports."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` (from the event loop) once ``now()`` reaches ``when``.

        A deadline without a sleeping task: a stream read waits on its data and on this timer
        at once, so a deadline per token costs a timer, not a task or a cancel scope.
        """
        ...


@final
class RealClock:
    """The clock of the machine."""

    __slots__ = ()

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def wall(self) -> float:
        """Epoch seconds."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await anyio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """An event-loop timer ``when - now()`` seconds from now."""
        return asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), callback)


class _FakeTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@final
class FakeClock:
    """A clock that stands still until ``advance``; sleepers wake when their deadline passes."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The fake monotonic time."""
        return self._now

    def wall(self) -> float:
        """The fake epoch time, moving with ``now``."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until a test advances the clock past now + ``seconds``."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        timer = self.call_at(self._now + seconds, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` when ``advance`` moves the clock to ``when`` (at once if it is past)."""
        timer = _FakeTimer(callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(callback)
            timer.cancelled = True
            return timer
        heapq.heappush(self._sleepers, (when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward and fire every sleeper and timer whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            timer = heapq.heappop(self._sleepers)[2]
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    @property
    def sleepers(self) -> int:
        """How many sleeps and timers are pending (fired or cancelled ones excluded)."""
        return sum(1 for _, _, t in self._sleepers if not t.cancelled)

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending wake-up time, if any."""
        live = [when for when, _, t in self._sleepers if not t.cancelled]
        return min(live) if live else None
