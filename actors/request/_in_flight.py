"""The requests a door is serving, so that closing the door waits for them and records the stragglers."""

from __future__ import annotations

from typing import Protocol

import anyio


class Live(Protocol):
    """A request being served: whether its caller holds it parked at a ``yield``, and how to cut it."""

    @property
    def parked(self) -> bool:
        """True while suspended at a ``yield``: the caller holds the stream and has not asked for more."""
        ...

    async def abandon(self) -> None:
        """The door is closing under the request: cancel its calls and record it now."""
        ...


class InFlight:
    """The requests being served, so that closing the door waits for them and records stragglers."""

    def __init__(self) -> None:
        self._live: set[Live] = set()
        self._idle: anyio.Event | None = None  # made only when a close waits

    def __len__(self) -> int:
        return len(self._live)

    def add(self, serving: Live) -> None:
        self._live.add(serving)

    def discard(self, serving: Live) -> None:
        self._live.discard(serving)
        if not self._live and self._idle is not None:
            self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for requests being driven; record and cancel the rest.

        A request parked at a ``yield`` (its caller holds the stream but does not read it) cannot
        finish by itself: it is recorded as cut by shutdown at once rather than waited for.
        """
        with anyio.move_on_after(timeout):
            while any(not s.parked for s in self._live):
                self._idle = anyio.Event()
                with anyio.move_on_after(0.05):  # a driven request may park meanwhile
                    await self._idle.wait()
        for serving in list(self._live):
            await serving.abandon()
