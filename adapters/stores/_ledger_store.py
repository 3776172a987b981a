"""The ledger store: the narrow async ``LedgerStore`` protocol and its SQLite implementation.

``SqliteLedgerStore`` keeps one aiosqlite connection (one worker thread) to a WAL-mode file.
``write`` puts a whole batch in one ``BEGIN IMMEDIATE`` transaction with one ``executemany`` per
table; rows go in with ``INSERT OR IGNORE`` on the natural keys (``request_id`` for requests,
``(request_id, attempt)`` for attempts), so replaying a batch after a crash adds nothing.
Records are final when written, so the first copy of a key wins and a replayed copy is dropped.

The write path is the ledger's hot loop (one row per request and per attempt), so it is built to
cost the event loop nothing per record and the worker thread little: records become bind
parameters inside the worker thread, lazily, as ``executemany`` pulls them; each statement inserts
``ROWS_PER_INSERT`` rows, so the per-statement work and the worker's hand-offs of the GIL (one per
statement) are shared by many rows; and every value binds on sqlite3's fast path (see
``_row_builder``).

sqlite3 errors are translated here, at this adapter's one seam, into ``LedgerStoreError``.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, final

import aiosqlite
import anyio
import anyio.to_thread
import msgspec

from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters.stores._ledger_schema import (
    SCHEMA_VERSION,
    LedgerSchemaTooNew,
    LedgerStoreError,
    migrate,
    read_version,
)
from interlock.adapters.stores._sqlite_file import SqliteFile

_R = TypeVar("_R", AttemptRecord, RequestRecord)
_Row = tuple[object, ...]

REQUEST_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in msgspec.structs.fields(RequestRecord))
ATTEMPT_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in msgspec.structs.fields(AttemptRecord))

class LedgerStore(Protocol):
    """Where ledger records are kept: batched writes, filtered reads. SQLite is one implementation."""

    async def write(self, records: Sequence[AttemptRecord | RequestRecord]) -> None:
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


# Rows per INSERT statement. 32 rows of at most 28 columns stay under 999 parameters, the lowest
# limit SQLite builds have had; more rows per statement gain little and hold the GIL longer.
ROWS_PER_INSERT: Final = 32


def _insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


def _select_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"


def _row_builder(kind: type[msgspec.Struct]) -> Callable[[Any], _Row]:
    """Compile ``record -> bind parameters`` for ``kind``, in its field order (the column order).

    sqlite3 binds an exact int, float or str directly, but sends ``None`` and ``bool`` through its
    adapter registry first, about three times the cost per value. So a bool becomes 0/1 (what
    sqlite3 would store anyway) and ``None`` becomes NaN, which SQLite binds as NULL. The function
    is generated from the Struct's fields: one expression per field, no loop, no per-value lookup.
    """
    parts: list[str] = []
    for field in msgspec.structs.fields(kind):
        get = f"r.{field.name}"
        if field.type is bool:
            parts.append(f"(1 if {get} else 0)")
        elif type(None) in typing.get_args(field.type):  # X | None
            parts.append(f"(_NULL if (v := {get}) is None else v)")
        else:
            parts.append(get)
    namespace: dict[str, Any] = {"_NULL": math.nan}
    exec(f"def build(r):\n    return ({', '.join(parts)},)\n", namespace)  # fields are our own identifiers
    build: Callable[[Any], _Row] = namespace["build"]
    return build


# Built once: column order is the Structs' field order, which is what the row builders yield.
_INSERT_REQUESTS: Final = _insert_sql("requests", REQUEST_COLUMNS, ROWS_PER_INSERT)
_INSERT_ATTEMPTS: Final = _insert_sql("attempts", ATTEMPT_COLUMNS, ROWS_PER_INSERT)
_SELECT_REQUESTS: Final = _select_sql("requests", REQUEST_COLUMNS)
_SELECT_ATTEMPTS: Final = _select_sql("attempts", ATTEMPT_COLUMNS)
_request_row: Final = _row_builder(RequestRecord)
_attempt_row: Final = _row_builder(AttemptRecord)


def _parameters(records: Sequence[object], requests: bool) -> Iterator[list[object]]:
    """Bind parameters of the batch's request (or attempt) rows, ``ROWS_PER_INSERT`` rows per list.

    Runs in the worker thread, pulled by ``executemany``. The last list is padded by repeating its
    last row: the copies are ignored as duplicates, so one statement serves every batch size.
    Anything that is not a request record counts as an attempt, so a stray object fails the write
    instead of vanishing.
    """
    build = _request_row if requests else _attempt_row
    params: list[object] = []
    rows = 0
    row: _Row = ()
    for record in records:
        if (type(record) is RequestRecord) is requests:
            row = build(record)
            params += row
            rows += 1
            if rows == ROWS_PER_INSERT:
                yield params
                params, rows = [], 0
    if rows:
        yield params + list(row) * (ROWS_PER_INSERT - rows)


# Per-connection settings. NORMAL is durable across a process crash in WAL mode (only a power cut
# can lose the last commits). The larger page cache and checkpoint interval keep random-key index
# inserts (uuid4-like request ids) from rewriting the same pages on every batch; measured on this
# 2-core machine they roughly double throughput for such ids and cost nothing for time-ordered ones.
_CONNECTION_PRAGMAS: Final = (
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",  # KiB, i.e. 64 MiB
    "PRAGMA wal_autocheckpoint=4000",  # pages, i.e. a ~16 MiB WAL between checkpoints
)


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
    """The embedded ledger: one SQLite file in WAL mode, written in batches through aiosqlite.

    Use ``async with SqliteLedgerStore(path) as store:`` (or ``await open()`` / ``await close()``).
    Writes from several tasks are serialized on the one connection; other processes writing the
    same file wait up to ``busy_timeout`` seconds for its lock.
    """

    _what = "ledger"
    _pragmas = _CONNECTION_PRAGMAS

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__(str(path), busy_timeout)

    def _prepare(self, path: str, busy_timeout: float) -> None:
        _prepare_file(path, busy_timeout)

    def _error(self, problem: str) -> LedgerStoreError:
        return LedgerStoreError(self._path, problem)

    async def write(self, records: Sequence[AttemptRecord | RequestRecord]) -> None:
        """Persist a batch in one transaction; records already stored (a replay) are skipped."""
        if not records:
            return
        batch = tuple(records)  # the worker thread reads the batch while the caller's list may change
        async with self._lock:
            conn = self._require()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(_INSERT_REQUESTS, _parameters(batch, requests=True))
                await conn.executemany(_INSERT_ATTEMPTS, _parameters(batch, requests=False))
                await conn.execute("COMMIT")
            except BaseException as exc:
                # The worker thread may still run the interrupted statement: ROLLBACK queues after it.
                with anyio.CancelScope(shield=True):
                    await self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise LedgerStoreError(self._path, f"write failed: {exc}") from exc
                raise

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        # No transaction may be open (BEGIN itself failed, or SQLite already rolled back).
        with contextlib.suppress(sqlite3.OperationalError):
            await conn.execute("ROLLBACK")

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

    async def _count(self, table: str) -> int:
        try:
            rows = list(await self._require().execute_fetchall(f"SELECT COUNT(*) FROM {table}"))
        except sqlite3.Error as exc:
            raise LedgerStoreError(self._path, f"read failed: {exc}") from exc
        return int(rows[0][0])
