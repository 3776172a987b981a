"""The PostgreSQL ledger: the ``LedgerStore`` protocol over a server, with a local spool for when it is down.

``PostgresLedgerStore(url)`` keeps the same tables as the SQLite ledger (``_pg_schema``) and the
same rules. A batch is one transaction (binary ``COPY``, see ``_pg_rows``), and ``write`` returns
once the server has answered its ``COMMIT`` (``synchronous_commit`` is on by default: flushed to
the server's WAL), so the ledger actor's group commit means the same as on SQLite: an answer the
caller saw end is committed. A request that entered leaves a begun row; opening the store closes
the begun requests of dead sessions as ``interrupted`` (``_pg_session``).

When the server cannot take a batch (a connection error: down, restarting, unreachable),
``write`` appends it to the spool, a local SQLite file (``_ledger_spool``), and returns once that
is committed: still durable against a crash of this process. While batches are spooled, new ones
join them, in order, and every ``retry_s`` a write tries the server again: it replays the spool,
oldest first (at most ``replay_batches`` per write, so one write never holds the ledger for long),
and writes to the server again once the spool is empty. Opening the store replays whatever a
previous process left in the spool before closing dead sessions, so an end that was spooled is
never taken for an interruption. Natural keys and ``ON CONFLICT`` make every replay idempotent.
A store with a spool opens while the server is down too (not when it answers and refuses: a
wrong password, a missing database): it spools from the first batch, and does the opening's
work (schema check and migration, the spool's replay, closing dead sessions) at the first write
that reaches the server. Its reads fail until then; a store without a spool (a report) needs the
server to open.

The URL may hold a password (from ``$INTERLOCK_LEDGER_URL``); only ``StoreUrl.shown`` ever
appears in a repr or an error, and server messages are scrubbed of the password too. psycopg
and spool errors are translated here, at this adapter's one seam, into ``LedgerStoreError``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar, final
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import msgspec
import psycopg

from interlock._clock import Clock, RealClock
from interlock._records import AttemptRecord, BreakerRecord, LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_rows import ATTEMPT_COLUMNS, BREAKER_COLUMNS, REQUEST_COLUMNS, Sorted
from interlock.adapters.stores._ledger_schema import LedgerSchemaTooNew, LedgerStoreError
from interlock.adapters.stores._ledger_spool import LedgerSpool
from interlock.adapters.stores._pg_rows import select_sql
from interlock.adapters.stores._pg_session import PgWriter, connect
from interlock.policies._store_url import StoreUrl, parse_store_url

_UNAVAILABLE: Final = (psycopg.OperationalError, psycopg.InterfaceError)
# What a server that answers a connection but cannot take it yet says (see ``_server_down``).
_PASSING_STATES: Final = ("starting up", "shutting down", "in recovery", "too many clients", "not yet accepting")


def _server_down(exc: BaseException) -> bool:
    """Whether a failed first connection means the server is not there, rather than there and refusing.

    Not there: refused, unreachable, timed out, or answering that it is starting, stopping, in
    recovery or full. There and refusing (a wrong password, a missing database or role) is a
    configuration error, reported at start rather than spooled around. libpq gives a connection
    failure no SQLSTATE, only its text: a server that answered is quoted with its ``FATAL:``.
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return "FATAL:" not in text or any(state in text for state in _PASSING_STATES)


_R = TypeVar("_R", AttemptRecord, RequestRecord)

_SELECT_REQUESTS: Final = select_sql("requests", REQUEST_COLUMNS).as_string()
_SELECT_ATTEMPTS: Final = select_sql("attempts", ATTEMPT_COLUMNS).as_string()
_SELECT_BREAKERS: Final = (
    select_sql("breaker_transitions", BREAKER_COLUMNS).as_string() + ' ORDER BY ts DESC, provider COLLATE "C" LIMIT %s'
)
_COUNTS: Final = {t: f"SELECT COUNT(*) FROM {t}" for t in ("requests", "attempts", "begun")}


def _where(since: float | None, task: str | None, tenant: str | None) -> tuple[str, tuple[float | str, ...]]:
    """A WHERE clause over fixed column names; every value travels as a parameter."""
    clauses: list[str] = []
    params: list[float | str] = []
    for clause, value in (("ts >= %s", since), ("task = %s", task), ("tenant = %s", tenant)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


@final
class PostgresLedgerStore:
    """The ledger in a PostgreSQL database, spooling to a local SQLite file while the server is down.

    Use ``async with PostgresLedgerStore(url) as store:``. ``url`` is a ``postgresql://`` URL (or
    a ``StoreUrl`` of that kind); ``spool`` is the local file (``open_ledger_store`` names
    ``interlock.sqlite-spool`` by default), or None for no spool (a write
    while the server is down then fails, as a report's reads do). ``recovered`` counts the
    requests closed as interrupted when the store opened; ``replayed`` the spooled batches this
    store wrote to the server; ``outage`` is the last connection problem (password-free), or None
    once the server took a batch again. ``clock`` times the retries.
    """

    def __init__(
        self, url: str | StoreUrl, *, spool: str | Path | None, retry_s: float = 1.0,
        replay_batches: int = 64, clock: Clock | None = None,
    ) -> None:  # fmt: skip
        where = url if isinstance(url, StoreUrl) else parse_store_url(
            url, key="ledger.url", allowed=("postgresql",), from_env=True
        )  # fmt: skip
        if where.kind != "postgresql":
            raise LedgerStoreError(where.shown, "not a postgresql:// URL")
        self._url = where.url
        self.shown = where.shown
        password = urlsplit(where.url).password
        self._secrets = tuple({password, unquote(password)}) if password else ()
        self._spool = LedgerSpool(spool) if spool is not None else None
        self._retry_s = retry_s
        self._clock = clock or RealClock()
        self._replay_batches = replay_batches
        self._writer: PgWriter | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._lock = anyio.Lock()
        self._read_lock = anyio.Lock()
        self._spooling = False
        self._recovery_due = False  # opened while the server was down: dead sessions not closed yet
        self._retry_at = 0.0
        self.recovered = 0
        self.replayed = 0
        self.outage: str | None = None

    def __repr__(self) -> str:
        return f"PostgresLedgerStore({self.shown!r})"

    @property
    def spooling(self) -> bool:
        """Whether batches wait in the spool (the server was unreachable at the last try)."""
        return self._spooling

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())  # one line: server messages span several

    def _error(self, problem: str, exc: BaseException | None = None) -> LedgerStoreError:
        detail = f"{problem}: {self._scrub(str(exc))}" if exc is not None else problem
        return LedgerStoreError(self.shown, detail)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect (creating or upgrading the schema), start a session, replay the spool, close dead sessions."""
        if self._writer is not None:
            return
        try:
            self._writer = await anyio.to_thread.run_sync(self._open_sync)
        except LedgerSchemaTooNew:
            raise
        except (psycopg.Error, sqlite3.Error, OSError, msgspec.DecodeError) as exc:
            raise self._error("open failed", exc) from None  # not "cannot open": the CLI reads that as a bad file path

    def _open_sync(self) -> PgWriter:
        try:
            writer = PgWriter(self._url, self.shown)
        except _UNAVAILABLE as exc:
            if self._spool is None or not _server_down(exc):
                raise
            # Down as this process starts: spool from the first batch, on a session chosen now; the
            # opening's own work (replay what an earlier process left, close dead sessions) is done
            # once the server answers, before this store's batches reach it.
            self._recovery_due = True
            self._unavailable(exc, self._clock.now())
            return PgWriter(self._url, self.shown, connect_now=False)
        try:
            self._replay(writer, None)  # whatever a previous process left goes first, all of it
            self.recovered = writer.close_dead_sessions()
        except BaseException:
            writer.abandon()
            if self._spool is not None:
                self._spool.close()
            raise
        return writer

    async def close(self) -> None:
        """Replay what the spool holds if the server is back, close this session, then the connections."""
        with anyio.CancelScope(shield=True):
            async with self._lock, self._read_lock:
                writer, self._writer = self._writer, None
                reader, self._reader = self._reader, None
                if writer is None:
                    return
                try:
                    await anyio.to_thread.run_sync(self._close_sync, writer, reader)
                except (psycopg.Error, sqlite3.Error) as exc:
                    raise self._error("close failed", exc) from None

    def _close_sync(self, writer: PgWriter, reader: psycopg.Connection[Any] | None) -> None:
        try:
            if reader is not None:
                reader.close()
            if self._spooling:
                self._replay(writer, None)
            if not self._spooling:  # else the server is gone: the next store to open closes this session
                writer.close()
        except _UNAVAILABLE:
            pass  # the server went away meanwhile: the next store to open closes this session
        finally:
            writer.abandon()  # a no-op once ``close`` has closed the connection
            if self._spool is not None:
                self._spool.close()

    async def write(self, records: Sequence[LedgerRecord]) -> None:
        """Persist a batch: committed on the server, or, while it is down, in the spool, when this returns.

        One trip to a worker thread, which is not abandoned when the caller is cancelled: the
        transaction then still commits in full or rolls back in full.
        """
        if not records:
            return
        batch = tuple(records)  # the worker thread reads the batch while the caller's list may change
        async with self._lock:
            writer = self._writer
            if writer is None:
                raise self._error("the ledger is not open")
            try:
                await anyio.to_thread.run_sync(self._write_sync, writer, batch, self._clock.now())
            except (psycopg.Error, sqlite3.Error, msgspec.DecodeError) as exc:
                raise self._error("write failed", exc) from None

    def _write_sync(self, writer: PgWriter, batch: tuple[LedgerRecord, ...], now: float) -> None:
        if self._spooling and now < self._retry_at:
            self._to_spool(writer, batch)
            return
        retry = not self._spooling  # a connection cut since its last use (a restart): once more on a new one
        while True:
            try:
                if self._spooling:
                    self._replay(writer, self._replay_batches)
                    if self._spooling:  # more left than one write replays: this batch queues behind them
                        self._to_spool(writer, batch)
                        return
                if self._recovery_due:  # the server is back after a start without it: do the opening's work
                    self.recovered += writer.close_dead_sessions()
                    self._recovery_due = False
                writer.write(batch)
                return
            except _UNAVAILABLE as exc:
                writer.abandon()
                if not retry:
                    self._unavailable(exc, now)
                    self._to_spool(writer, batch)
                    return
                retry = False

    def _replay(self, writer: PgWriter, limit: int | None) -> None:
        """Write spooled batches to the server, oldest first (at most ``limit``); clears ``spooling`` once empty."""
        spool = self._spool
        done = 0
        while spool is not None and (limit is None or done < limit):
            batch = spool.oldest()
            if batch is None:
                break
            writer.write(batch.records, batch.session)
            spool.remove(batch.seq)  # only once committed: a crash here replays it, and the keys skip it
            done += 1
            self.replayed += 1
        else:
            if spool is not None:
                return  # the limit was reached with batches left: still spooling
        self._spooling, self.outage = False, None

    def _unavailable(self, exc: BaseException, now: float) -> None:
        if self._spool is None:
            raise self._error("write failed (the server is unreachable and this store has no spool)", exc)
        self._spooling, self._retry_at = True, now + self._retry_s
        self.outage = self._scrub(str(exc))

    def _to_spool(self, writer: PgWriter, batch: tuple[LedgerRecord, ...]) -> None:
        assert self._spool is not None  # only spooling stores get here
        Sorted(batch)  # a stray object fails the write here too, rather than poisoning every replay
        self._spool.append(batch, writer.session)

    async def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints its own WAL (the method is the protocol's, for SQLite)."""

    async def spooled_batches(self) -> int:
        """How many batches wait in the spool file."""
        spool = self._spool
        if spool is None:
            return 0
        async with self._lock:
            try:
                return await anyio.to_thread.run_sync(spool.count)
            except sqlite3.Error as exc:
                raise self._error("spool read failed", exc) from None

    async def _read(self, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        async with self._read_lock:
            if self._writer is None:
                raise self._error("the ledger is not open")
            try:
                return await anyio.to_thread.run_sync(self._read_sync, query, params)
            except psycopg.Error as exc:
                if self._reader is not None and (self._reader.closed or self._reader.broken):
                    self._reader = None  # made again at the next read
                raise self._error("read failed", exc) from None

    def _read_sync(self, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        reader = self._reader
        if reader is not None and not reader.closed and not reader.broken:
            try:
                return reader.execute(query, params).fetchall()
            except _UNAVAILABLE:
                reader.close()  # cut since its last use (a server restart): one more try on a new connection
        self._reader = None
        self._reader = reader = connect(self._url)
        return reader.execute(query, params).fetchall()

    async def breaker_transitions(self, limit: int = 100) -> list[BreakerRecord]:
        """The last ``limit`` circuit-breaker transitions, newest first."""
        rows = await self._read(_SELECT_BREAKERS, (limit,))
        return [BreakerRecord(**dict(zip(BREAKER_COLUMNS, row, strict=True))) for row in rows]

    async def fetch_requests(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[RequestRecord]:
        """Request records matching every given filter, oldest first."""
        order = 'ts, request_id COLLATE "C"'  # ties in byte order, as SQLite sorts them, whatever the locale
        return await self._fetch(_SELECT_REQUESTS, REQUEST_COLUMNS, RequestRecord, order, since, task, tenant)

    async def fetch_attempts(
        self, since: float | None = None, task: str | None = None, tenant: str | None = None
    ) -> list[AttemptRecord]:
        """Attempt records matching every given filter, oldest first, attempts of a request in order."""
        order = 'ts, request_id COLLATE "C", attempt'
        return await self._fetch(_SELECT_ATTEMPTS, ATTEMPT_COLUMNS, AttemptRecord, order, since, task, tenant)

    async def _fetch(
        self, select: str, columns: tuple[str, ...], kind: type[_R], order: str,
        since: float | None, task: str | None, tenant: str | None,
    ) -> list[_R]:  # fmt: skip
        where, params = _where(since, task, tenant)
        rows = await self._read(f"{select}{where} ORDER BY {order}", params)
        return [_convert(kind, columns, row) for row in rows]

    async def count_requests(self) -> int:
        """How many request records are stored (on the server; the spool's are not counted)."""
        return await self._count("requests")

    async def count_attempts(self) -> int:
        """How many attempt records are stored on the server."""
        return await self._count("attempts")

    async def count_begun(self) -> int:
        """How many requests are begun and not ended on the server (still running, or left by a live session)."""
        return await self._count("begun")

    async def _count(self, table: str) -> int:
        rows = await self._read(_COUNTS[table], ())
        return int(rows[0][0])


def _convert(kind: type[_R], columns: tuple[str, ...], row: tuple[Any, ...]) -> _R:
    return msgspec.convert(dict(zip(columns, row, strict=True)), kind)
