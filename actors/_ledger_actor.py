"""The ledger actor: takes records off the hot path and writes them to the store in batches.

``tell`` only appends to a pending list (no disk wait); a flush loop writes a batch when it is
full or when the flush interval passes. The pending list belongs to the supervised slot, not to
one actor instance, so a crash loses nothing already accepted: the restarted actor writes it
(the store ignores a record written twice). When pending records pile past ``max_pending``,
``receive`` waits for a flush, the mailbox fills, and producers feel backpressure instead of
losing records. A graceful stop drains the mailbox and flushes everything.

Group commit. A ``Records`` message may carry a ``committed`` slot (``tell_records`` makes one):
it is answered once a committed batch holds those records, and it wakes the flush loop at once
rather than at the next tick. Records arriving while a batch is being written join the next one,
so every waiter shares the next commit, and a busy ledger writes bigger batches, not more of them.
Records are written in the order they were accepted, so a waiter's records are on disk once the
count of records written reaches the count accepted with them. The waiters live with the pending
list in the ``LedgerBuffer``: a crashed actor's waiters are answered by its successor's commit. A
request's first ``BeginRecord`` wakes the flush loop too (nobody waits for it), so its begin
reaches the file within about one commit of its entry. The begins told as its attempts start
(``attempts > 0``) wake nothing: they ride the next commit, whoever's it is, or the next flush
tick, so an attempt never costs a commit of its own.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, Protocol, cast

import anyio
import msgspec

from interlock._actor import Actor, ActorRef
from interlock._errors import AskTimeout
from interlock._records import AttemptRecord, BeginRecord, BreakerRecord, LedgerRecord, RequestRecord
from interlock._streams import Reply
from interlock.adapters.stores._ledger_store import LedgerStore

# How long a request waits for the commit of its rows before giving up with ``AskTimeout``: as
# long as the ledger gets to flush on shutdown, so only a ledger that cannot write runs it out.
COMMIT_TIMEOUT_S: Final = 30.0
# A checkpoint runs beside the writes once either count is reached since the last one started.
# The WAL grows by the pages a commit touches, not by its records: a small commit (one request's
# rows) rewrites some 16 pages (each table's leaf and each of its indexes' leaves), so at 2,000
# requests/s a record count alone let the WAL reach the write connection's own backstop every
# second, and the commit that crossed it copied the WAL and waited for its fsync, 100-200 ms,
# the final event's p99 (measured). The commits beside a checkpoint still wait behind its fsync
# of the WAL now and then, for about as long as the WAL written since the last one takes to reach
# the disk: so checkpoints come often and small (measured at 2,000 requests/s, final-event p99
# with a checkpoint every 64 commits 4-7 ms, every 256 24-55 ms, only by records 85-100 ms).
CHECKPOINT_EVERY: Final = 20_000  # records
CHECKPOINT_COMMITS: Final = 64  # batches


class Flush(msgspec.Struct, frozen=True, tag=True):
    """Write everything pending now; the reply is how many records were written."""


class Records(msgspec.Struct, frozen=True, tag=True):
    """Several records in one message: a request's attempts and its request row, in one enqueue.

    ``committed``, when given, is answered (with None) once a committed batch holds every one of
    ``records``, or failed if the ledger stops without writing them.
    """

    records: tuple[LedgerRecord, ...]
    committed: Reply[None] | None = None


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


LedgerMsg = AttemptRecord | RequestRecord | BeginRecord | BreakerRecord | Records | Flush | TraceContext


async def tell_records(ledger: ActorRef[LedgerMsg], records: tuple[LedgerRecord, ...]) -> Reply[None]:
    """Tell ``records`` in one message; the returned slot is answered once they are committed."""
    committed: Reply[None] = Reply()
    await ledger.tell(Records(records, committed))
    return committed


async def wait_committed(committed: Reply[None], *, timeout: float = COMMIT_TIMEOUT_S) -> None:
    """Wait until ``committed`` is answered; ``AskTimeout`` (naming the ledger) after ``timeout`` seconds."""
    try:
        await committed.wait(timeout)
    except TimeoutError:
        raise AskTimeout("ledger", timeout) from None


class Mirror(Protocol):
    """Where written records are mirrored (OpenTelemetry spans and metrics), off the event loop."""

    def observe(self, record: AttemptRecord | RequestRecord, *, traceparent: str | None = None) -> None: ...


class LedgerBuffer:
    """Pending records, commit waiters and counters shared by every incarnation of one ledger actor."""

    def __init__(self) -> None:
        self.items: list[LedgerRecord] = []
        # (records accepted once the waiter's own were, slot): answered when that many are written.
        self.waiters: deque[tuple[int, Reply[None]]] = deque()
        self.accepted = 0
        self.written = 0
        self.batches = 0

    def statistics(self) -> LedgerStatistics:
        """Counters as a frozen snapshot."""
        return LedgerStatistics(self.accepted, self.written, len(self.items), self.batches)

    def wait_for(self, committed: Reply[None]) -> None:
        """Answer ``committed`` once every record accepted so far is written."""
        if self.written >= self.accepted:
            committed.set(None)
        else:
            self.waiters.append((self.accepted, committed))

    def release(self) -> None:
        """Answer the waiters whose records are all written."""
        waiters, written = self.waiters, self.written
        while waiters and waiters[0][0] <= written:
            waiters.popleft()[1].set(None)

    def fail_waiters(self, error: BaseException) -> None:
        """Fail every waiter: the ledger stopped for good without writing their records."""
        while self.waiters:
            self.waiters.popleft()[1].fail(error)


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
        self._unfolded = 0  # records written since the last checkpoint started
        self._commits = 0  # batches written since the last checkpoint started
        self._folding = False

    async def on_start(self) -> None:
        self.tasks.start_soon(self._flush_loop)
        if self._buffer.items:  # a crashed predecessor's records (and their waiters): write them now
            self._wake.set()

    async def on_stop(self) -> None:
        self._loop_scope.cancel()
        try:
            await self._flush()
        except BaseException as exc:
            # No incarnation follows a stop: nobody else could answer these.
            self._buffer.fail_waiters(exc)
            raise

    async def receive(self, msg: LedgerMsg) -> Any:
        # Not ``match``: a class pattern is an isinstance test, and a record would fall through
        # several of them; exact type tests, the commonest messages first, cost half as much.
        buffer = self._buffer
        if type(msg) is Records:
            records = msg.records
            buffer.items += records
            buffer.accepted += len(records)
            committed = msg.committed
            if committed is not None:
                buffer.wait_for(committed)
                self._wake.set()  # group commit: write now, with whatever else is pending
        elif type(msg) is BeginRecord:
            buffer.items.append(msg)
            buffer.accepted += 1
            if not msg.attempts:  # an entry: on file within about one commit, though nobody waits
                self._wake.set()
        elif type(msg) is Flush:
            return await self._flush()
        elif type(msg) is TraceContext:
            if self._mirror is not None:
                self._parents[msg.request_id] = msg.traceparent
            return None
        else:  # a single record: every other message type is tested above
            buffer.items.append(cast("LedgerRecord", msg))
            buffer.accepted += 1
        pending = len(buffer.items)
        if pending >= self._batch_size:
            self._wake.set()
        if pending >= self._max_pending:
            # Backpressure: write one batch (just below the limit again), not the whole backlog,
            # so producers wait for one write rather than for everything queued.
            await self._flush(batches=1)
        return None

    async def _flush_loop(self) -> None:
        # One ticker for the actor's life, not a timer task per flush: a task group, a task and
        # its cancellation cost about 115 us a flush, and a busy ledger flushes over 1,000 times a second.
        with self._loop_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._tick)
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    await self._flush()

    async def _tick(self) -> None:
        while True:
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
        buffer.release()
        self._unfolded += len(batch)
        self._commits += 1
        if (self._unfolded >= CHECKPOINT_EVERY or self._commits >= CHECKPOINT_COMMITS) and not self._folding:
            self._unfolded, self._commits, self._folding = 0, 0, True
            self.tasks.start_soon(self._checkpoint)
        if self._mirror is not None:
            # The SDK costs a few hundred microseconds per request: never on the event loop.
            await anyio.to_thread.run_sync(_mirror_batch, self._mirror, batch, self._parents)
        return len(batch)

    async def _checkpoint(self) -> None:
        try:
            await self._store.checkpoint()
        finally:
            self._folding = False


def _mirror_batch(mirror: Mirror, batch: list[LedgerRecord], parents: dict[str, str]) -> None:
    # Only requests and their attempts become spans; begins and breaker changes are the ledger's own.
    for record in batch:
        if type(record) is RequestRecord:
            mirror.observe(record, traceparent=parents.pop(record.request_id, None))
        elif type(record) is AttemptRecord:
            mirror.observe(record)
