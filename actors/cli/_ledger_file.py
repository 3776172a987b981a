"""What is wrong with a ledger path, found before the ledger store opens it (and so writes to it).

The commands take a ledger path from the user; the store would create, migrate or refuse the file,
but a refusal from SQLite ("unable to open database file") does not say which part of the path is
wrong, and a SQLite file holding someone else's tables would be migrated into. This module looks
first, reading only: a directory, a parent that is missing or a file, bytes that are no SQLite
database, foreign tables (no interlock version table), or a schema newer than this program.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from interlock.adapters.stores._ledger_schema import SCHEMA_VERSION, LedgerSchemaTooNew, LedgerStoreError, read_version

# A file holding either store's version table belongs to interlock (both stores may share one file).
_INTERLOCK_TABLES = frozenset({"schema_version", "state_schema_version"})
_NAMED_TABLES = 5  # a foreign file's tables named in the error, at most


def check_ledger_path(path: str | Path) -> None:
    """Raise ``LedgerStoreError`` (or ``LedgerSchemaTooNew``) naming ``path`` when it cannot hold this ledger.

    An absent file in an existing directory is fine: the store creates it. Nothing is written.
    """
    where = Path(path)
    problem = path_problem(where)
    if problem is not None:
        raise LedgerStoreError(str(path), problem)
    if where.is_file():
        _check_file(where, str(path))


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as a file at all (a directory, a parent missing or not a directory)."""
    if path.is_dir():
        return "is a directory, not a ledger file"
    if path.exists():
        return None
    if path.parent.is_dir():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return f"cannot create it: directory {path.parent} is not writable"
        return None
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{ancestor} is a file, not a directory"
            break
    return f"directory {path.parent} does not exist"


def _check_file(path: Path, shown: str) -> None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LedgerStoreError(shown, f"cannot open it ({exc})") from None
    try:
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise LedgerStoreError(shown, f"not a SQLite database ({exc})") from None
        tables = {str(name) for (name,) in rows if not str(name).startswith("sqlite_")}
        if tables and not tables & _INTERLOCK_TABLES:
            names = sorted(tables)
            listed = ", ".join(names[:_NAMED_TABLES]) + (", ..." if len(names) > _NAMED_TABLES else "")
            raise LedgerStoreError(shown, f"not an interlock ledger: it holds other tables ({listed})")
        try:
            found = read_version(conn)
        except sqlite3.DatabaseError as exc:
            raise LedgerStoreError(shown, f"its schema_version table is not interlock's ({exc})") from None
        if found > SCHEMA_VERSION:
            raise LedgerSchemaTooNew(shown, found, SCHEMA_VERSION)
    finally:
        conn.close()
