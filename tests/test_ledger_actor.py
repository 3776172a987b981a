"""The ledger actor: nothing accepted is lost — not on crash, not on shutdown — and producers feel backpressure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from interlock import AskTimeout, AttemptRecord, FakeClock, RequestRecord, Runtime
from interlock._records import BeginRecord, BreakerRecord
from interlock.actors import _ledger_actor as ledger_actor
from interlock.actors._ledger_actor import (
    Flush,
    LedgerActor,
    LedgerBuffer,
    Records,
    tell_records,
    wait_committed,
)
from interlock.adapters.stores._ledger_store import SqliteLedgerStore

pytestmark = pytest.mark.anyio


def rec(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i:06d}", ts=1_700_000_000.0 + i, tenant="t", caller="c", task="j")


class FlakyStore:
    """Wraps a real store; the first write fails (a crash mid-flush), later ones go through."""

    def __init__(self, inner: SqliteLedgerStore, gate: anyio.Event | None = None) -> None:
        self.inner = inner
        self.failures_left = 1
        self.gate = gate

    async def write(self, records: Sequence[object]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("disk hiccup")
        await self.inner.write(records)  # type: ignore[arg-type]

    async def fetch_requests(self, *a: object) -> list[RequestRecord]:
        return await self.inner.fetch_requests(*a)  # type: ignore[arg-type]

    async def fetch_attempts(self, *a: object) -> list[object]:
        return await self.inner.fetch_attempts(*a)  # type: ignore[arg-type]

    async def count_requests(self) -> int:
        return await self.inner.count_requests()


async def test_shutdown_flushes_every_record(tmp_path: Path) -> None:
    """Records told before the runtime exits are all in the file afterwards."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(store, buffer, batch_size=50), name="ledger")
            for i in range(333):
                await ref.tell(rec(i))
        assert await store.count_requests() == 333
        assert buffer.statistics().written == 333


async def test_crash_mid_flush_loses_nothing(tmp_path: Path) -> None:
    """A store failure crashes the actor; the restarted actor writes what the crashed one had accepted."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        flaky = FlakyStore(store)
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(flaky, buffer, batch_size=10), name="ledger")  # type: ignore[arg-type]
            for i in range(25):
                await ref.tell(rec(i))
            with anyio.fail_after(5):
                while flaky.failures_left:
                    await anyio.sleep(0.001)
                while True:
                    try:
                        await ref.ask(Flush(), timeout=1)
                        break
                    except RuntimeError:
                        continue
            assert {c.name: c.restarts for c in rt.root.which_children()}["ledger"] >= 1
        assert await store.count_requests() == 25


async def test_producers_feel_backpressure_when_the_ledger_falls_behind(tmp_path: Path) -> None:
    """With the store stalled, tells eventually wait instead of dropping; all records land once it recovers."""

    class SmallLedger(LedgerActor):
        mailbox_size = 4

    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        gate = anyio.Event()
        slow = FlakyStore(store, gate)
        slow.failures_left = 0
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(
                lambda: SmallLedger(slow, buffer, batch_size=5, max_pending=8), name="ledger"  # type: ignore[arg-type]
            )
            done = anyio.Event()

            async def producer() -> None:
                for i in range(100):
                    await ref.tell(rec(i))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()
                assert ref.statistics().senders_waiting == 1
                assert buffer.statistics().pending >= 8
                gate.set()
        assert await store.count_requests() == 100


class GatedStore:
    """Wraps a real store; each write waits for one ``gate.release()``."""

    def __init__(self, inner: SqliteLedgerStore) -> None:
        self.inner = inner
        self.gate = anyio.Semaphore(0)

    async def write(self, records: Sequence[object]) -> None:
        await self.gate.acquire()
        await self.inner.write(records)  # type: ignore[arg-type]


async def test_held_back_producer_waits_for_one_batch_not_the_backlog(tmp_path: Path) -> None:
    """Past max_pending, the ledger resumes taking records after one more batch, not after the whole backlog."""

    class SmallLedger(LedgerActor):
        mailbox_size = 4

    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        gated = GatedStore(store)
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(
                lambda: SmallLedger(gated, buffer, batch_size=5, max_pending=100), name="ledger"  # type: ignore[arg-type]
            )

            async def producer() -> None:
                for i in range(300):
                    await ref.tell(rec(i))

            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                await anyio.wait_all_tasks_blocked()
                held = buffer.statistics()
                # The flush loop's first write is stuck; behind it, a backlog of five writes (of 20).
                assert held.pending >= 100
                gated.gate.release()  # the flush loop's batch lands; the held-back receive writes next
                await anyio.wait_all_tasks_blocked()
                assert buffer.statistics().accepted == held.accepted
                gated.gate.release()  # the held-back receive's batch lands: it takes records again
                await anyio.wait_all_tasks_blocked()
                assert buffer.statistics().accepted > held.accepted
                for _ in range(300):
                    gated.gate.release()
        assert await store.count_requests() == 300


def attempt(i: int) -> AttemptRecord:
    return AttemptRecord(
        request_id=f"r{i:06d}", attempt=0, ts=1_700_000_000.0 + i, tenant="t", caller="c", task="j",
        model_class="fast", model="m", provider="p", outcome="ok",
    )  # fmt: skip


async def test_a_commit_slot_is_answered_only_once_its_records_are_on_disk(tmp_path: Path) -> None:
    """``tell_records`` wakes the flush at once (no tick); its slot stays open until that write has committed."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        gated = GatedStore(store)
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:  # the clock never moves: no tick ever flushes
            ref = await rt.spawn(lambda: LedgerActor(gated, buffer), name="ledger")  # type: ignore[arg-type]
            committed = await tell_records(ref, (attempt(1), rec(1)))
            await anyio.wait_all_tasks_blocked()
            assert not committed.done
            assert await store.count_requests() == 0
            gated.gate.release()
            await wait_committed(committed, timeout=5)
            assert await store.count_requests() == 1
            assert await store.count_attempts() == 1


async def test_requests_ending_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Twenty requests that end while a write is under way are all answered by one more commit (group commit)."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        gated = GatedStore(store)
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(gated, buffer), name="ledger")  # type: ignore[arg-type]
            first = await tell_records(ref, (rec(0),))
            await anyio.wait_all_tasks_blocked()  # its write has started and waits at the gate
            later = [await tell_records(ref, (attempt(i), rec(i))) for i in range(1, 21)]
            await anyio.wait_all_tasks_blocked()
            gated.gate.release()
            await wait_committed(first, timeout=5)
            assert not any(slot.done for slot in later)
            gated.gate.release()
            for slot in later:
                await wait_committed(slot, timeout=5)
            assert buffer.statistics().batches == 2
        assert await store.count_requests() == 21


async def test_a_waiter_is_answered_by_the_successor_of_a_crashed_ledger(tmp_path: Path) -> None:
    """A write failure crashes the actor; the restarted one commits the records and answers their waiter."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        flaky = FlakyStore(store)
        buffer = LedgerBuffer()
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(flaky, buffer), name="ledger")  # type: ignore[arg-type]
            committed = await tell_records(ref, (rec(7),))
            await wait_committed(committed, timeout=5)
            assert flaky.failures_left == 0
            assert {c.name: c.restarts for c in rt.root.which_children()}["ledger"] == 1
        assert await store.count_requests() == 1


async def test_a_begin_reaches_the_file_without_a_tick_and_breakers_are_stored(tmp_path: Path) -> None:
    """A told begin is written at once though nobody waits; a breaker change in ``Records`` is stored."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store, Runtime(clock=FakeClock()) as rt:
        ref = await rt.spawn(lambda: LedgerActor(store, LedgerBuffer()), name="ledger")
        await ref.tell(BeginRecord(request_id="r1", ts=1.0, tenant="t", caller="c", task="j"))
        with anyio.fail_after(5):
            while await store.count_begun() == 0:
                await anyio.sleep(0.001)
        change = BreakerRecord(ts=2.0, provider="p", from_state="closed", to_state="open", cause="5 errors")
        await ref.tell(Records((change,)))
        await ref.ask(Flush())
        assert await store.breaker_transitions() == [change]


async def test_only_requests_and_attempts_reach_the_mirror(tmp_path: Path) -> None:
    """Begins and breaker changes are the ledger's own: the mirror sees attempt and request records only."""

    class Seen:
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def observe(self, record: AttemptRecord | RequestRecord, *, traceparent: str | None = None) -> None:
            self.kinds.append(type(record).__name__)

    seen = Seen()
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store, Runtime(clock=FakeClock()) as rt:
        ref = await rt.spawn(lambda: LedgerActor(store, LedgerBuffer(), mirror=seen), name="ledger")
        change = BreakerRecord(ts=2.0, provider="p", from_state="closed", to_state="open", cause="errors")
        begin = BeginRecord(request_id=rec(1).request_id, ts=1.0, tenant="t", caller="c", task="j")
        await ref.tell(begin)
        await ref.tell(Records((change, attempt(1), rec(1))))
        await ref.ask(Flush())
    assert seen.kinds == ["AttemptRecord", "RequestRecord"]


async def test_a_commit_that_cannot_happen_times_out_naming_the_ledger(tmp_path: Path) -> None:
    """A ledger that cannot write makes the wait an ``AskTimeout`` naming the ledger, after the deadline given."""
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        gated = GatedStore(store)
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(gated, LedgerBuffer()), name="ledger")  # type: ignore[arg-type]
            committed = await tell_records(ref, (rec(1),))
            with pytest.raises(AskTimeout, match="ledger"):
                await wait_committed(committed, timeout=0.05)
            gated.gate.release()  # the stuck write goes through
            await wait_committed(committed, timeout=5)


async def test_the_ledger_checkpoints_beside_its_writes_every_so_many_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once ``CHECKPOINT_EVERY`` records are written, a checkpoint runs in the actor's own tasks."""

    class Counting(SqliteLedgerStore):
        checkpoints = 0

        async def checkpoint(self) -> None:
            await super().checkpoint()
            Counting.checkpoints += 1

    monkeypatch.setattr(ledger_actor, "CHECKPOINT_EVERY", 100)
    async with Counting(tmp_path / "l.sqlite") as store:
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(store, LedgerBuffer(), batch_size=50), name="ledger")
            for i in range(250):
                await ref.tell(rec(i))
            await ref.ask(Flush())
            with anyio.fail_after(5):
                while Counting.checkpoints == 0:
                    await anyio.sleep(0.001)
        assert await store.count_requests() == 250


async def test_the_ledger_checkpoints_every_so_many_commits_however_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small commits grow the WAL by pages, not records: after ``CHECKPOINT_COMMITS`` batches a
    checkpoint runs even though few records were written (else the writer's own autocheckpoint
    fires inside a commit, and a final event waits behind its fsync)."""

    class Counting(SqliteLedgerStore):
        checkpoints = 0

        async def checkpoint(self) -> None:
            await super().checkpoint()
            Counting.checkpoints += 1

    monkeypatch.setattr(ledger_actor, "CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(ledger_actor, "CHECKPOINT_COMMITS", 3)
    async with Counting(tmp_path / "l.sqlite") as store:
        async with Runtime(clock=FakeClock()) as rt:
            ref = await rt.spawn(lambda: LedgerActor(store, LedgerBuffer(), batch_size=50), name="ledger")
            for i in range(2):
                await ref.tell(rec(i))
                await ref.ask(Flush())
            assert Counting.checkpoints == 0  # two commits: not yet
            await ref.tell(rec(2))
            await ref.ask(Flush())
            with anyio.fail_after(5):
                while Counting.checkpoints == 0:
                    await anyio.sleep(0.001)
        assert await store.count_requests() == 3
