"""Provider signals in the SQLite state file: the processes of one host tell each other of breakers and cooldowns.

The signals have their own table, ``provider_signals``, and their own version table,
``signals_schema_version``, beside the state store's and the ledger's (which they never touch),
and their own aiosqlite connection. A row is one origin's latest signal for one provider and
kind; ``seq`` numbers writes in commit order (each write takes the file's write lock and the
next number in one statement), so ``seq > cursor`` is exactly what a reader has not yet seen.
``purge`` deletes the rows whose instants have all passed (the opener does, with a day's margin).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final, final

import msgspec

from interlock.adapters.stores._signals import ProviderSignal, SignalsStoreError
from interlock.adapters.stores._sqlite_file import SqliteFile
from interlock.adapters.stores._sqlite_migrate import Migration, apply_migrations, read_version

VERSION_TABLE: Final = "signals_schema_version"

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "each process's latest breaker and cooldown signal per provider, numbered in commit order",
        (
            f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL PRIMARY KEY, summary TEXT NOT NULL)",
            """
            CREATE TABLE provider_signals (
                provider TEXT    NOT NULL,
                kind     TEXT    NOT NULL,
                origin   TEXT    NOT NULL,
                seq      INTEGER NOT NULL,
                at       REAL    NOT NULL,
                until    REAL    NOT NULL,
                state    TEXT,
                trips    INTEGER NOT NULL,
                cause    TEXT    NOT NULL,
                PRIMARY KEY (provider, kind, origin)
            )
            """,
            "CREATE INDEX provider_signals_seq ON provider_signals (seq)",
        ),
    ),
)
SCHEMA_VERSION: Final[int] = MIGRATIONS[-1].version

_PUBLISH = """
INSERT INTO provider_signals (provider, kind, origin, seq, at, until, state, trips, cause)
VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM provider_signals), ?, ?, ?, ?, ?)
ON CONFLICT (provider, kind, origin) DO UPDATE SET
    seq = excluded.seq, at = excluded.at, until = excluded.until, state = excluded.state,
    trips = excluded.trips, cause = excluded.cause
"""
_CHANGES = """
SELECT seq, provider, kind, origin, at, until, state, trips, cause
FROM provider_signals WHERE seq > ? ORDER BY seq
"""
_FIELDS: Final = ("provider", "kind", "origin", "at", "until", "state", "trips", "cause")  # _CHANGES after seq


def prepare_signals_file(path: str, busy_timeout: float) -> None:
    """Refuse a newer file, switch it to WAL and migrate the signal tables; blocking, so run it in a worker thread."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        found = read_version(conn, VERSION_TABLE)
        if found > SCHEMA_VERSION:
            problem = f"signals schema version {found} is newer than the supported {SCHEMA_VERSION}"
            raise SignalsStoreError(path, problem)
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise SignalsStoreError(path, f"cannot switch to WAL mode (journal mode is {mode})")
        apply_migrations(conn, MIGRATIONS, VERSION_TABLE, SCHEMA_VERSION)
    finally:
        conn.close()


@final
class SqliteProviderSignals(SqliteFile):
    """Provider signals shared by the processes that open one SQLite file (``async with`` opens and closes it)."""

    _what = "provider signals store"

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__(str(path), busy_timeout)

    @property
    def pushes(self) -> bool:
        """SQLite has no push: the reader polls."""
        return False

    @property
    def shown(self) -> str:
        """The file's path."""
        return self.path

    def _prepare(self, path: str, busy_timeout: float) -> None:
        prepare_signals_file(path, busy_timeout)

    def _error(self, problem: str) -> SignalsStoreError:
        return SignalsStoreError(self.path, problem)

    async def publish(self, signal: ProviderSignal) -> None:
        """Keep ``signal`` as its origin's latest for its provider and kind, numbered after every earlier write."""
        row = (signal.provider, signal.kind, signal.origin, signal.at, signal.until, signal.state, signal.trips,
               signal.cause)  # fmt: skip
        async with self._lock:
            conn = self._require()
            try:
                await conn.execute(_PUBLISH, row)
            except sqlite3.Error as exc:
                raise self._error(f"cannot publish a signal: {exc}") from exc

    async def purge(self, before: float) -> int:
        """Delete the signals whose ``at`` and ``until`` are both before ``before``; return how many went."""
        async with self._lock:
            conn = self._require()
            try:
                cursor = await conn.execute("DELETE FROM provider_signals WHERE until < ? AND at < ?", (before, before))
            except sqlite3.Error as exc:
                raise self._error(f"cannot purge signals: {exc}") from exc
            return cursor.rowcount

    async def changes(self, cursor: str, wait_s: float = 0.0) -> tuple[Sequence[ProviderSignal], str]:
        """The rows written since ``cursor`` (a ``seq``; ``""`` for all), oldest first; answers at once."""
        after = int(cursor) if cursor else 0
        async with self._lock:
            conn = self._require()
            try:
                async with conn.execute(_CHANGES, (after,)) as rows:
                    found = list(await rows.fetchall())
            except sqlite3.Error as exc:
                raise self._error(f"cannot read signals: {exc}") from exc
        signals = [signal for row in found if (signal := _signal(row)) is not None]
        return signals, str(max((int(row[0]) for row in found), default=after))


def _signal(row: Sequence[object]) -> ProviderSignal | None:
    fields = dict(zip(_FIELDS, row[1:], strict=True))
    try:
        return msgspec.convert(fields, ProviderSignal, strict=False)
    except msgspec.ValidationError:
        return None  # written by a newer interlock (a kind or state this one does not know): not ours to read
