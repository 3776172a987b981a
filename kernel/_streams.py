"""Reply slots and event streams: how answers travel back from an actor to its caller.

An ``ask`` waits on a one-shot ``Reply``; an ``ask_stream`` reads an ``EventStream`` fed by the
actor through an ``EventSink``. A token crosses exactly one memory object stream: the sink sends
the event object itself, and only a failure is wrapped, so the hot path allocates nothing extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Generic, TypeVar, final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import ActorStopped, ConsumerGone, InterlockError

T = TypeVar("T")
E = TypeVar("E")


class _Channel:
    """State shared by a sink and its stream: the writer's failure, raised after the last event."""

    __slots__ = ("closed", "error")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.closed = False


@final
class Reply(Generic[T]):
    """A one-shot answer slot; the first ``set`` or ``fail`` wins, later ones are ignored."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once answered."""
        return self._event.is_set()

    def set(self, value: T) -> None:
        """Answer with ``value``."""
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        """Answer with an error, raised at the asker."""
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> T:
        """Wait for the answer; raises the error it was failed with."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set() stored a T before the event fired


@final
class EventSink(Generic[E]):
    """The writer's end of an event stream; use ``async with sink:`` so every exit is reported.

    Leaving the block normally ends the stream; leaving it with an error hands that error to
    the reader. ``send`` raises ``ConsumerGone`` when the reader has gone away.
    """

    __slots__ = ("_channel", "_owner", "_send")

    def __init__(
        self, send: MemoryObjectSendStream[Any], channel: _Channel, owner: set[EventSink[Any]] | None = None
    ) -> None:
        self._send = send
        self._channel = channel
        self._owner = owner
        if owner is not None:
            owner.add(self)

    async def send(self, event: E) -> None:
        """Send one event; waits while the reader's buffer is full (backpressure)."""
        try:
            await self._send.send(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ConsumerGone() from None

    def send_nowait(self, event: E) -> bool:
        """Send without waiting; False when the buffer is full (the caller then awaits ``send``)."""
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ConsumerGone() from None
        return True

    @property
    def closed(self) -> bool:
        """True once the stream was ended, failed, or abandoned by its reader."""
        return self._channel.closed or self._send.statistics().open_receive_streams == 0

    def close(self) -> None:
        """End the stream successfully."""
        self._release()
        self._channel.closed = True
        self._send.close()

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error``, which the reader raises after the events before it."""
        self._release()
        if self._channel.closed:
            return
        self._channel.closed = True
        self._channel.error = error
        self._send.close()

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

    __slots__ = ("_channel", "_recv")

    def __init__(self, recv: MemoryObjectReceiveStream[Any], channel: _Channel) -> None:
        self._recv = recv
        self._channel = channel

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        recv = self._recv
        try:
            # A buffered event is taken without a trip through the event loop: the writer usually
            # runs ahead, and a loop turn per token is most of what a hop costs.
            return recv.receive_nowait()  # type: ignore[no-any-return]
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            return self._end()
        try:
            item: E = await recv.receive()
        except anyio.EndOfStream:
            return self._end()
        return item

    def _end(self) -> E:
        self._recv.close()
        error = self._channel.error
        if error is not None:
            self._channel.error = None
            raise error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading; the writer's next send raises ``ConsumerGone``."""
        self._recv.close()

    async def __aenter__(self) -> EventStream[E]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._recv.close()


def event_channel(buffer: int = 64) -> tuple[EventSink[Any], EventStream[Any]]:
    """A connected sink/stream pair with ``buffer`` events of slack."""
    send, recv = anyio.create_memory_object_stream[Any](buffer)
    channel = _Channel()
    return EventSink(send, channel), EventStream(recv, channel)
