"""Canaries for the kernel's fast paths: each proves an asyncio or anyio behaviour the kernel relies on.

The kernel's hot path (docs/architecture.md, "Hot path", the kernel rows) is built on the event
loop's own futures, tasks and timers rather than on anyio's memory streams and task groups, and
leans on a few behaviours that the code assumes without re-checking them on every message: how a
future wakes its waiter, what a cancelled task sees, that a coroutine which awaits nothing takes
no loop turn, that anyio's scopes and asyncio's cancellation interoperate, what a loop timer is.
When an upgrade of Python or anyio changes one of them, the test named after it fails here,
before a benchmark or a user finds out. Each section names the doc row it backs; the tests that
drive the kernel itself show that the trick still holds as the row describes it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import deque
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from interlock import Actor, EventSink, FakeClock, RealClock, Runtime
from interlock._mailbox import EMPTY, Mailbox
from interlock._streams import event_channel

pytestmark = pytest.mark.anyio


def marker() -> list[str]:
    """A callback queued on the loop now; the list it fills is empty until the current task yields."""
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "turn")
    return ran


class Recorder(Actor[Any]):
    """Records every message; an ask answers with how many it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[object] = []

    async def receive(self, msg: Any) -> Any:
        self.seen.append(msg)
        return len(self.seen)


# --- deque mailbox with one wake-up (kernel/_mailbox.py, Mailbox) ----------------------------


def test_deque_is_the_unbounded_fifo_the_mailbox_and_channels_assume() -> None:
    """A plain deque has no bound of its own, keeps order through append, extend and popleft, and snapshots."""
    items: deque[int] = deque()
    assert items.maxlen is None  # the capacity check is the mailbox's own
    assert not items
    items.append(1)
    items.extend([2, 3])
    assert items
    assert items.popleft() == 1
    assert list(items) == [2, 3]  # take_buffered: a snapshot, then clear
    items.clear()
    assert not items
    with pytest.raises(IndexError):
        items.popleft()  # why take_nowait tests the deque before popping


async def test_future_set_result_schedules_the_waiter_instead_of_running_it() -> None:
    """set_result wakes a waiting task on a later loop turn; the task that set it keeps running."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    woke: list[str] = []

    async def wait() -> None:
        await future
        woke.append("woke")

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        future.set_result(None)
        assert woke == []  # a put into a sleeping mailbox costs its writer no task switch
        assert future.done()
    assert woke == ["woke"]


async def test_a_task_cancelled_after_its_future_was_set_sees_cancelled_error_and_a_done_future() -> None:
    """A task woken by its future and cancelled before it resumed raises CancelledError; the future holds its result."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[tuple[bool, bool]] = []

    async def wait() -> None:
        try:
            await future
        except asyncio.CancelledError:
            seen.append((future.done(), future.cancelled()))
            raise

    task = asyncio.create_task(wait())
    await anyio.wait_all_tasks_blocked()
    future.set_result(None)
    task.cancel()
    await asyncio.wait([task])
    # Mailbox.put's "cancelled while woken" branch: the room it was given must be passed on.
    assert seen == [(True, False)]
    assert task.cancelled()


async def test_an_anyio_cancel_scope_cancels_a_task_waiting_on_a_bare_future() -> None:
    """anyio's cancellation reaches an await on a plain loop future, which ends up cancelled."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await future
    assert scope.cancelled_caught
    assert future.cancelled()  # the kernel's `finally` blocks then drop it as a waiter


async def test_a_put_into_a_sleeping_mailbox_wakes_its_reader_once() -> None:
    """Puts while the reader sleeps cost one wake-up; the reader then takes the rest without waiting."""
    mailbox = Mailbox(8)
    taken: list[object] = []

    async def read() -> None:
        taken.append(await mailbox.take())
        while (item := mailbox.take_nowait()) is not EMPTY:
            taken.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        for i in range(3):
            assert mailbox.put_nowait(i)
        assert taken == []  # no put switched to the reader
    assert taken == [0, 1, 2]


# --- tell with room takes no loop turn; the loop drains 64 per checkpoint (kernel/_actor.py) --


async def test_a_coroutine_that_awaits_nothing_takes_no_loop_turn() -> None:
    """Awaiting a coroutine that returns without awaiting runs it inline: the loop does not get a turn."""

    async def nothing() -> int:
        return 1

    ran = marker()
    assert await nothing() == 1
    assert ran == []


async def test_anyio_checkpoint_is_one_loop_turn_and_a_cancellation_point() -> None:
    """anyio.lowlevel.checkpoint lets the loop run what is queued, and raises there when cancelled."""
    ran = marker()
    await anyio.lowlevel.checkpoint()
    assert ran == ["turn"]
    reached: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await anyio.lowlevel.checkpoint()
        reached.append("after")  # the actor loop checkpoints before taking: a cancel loses nothing
    assert scope.cancelled_caught
    assert reached == []


async def test_a_tell_with_room_takes_no_loop_turn() -> None:
    """ActorRef.tell into a mailbox with room returns without a scheduling point."""
    async with Runtime() as rt:
        ref = await rt.spawn(Recorder, name="recorder")
        ran = marker()
        for i in range(100):
            await ref.tell(i)
        assert ran == []
        assert await ref.ask("count") == 101


async def test_the_actor_loop_yields_to_the_loop_after_64_messages() -> None:
    """Woken for a full queue, the actor handles the message it woke for and 64 more before it yields."""
    recorder = Recorder()
    async with Runtime() as rt:
        ref = await rt.spawn(lambda: recorder, name="recorder")
        await anyio.wait_all_tasks_blocked()  # the actor sleeps on its empty mailbox
        for i in range(200):
            ref.tell_nowait(i)  # the first wakes the actor: its turn is queued before the snapshot
        handled_at_first_yield: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: handled_at_first_yield.append(len(recorder.seen)))
        assert await ref.ask("count") == 201
    assert handled_at_first_yield == [65]


# --- futures-based replies and event channels (kernel/_streams.py) ---------------------------


async def test_anyio_cancelled_exc_class_is_the_loop_futures_cancelled_error() -> None:
    """On asyncio, the exception anyio cancels with is the one a cancelled future raises."""
    # EventSink.__aexit__ tells a cancelled writer from a failed one with this class.
    assert anyio.get_cancelled_exc_class() is asyncio.CancelledError


async def test_a_send_to_a_waiting_reader_wakes_it_once_without_switching_to_it() -> None:
    """A sink's sends to a reader waiting on its channel queue events; one wake-up, no task switch."""
    sink, stream = event_channel(8)
    got: list[list[object]] = []

    async def read() -> None:
        first = await stream.__anext__()
        got.append([first, *stream.take_buffered()])

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        for event in ("a", "b", "c"):
            assert sink.send_nowait(event)
        assert got == []
    assert got == [["a", "b", "c"]]


async def test_an_ask_round_trip_starts_no_task() -> None:
    """An ask is answered through a loop future: the round trip starts no helper task."""
    before = len(asyncio.all_tasks())
    async with Runtime() as rt:
        ref = await rt.spawn(Recorder, name="recorder")
        actor_tasks = len(asyncio.all_tasks()) - before
        assert await ref.ask("one") == 1
        assert len(asyncio.all_tasks()) - before == actor_tasks  # the ask spawned nothing


# --- stall deadlines as clock timers (kernel/_streams.py EventStream._read, kernel/_clock.py) --


async def test_real_clock_call_at_is_one_loop_timer_handle_and_no_task() -> None:
    """A deadline on the real clock is an asyncio TimerHandle: no task, and cancel marks it cancelled."""
    clock = RealClock()
    tasks = set(asyncio.all_tasks())
    timer = clock.call_at(clock.now() + 3600.0, lambda: None)
    assert isinstance(timer, asyncio.TimerHandle)
    assert set(asyncio.all_tasks()) == tasks
    timer.cancel()
    assert timer.cancelled()


async def test_a_cancelled_loop_timer_never_fires() -> None:
    """A cancelled timer is dropped: a later timer due at the same time fires, the cancelled one never does."""
    clock = RealClock()
    fired: list[str] = []
    later = anyio.Event()
    now = clock.now()
    cancelled = clock.call_at(now, lambda: fired.append("cancelled"))
    clock.call_at(now, later.set)
    cancelled.cancel()
    with anyio.fail_after(5):
        await later.wait()
    assert fired == []


async def test_a_read_with_a_real_deadline_wakes_on_the_loop_timer() -> None:
    """next_before on the real clock returns None once its timer fires, with no task of its own."""
    clock = RealClock()
    _sink, stream = event_channel(4)
    tasks = len(asyncio.all_tasks())
    with anyio.fail_after(5):
        assert await stream.next_before(clock, clock.now() + 0.005) is None
    assert len(asyncio.all_tasks()) == tasks


async def test_a_read_with_a_fake_deadline_arms_one_timer_and_drops_it() -> None:
    """A deadline read waits on one clock timer, cancelled once an event arrives first."""
    clock = FakeClock()
    sink, stream = event_channel(4)
    got: list[object] = []

    async def read() -> None:
        got.append(await stream.next_before(clock, 10.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1
        sink.send_nowait("event")
    assert got == ["event"]
    assert clock.sleepers == 0


# --- light tasks through the event loop's create_task (kernel/_actor.py, Actor.run_soon) ------


async def test_create_task_returns_a_task_that_starts_on_a_later_turn() -> None:
    """asyncio.create_task gives an asyncio.Task and does not run the coroutine eagerly."""
    started: list[str] = []

    async def body() -> None:
        started.append("body")

    task = asyncio.create_task(body())
    assert isinstance(task, asyncio.Task)
    assert started == []  # receive registers the task (call_id, done callback) before it runs
    await task
    assert started == ["body"]


async def test_a_task_cancelled_before_its_first_step_never_runs_but_calls_its_done_callbacks() -> None:
    """A task cancelled before it started runs none of its body, yet its done callbacks still run."""
    ran: list[str] = []
    done: list[bool] = []

    async def body() -> None:
        try:
            ran.append("body")
        finally:
            ran.append("finally")

    task = asyncio.create_task(body())
    task.add_done_callback(lambda t: done.append(t.cancelled()))
    task.cancel()
    await asyncio.wait([task])  # its own done callback runs after the one added first
    # Why the provider actor ends a call's stream from the done callback, not only in the task.
    assert ran == []
    assert done == [True]


async def test_task_cancel_passes_through_anyio_scopes_inside_a_plain_task() -> None:
    """Cancelling a plain task ends it cancelled through an anyio cancel scope and a task group inside it."""
    entered = anyio.Event()

    async def body() -> None:
        with anyio.move_on_after(3600):
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep_forever)
                entered.set()
                await anyio.sleep_forever()

    task = asyncio.create_task(body())
    await entered.wait()
    await anyio.wait_all_tasks_blocked()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()  # neither the scope nor the group swallowed the task's cancellation


async def test_an_anyio_cancel_scope_cancelled_from_a_done_callback_cancels_its_task_group() -> None:
    """A task group's scope, cancelled from a loop callback outside any task, cancels the group's tasks."""
    ended: list[str] = []

    async def park() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.append("parked task")

    async def fail() -> None:
        raise ValueError("light task failed")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(park)
            await anyio.wait_all_tasks_blocked()
            light = asyncio.create_task(fail())
            light.add_done_callback(lambda _: tg.cancel_scope.cancel())  # as Actor._light_done does
            await anyio.sleep_forever()
    assert ended == ["parked task"]
    assert isinstance(light.exception(), ValueError)


async def test_a_light_task_is_kept_alive_by_its_actor() -> None:
    """The loop holds tasks weakly; a light task parked on a future nobody else holds survives a collection."""

    class Parker(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            return weakref.ref(self.run_soon(self._park))

        async def _park(self) -> None:
            await asyncio.get_running_loop().create_future()

    async with Runtime() as rt:
        ref = await rt.spawn(Parker, name="parker")
        light: weakref.ref[asyncio.Task[None]] = await ref.ask("park")
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        task = light()
        assert task is not None
        assert not task.done()
    assert task.cancelled()  # and the actor's stop cancelled it and waited for it


async def test_a_light_task_error_crashes_its_actor() -> None:
    """An exception in a light task ends its actor as a crash: the supervisor restarts a fresh instance."""
    instances: list[Actor[Any]] = []
    crashed = anyio.Event()

    class Failer(Actor[Any]):
        async def on_start(self) -> None:
            instances.append(self)
            if len(instances) == 2:
                crashed.set()

        async def receive(self, msg: Any) -> Any:
            self.run_soon(self._fail)

        async def _fail(self) -> None:
            raise ValueError("light task failed")

    async with Runtime() as rt:
        ref = await rt.spawn(Failer, name="failer")
        await ref.tell("go")
        with anyio.fail_after(5):
            await crashed.wait()
    assert len(instances) == 2


async def test_send_to_a_sink_from_a_light_task_reaches_the_asker() -> None:
    """A light task writes an ask_stream's events through the detached sink, as the provider actor does."""

    class Streamer(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            self.run_soon(self._write, self.detach_stream(), msg)

        async def _write(self, sink: EventSink[int], count: int) -> None:
            async with sink:
                await sink.send_batch(list(range(count)))

    async with Runtime() as rt:
        ref = await rt.spawn(Streamer, name="streamer")
        with anyio.fail_after(5):
            assert [e async for e in await ref.ask_stream(3)] == [0, 1, 2]
