"""An actor's mailbox: a bounded FIFO with one reader (the actor's loop) and any number of writers.

Built on a deque and event-loop futures rather than an anyio memory stream, which pays for a
general multi-reader stream (and a scheduling checkpoint per send): a message costs an append
and, only when the actor sleeps, one wake-up. Writers that find it full wait in line for room,
which is how producers feel backpressure; closing it releases every waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final, final


class MailboxClosed(Exception):
    """The mailbox was closed: no more messages go in, and none are left to take."""


EMPTY: Final = object()  # what ``take_nowait`` returns when nothing is queued


@final
class Mailbox:
    """A bounded message queue; ``put`` waits for room, ``take`` waits for a message."""

    __slots__ = ("_closed", "_items", "_reader", "_writers", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[Any] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._writers: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def queued(self) -> int:
        """Messages waiting to be taken."""
        return len(self._items)

    @property
    def writers_waiting(self) -> int:
        """Writers waiting for room."""
        return sum(1 for w in self._writers if not w.done())

    def put_nowait(self, item: object) -> bool:
        """Queue ``item``; False when full. Raises ``MailboxClosed`` once closed."""
        if self._closed:
            raise MailboxClosed
        if len(self._items) >= self.capacity:
            return False
        self._items.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)
        return True

    async def put(self, item: object) -> None:
        """Queue ``item``, waiting in line while the mailbox is full."""
        while not self.put_nowait(item):
            waiter = asyncio.get_running_loop().create_future()
            self._writers.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled while woken: pass the room on, or it would sit unused.
                if waiter.done() and not waiter.cancelled():
                    self._wake_writer()
                raise

    def take_nowait(self) -> object:
        """The oldest message, or ``EMPTY``; raises ``MailboxClosed`` when closed and drained."""
        items = self._items
        if items:
            item = items.popleft()
            if self._writers:
                self._wake_writer()
            return item
        if self._closed:
            raise MailboxClosed
        return EMPTY

    async def take(self) -> object:
        """The oldest message, waiting for one; raises ``MailboxClosed`` when closed and drained."""
        while True:
            item = self.take_nowait()
            if item is not EMPTY:
                return item
            reader = self._reader = asyncio.get_running_loop().create_future()
            try:
                await reader
            finally:
                if self._reader is reader:
                    self._reader = None

    def close(self) -> None:
        """No more messages go in; the reader drains what is queued, then sees ``MailboxClosed``."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)
        while self._writers:
            self._wake_writer()

    def _wake_writer(self) -> None:
        while self._writers:
            writer = self._writers.popleft()
            if not writer.done():
                writer.set_result(None)
                return
