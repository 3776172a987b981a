"""Hourly sums of the ledger, kept in memory, so that a page over a million requests reads thousands of rows.

A ``Summary`` is a private SQLite database with the ledger file attached read-only (as
``ledger``; unqualified ``requests``/``attempts`` name the ledger's tables). It holds, per UTC
hour (``h``, the hour's number since the epoch) and per group, the counts and sums the pages
draw: requests (``req_hour``), attempts (``att_hour``), verdicts (``ver_hour``), and, per UTC
day, the latency histogram bins (``ttft_day``, ``ttlt_day``: bins are many, so a day each); and
a copy of each request's latency and cost columns (``req_lat``), indexed for the ordered walks of
exact percentiles and cost outliers. ``refresh`` adds the rows appended since the last one (by
rowid: the ledger only appends), so the first page view reads the ledger once and later views
only what is new.

Every sum is exact, never an estimate: ``source`` gives, for a window, the summary rows of the
periods wholly inside it and, for the one or two periods it cuts, the same sums taken from the
raw rows (a range of the time index). A page's figures are then the report's, hour edges and all.
Each page runs in one read transaction (``reading``), so the refresh and every query of the page
see one snapshot of the ledger.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from interlock.adapters.dashboard._window import Window

HOUR: Final = 3600.0
DAY: Final = 86400.0


class Table(msgspec.Struct, frozen=True):
    """One summary table: its raw table, its group keys (name, raw expression) and sums (name, raw expression)."""

    name: str
    raw: str
    keys: tuple[tuple[str, str], ...]
    sums: tuple[tuple[str, str], ...]
    where: str = "1"
    period: float = HOUR  # the seconds one row sums (an hour; a day for the latency bins, which are many)

    @property
    def period_of(self) -> str:
        """The SQL of a raw row's period number: its hour (or day) since the epoch."""
        return f"CAST(ts / {self.period!r} AS INTEGER)"

    def create(self) -> str:
        keys = ", ".join(k for k, _ in self.keys)
        columns = ", ".join(f"{k} NOT NULL" for k, _ in self.keys) + ", " + ", ".join(s for s, _ in self.sums)
        # Clustered on the hour: a window's whole hours are one range of the table itself.
        table = f"CREATE TABLE {self.name} (h INTEGER NOT NULL, {columns}, PRIMARY KEY (h, {keys}))"
        return table + " WITHOUT ROWID"

    def raw_select(self, where: str, bucket: str | None = None) -> str:
        """The table's rows taken from the raw rows matching ``where``, grouped by ``bucket`` (its period) and keys."""
        keys = ", ".join(f"{expr} AS {k}" for k, expr in self.keys)
        sums = ", ".join(f"{expr} AS {s}" for s, expr in self.sums)
        groups = ", ".join(str(i + 2) for i in range(len(self.keys)))
        return (
            f"SELECT {bucket or self.period_of} AS h, {keys}, {sums} FROM ledger.{self.raw}"
            f" WHERE ({self.where}) AND {where} GROUP BY 1, {groups}"
        )

    def upsert(self) -> str:
        names = ", ".join(["h", *(k for k, _ in self.keys), *(s for s, _ in self.sums)])
        merge = ", ".join(f"{s} = {s} + excluded.{s}" for s, _ in self.sums)
        keys = ", ".join(["h", *(k for k, _ in self.keys)])
        select = self.raw_select("rowid > ? AND rowid <= ?")
        return (
            f"INSERT INTO {self.name} ({names}) SELECT * FROM ({select}) WHERE true"
            f" ON CONFLICT ({keys}) DO UPDATE SET {merge}"
        )


def _bin(column: str, edges: tuple[float, ...]) -> str:
    """The latency bin of ``column``: ``i`` when below ``edges[i]`` (and not an earlier one), -1 when NULL."""
    cases = " ".join(f"WHEN {column} < {edge!r} THEN {i}" for i, edge in enumerate(edges))
    return f"CASE WHEN {column} IS NULL THEN -1 {cases} ELSE {len(edges)} END"


# The histograms' bins (upper edges, ms; the last bin is open) and the summaries' finer ones, four
# to each doubling: a percentile walks one fine bin, and every histogram edge is a fine edge too.
LATENCY_EDGES: Final[tuple[float, ...]] = (50, 100, 200, 400, 800, 1600, 3200, 6400)
FINE_EDGES: Final[tuple[float, ...]] = tuple(50 * 2 ** (k / 4) for k in range(-12, 33))


def display_bin(fine: int) -> int:
    """The histogram bin that holds fine bin ``fine``."""
    upper = FINE_EDGES[fine] if fine < len(FINE_EDGES) else float("inf")
    return next((j for j, edge in enumerate(LATENCY_EDGES) if upper <= edge), len(LATENCY_EDGES))
_COMMON: Final = (("task", "task"), ("tenant", "tenant"))
REQUESTS: Final = Table(
    "req_hour", "requests",
    (*_COMMON, ("caller", "caller"), ("model", "model")),
    (("n", "COUNT(*)"), ("ok", "SUM(outcome = 'ok')"), ("degraded", "SUM(degraded)"), ("hedged", "SUM(hedged)"),
     ("cache_hits", "SUM(cache_hit)"), ("cost", "TOTAL(cost_cents)"), ("fresh", "SUM(input_tokens)"),
     ("output", "SUM(output_tokens)"), ("cread", "SUM(cache_read_tokens)"), ("cwrite", "SUM(cache_write_tokens)"),
     ("n_ttft", "COUNT(ttft_ms)"), ("n_ttlt", "COUNT(ttlt_ms)")),
)  # fmt: skip
ATTEMPTS: Final = Table(
    "att_hour", "attempts",
    (*_COMMON, ("provider", "provider"), ("model", "model"), ("outcome", "outcome"),
     ("kind", "CASE WHEN outcome = 'error' THEN COALESCE(NULLIF(error, ''), 'unknown') ELSE '' END")),
    (("n", "COUNT(*)"), ("hedges", "SUM(hedge)"), ("cost", "TOTAL(cost_cents)")),
)  # fmt: skip
VERDICTS: Final = Table(
    "ver_hour", "attempts", (*_COMMON, ("model", "model"), ("verdict", "verdict")), (("n", "COUNT(*)"),),
    where="verdict IS NOT NULL",
)  # fmt: skip
TTFT: Final = Table(
    "ttft_day", "requests", (*_COMMON, ("model", "model"), ("bin", _bin("ttft_ms", FINE_EDGES))),
    (("n", "COUNT(*)"),), where="ttft_ms IS NOT NULL", period=DAY,
)  # fmt: skip
TTLT: Final = Table(
    "ttlt_day", "requests", (*_COMMON, ("model", "model"), ("bin", _bin("ttlt_ms", FINE_EDGES))),
    (("n", "COUNT(*)"),), where="ttlt_ms IS NOT NULL", period=DAY,
)  # fmt: skip
TABLES: Final = (REQUESTS, ATTEMPTS, VERDICTS, TTFT, TTLT)


def source(table: Table, window: Window) -> tuple[str, list[float | str]]:
    """A subquery of ``table``'s rows for ``window``: summary rows for whole periods, raw sums for the cut ones."""
    raw_where, raw_params = window.where()
    size = table.period
    lo = None if window.since is None else math.ceil(window.since / size)
    hi = math.floor(window.until / size)  # periods before ``hi`` end before the window does
    filters = [("task", window.task), ("tenant", window.tenant)]
    summary_terms = [f"h < {hi}", *(f"{k} = ?" for k, v in filters if v is not None)]
    if lo is not None:
        summary_terms.append(f"h >= {lo}")
    summary_params = [v for _, v in filters if v is not None]
    if lo is not None and lo >= hi:  # the window lies within a period or two: all from the raw rows
        return f"({table.raw_select(raw_where)})", raw_params
    cols = ", ".join(["h", *(k for k, _ in table.keys), *(s for s, _ in table.sums)])
    parts = [f"SELECT {cols} FROM {table.name} WHERE {' AND '.join(summary_terms)}"]
    params: list[float | str] = [*summary_params]
    # The cut hours: a time range each (the index finds it), then exactly the rows of those hours.
    parts.append(table.raw_select(f"{raw_where} AND ts >= ? AND {table.period_of} >= {hi}"))
    params += [*raw_params, hi * size - 1.0]
    if lo is not None:
        parts.append(table.raw_select(f"{raw_where} AND ts < ? AND {table.period_of} < {lo}"))
        params += [*raw_params, lo * size + 1.0]
    return "(" + " UNION ALL ".join(parts) + ")", params


# The request columns the ordered walks read, copied (with the ledger's rowid as ``rid``) into
# ``LATENCY`` of the summary's own database, and the orders they walk. The ledger file holds no
# index of the dashboard's: each would cost every ledger write one more b-tree insert (the five
# below made a batch of request rows 2.4x slower to write, measured), on the gateway's hot path.
LATENCY: Final = "req_lat"
_LATENCY_COLUMNS: Final = ("task", "model", "tenant", "ts", "ttft_ms", "ttlt_ms", "cost_cents")
_LATENCY_INDEXES: Final = (
    # Nearest-rank percentiles per (task, model): an ordered walk of one group's present values.
    f"CREATE INDEX IF NOT EXISTS req_lat_ttft ON {LATENCY} (task, model, ttft_ms, ts, tenant)",
    f"CREATE INDEX IF NOT EXISTS req_lat_ttlt ON {LATENCY} (task, model, ttlt_ms, ts, tenant)",
    # The p95 TTFT of an hour or a day: the walk from the top of that bucket's values.
    f"CREATE INDEX IF NOT EXISTS req_lat_hour_ttft ON {LATENCY}"
    " (CAST(ts / 3600.0 AS INTEGER), ttft_ms, ts, task, tenant)",
    f"CREATE INDEX IF NOT EXISTS req_lat_day_ttft ON {LATENCY}"
    " (CAST(ts / 86400.0 AS INTEGER), ttft_ms, ts, task, tenant)",
    # Cost outliers: the few requests of a job above a bound, without reading the others.
    f"CREATE INDEX IF NOT EXISTS req_lat_cost ON {LATENCY} (task, cost_cents)",
)
DISTINCT_COLUMNS: Final = ("task", "tenant")  # ``seen_<column>``: each value the requests hold, kept at refresh
_COPY: Final = (
    f"INSERT INTO {LATENCY} (rid, {', '.join(_LATENCY_COLUMNS)})"
    f" SELECT rowid, {', '.join(_LATENCY_COLUMNS)} FROM ledger.requests WHERE rowid > ? AND rowid <= ?"
)


class Summary:
    """The summaries of one ledger file, and the one connection that reads both.

    The summaries live in a private temporary database (SQLite's ``""``: on disk, deleted on
    close, cached in memory up to its cache size), so a big ledger's copy of latency columns
    spills to disk rather than filling this process's memory.
    """

    def __init__(self, ledger: str | Path) -> None:
        self._conn = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA cache_size = -65536")
        uri = f"{Path(ledger).resolve().as_uri()}?mode=ro"
        self._conn.execute("ATTACH DATABASE ? AS ledger", [uri])
        self._conn.execute("PRAGMA ledger.cache_size = -65536")
        for table in TABLES:
            self._conn.execute(table.create())
        columns = "task TEXT, model TEXT, tenant TEXT, ts REAL NOT NULL, ttft_ms REAL, ttlt_ms REAL, cost_cents REAL"
        self._conn.execute(f"CREATE TABLE {LATENCY} (rid INTEGER PRIMARY KEY, {columns})")
        for column in DISTINCT_COLUMNS:  # the filter bar's choices, without an index of the ledger's
            self._conn.execute(f"CREATE TABLE seen_{column} (v TEXT PRIMARY KEY) WITHOUT ROWID")
        self._seen = {"requests": 0, "attempts": 0}
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        tops = {t: self._conn.execute(f"SELECT MAX(rowid) FROM ledger.{t}").fetchone()[0] or 0 for t in self._seen}
        for table in TABLES:
            if tops[table.raw] > self._seen[table.raw]:
                self._conn.execute(table.upsert(), [self._seen[table.raw], tops[table.raw]])
        if tops["requests"] > self._seen["requests"]:
            # The first copy goes in before its indexes (one sort each beats a million inserts into five).
            self._conn.execute(_COPY, [self._seen["requests"], tops["requests"]])
            for column in DISTINCT_COLUMNS:
                self._conn.execute(
                    f"INSERT OR IGNORE INTO seen_{column} SELECT DISTINCT {column} FROM {LATENCY}"
                    f" WHERE rid > ? AND {column} IS NOT NULL",
                    [self._seen["requests"]],
                )
            for statement in _LATENCY_INDEXES:
                self._conn.execute(statement)
        self._seen = tops

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, with the summaries brought up to date, in one read snapshot of the ledger."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._refresh()
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
