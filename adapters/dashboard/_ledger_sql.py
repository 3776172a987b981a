"""The dashboard's way into a SQLite ledger: read-only connections, and the indexes its pages use.

The pages never load records into Python: every figure is a SQL aggregate, most of them over the
hourly summaries (``_summary``). On open, ``prepare_ledger`` adds the indexes the rest read
(``CREATE INDEX IF NOT EXISTS``, each named ``dashboard_*``): ordered walks for percentiles, the
cost bound for outliers, one request's attempts. A ledger file the process may not write is read
without them (slower, not wrong).
The indexes are no part of the ledger's schema: the stores neither need nor touch them, and a
newer ledger migration may drop or replace them without harm.

Pages read the file read-only (``mode=ro``, through ``_summary``'s attached connection, or
``connect_read_only``): the dashboard cannot write a row, and a gateway writing the same file
(WAL) is never blocked by a page.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

INDEXES: Final[tuple[str, ...]] = (
    # Nearest-rank percentiles per (task, model): an ordered walk of one group's present values.
    "CREATE INDEX IF NOT EXISTS dashboard_requests_ttft ON requests (task, model, ttft_ms, ts, tenant)",
    "CREATE INDEX IF NOT EXISTS dashboard_requests_ttlt ON requests (task, model, ttlt_ms, ts, tenant)",
    # The p95 TTFT of an hour or a day: the walk from the top of that bucket's values.
    "CREATE INDEX IF NOT EXISTS dashboard_requests_hour_ttft ON requests"
    " (CAST(ts / 3600.0 AS INTEGER), ttft_ms, ts, task, tenant)",
    "CREATE INDEX IF NOT EXISTS dashboard_requests_day_ttft ON requests"
    " (CAST(ts / 86400.0 AS INTEGER), ttft_ms, ts, task, tenant)",
    "CREATE INDEX IF NOT EXISTS dashboard_attempts_request ON attempts (request_id, attempt)",
    # Cost outliers: the few requests of a job above a bound, without reading the others.
    "CREATE INDEX IF NOT EXISTS dashboard_requests_cost ON requests (task, cost_cents)",
)
_TABLES: Final = frozenset({"requests", "attempts", "breaker_transitions"})


class LedgerUnreadable(Exception):
    """The dashboard's ledger file is missing or holds no ledger; the message names the path."""


def prepare_ledger(path: str | Path, *, busy_timeout: float = 5.0) -> bool:
    """Check that ``path`` holds a ledger and add the dashboard's indexes; False when they could not be added."""
    where = Path(path)
    if not where.is_file():
        raise LedgerUnreadable(f"ledger {path}: no such file (run some traffic or `interlock demo` first)")
    try:
        conn = sqlite3.connect(where, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise LedgerUnreadable(f"ledger {path}: cannot open it ({exc})") from None
    try:
        found = {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not found >= _TABLES:
            raise LedgerUnreadable(f"ledger {path}: not an interlock ledger (no requests, attempts and breaker tables)")
        try:
            for statement in INDEXES:
                conn.execute(statement)
        except sqlite3.OperationalError:  # a read-only file or directory: pages still work, from the table
            return False
        return True
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
