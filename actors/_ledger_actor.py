"""The ledger actor: takes records off the hot path and writes them to the store in batches.

``tell`` only appends to a pending list (no disk wait); a flush loop writes a batch when it is
full or when the flush interval passes. The pending list belongs to the supervised slot, not to
one actor instance, so a crash loses nothing already accepted: the restarted actor writes it
(the store ignores a record written twice). When pending records pile past ``max_pending``,
``receive`` waits for a flush, the mailbox fills, and producers feel backpressure instead of
losing records. A graceful stop drains the mailbox and flushes everything.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio
import msgspec

from interlock._actor import Actor
from interlock._records import AttemptRecord, LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_store import LedgerStore


class Flush(msgspec.Struct, frozen=True, tag=True):
    """Write everything pending now; the reply is how many records were written."""


class Records(msgspec.Struct, frozen=True, tag=True):
    """Several records in one message: a request's attempts and its request row, in one enqueue."""

    records: tuple[LedgerRecord, ...]


class TraceContext(msgspec.Struct, frozen=True, tag=True):
    """The caller's W3C ``traceparent`` for a request, so its mirrored spans join the caller's trace."""

    request_id: str
    traceparent: str


class LedgerStatistics(msgspec.Struct, frozen=True):
    """Records accepted and written so far, and how many wait for a flush."""

    accepted: int
    written: int
    pending: int
    batches: int


LedgerMsg = AttemptRecord | RequestRecord | Records | Flush | TraceContext


class Mirror(Protocol):
    """Where written records are mirrored (OpenTelemetry spans and metrics), off the event loop."""

    def observe(self, record: LedgerRecord, *, traceparent: str | None = None) -> None: ...


class LedgerBuffer:
    """Pending records and counters shared by every incarnation of one ledger actor."""

    def __init__(self) -> None:
        self.items: list[LedgerRecord] = []
        self.accepted = 0
        self.written = 0
        self.batches = 0

    def statistics(self) -> LedgerStatistics:
        """Counters as a frozen snapshot."""
        return LedgerStatistics(self.accepted, self.written, len(self.items), self.batches)


class LedgerActor(Actor[LedgerMsg]):
    """Batches ledger records into a ``LedgerStore``."""

    mailbox_size = 8192

    def __init__(
        self,
        store: LedgerStore,
        buffer: LedgerBuffer,
        *,
        batch_size: int = 1024,
        flush_interval_s: float = 0.25,
        max_pending: int = 50_000,
        mirror: Mirror | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._buffer = buffer
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._wake = anyio.Event()
        self._loop_scope = anyio.CancelScope()
        self._write_lock = anyio.Lock()
        self._mirror = mirror
        self._parents: dict[str, str] = {}

    async def on_start(self) -> None:
        self.tasks.start_soon(self._flush_loop)

    async def on_stop(self) -> None:
        self._loop_scope.cancel()
        await self._flush()

    async def receive(self, msg: LedgerMsg) -> Any:
        buffer = self._buffer
        match msg:
            case Flush():
                return await self._flush()
            case TraceContext():
                if self._mirror is not None:
                    self._parents[msg.request_id] = msg.traceparent
                return None
            case Records():
                buffer.items.extend(msg.records)
                buffer.accepted += len(msg.records)
            case _:  # a single record
                buffer.items.append(msg)
                buffer.accepted += 1
        pending = len(buffer.items)
        if pending >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        if pending >= self._max_pending:
            # Backpressure: write one batch (just below the limit again), not the whole backlog,
            # so producers wait for one write rather than for everything queued.
            await self._flush(batches=1)
        return None

    async def _flush_loop(self) -> None:
        with self._loop_scope:
            while True:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._tick, tg.cancel_scope)
                    await self._wake.wait()
                    tg.cancel_scope.cancel()
                self._wake = anyio.Event()
                await self._flush()

    async def _tick(self, scope: anyio.CancelScope) -> None:
        await self.clock.sleep(self._interval)
        self._wake.set()

    async def _flush(self, batches: int | None = None) -> int:
        """Write pending records, at most ``batches`` batches (all of them when None); returns how many.

        The write lock is taken per batch, not for the whole backlog: a producer held back by
        ``max_pending`` waits for one batch, never for everything queued ahead of it.
        """
        written = 0
        buffer = self._buffer
        while buffer.items and (batches is None or batches > 0):
            batches = None if batches is None else batches - 1
            async with self._write_lock:
                written += await self._write_batch(buffer)
        return written

    async def _write_batch(self, buffer: LedgerBuffer) -> int:
        batch = buffer.items[: self._batch_size * 4]
        if not batch:  # another flusher emptied the buffer while this one waited for the lock
            return 0
        await self._store.write(batch)
        # Drop only what was written: records that arrived meanwhile stay queued.
        del buffer.items[: len(batch)]
        buffer.written += len(batch)
        buffer.batches += 1
        if self._mirror is not None:
            # The SDK costs a few hundred microseconds per request: never on the event loop.
            await anyio.to_thread.run_sync(_mirror_batch, self._mirror, batch, self._parents)
        return len(batch)


def _mirror_batch(mirror: Mirror, batch: list[LedgerRecord], parents: dict[str, str]) -> None:
    for record in batch:
        parent = parents.pop(record.request_id, None) if type(record) is RequestRecord else None
        mirror.observe(record, traceparent=parent)
