"""Supervision: strategies, restart types, intensity and escalation, ordered start and stop."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from interlock import (
    Actor,
    ActorStopped,
    ChildSpec,
    FakeClock,
    Restart,
    Runtime,
    Strategy,
    Supervisor,
    SupervisorEscalation,
)

pytestmark = pytest.mark.anyio


class Journal:
    """Records starts and stops of named actors, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def starts(self, name: str) -> int:
        return self.events.count(f"start:{name}")


def worker(journal: Journal, name: str, *, stop_delay: float = 0.0) -> type[Actor[Any]]:
    class Worker(Actor[Any]):
        async def on_start(self) -> None:
            journal.events.append(f"start:{name}")

        async def on_stop(self) -> None:
            if stop_delay:
                await anyio.sleep(stop_delay)
            journal.events.append(f"stop:{name}")

        async def receive(self, msg: Any) -> Any:
            if msg == "crash":
                raise RuntimeError(f"{name} crashed")
            if msg == "exit":
                self.ref._cell.request_stop()
            return name

    return Worker


def spec(journal: Journal, name: str, restart: Restart = Restart.PERMANENT, **kw: Any) -> ChildSpec:
    stop_delay = kw.pop("stop_delay", 0.0)
    return ChildSpec(name, worker(journal, name, stop_delay=stop_delay), restart, **kw)


async def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


async def wait_stopped(ref: Any) -> None:
    """Poll with a deadline until the ref answers ActorStopped."""
    with anyio.fail_after(2):
        while True:
            try:
                await ref.ask("x", timeout=0.5)
            except ActorStopped:
                return
            await anyio.sleep(0.001)


async def crash(rt: Runtime, name: str) -> None:
    await rt.lookup(name).tell("crash")


async def test_ordered_start_and_reverse_stop() -> None:
    """Children start in order and stop in reverse order when the runtime exits."""
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor("sup", [spec(journal, n) for n in "abc"])
        assert journal.events == ["start:a", "start:b", "start:c"]
    assert journal.events[3:] == ["stop:c", "stop:b", "stop:a"]


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    """one_for_one: a crash restarts that child alone."""
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor("sup", [spec(journal, n) for n in "abc"], max_restarts=5)
        await crash(rt, "b")
        await wait_for(lambda: journal.starts("b") == 2)
        assert await rt.lookup("b").ask("hi") == "b"
        assert journal.starts("a") == 1
        assert journal.starts("c") == 1


async def test_one_for_all_restarts_everyone() -> None:
    """one_for_all: the others stop in reverse order, then all restart in order."""
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor(
            "sup", [spec(journal, n) for n in "abc"], strategy=Strategy.ONE_FOR_ALL, max_restarts=5
        )
        journal.events.clear()
        await crash(rt, "b")
        await wait_for(lambda: journal.starts("c") == 1)
        assert journal.events == ["stop:c", "stop:a", "start:a", "start:b", "start:c"]


async def test_rest_for_one_restarts_later_children() -> None:
    """rest_for_one: the crashed child and those started after it restart; earlier ones stay."""
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor(
            "sup", [spec(journal, n) for n in "abc"], strategy=Strategy.REST_FOR_ONE, max_restarts=5
        )
        journal.events.clear()
        await crash(rt, "b")
        await wait_for(lambda: journal.starts("c") == 1)
        assert journal.events == ["stop:c", "start:b", "start:c"]


async def test_restart_types() -> None:
    """permanent restarts on normal exit, transient only on a crash, temporary never."""
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor(
            "sup",
            [
                spec(journal, "perm", Restart.PERMANENT),
                spec(journal, "trans", Restart.TRANSIENT),
                spec(journal, "temp", Restart.TEMPORARY),
                spec(journal, "trans2", Restart.TRANSIENT),
            ],
            max_restarts=10,
        )
        await rt.lookup("perm").tell("exit")
        await wait_for(lambda: journal.starts("perm") == 2)
        await rt.lookup("trans").tell("crash")
        await wait_for(lambda: journal.starts("trans") == 2)
        trans2 = rt.lookup("trans2")
        await trans2.tell("exit")
        await wait_stopped(trans2)
        temp = rt.lookup("temp")
        await temp.tell("crash")
        await wait_stopped(temp)
        assert journal.starts("temp") == 1
        assert journal.starts("trans2") == 1


async def test_intensity_exceeded_escalates_to_parent() -> None:
    """More restarts than allowed within the period makes the supervisor escalate to its parent."""
    journal = Journal()
    clock = FakeClock()
    async with Runtime(clock=clock, max_restarts=10) as rt:
        await rt.spawn_supervisor("inner", [spec(journal, "w")], max_restarts=2, period=5.0)
        await crash(rt, "w")
        await wait_for(lambda: journal.starts("w") == 2)
        await crash(rt, "w")
        await wait_for(lambda: journal.starts("w") == 3)
        await crash(rt, "w")  # third restart within 5 s: the inner supervisor gives up
        # The root restarts the inner supervisor, which starts w afresh.
        await wait_for(lambda: journal.starts("w") == 4)
        info = {c.name: c for c in rt.root.which_children()}
        assert info["inner"].restarts == 1


async def test_restarts_spread_over_time_do_not_escalate() -> None:
    """Restarts further apart than the period never add up to an escalation."""
    journal = Journal()
    clock = FakeClock()
    async with Runtime(clock=clock, max_restarts=10) as rt:
        await rt.spawn_supervisor("inner", [spec(journal, "w")], max_restarts=1, period=5.0)
        for n in range(2, 6):
            await crash(rt, "w")
            await wait_for(lambda n=n: journal.starts("w") == n)
            clock.advance(6.0)
        assert {c.name: c for c in rt.root.which_children()}["inner"].restarts == 0


async def test_root_escalation_is_raised_from_the_runtime_block() -> None:
    """When the root supervisor gives up, the runtime block is cancelled and raises the escalation."""
    journal = Journal()
    with pytest.raises(SupervisorEscalation):
        async with Runtime(max_restarts=0) as rt:
            await rt.spawn(worker(journal, "w"), name="w")
            await crash(rt, "w")
            await anyio.sleep_forever()


async def test_shutdown_deadline_cancels_a_slow_child() -> None:
    """A child that overruns its shutdown deadline is cancelled; the runtime still exits."""
    journal = Journal()
    with anyio.fail_after(5):
        async with Runtime() as rt:
            await rt.spawn_supervisor("sup", [spec(journal, "slow", shutdown=0.05, stop_delay=60)])
    assert "stop:slow" not in journal.events


async def test_cancelling_a_parent_cancels_its_children() -> None:
    """Cancelling the scope around a runtime tears down every actor task it owns."""
    journal = Journal()
    before = set(asyncio.all_tasks())
    with anyio.CancelScope() as scope:
        async with Runtime() as rt:
            await rt.spawn_supervisor("sup", [spec(journal, n) for n in "ab"])
            assert len(asyncio.all_tasks()) > len(before)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert journal.starts("a") == 1
    assert set(asyncio.all_tasks()) == before


async def test_runtime_exit_leaves_no_tasks() -> None:
    """After the runtime block, no task it started is left on the loop."""
    before = set(asyncio.all_tasks())
    journal = Journal()
    async with Runtime() as rt:
        await rt.spawn_supervisor("sup", [spec(journal, n) for n in "abc"])
        for n in "abc":
            await rt.lookup(n).ask("hi")
        assert len(asyncio.all_tasks()) > len(before)
    assert set(asyncio.all_tasks()) == before


async def test_nested_supervisors_stop_in_order() -> None:
    """Supervisors nest: a subtree starts within its parent's order and stops inside-out."""
    journal = Journal()

    def subtree() -> Supervisor:
        return Supervisor("sub", [spec(journal, "x"), spec(journal, "y")])

    async with Runtime() as rt:
        await rt.spawn_supervisor("top", [spec(journal, "a"), ChildSpec("sub", subtree), spec(journal, "z")])
        assert journal.events == ["start:a", "start:x", "start:y", "start:z"]
    assert journal.events[4:] == ["stop:z", "stop:y", "stop:x", "stop:a"]


async def test_start_failure_fails_the_spawn() -> None:
    """An actor whose on_start raises makes spawn raise, and nothing stays registered."""

    class Broken(Actor[Any]):
        async def on_start(self) -> None:
            raise RuntimeError("cannot start")

        async def receive(self, msg: Any) -> Any:
            return msg

    async with Runtime() as rt:
        with pytest.raises(RuntimeError, match="cannot start"):
            await rt.spawn(Broken, name="broken")


async def test_a_ref_stays_valid_across_a_restart_of_its_supervisor() -> None:
    """A ref taken before its supervisor escalated reaches the child the restarted supervisor starts."""
    journal = Journal()
    clock = FakeClock()
    async with Runtime(clock=clock, max_restarts=10) as rt:
        await rt.spawn_supervisor("inner", [spec(journal, "w")], max_restarts=1, period=5.0)
        ref = rt.lookup("w")
        await ref.tell("crash")
        await wait_for(lambda: journal.starts("w") == 2)
        await ref.tell("crash")  # a second restart within 5 s: the inner supervisor escalates
        await wait_for(lambda: {c.name: c for c in rt.root.which_children()}["inner"].restarts == 1)
        await wait_for(lambda: journal.starts("w") == 3)
        assert await ref.ask("hi") == "w"
        assert rt.lookup("w") is ref  # the name still maps to the same slot
    with pytest.raises(ActorStopped):
        await ref.ask("hi")  # the runtime ended: now it is gone for good


async def test_a_forgotten_subtree_closes_its_parked_mailboxes() -> None:
    """A temporary subtree that gives up is not restarted: its children's refs answer ActorStopped for good."""
    journal = Journal()

    def subtree() -> Supervisor:
        return Supervisor("sub", [spec(journal, "x")], max_restarts=0)

    async with Runtime() as rt:
        await rt.spawn_supervisor("top", [ChildSpec("sub", subtree, Restart.TEMPORARY)])
        ref = rt.lookup("x")
        assert await ref.ask("hi") == "x"
        await ref.tell("crash")  # sub may not restart it: sub escalates, and top forgets the temporary sub

        def unregistered() -> bool:
            try:
                rt.lookup("x")
            except ActorStopped:
                return True
            return False

        await wait_for(unregistered)
        with pytest.raises(ActorStopped):
            await ref.ask("hi")
        assert journal.starts("x") == 1
