"""Actors and refs: tell, ask, ask_stream, backpressure, stop semantics."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from interlock import (
    Actor,
    ActorStopped,
    AskTimeout,
    ConsumerGone,
    EventSink,
    FakeClock,
    InterlockError,
    MailboxFull,
    Runtime,
)
from interlock._streams import DEADLINE_SLOT_S, Reply, event_channel

pytestmark = pytest.mark.anyio


class Counter(Actor[Any]):
    """Adds numbers it is told; answers 'get' with the total; fails on 'boom'."""

    mailbox_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.gate: anyio.Event | None = None

    async def receive(self, msg: Any) -> Any:
        if isinstance(msg, int):
            self.total += msg
            return self.total
        if msg == "get":
            return self.total
        if msg == "boom":
            raise ValueError("boom")
        if isinstance(msg, anyio.Event):
            await msg.wait()
            return "released"
        if isinstance(msg, tuple) and msg[0] == "slow-reply":
            reply = self.detach_reply()
            release, replied = msg[1], msg[2]

            async def later() -> None:
                await release.wait()  # the test lets the reply go only after the ask timed out
                reply.set("late")
                replied.set()

            self.tasks.start_soon(later)
            return None
        if isinstance(msg, tuple) and msg[0] == "stream":
            sink: EventSink[int] = self.detach_stream()
            self.tasks.start_soon(self._emit, sink, msg[1])
            return None
        return None

    async def _emit(self, sink: EventSink[int], count: int) -> None:
        async with sink:
            for i in range(count):
                await sink.send(i)
            if count == 3:
                raise ValueError("stream broke")


async def test_tell_then_ask_sees_every_message() -> None:
    """Messages told before an ask are all handled, in order, before the ask is answered."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        for i in range(10):
            await ref.tell(i)
        assert await ref.ask("get") == 45


async def test_ask_error_goes_to_the_asker_and_actor_lives() -> None:
    """An exception while handling an ask is raised at the asker; the actor keeps running."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        with pytest.raises(ValueError, match="boom"):
            await ref.ask("boom")
        assert await ref.ask(5) == 5


async def test_ask_timeout_and_late_reply_discarded() -> None:
    """An ask past its timeout raises AskTimeout; the late reply is dropped without harm."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        release, replied = anyio.Event(), anyio.Event()
        with pytest.raises(AskTimeout) as info:
            await ref.ask(("slow-reply", release, replied), timeout=0.05)
        assert info.value.kind == "timeout"
        assert info.value.actor == "counter"
        release.set()
        await replied.wait()  # the late reply landed: it must not disturb the next ask
        assert await ref.ask(1) == 1


async def test_backpressure_tell_waits_and_nothing_is_dropped() -> None:
    """With a full mailbox tell waits, tell_nowait raises MailboxFull, and no message is lost."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        gate = anyio.Event()
        await ref.tell(gate)  # the actor blocks on the gate
        await anyio.wait_all_tasks_blocked()  # a tell with room does not yield: let the actor take it
        for _ in range(4):
            ref.tell_nowait(1)
        with pytest.raises(MailboxFull):
            ref.tell_nowait(1)
        blocked = anyio.Event()
        done = anyio.Event()

        async def producer() -> None:
            blocked.set()
            await ref.tell(100)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            await blocked.wait()
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert ref.statistics().senders_waiting == 1
            gate.set()
        assert await ref.ask("get") == 104


async def test_ask_stream_delivers_events_then_error() -> None:
    """A stream yields every event in order; a writer's crash is raised after them, typed."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        got = [e async for e in await ref.ask_stream(("stream", 5))]
        assert got == [0, 1, 2, 3, 4]
        stream = await ref.ask_stream(("stream", 3))
        seen: list[int] = []
        with pytest.raises(InterlockError, match="stream broke") as info:
            async for e in stream:
                seen.append(e)
        assert seen == [0, 1, 2]
        assert info.value.kind == "internal"
        assert await ref.ask("get") == 0  # the crashed actor was restarted with fresh state


async def test_consumer_gone_is_seen_by_the_writer() -> None:
    """When the reader closes its stream, the writer's next send raises ConsumerGone."""
    sink_error: list[BaseException] = []
    gone = anyio.Event()

    class Writer(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            sink = self.detach_stream()
            self.tasks.start_soon(self._write, sink)

        async def _write(self, sink: EventSink[int]) -> None:
            try:
                for i in range(1000):
                    await sink.send(i)
            except ConsumerGone as exc:
                sink_error.append(exc)
                gone.set()

    async with Runtime() as rt:
        ref = await rt.spawn(Writer, name="writer")
        stream = await ref.ask_stream("go", buffer=1)
        async for event in stream:
            if event == 2:
                break
        await stream.aclose()
        with anyio.fail_after(2):
            await gone.wait()
        assert sink_error[0].kind == "cancelled"


async def test_sending_to_a_stopped_actor_raises() -> None:
    """After the runtime stops an actor, tell and ask raise ActorStopped instead of hanging."""
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
    with pytest.raises(ActorStopped):
        await ref.tell(1)
    with pytest.raises(ActorStopped):
        await ref.ask("get", timeout=1)
    with pytest.raises(ActorStopped):
        ref.tell_nowait(1)


async def test_queued_asks_are_answered_on_stop() -> None:
    """Asks still queued when an actor is terminated are answered with ActorStopped."""
    results: list[BaseException | Any] = []
    async with Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter", shutdown=0.05)
        gate = anyio.Event()
        await ref.tell(gate)

        async def asker() -> None:
            try:
                results.append(await ref.ask(1, timeout=5))
            except ActorStopped as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker)
            await anyio.wait_all_tasks_blocked()
            await rt.root.terminate_child("counter")
    assert len(results) == 1
    assert isinstance(results[0], ActorStopped)


async def test_detached_stream_fails_when_actor_crashes() -> None:
    """A stream whose actor crashes ends with ActorStopped at the reader, never a hang."""

    class Crasher(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            if msg == "open":
                sink = self.detach_stream()
                self.tasks.start_soon(self._hold, sink)
            elif msg == "crash":
                raise RuntimeError("crash")

        async def _hold(self, sink: EventSink[int]) -> None:
            await sink.send(1)
            await anyio.sleep_forever()

    async with Runtime() as rt:
        ref = await rt.spawn(Crasher, name="crasher")
        stream = await ref.ask_stream("open")
        assert await stream.__anext__() == 1
        await ref.tell("crash")
        with anyio.fail_after(2), pytest.raises(ActorStopped):
            await stream.__anext__()


async def test_lookup_finds_registered_actor() -> None:
    """The runtime's registry returns a working ref by name and rejects unknown names."""
    async with Runtime() as rt:
        await rt.spawn(Counter, name="counter")
        assert await rt.lookup("counter").ask(7) == 7
        with pytest.raises(ActorStopped):
            rt.lookup("nobody")


async def test_a_read_with_a_deadline_gives_up_on_the_clock() -> None:
    """next_before returns None once the clock passes the deadline, and events that came before it."""
    clock = FakeClock()
    sink, stream = event_channel(4)
    sink.send_nowait("early")
    assert await stream.next_before(clock, 1.0) == "early"
    got: list[object] = []

    async def read() -> None:
        got.append(await stream.next_before(clock, 1.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        clock.advance(1.0)
    assert got == [None]
    sink.close()
    with pytest.raises(StopAsyncIteration):
        await stream.next_before(clock, 5.0)


async def test_a_full_channel_holds_the_writer_until_the_reader_takes() -> None:
    """send waits on a full buffer and goes on once the reader takes; a gone reader makes it ConsumerGone."""
    sink, stream = event_channel(1)
    assert sink.send_nowait(1)
    assert not sink.send_nowait(2)
    sent = anyio.Event()

    async def write() -> None:
        await sink.send(2)
        sent.set()
        with pytest.raises(ConsumerGone):
            await sink.send(3)
            await sink.send(4)

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await anyio.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert await stream.__anext__() == 1
        await sent.wait()
        assert stream.take_nowait() == 2
        await anyio.wait_all_tasks_blocked()
        await stream.aclose()
    assert sink.closed


class Spawner(Actor[Any]):
    """Runs each message's work in a light task: 'hang' waits forever, 'boom' fails."""

    def __init__(self, log: list[str], hang_ended: anyio.Event) -> None:
        super().__init__()
        self.log = log
        self.hang_ended = hang_ended

    async def receive(self, msg: Any) -> Any:
        self.run_soon(self._work, msg)
        return None

    async def _work(self, what: str) -> None:
        try:
            if what == "boom":
                raise ValueError("light task failed")
            await anyio.sleep_forever()
        finally:
            self.log.append(f"ended {what}")
            if what == "hang":
                self.hang_ended.set()


async def test_light_tasks_end_with_their_actor_and_their_errors_crash_it() -> None:
    """A stopping actor cancels and awaits its light tasks; a light task's error restarts the actor."""
    log: list[str] = []
    hang_ended = anyio.Event()
    async with Runtime() as rt:
        ref = await rt.spawn(lambda: Spawner(log, hang_ended), name="spawner")
        await ref.ask("hang")
        await ref.ask("boom")
        with anyio.fail_after(5):
            await hang_ended.wait()  # the crash took the hanging task down with it
        assert "ended boom" in log
        await ref.ask("hang")  # the restarted actor takes messages again
        await anyio.wait_all_tasks_blocked()
    assert log.count("ended hang") == 2  # the runtime's stop ended the second one too


async def test_timed_waits_share_one_timer_per_deadline_slot_and_never_end_early() -> None:
    """A thousand replies waited on with one timeout cost a timer or two, not a thousand; each times out, none early."""
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # the loop's timer heap: asyncio's own, read here only
    replies: list[Reply[int]] = [Reply() for _ in range(1000)]
    outcomes: list[str] = []
    started = loop.time()

    async def wait(reply: Reply[int]) -> None:
        try:
            await reply.wait(0.05)
            outcomes.append("answered")
        except TimeoutError:
            outcomes.append("timed out")

    async with anyio.create_task_group() as tg:
        for reply in replies:
            tg.start_soon(wait, reply)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        assert len(loop._scheduled) - before <= 2  # the slots their deadline falls in
        replies[0].set(1)  # answered before the deadline: its wait ends at once, answered
    assert outcomes.count("answered") == 1
    assert outcomes.count("timed out") == 999
    assert loop.time() - started >= 0.05  # a shared deadline fires late by up to a slot, never early
    assert DEADLINE_SLOT_S <= 0.01
