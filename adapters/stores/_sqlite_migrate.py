"""Versioned schema migrations for the embedded SQLite stores, safe when processes race to apply them.

Each store keeps its own version table (the ledger and the state store may share one file).
Every step runs in its own ``BEGIN IMMEDIATE`` transaction that re-reads the version first, so two
processes opening the same file at once apply each step exactly once, and a crash mid-way leaves
the file at the last whole step. Migrations are history: append, never edit one that shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec


class Migration(msgspec.Struct, frozen=True):
    """One step of a schema: the version it brings the file to, and its statements."""

    version: int
    summary: str
    statements: tuple[str, ...]


def read_version(conn: sqlite3.Connection, table: str) -> int:
    """The highest applied step recorded in ``table``; 0 for a file without that table."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {table}").fetchone()
    return int(version)


def apply_migrations(conn: sqlite3.Connection, steps: Sequence[Migration], table: str, upto: int) -> int:
    """Apply every step above the file's version up to ``upto``; return the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    found = read_version(conn, table)
    for step in steps:
        if step.version > upto:
            break
        if step.version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied this step since the read above: re-check under the lock.
            if read_version(conn, table) < step.version:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {table} (version, summary) VALUES (?, ?)", (step.version, step.summary))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return read_version(conn, table)
