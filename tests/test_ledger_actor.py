"""The ledger actor: nothing accepted is lost — not on crash, not on shutdown — and producers feel backpressure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from interlock import FakeClock, RequestRecord, Runtime
from interlock.actors._ledger_actor import Flush, LedgerActor, LedgerBuffer
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
