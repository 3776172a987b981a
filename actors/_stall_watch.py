"""One watcher for every streaming attempt's stall deadlines, instead of a timer task per request.

An attempt is stalled when no event arrived for its job's inter-token deadline, or when it ran
past its total deadline. The watcher sleeps on the injected clock until the nearest deadline,
cancels the scope of each stalled attempt, and records which deadline it missed.
"""

from __future__ import annotations

import itertools
import math

import anyio

from interlock._clock import Clock
from interlock.actors._attempt import Attempt


class Watched:
    """One attempt under watch; ``stalled`` names the deadline it missed, if any."""

    __slots__ = ("attempt", "deadline", "gap", "scope", "stalled")

    def __init__(self, attempt: Attempt, scope: anyio.CancelScope, gap: float, deadline: float) -> None:
        self.attempt = attempt
        self.scope = scope
        self.gap = gap
        self.deadline = deadline
        self.stalled: str | None = None

    def due(self) -> float:
        return min(self.attempt.last_event + self.gap, self.deadline)


class StallWatch:
    """Watches every registered attempt from one task (``run_forever``, in the router's task group)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watched: dict[int, Watched] = {}
        self._keys = itertools.count()
        self._changed = anyio.Event()
        self._next_check = math.inf

    def watch(self, attempt: Attempt, scope: anyio.CancelScope, gap: float, deadline: float) -> tuple[int, Watched]:
        """Start watching ``attempt``; its ``scope`` is cancelled when it stalls."""
        key = next(self._keys)
        watched = Watched(attempt, scope, gap, deadline)
        self._watched[key] = watched
        if watched.due() < self._next_check:
            self._changed.set()  # an earlier deadline than the watcher is sleeping towards
        return key, watched

    def unwatch(self, key: int) -> None:
        """Stop watching (the attempt finished or failed)."""
        self._watched.pop(key, None)

    async def run_forever(self) -> None:
        """Cancel stalled attempts as their deadlines pass."""
        while True:
            now = self._clock.now()
            nearest = math.inf
            for key, watched in list(self._watched.items()):
                due = watched.due()
                if now >= due:
                    watched.stalled = "total" if now >= watched.deadline else "inter_token"
                    watched.scope.cancel()
                    del self._watched[key]
                else:
                    nearest = min(nearest, due)
            self._changed = anyio.Event()
            self._next_check = nearest
            async with anyio.create_task_group() as tg:
                if nearest < math.inf:
                    tg.start_soon(self._wake_at, nearest - now)
                await self._changed.wait()
                tg.cancel_scope.cancel()

    async def _wake_at(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._changed.set()
