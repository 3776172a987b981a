"""The state store's SQLite schema: ordered migrations, their version table, the store's error.

The state tables live beside the ledger's or in a file of their own; they never touch the
ledger's tables, and their version is kept apart, in ``state_schema_version`` (the highest
``version`` applied; 0 when the table is absent). Opening applies each missing migration in its
own ``BEGIN IMMEDIATE`` transaction that re-reads the version first, so processes opening one
file at once apply each step exactly once. A file whose version is above ``SCHEMA_VERSION``
was written by a newer interlock and is refused. Migrations are history: append, never edit.

Amounts are cents as REAL and tokens as INTEGER, each in its own column; a row uses the column
of its unit and leaves the other at 0. Times are epoch seconds (REAL).

Version 2 adds who holds each lease (``holder_host``, ``holder_pid``, ``holder_start``: see
``interlock.adapters.stores._holder``), so a lease of a process that died is free at once, and
``budget_spend.closed``: a scope whose day saw a settlement above its reservation takes no more
reservations that day. Rows written before it have an empty holder, which expires by its TTL only.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from interlock._errors import ErrorClass, InterlockError
from interlock.adapters.stores._sqlite_migrate import Migration, apply_migrations
from interlock.adapters.stores._sqlite_migrate import read_version as _read_version


class StateStoreError(InterlockError):
    """The state file could not be opened, migrated, read or written; ``path`` and ``problem`` say why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"state store {path}: {problem}", kind=ErrorClass.INTERNAL)
        self.path = path
        self.problem = problem


_CACHE_V1 = """
CREATE TABLE cache_entries (
    key        TEXT NOT NULL PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at REAL NOT NULL
)
"""

_SPEND_V1 = """
CREATE TABLE budget_spend (
    scope  TEXT    NOT NULL,
    day    TEXT    NOT NULL,
    cents  REAL    NOT NULL DEFAULT 0.0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, day)
)
"""

_RESERVATIONS_V1 = """
CREATE TABLE budget_reservations (
    reservation_id TEXT    NOT NULL PRIMARY KEY,
    day            TEXT    NOT NULL,
    unit           TEXT    NOT NULL,
    cents          REAL    NOT NULL,
    tokens         INTEGER NOT NULL,
    expires_at     REAL    NOT NULL
)
"""

# One row per scope a reservation holds: the room check sums reservations through it.
_HOLDS_V1 = """
CREATE TABLE budget_holds (
    scope          TEXT NOT NULL,
    day            TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    PRIMARY KEY (scope, day, reservation_id)
)
"""

_LEASES_V1 = """
CREATE TABLE leases (
    lease_id   TEXT NOT NULL PRIMARY KEY,
    scope      TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "cache entries, daily spend, reservations and the scopes they hold, leases",
        (
            "CREATE TABLE state_schema_version (version INTEGER NOT NULL PRIMARY KEY, summary TEXT NOT NULL)",
            _CACHE_V1,
            "CREATE INDEX cache_entries_expires ON cache_entries (expires_at)",
            _SPEND_V1,
            _RESERVATIONS_V1,
            "CREATE INDEX budget_reservations_expires ON budget_reservations (expires_at)",
            _HOLDS_V1,
            "CREATE INDEX budget_holds_reservation ON budget_holds (reservation_id)",
            _LEASES_V1,
            "CREATE INDEX leases_scope ON leases (scope, expires_at)",
        ),
    ),
    Migration(
        2,
        "who holds each lease; scopes closed for the day after a settlement above its reservation",
        (
            "ALTER TABLE leases ADD COLUMN holder_host TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE leases ADD COLUMN holder_pid INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE leases ADD COLUMN holder_start INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX leases_holder ON leases (holder_host, holder_pid, holder_start)",
            "ALTER TABLE budget_spend ADD COLUMN closed INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)

SCHEMA_VERSION: Final[int] = MIGRATIONS[-1].version


def read_version(conn: sqlite3.Connection) -> int:
    """The file's state schema version: 0 for a file without the state tables."""
    return _read_version(conn, "state_schema_version")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply each missing step; return the version reached."""
    return apply_migrations(conn, MIGRATIONS, "state_schema_version", SCHEMA_VERSION)


def prepare_file(path: str, busy_timeout: float) -> None:
    """Refuse a newer file, switch it to WAL and migrate it; blocking, so run it in a worker thread."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        found = read_version(conn)
        if found > SCHEMA_VERSION:
            raise StateStoreError(path, f"schema version {found} is newer than the supported {SCHEMA_VERSION}")
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StateStoreError(path, f"cannot switch to WAL mode (journal mode is {mode})")
        migrate(conn)
    finally:
        conn.close()
