"""State stores behind the rails: the response cache, budgets and concurrency leases.

Three narrow async protocols — ``CacheStore``, ``BudgetStore``, ``LeaseStore`` — and one
embedded implementation, ``SqliteStateStore``: one aiosqlite connection to a WAL-mode file that
several processes may share (with each other and with the ledger: its tables and its version
table, ``state_schema_version``, are its own). The store hands out one view per protocol
(``store.cache``, ``store.budgets``, ``store.leases``), so each protocol keeps its own verbs.

Every check-then-write runs in one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's single
write lock before reading, so two processes can never both see the same free room. Times are
epoch seconds (``Clock.wall()``): a monotonic clock means nothing to another process. A process
that dies mid-call leaks nothing for long: its reservations and leases carry an expiry past
which they stop counting, and its leases are free at once to any process that finds it dead
(``_lease_store``). A settlement above its reservation is booked and closes the reservation's
scopes for the day. sqlite3 errors become ``StateStoreError`` here, at this adapter's seam.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, final

import aiosqlite
import anyio
import anyio.to_thread
import msgspec

from interlock._errors import BudgetExceeded
from interlock.adapters.stores._lease_store import SqliteLeases
from interlock.adapters.stores._sqlite_file import SqliteFile
from interlock.adapters.stores._state_schema import StateStoreError, prepare_file
from interlock.policies._budget import SLACK, Unit, passes_reservation

_COLUMN: Final[dict[str, str]] = {"cents": "cents", "tokens": "tokens"}  # a unit's column; nothing else reaches SQL


class Reservation(msgspec.Struct, frozen=True):
    """A granted budget reservation: ``amount`` in ``unit`` held on every scope until settled or released."""

    reservation_id: str
    day: str
    amount: float
    unit: Unit
    scopes: tuple[str, ...]
    expires_at: float


class CacheStore(Protocol):
    """Cached responses by key, each with an expiry (epoch seconds)."""

    async def get(self, key: str, now: float) -> bytes | None:
        """The value under ``key``, or None when absent or expired at ``now``."""
        ...

    async def put(self, key: str, value: bytes, expires_at: float) -> None:
        """Store ``value`` under ``key`` until ``expires_at``, replacing any older value."""
        ...

    async def purge(self, now: float) -> int:
        """Delete every entry expired at ``now``; return how many went."""
        ...


class BudgetStore(Protocol):
    """Daily spend per scope, and reservations held against it until the calls settle."""

    async def reserve(
        self,
        scopes: Sequence[tuple[str, float]],
        *,
        day: str,
        amount: float,
        reservation_id: str,
        now: float,
        expires_at: float,
        unit: Unit = "cents",
    ) -> Reservation:
        """Hold ``amount`` on every ``(scope, limit)`` at once, or raise ``BudgetExceeded`` for the first too full.

        A scope has room when it is not closed for ``day`` and its settled spend plus the
        reservations unexpired at ``now`` plus ``amount`` stay within its limit; the refusal's
        ``spent`` is that spend plus reservations.
        """
        ...

    async def settle(self, reservation_id: str, actual: float) -> bool:
        """Replace the reservation by ``actual`` spend on each of its scopes; False if it is unknown.

        ``actual`` is booked in full even when it passes the reservation; then each of its
        scopes is closed to new reservations for the reservation's day.
        """
        ...

    async def release(self, reservation_id: str) -> bool:
        """Drop the reservation without spending; False if it is unknown."""
        ...

    async def spent(self, scope: str, day: str, *, unit: Unit = "cents") -> float:
        """The settled spend of ``scope`` on ``day``."""
        ...

    async def used(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        """Settled spend plus unexpired reservations of ``scope`` on ``day``, read at one instant."""
        ...

    async def reserved(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        """The amount held on ``scope`` for ``day`` by reservations unexpired at ``now``."""
        ...

    async def closed(self, scope: str, day: str) -> bool:
        """Whether ``scope`` takes no more reservations on ``day`` (a settlement passed its reservation)."""
        ...

    async def purge_reservations(self, before: float) -> int:
        """Delete reservations that expired before ``before`` (a later settle of one is a no-op)."""
        ...


class LeaseStore(Protocol):
    """Concurrency slots shared by processes: at most ``limit`` unexpired leases per scope."""

    async def acquire(self, scope: str, limit: int, lease_id: str, now: float, ttl_s: float) -> bool:
        """Take a slot of ``scope`` until ``now + ttl_s`` if fewer than ``limit`` are held; re-acquiring renews."""
        ...

    async def renew(self, lease_id: str, now: float, ttl_s: float) -> bool:
        """Extend an unexpired lease to ``now + ttl_s``; False if it expired or is unknown (the slot is lost)."""
        ...

    async def release(self, lease_id: str) -> bool:
        """Give the slot back; False if the lease is unknown."""
        ...

    async def holders(self, scope: str, now: float) -> int:
        """How many leases of ``scope`` are unexpired at ``now`` (a dead holder's count until one is refused)."""
        ...


class StateStore(Protocol):
    """A state store: the three views the rails use. ``SqliteStateStore`` is the embedded one."""

    @property
    def cache(self) -> CacheStore:
        """The response cache."""
        ...

    @property
    def budgets(self) -> BudgetStore:
        """Daily spend and reservations."""
        ...

    @property
    def leases(self) -> LeaseStore:
        """The cross-process concurrency limit."""
        ...


def _checked(unit: Unit, amount: float) -> float | int:
    """``amount`` as its column stores it: finite cents >= 0, or a whole number of tokens >= 0."""
    if not (math.isfinite(amount) and amount >= 0):
        raise ValueError(f"an amount must be finite and >= 0, got {amount!r}")
    if unit == "tokens":
        if amount != int(amount):
            raise ValueError(f"a token amount must be whole, got {amount!r}")
        return int(amount)
    return float(amount)


@final
class SqliteStateStore(SqliteFile):
    """The embedded state store: cache, budgets and leases in one SQLite file shared by processes.

    Use ``async with SqliteStateStore(path) as store:`` then ``store.cache``, ``store.budgets``
    and ``store.leases``. Operations of this process are serialized on its one connection;
    other processes wait up to ``busy_timeout`` seconds for the file's write lock.
    """

    _what = "state store"

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        super().__init__(str(path), busy_timeout)
        self._cache = _SqliteCache(self)
        self._budgets = _SqliteBudgets(self)
        self._leases = SqliteLeases(self)

    @property
    def cache(self) -> CacheStore:
        """The response cache."""
        return self._cache

    @property
    def budgets(self) -> BudgetStore:
        """Daily spend and reservations."""
        return self._budgets

    @property
    def leases(self) -> LeaseStore:
        """The cross-process concurrency limit."""
        return self._leases

    def _prepare(self, path: str, busy_timeout: float) -> None:
        prepare_file(path, busy_timeout)

    def _error(self, problem: str) -> StateStoreError:
        return StateStoreError(self._path, problem)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back if it raises."""
        async with self._lock:
            conn = self._require()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                # The worker thread may still run the interrupted statement: ROLLBACK queues after it.
                with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.OperationalError):
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateStoreError(self._path, f"write failed: {exc}") from exc
                raise

    async def _execute(self, sql: str, params: Sequence[object]) -> int:
        """One statement on its own (SQLite makes it atomic); returns the rows it changed."""
        async with self._lock:
            try:
                cursor = await self._require().execute(sql, params)
            except sqlite3.Error as exc:
                raise StateStoreError(self._path, f"write failed: {exc}") from exc
            return cursor.rowcount

    async def _scalar(self, sql: str, params: Sequence[object]) -> Any:
        """The first column of a query's first row, or None when it has no row."""
        async with self._lock:
            try:
                rows = list(await self._require().execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                raise StateStoreError(self._path, f"read failed: {exc}") from exc
        return rows[0][0] if rows else None


@final
class _SqliteCache:
    """``CacheStore`` over the ``cache_entries`` table."""

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> bytes | None:
        sql = "SELECT value FROM cache_entries WHERE key = ? AND expires_at > ?"
        value = await self._store._scalar(sql, (key, now))
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, expires_at: float) -> None:
        sql = "INSERT OR REPLACE INTO cache_entries (key, value, expires_at) VALUES (?, ?, ?)"
        await self._store._execute(sql, (key, value, expires_at))

    async def purge(self, now: float) -> int:
        return await self._store._execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,))


_USED_SQL: Final = """
SELECT COALESCE((SELECT {col} FROM budget_spend WHERE scope = ?1 AND day = ?2), 0)
     + COALESCE((SELECT SUM(r.{col}) FROM budget_holds AS h
                 JOIN budget_reservations AS r ON r.reservation_id = h.reservation_id
                 WHERE h.scope = ?1 AND h.day = ?2 AND r.expires_at > ?3), 0),
       COALESCE((SELECT closed FROM budget_spend WHERE scope = ?1 AND day = ?2), 0)
"""
_SETTLE_SQL: Final = """
INSERT INTO budget_spend (scope, day, cents, tokens, closed)
SELECT scope, day, ?2, ?3, ?4 FROM budget_holds WHERE reservation_id = ?1
ON CONFLICT (scope, day) DO UPDATE SET
    cents = cents + excluded.cents, tokens = tokens + excluded.tokens, closed = MAX(closed, excluded.closed)
"""


@final
class _SqliteBudgets:
    """``BudgetStore`` over ``budget_spend``, ``budget_reservations`` and ``budget_holds``."""

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store

    async def reserve(
        self,
        scopes: Sequence[tuple[str, float]],
        *,
        day: str,
        amount: float,
        reservation_id: str,
        now: float,
        expires_at: float,
        unit: Unit = "cents",
    ) -> Reservation:
        value = _checked(unit, amount)
        names = tuple(scope for scope, _ in scopes)
        if len(set(names)) != len(names):
            raise ValueError(f"a reservation names each scope once, got {names!r}")
        used_sql = _USED_SQL.format(col=_COLUMN[unit])
        async with self._store._transaction() as conn:
            for scope, limit in scopes:
                rows = list(await conn.execute_fetchall(used_sql, (scope, day, now)))
                used, closed = float(rows[0][0]), bool(rows[0][1])
                if closed or used + value > limit + SLACK:
                    raise BudgetExceeded(scope, limit, used, unit)
            cents, tokens = (0.0, value) if unit == "tokens" else (value, 0)
            await conn.execute(
                "INSERT INTO budget_reservations (reservation_id, day, unit, cents, tokens, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reservation_id, day, unit, cents, tokens, expires_at),
            )
            holds = [(scope, day, reservation_id) for scope in names]
            await conn.executemany("INSERT INTO budget_holds (scope, day, reservation_id) VALUES (?, ?, ?)", holds)
        return Reservation(reservation_id, day, float(value), unit, names, float(expires_at))

    async def settle(self, reservation_id: str, actual: float) -> bool:
        async with self._store._transaction() as conn:
            sql = "SELECT unit, cents, tokens FROM budget_reservations WHERE reservation_id = ?"
            rows = list(await conn.execute_fetchall(sql, (reservation_id,)))
            if not rows:
                return False
            unit: Unit = "tokens" if rows[0][0] == "tokens" else "cents"
            reserved = float(rows[0][2] if unit == "tokens" else rows[0][1])
            value = _checked(unit, actual)
            cents, tokens = (0.0, value) if unit == "tokens" else (value, 0)
            # Booked in full either way; past its reservation, the bound failed: close the day.
            over = passes_reservation(reserved, float(value))
            await conn.execute(_SETTLE_SQL, (reservation_id, cents, tokens, int(over)))
            await self._drop(conn, reservation_id)
        return True

    async def release(self, reservation_id: str) -> bool:
        async with self._store._transaction() as conn:
            return await self._drop(conn, reservation_id)

    @staticmethod
    async def _drop(conn: aiosqlite.Connection, reservation_id: str) -> bool:
        await conn.execute("DELETE FROM budget_holds WHERE reservation_id = ?", (reservation_id,))
        cursor = await conn.execute("DELETE FROM budget_reservations WHERE reservation_id = ?", (reservation_id,))
        return cursor.rowcount > 0

    async def spent(self, scope: str, day: str, *, unit: Unit = "cents") -> float:
        sql = f"SELECT {_COLUMN[unit]} FROM budget_spend WHERE scope = ? AND day = ?"
        value = await self._store._scalar(sql, (scope, day))
        return 0.0 if value is None else float(value)

    async def used(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        return float(await self._store._scalar(_USED_SQL.format(col=_COLUMN[unit]), (scope, day, now)))

    async def closed(self, scope: str, day: str) -> bool:
        sql = "SELECT closed FROM budget_spend WHERE scope = ? AND day = ?"
        return bool(await self._store._scalar(sql, (scope, day)))

    async def reserved(self, scope: str, day: str, now: float, *, unit: Unit = "cents") -> float:
        sql = (
            f"SELECT COALESCE(SUM(r.{_COLUMN[unit]}), 0) FROM budget_holds AS h"
            " JOIN budget_reservations AS r ON r.reservation_id = h.reservation_id"
            " WHERE h.scope = ? AND h.day = ? AND r.expires_at > ?"
        )
        return float(await self._store._scalar(sql, (scope, day, now)))

    async def purge_reservations(self, before: float) -> int:
        async with self._store._transaction() as conn:
            expired = "SELECT reservation_id FROM budget_reservations WHERE expires_at < ?"
            await conn.execute(f"DELETE FROM budget_holds WHERE reservation_id IN ({expired})", (before,))
            cursor = await conn.execute("DELETE FROM budget_reservations WHERE expires_at < ?", (before,))
            return cursor.rowcount
