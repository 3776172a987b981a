"""Actors and their references.

An ``Actor`` owns private state, one bounded mailbox and one task group for the work it spawns;
its ``receive`` handles one message at a time. An ``ActorRef`` is the only way to reach it:
``tell`` (waits while the mailbox is full, never drops), ``ask`` (a reply or ``AskTimeout``) and
``ask_stream`` (events through one memory stream).

The mailbox belongs to the supervised slot (``_Cell``), not to one actor instance: when a
supervisor restarts a crashed actor, queued messages wait for the new instance and refs stay
valid. Only when the slot is stopped for good does the mailbox close; every ask still queued is
then answered with ``ActorStopped``, and so is every reply or stream the actor had detached.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, cast, final

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from ._clock import Clock, RealClock
from ._errors import ActorStopped, AskTimeout, InterlockError, MailboxFull
from ._mailbox import EMPTY, Mailbox, MailboxClosed
from ._streams import EventSink, EventStream, Reply, _Channel

M = TypeVar("M")


# Final, so that mypy narrows every branch of the actor loop's ``type(item) is X`` tests.
@final
class _Ask(Generic[M]):
    __slots__ = ("msg", "reply")

    def __init__(self, msg: M, reply: Reply[Any]) -> None:
        self.msg = msg
        self.reply = reply


@final
class _AskStream(Generic[M]):
    __slots__ = ("msg", "sink")

    def __init__(self, msg: M, sink: EventSink[Any]) -> None:
        self.msg = msg
        self.sink = sink


@final
class _Stop:
    """A stop request; only the newest one counts, so a stale one cannot stop a restarted actor."""

    __slots__ = ()


# An Actor[M]'s mailbox item: a told message itself (a tell allocates nothing), or a wrapper.
_Envelope: TypeAlias = M | _Ask[M] | _AskStream[M] | _Stop


class MailboxStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a mailbox: queued messages, capacity, senders waiting for room."""

    queued: int
    capacity: float
    senders_waiting: int


class _Cell:
    """One supervised actor slot: its name, its mailbox, and whether it still accepts messages."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.mailbox = Mailbox(capacity)
        self.accepting = True
        self.stop_token: _Stop | None = None

    def request_stop(self) -> None:
        """Refuse new messages; the loop drains what is queued, then stops."""
        self.accepting = False
        self.stop_token = token = _Stop()
        with contextlib.suppress(MailboxClosed):
            # No room for the sentinel: the loop sees ``accepting`` is off once it has drained
            # the queue; the supervisor's shutdown deadline cancels it if it cannot keep up.
            self.mailbox.put_nowait(token)

    def drained(self) -> bool:
        """True when no message is queued."""
        return self.mailbox.queued == 0

    def close(self) -> None:
        """Close for good: answer every queued ask and stream with ``ActorStopped``."""
        self.accepting = False
        mailbox = self.mailbox
        mailbox.close()
        while True:
            try:
                item = mailbox.take_nowait()
            except MailboxClosed:
                break
            _refuse(item, self.name)


def _refuse(item: object, name: str) -> None:
    if type(item) is _Ask:
        item.reply.fail(ActorStopped(name))
    elif type(item) is _AskStream:
        item.sink.fail(ActorStopped(name))


@final
class ActorRef(Generic[M]):
    """The handle to an actor; created by the runtime only, valid across restarts."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The registered name of the actor."""
        return self._cell.name

    def __repr__(self) -> str:
        return f"ActorRef({self._cell.name!r})"

    async def tell(self, msg: M) -> None:
        """Deliver ``msg``; waits while the mailbox is full. Raises ``ActorStopped`` if stopped.

        With room in the mailbox it returns without a scheduling point: a tell on the hot path
        (a ledger record per request) must not cost a trip through the event loop.
        """
        if not self._put_nowait(msg):
            await self._put(msg)

    def tell_nowait(self, msg: M) -> None:
        """Deliver ``msg`` now or raise ``MailboxFull``; never waits."""
        if not self._put_nowait(msg):
            raise MailboxFull(self._cell.name, self._cell.capacity)

    async def ask(self, msg: M, *, timeout: float | None = 30.0) -> Any:
        """Send ``msg`` and wait for the reply; ``AskTimeout`` after ``timeout`` seconds.

        The actor's error while handling the message is raised here. A reply that arrives after
        the timeout is discarded.
        """
        reply: Reply[Any] = Reply()
        item = _Ask(msg, reply)
        try:
            if not self._put_nowait(item):
                with anyio.fail_after(timeout):
                    await self._put(item)
            return await reply.wait(timeout)
        except TimeoutError:
            raise AskTimeout(self._cell.name, timeout or 0.0) from None

    async def ask_stream(self, msg: M, *, buffer: int = 64) -> EventStream[Any]:
        """Send ``msg`` and return the stream of events the actor writes for it."""
        channel = _Channel(buffer)
        item = _AskStream(msg, EventSink(channel))
        if not self._put_nowait(item):
            await self._put(item)
        return EventStream(channel)

    def statistics(self) -> MailboxStatistics:
        """The mailbox's queue length, capacity and waiting senders."""
        mailbox = self._cell.mailbox
        return MailboxStatistics(mailbox.queued, mailbox.capacity, mailbox.writers_waiting)

    def _put_nowait(self, item: _Envelope[M]) -> bool:
        """Queue ``item`` if the mailbox has room (no scheduling point); False when it is full."""
        cell = self._cell
        if not cell.accepting:
            raise ActorStopped(cell.name)
        try:
            return cell.mailbox.put_nowait(item)
        except MailboxClosed:
            raise ActorStopped(cell.name) from None

    async def _put(self, item: _Envelope[M]) -> None:
        cell = self._cell
        if not cell.accepting:
            raise ActorStopped(cell.name)
        try:
            await cell.mailbox.put(item)
        except MailboxClosed:
            raise ActorStopped(cell.name) from None


class Actor(abc.ABC, Generic[M]):
    """Base class of every actor: override ``receive`` (and maybe ``on_start`` / ``on_stop``).

    ``receive``'s return value answers an ``ask``; its exception goes to the asker. For a plain
    ``tell`` an exception crashes the actor and its supervisor decides. Work that outlives one
    message runs in ``self.tasks``; ``detach_reply`` / ``detach_stream`` hand it the answer slot.
    """

    mailbox_size: ClassVar[int] = 1024

    def __init__(self) -> None:
        self._cell: _Cell | None = None
        self._tasks: TaskGroup | None = None
        self._clock: Clock = RealClock()
        self._current: object = None
        self._detached = False
        self._open_replies: set[Reply[Any]] = set()
        self._open_sinks: set[EventSink[Any]] = set()
        self._light: set[asyncio.Task[None]] = set()
        self._light_crash: BaseException | None = None

    @property
    def name(self) -> str:
        """The actor's registered name."""
        return self._cell.name if self._cell is not None else type(self).__name__

    @property
    def ref(self) -> ActorRef[M]:
        """A reference to this actor, to hand to others."""
        if self._cell is None:
            raise ActorStopped(self.name, "not started")
        return ActorRef(self._cell)

    @property
    def clock(self) -> Clock:
        """The runtime's clock."""
        return self._clock

    @property
    def tasks(self) -> TaskGroup:
        """The actor's own task group: whatever runs here dies with the actor."""
        if self._tasks is None:
            raise ActorStopped(self.name, "not started")
        return self._tasks

    def run_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> asyncio.Task[None]:
        """Run ``func(*args)`` as a light task of this actor; ``cancel()`` the returned task to stop it.

        For work per message on a hot path (one provider call): an event-loop task costs about a
        fifth of a task group's ``start_soon`` plus a cancel scope. It is still owned: the actor
        holds it strongly (the loop only weakly), cancels it on stop and waits for it, and its
        error crashes the actor as an error in ``tasks`` would. Cancelling it is plain task
        cancellation, which anyio's scopes inside it let through.
        """
        task = asyncio.create_task(func(*args))  # the ban on create_task is lifted here: pyproject.toml
        self._light.add(task)
        task.add_done_callback(self._light_done)
        return task

    def _light_done(self, task: asyncio.Task[None]) -> None:
        self._light.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._light_crash is None:
            self._light_crash = error
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()

    async def _end_light(self) -> None:
        """Cancel the light tasks still running and wait until each has finished."""
        with anyio.CancelScope(shield=True):
            while self._light:
                running = list(self._light)
                for task in running:
                    task.cancel()
                await asyncio.wait(running)
                self._light.difference_update(running)

    async def on_start(self) -> None:
        """Called once before the first message; an error here fails the start."""

    async def on_stop(self) -> None:
        """Called once after the last message, on graceful stop; await in-flight work here.

        When it returns, every task still running in ``self.tasks`` is cancelled.
        """

    @abc.abstractmethod
    async def receive(self, msg: M) -> Any:
        """Handle one message; the return value answers an ask."""

    def detach_reply(self) -> Reply[Any]:
        """Take the current ask's reply slot to answer later (from a task in ``self.tasks``)."""
        item = self._current
        if type(item) is not _Ask:
            raise InterlockError(f"{self.name}: the current message is not an ask")
        self._detached = True
        if len(self._open_replies) >= 256:
            self._open_replies = {r for r in self._open_replies if not r.done}
        self._open_replies.add(item.reply)
        return item.reply

    def detach_stream(self) -> EventSink[Any]:
        """Take the current ``ask_stream``'s sink to write events later; ``async with`` it."""
        item = self._current
        if type(item) is not _AskStream:
            raise InterlockError(f"{self.name}: the current message is not an ask_stream")
        self._detached = True
        item.sink._owner = self._open_sinks
        self._open_sinks.add(item.sink)
        return item.sink

    async def _actor_serve(self, cell: _Cell, clock: Clock, *, task_status: TaskStatus[None]) -> None:
        self._cell, self._clock = cell, clock
        graceful = False
        try:
            async with anyio.create_task_group() as tg:
                self._tasks = tg
                await self.on_start()
                task_status.started()
                graceful = await self._actor_loop(cell)
                if graceful:
                    await self.on_stop()
                # Whatever on_stop chose not to wait for (probe loops, timers) ends with the actor.
                tg.cancel_scope.cancel()
            await self._end_light()
            if self._light_crash is not None:
                graceful = False
                raise self._light_crash
        finally:
            if self._light:
                await self._end_light()
            reason = "stopped" if graceful else "crashed"
            for reply in list(self._open_replies):
                reply.fail(ActorStopped(self.name, reason))
            for sink in list(self._open_sinks):
                sink.fail(ActorStopped(self.name, reason))
            self._tasks = None

    async def _actor_loop(self, cell: _Cell) -> bool:
        mailbox = cell.mailbox
        # The one place a message's type is taken on trust. The mailbox belongs to the slot,
        # made before any instance, so it holds plain objects; they are _Envelope[M] because
        # ActorRef[M] typed what went in (a ref found by name is an ActorRef[Any]: its sender
        # vouches). The readers are cast once, not each item: a cast is a call, ~25 ns, 4% of a tell.
        take_nowait = cast("Callable[[], Any]", mailbox.take_nowait)
        take = cast("Callable[[], Awaitable[Any]]", mailbox.take)
        handled = 0
        while True:
            try:
                # Drain what is queued without a loop turn per message; yield every so often so
                # one busy actor cannot starve the rest.
                if handled >= 64:
                    handled = 0
                    await anyio.lowlevel.checkpoint()  # before taking: a cancelled turn loses nothing
                taken = take_nowait()
                if taken is EMPTY:
                    handled = 0
                    taken = await take()
                else:
                    handled += 1
            except MailboxClosed:
                return True
            item: _Envelope[M] = taken
            # Not ``match``: a class pattern is an isinstance test, and a tell (which falls through
            # every test) pays 2-2.5x as much for it (benchmarks/kernel.py, "dispatch").
            if type(item) is _Ask:
                await self._actor_ask(item)
            elif type(item) is _AskStream:
                await self._actor_stream(item)
            elif type(item) is _Stop:
                if item is cell.stop_token:
                    return True
                continue
            else:
                await self.receive(item)
            if not cell.accepting and cell.drained():
                return True

    async def _actor_ask(self, item: _Ask[M]) -> None:
        self._current, self._detached = item, False
        try:
            value = await self.receive(item.msg)
        except Exception as exc:
            item.reply.fail(exc)
            return
        finally:
            self._current = None
        if not self._detached:
            item.reply.set(value)

    async def _actor_stream(self, item: _AskStream[M]) -> None:
        self._current, self._detached = item, False
        try:
            await self.receive(item.msg)
        except Exception as exc:
            item.sink.fail(exc)
            return
        finally:
            self._current = None
        if not self._detached:
            item.sink.close()
