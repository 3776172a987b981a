"""Reply slots and event streams: how answers travel back from an actor to its caller.

An ``ask`` waits on a one-shot ``Reply``; an ``ask_stream`` reads an ``EventStream`` fed by the
actor through an ``EventSink``. A token crosses exactly one channel: the sink appends the event
object itself to a bounded queue and wakes the reader only when it is waiting, and only a
failure is wrapped, so the hot path allocates nothing per token. The reader takes buffered
events without a trip through the event loop, and may wait with a deadline on the runtime's
clock (a timer, not a cancel scope per read): that is how a stream that goes quiet is caught.

Both are built on the event loop's futures rather than anyio's memory streams: a memory stream
pays a scheduling checkpoint on every send and receive, which was most of what a hop cost.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._errors import ActorStopped, ConsumerGone, InterlockError

if TYPE_CHECKING:
    from ._clock import Clock

T = TypeVar("T")
E = TypeVar("E")


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


# A wait's deadline shares one loop timer with every other wait whose deadline falls in the same
# slot, so a timed wait costs a set insert and a discard rather than a timer of its own: a
# ``call_later`` and its ``cancel`` cost about 3 us, a tenth of a request's ledger work when every
# request waits for its commit (measured). A deadline fires up to one slot late.
DEADLINE_SLOT_S = 0.01


@final
class _Deadlines:
    """One event loop's shared deadline timers: waiters by the slot their deadline falls in."""

    __slots__ = ("loop", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, set[asyncio.Future[None]]] = {}

    def add(self, waiter: asyncio.Future[None], timeout: float) -> int:
        """Wake ``waiter`` once ``timeout`` seconds have passed (up to a slot later); its slot's key."""
        key = math.ceil((self.loop.time() + max(timeout, 0.0)) / DEADLINE_SLOT_S)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = set()
            self.loop.call_at(key * DEADLINE_SLOT_S, self._fire, key)
        slot.add(waiter)
        return key

    def discard(self, key: int, waiter: asyncio.Future[None]) -> None:
        """``waiter`` no longer needs waking (it was answered first)."""
        slot = self.slots.get(key)
        if slot is not None:
            slot.discard(waiter)

    def _fire(self, key: int) -> None:
        for waiter in self.slots.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)


_deadlines: _Deadlines | None = None  # the running loop's (a new loop gets its own)


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _deadlines
    found = _deadlines
    if found is None or found.loop is not loop:
        found = _deadlines = _Deadlines(loop)
    return found


@final
class Reply(Generic[T]):
    """A one-shot answer slot; the first ``set`` or ``fail`` wins, later ones are ignored."""

    __slots__ = ("_done", "_error", "_value", "_waiter")

    def __init__(self) -> None:
        self._done = False
        self._value: T  # no value until set() stores one; read only once done without an error
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        """True once answered."""
        return self._done

    def set(self, value: T) -> None:
        """Answer with ``value``."""
        if not self._done:
            self._value, self._done = value, True
            _wake(self._waiter)

    def fail(self, error: BaseException) -> None:
        """Answer with an error, raised at the asker."""
        if not self._done:
            self._error, self._done = error, True
            _wake(self._waiter)

    async def wait(self, timeout: float | None = None) -> T:
        """Wait for the answer; raises the error it was failed with, or ``TimeoutError``."""
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            deadlines = None if timeout is None or timeout == math.inf else _deadlines_of(loop)
            key = 0 if deadlines is None else deadlines.add(waiter, timeout or 0.0)
            try:
                await waiter
            finally:
                self._waiter = None
                if deadlines is not None:
                    deadlines.discard(key, waiter)
            if not self._done:
                raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class _Channel:
    """The queue between one sink and one stream, with the future each side may be waiting on."""

    __slots__ = ("capacity", "closed", "error", "events", "reader", "reader_gone", "writer")

    def __init__(self, capacity: int) -> None:
        self.events: deque[Any] = deque()
        self.capacity = max(1, capacity)
        self.closed = False  # the writer ended the stream (error holds its failure, if any)
        self.error: BaseException | None = None
        self.reader_gone = False
        self.reader: asyncio.Future[None] | None = None  # the reader waits for an event
        self.writer: asyncio.Future[None] | None = None  # the writer waits for room


@final
class EventSink(Generic[E]):
    """The writer's end of an event stream; use ``async with sink:`` so every exit is reported.

    Leaving the block normally ends the stream; leaving it with an error hands that error to
    the reader. ``send`` raises ``ConsumerGone`` when the reader has gone away.
    """

    __slots__ = ("_channel", "_owner")

    def __init__(self, channel: _Channel, owner: set[EventSink[Any]] | None = None) -> None:
        self._channel = channel
        self._owner = owner
        if owner is not None:
            owner.add(self)

    async def send(self, event: E) -> None:
        """Send one event; waits while the reader's buffer is full (backpressure)."""
        while not self.send_nowait(event):
            await self._room()

    def send_nowait(self, event: E) -> bool:
        """Send without waiting; False when the buffer is full (the caller then awaits ``send``)."""
        channel = self._channel
        if channel.reader_gone or channel.closed:
            raise ConsumerGone()
        if len(channel.events) >= channel.capacity:
            return False
        channel.events.append(event)
        reader = channel.reader
        if reader is not None:  # inline _wake: this runs once per token
            channel.reader = None
            if not reader.done():
                reader.set_result(None)
        return True

    def send_batch_nowait(self, events: list[E]) -> bool:
        """Send several events at once (one wake-up); False when they do not fit.

        A batch larger than the whole buffer fits an empty buffer, so that it cannot wait forever.
        """
        channel = self._channel
        if channel.reader_gone or channel.closed:
            raise ConsumerGone()
        queued = len(channel.events)
        if queued and queued + len(events) > channel.capacity:
            return False
        channel.events.extend(events)
        _wake(channel.reader)
        channel.reader = None
        return True

    async def send_batch(self, events: list[E]) -> None:
        """Send several events at once; waits while the reader's buffer is too full for them."""
        while not self.send_batch_nowait(events):
            await self._room()

    async def _room(self) -> None:
        """Wait until the reader takes something (or goes away)."""
        channel = self._channel
        waiter = channel.writer = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            if channel.writer is waiter:
                channel.writer = None

    @property
    def closed(self) -> bool:
        """True once the stream was ended, failed, or abandoned by its reader."""
        return self._channel.closed or self._channel.reader_gone

    def close(self) -> None:
        """End the stream successfully."""
        self._release()
        self._channel.closed = True
        _wake(self._channel.reader)

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error``, which the reader raises after the events before it."""
        self._release()
        channel = self._channel
        if channel.closed:
            return
        channel.closed = True
        channel.error = error
        _wake(channel.reader)

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.discard(self)
            self._owner = None

    async def __aenter__(self) -> EventSink[E]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        elif isinstance(exc, anyio.get_cancelled_exc_class()):
            self.fail(ActorStopped("stream writer", "cancelled"))
        elif isinstance(exc, ConsumerGone):
            self.close()
        else:
            self.fail(exc if isinstance(exc, InterlockError) else _internal(exc))


def _internal(exc: BaseException) -> InterlockError:
    err = InterlockError(f"internal error: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


@final
class EventStream(Generic[E]):
    """The reader's end: iterate it for events; a writer's failure is raised in order."""

    __slots__ = ("_channel",)

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        event = await self._read(None, math.inf)
        assert event is not None  # no deadline: the read only ends with an event, the end or an error
        return event

    def take_nowait(self) -> E | None:
        """A buffered event, or None when none is buffered (the end and errors wait for a read)."""
        channel = self._channel
        if channel.events:
            return self._take()
        return None

    def take_buffered(self) -> list[E]:
        """Every buffered event at once (an empty list when none is buffered), oldest first."""
        channel = self._channel
        events = channel.events
        if not events:
            return []
        taken = list(events)
        events.clear()
        _wake(channel.writer)
        channel.writer = None
        return taken

    async def next_before(self, clock: Clock, deadline: float) -> E | None:
        """The next event, or None if none came before ``deadline`` on ``clock``.

        Raises ``StopAsyncIteration`` at the end and the writer's failure after its events.
        """
        return await self._read(clock, deadline)

    def _take(self) -> E:
        channel = self._channel
        event: E = channel.events.popleft()
        writer = channel.writer
        if writer is not None:
            channel.writer = None
            if not writer.done():
                writer.set_result(None)
        return event

    async def _read(self, clock: Clock | None, deadline: float) -> E | None:
        """The next event; with a clock, None once ``deadline`` passes on it first."""
        channel = self._channel
        while True:
            if channel.events:
                return self._take()
            if channel.closed:
                return self._end()
            if channel.reader_gone:
                raise anyio.ClosedResourceError
            if clock is not None and clock.now() >= deadline:
                return None
            waiter = channel.reader = asyncio.get_running_loop().create_future()
            timer = clock.call_at(deadline, partial(_wake, waiter)) if clock is not None else None
            try:
                await waiter
            finally:
                if channel.reader is waiter:
                    channel.reader = None
                if timer is not None:
                    timer.cancel()

    def _end(self) -> E:
        channel = self._channel
        channel.reader_gone = True
        error = channel.error
        if error is not None:
            channel.error = None
            raise error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading; the writer's next send raises ``ConsumerGone``."""
        self.close_now()

    def close_now(self) -> None:
        """``aclose`` without the await: drop what is buffered and release a waiting writer."""
        channel = self._channel
        channel.reader_gone = True
        channel.events.clear()
        _wake(channel.writer)
        _wake(channel.reader)  # a read waiting in another task ends with ClosedResourceError

    async def __aenter__(self) -> EventStream[E]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_now()


def event_channel(buffer: int = 64) -> tuple[EventSink[Any], EventStream[Any]]:
    """A connected sink/stream pair with ``buffer`` events of slack."""
    channel = _Channel(buffer)
    return EventSink(channel), EventStream(channel)
