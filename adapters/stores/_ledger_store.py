"""The ledger store: the narrow async ``LedgerStore`` protocol and its SQLite implementation.

``SqliteLedgerStore`` keeps one WAL-mode file open through two connections: writes go through a
``LedgerWriter`` (a plain ``sqlite3`` connection used in a worker thread, one trip per batch:
see ``_ledger_rows`` for the one transaction a batch is, ``_ledger_writer`` for sessions), reads
through aiosqlite. A batch commits in full or not at all; rows go in with ``INSERT OR IGNORE`` on
the natural keys, so replaying a batch after a crash adds nothing and the first copy of a key wins.

Opening the store closes, as ``interrupted`` request rows, the requests begun by sessions whose
process is gone (killed mid-request), so after any crash every request that reached the file
ends with exactly one row. ``synchronous=NORMAL`` in WAL mode makes a commit durable against a
process crash (only a power cut can lose the last ones).

sqlite3 and lock-file errors are translated here, at this adapter's one seam, into ``LedgerStoreError``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import anyio
import anyio.to_thread
import msgspec

from interlock._records import AttemptRecord, BreakerRecord, LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_rows import (
    ATTEMPT_COLUMNS,
    BREAKER_COLUMNS,
    REQUEST_COLUMNS,
    ROWS_PER_INSERT,
    select_sql,
)
from interlock.adapters.stores._ledger_rows import attempt_row as _attempt_row
from interlock.adapters.stores._ledger_rows import parameters as _parameters
from interlock.adapters.stores._ledger_rows import request_row as _request_row
from interlock.adapters.stores._ledger_schema import (
    SCHEMA_VERSION,
    LedgerSchemaTooNew,
    LedgerStoreError,
    migrate,
    read_version,
)
from interlock.adapters.stores._ledger_writer import CONNECTION_PRAGMAS, LedgerWriter, checkpoint
from interlock.adapters.stores._sqlite_file import SqliteFile

__all__ = [
    "ATTEMPT_COLUMNS", "REQUEST_COLUMNS", "ROWS_PER_INSERT", "LedgerStore", "SqliteLedgerStore",
    "_attempt_row", "_parameters", "_request_row",
]  # fmt: skip  # the row builders stay importable here: the hot-path canaries test them by these names

_R = TypeVar("_R", AttemptRecord, RequestRecord)


class LedgerStore(Protocol):
    """Where ledger records are kept: batched writes, filtered reads. SQLite is one implementation."""

    async def write(self, records: Sequence[LedgerRecord]) -> None:
        """Persist a batch atomically; writing a record that is already stored is a no-op."""
        ...

    async def fetch_requests(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[RequestRecord]:
        """Request records with ``ts >= since`` (when given), of ``task`` and ``tenant`` (when given)."""
        ...

    async def fetch_attempts(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[AttemptRecord]:
        """Attempt records, filtered like ``fetch_requests``."""
        ...

    async def count_requests(self) -> int:
        """How many request records are stored."""
        ...

    async def breaker_transitions(self, limit: int = 100) -> list[BreakerRecord]:
        """The last ``limit`` circuit-breaker transitions, newest first."""
        ...

    async def checkpoint(self) -> None:
        """Fold what the writes logged into the file, beside the writes rather than in one of them."""
        ...


_SELECT_REQUESTS: Final = select_sql("requests", REQUEST_COLUMNS)
_SELECT_ATTEMPTS: Final = select_sql("attempts", ATTEMPT_COLUMNS)
_SELECT_BREAKERS: Final = select_sql("breaker_transitions", BREAKER_COLUMNS) + " ORDER BY ts DESC, provider LIMIT ?"


def _where(since: float | None, task: str | None, tenant: str | None) -> tuple[str, tuple[float | str, ...]]:
    """A WHERE clause over fixed column names; every value travels as a parameter."""
    clauses: list[str] = []
    params: list[float | str] = []
    for clause, value in (("ts >= ?", since), ("task = ?", task), ("tenant = ?", tenant)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _prepare_file(path: str, busy_timeout: float) -> None:
    """Refuse a newer file, switch it to WAL and migrate it; runs once per open, in a worker thread."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        found = read_version(conn)
        if found > SCHEMA_VERSION:
            raise LedgerSchemaTooNew(path, found, SCHEMA_VERSION)
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise LedgerStoreError(path, f"cannot switch to WAL mode (journal mode is {mode})")
        migrate(conn, path)
    finally:
        conn.close()


@final
class SqliteLedgerStore(SqliteFile):
    """The embedded ledger: one SQLite file in WAL mode, written in batches, one transaction each.

    Use ``async with SqliteLedgerStore(path) as store:`` (or ``await open()`` / ``await close()``).
    Opening closes the requests that dead sessions began (``recovered`` says how many); closing
    closes this store's own begun requests that never got their end. Writes from several tasks
    are serialized on the one write connection; other processes writing the same file wait up to
    ``busy_timeout`` seconds for its lock.
    """

    _what = "ledger"
    _pragmas = CONNECTION_PRAGMAS

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__(str(path), busy_timeout)
        self._writer: LedgerWriter | None = None
        self._checkpointing = anyio.Lock()
        self.recovered = 0  # requests closed as interrupted when this store opened

    def _prepare(self, path: str, busy_timeout: float) -> None:
        _prepare_file(path, busy_timeout)

    def _error(self, problem: str) -> LedgerStoreError:
        return LedgerStoreError(self._path, problem)

    async def open(self) -> None:
        """Open the file (creating or upgrading its schema), start a session, close dead sessions' requests."""
        if self._writer is not None:
            return
        await super().open()
        try:
            writer = await anyio.to_thread.run_sync(LedgerWriter, self._path, self._busy_timeout)
        except BaseException as exc:
            await super().close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise LedgerStoreError(self._path, f"cannot open: {exc}") from exc
            raise
        self._writer, self.recovered = writer, writer.recovered

    async def close(self) -> None:
        """Close this session (its begun requests without an end become interrupted), then the file."""
        try:
            with anyio.CancelScope(shield=True):
                async with self._checkpointing, self._lock:  # a write or checkpoint in progress finishes first
                    writer, self._writer = self._writer, None
                    if writer is not None:
                        await anyio.to_thread.run_sync(writer.close)
        except sqlite3.Error as exc:
            raise LedgerStoreError(self._path, f"close failed: {exc}") from exc
        finally:
            await super().close()

    async def write(self, records: Sequence[LedgerRecord]) -> None:
        """Persist a batch in one transaction; records already stored (a replay) are skipped.

        The batch is written in one trip to a worker thread, which is not abandoned when the
        caller is cancelled: the transaction then still commits in full or rolls back in full.
        """
        if not records:
            return
        batch = tuple(records)  # the worker thread reads the batch while the caller's list may change
        async with self._lock:
            if self._writer is None:
                raise self._error("the ledger is not open")
            try:
                await anyio.to_thread.run_sync(self._writer.write, batch)
            except sqlite3.Error as exc:
                raise LedgerStoreError(self._path, f"write failed: {exc}") from exc

    async def checkpoint(self) -> None:
        """A PASSIVE checkpoint on a connection of its own: writes go on meanwhile (WAL mode lets them)."""
        async with self._checkpointing:
            if self._writer is None:
                raise self._error("the ledger is not open")
            try:
                await anyio.to_thread.run_sync(checkpoint, self._path, self._busy_timeout)
            except sqlite3.Error as exc:
                raise LedgerStoreError(self._path, f"checkpoint failed: {exc}") from exc

    async def breaker_transitions(self, limit: int = 100) -> list[BreakerRecord]:
        """The last ``limit`` circuit-breaker transitions, newest first."""
        try:
            rows = await self._require().execute_fetchall(_SELECT_BREAKERS, (limit,))
        except sqlite3.Error as exc:
            raise LedgerStoreError(self._path, f"read failed: {exc}") from exc
        return [BreakerRecord(**dict(zip(BREAKER_COLUMNS, row, strict=True))) for row in rows]

    async def fetch_requests(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[RequestRecord]:
        """Request records matching every given filter, oldest first."""
        return await self._fetch(
            _SELECT_REQUESTS, REQUEST_COLUMNS, RequestRecord, "ts, request_id", since, task, tenant
        )

    async def fetch_attempts(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[AttemptRecord]:
        """Attempt records matching every given filter, oldest first, attempts of a request in order."""
        order = "ts, request_id, attempt"
        return await self._fetch(_SELECT_ATTEMPTS, ATTEMPT_COLUMNS, AttemptRecord, order, since, task, tenant)

    async def _fetch(
        self,
        select: str,
        columns: tuple[str, ...],
        kind: type[_R],
        order: str,
        since: float | None,
        task: str | None,
        tenant: str | None,
    ) -> list[_R]:
        where, params = _where(since, task, tenant)
        try:
            rows = await self._require().execute_fetchall(f"{select}{where} ORDER BY {order}", params)
        except sqlite3.Error as exc:
            raise LedgerStoreError(self._path, f"read failed: {exc}") from exc
        # Lax conversion turns SQLite's 0/1 integers back into the Structs' bools.
        return [msgspec.convert(dict(zip(columns, row, strict=True)), kind, strict=False) for row in rows]

    async def count_requests(self) -> int:
        """How many request records are stored."""
        return await self._count("requests")

    async def count_attempts(self) -> int:
        """How many attempt records are stored."""
        return await self._count("attempts")

    async def count_begun(self) -> int:
        """How many requests are begun and not ended on file (still running, or left by a live session)."""
        return await self._count("begun")

    async def _count(self, table: str) -> int:
        try:
            rows = list(await self._require().execute_fetchall(f"SELECT COUNT(*) FROM {table}"))
        except sqlite3.Error as exc:
            raise LedgerStoreError(self._path, f"read failed: {exc}") from exc
        return int(rows[0][0])
