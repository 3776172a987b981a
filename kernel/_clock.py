"""Clocks: the one place interlock reads time, so tests can move it by hand.

``RealClock`` reads the monotonic clock for durations and the wall clock for timestamps.
``FakeClock`` only moves when a test calls ``advance``; sleepers wake in deadline order.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol, final, runtime_checkable

import anyio


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


@final
class FakeClock:
    """A clock that stands still until ``advance``; sleepers wake when their deadline passes."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
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
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock (waits already woken excluded)."""
        return sum(1 for _, _, e in self._sleepers if not e.is_set())

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending wake-up time, if any."""
        return self._sleepers[0][0] if self._sleepers else None
