"""Clocks: the fake clock moves only by hand and wakes sleepers in deadline order."""

from __future__ import annotations

import anyio
import pytest

from interlock import Clock, FakeClock, RealClock

pytestmark = pytest.mark.anyio


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    """Sleepers wake only when advanced past their deadline, earliest first."""
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 10.0)
        tg.start_soon(sleeper, "early", 1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 2
        clock.advance(0.5)
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(0.5)
        await anyio.wait_all_tasks_blocked()
        assert woke == ["early"]
        assert clock.next_deadline == 10.0
        clock.advance(100)
    assert woke == ["early", "late"]
    assert clock.now() == 101.0


async def test_fake_clock_wall_moves_with_now() -> None:
    """Wall time moves with monotonic time and a zero sleep returns at once."""
    clock = FakeClock(start=5.0, wall_start=1000.0)
    await clock.sleep(0)
    clock.advance(2.5)
    assert clock.wall() == 1002.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_real_clock_is_a_clock() -> None:
    """The real clock satisfies the Clock protocol and moves forward."""
    clock = RealClock()
    assert isinstance(clock, Clock)
    assert isinstance(FakeClock(), Clock)
    t0 = clock.now()
    await clock.sleep(0.001)
    assert clock.now() > t0
    assert clock.wall() > 1_600_000_000


async def test_fake_clock_timers_fire_in_order_and_cancel() -> None:
    """call_at fires when advance reaches the deadline; a cancelled timer never fires."""
    clock = FakeClock()
    fired: list[str] = []
    clock.call_at(2.0, lambda: fired.append("two"))
    dropped = clock.call_at(1.5, lambda: fired.append("dropped"))
    clock.call_at(1.0, lambda: fired.append("one"))
    dropped.cancel()
    assert clock.sleepers == 2
    assert clock.next_deadline == 1.0
    clock.advance(1.0)
    assert fired == ["one"]
    clock.advance(5.0)
    assert fired == ["one", "two"]
    assert clock.sleepers == 0


async def test_a_past_deadline_fires_on_the_next_loop_turn() -> None:
    """A timer whose deadline has passed fires soon, on both clocks."""
    for clock in (FakeClock(start=10.0), RealClock()):
        fired = anyio.Event()
        clock.call_at(clock.now() - 1.0, fired.set)
        with anyio.fail_after(1):
            await fired.wait()
