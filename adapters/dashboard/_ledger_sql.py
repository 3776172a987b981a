"""The dashboard's way into a SQLite ledger: a check that a file holds one, and read-only connections.

The dashboard adds nothing to the ledger file: no row, no index. Every index its pages walk lives
in the summary's own database (``_summary``), over a copy of the columns it needs; an index in the
ledger would cost every ledger write one more b-tree insert. (Earlier versions added ``dashboard_*``
indexes to the ledger; ledger migration 12 drops them.)

Pages read the file read-only (``mode=ro``, through ``_summary``'s attached connection, or
``connect_read_only``): the dashboard cannot write a row, and a gateway writing the same file
(WAL) is never blocked by a page.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

_TABLES: Final = frozenset({"requests", "attempts", "breaker_transitions"})


class LedgerUnreadable(Exception):
    """The dashboard's ledger file is missing or holds no ledger; the message names the path."""


def check_ledger(path: str | Path, *, busy_timeout: float = 5.0) -> None:
    """Check that ``path`` holds a ledger: a missing file, another database or garbage is ``LedgerUnreadable``."""
    where = Path(path)
    if not where.is_file():
        raise LedgerUnreadable(f"ledger {path}: no such file (run some traffic or `interlock demo` first)")
    try:
        conn = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise LedgerUnreadable(f"ledger {path}: cannot open it ({exc})") from None
    try:
        found = {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not found >= _TABLES:
            raise LedgerUnreadable(f"ledger {path}: not an interlock ledger (no requests, attempts and breaker tables)")
    except sqlite3.DatabaseError as exc:
        raise LedgerUnreadable(f"ledger {path}: not a SQLite database ({exc})") from None
    finally:
        conn.close()


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to the ledger at ``path``, for one page in one thread."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: a page's scans stay in memory between its queries
    return conn
