"""Time-bucketed figures the report has no table for: each a SQL ``GROUP BY`` over the window.

A bucket holds the records with ``start <= ts < start + size``, ``start`` a whole multiple of
``size`` seconds since the epoch (whole UTC hours and days), clipped to the window. Per-bucket
percentiles are nearest-rank as in the report, so a bucket's p95 TTFT equals the report's
p95 over that bucket's window. Histogram bins are fixed, roughly logarithmic, in milliseconds.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict

import msgspec

from interlock.adapters.dashboard._summary import (
    ATTEMPTS,
    HOUR,
    LATENCY,
    LATENCY_EDGES,
    REQUESTS,
    TTFT,
    TTLT,
    Table,
    display_bin,
    source,
)
from interlock.adapters.dashboard._window import Window


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One time bucket of requests: how many, what they cost, how many degraded, their p95 TTFT."""

    start: float
    calls: int
    cost_cents: float
    degraded: int
    ttft_p95_ms: float | None

    @property
    def degraded_share(self) -> float:
        """Degraded requests as a fraction of the bucket's calls."""
        return self.degraded / self.calls if self.calls else 0.0


def span(conn: sqlite3.Connection, window: Window) -> tuple[float | None, float | None]:
    """The first and last request time in ``window`` (None, None when it holds none)."""
    where, params = window.where()
    # Apart, each is one step down an index; together SQLite would read every row.
    (first,) = conn.execute(f"SELECT MIN(ts) FROM requests WHERE {where}", params).fetchone()
    (last,) = conn.execute(f"SELECT MAX(ts) FROM requests WHERE {where}", params).fetchone()
    return first, last


def starts(first: float | None, last: float | None, size: float) -> list[float]:
    """Every bucket start from the one holding ``first`` to the one holding ``last``."""
    if first is None or last is None:
        return []
    lo, hi = math.floor(first / size), math.floor(last / size)
    return [k * size for k in range(lo, hi + 1)]


def _bucket_expr(size: float) -> str:
    return f"CAST(ts / {size!r} AS INTEGER)"  # for an hour and a day, the expression the p95 indexes hold


def grouped(table: Table, window: Window, size: float, keys: str, sums: str) -> tuple[str, list[float | str]]:
    """``SELECT b, <keys>, <sums>`` per bucket ``b``: from the hourly summaries for hours and days, else raw."""
    if size >= HOUR:
        src, params = source(table, window)
        per = round(size / HOUR)
    else:
        where, params = window.where()
        src, per = f"({table.raw_select(where, _bucket_expr(size))})", 1
    return f"SELECT h / {per} AS b{keys}, {sums} FROM {src} GROUP BY b{keys}", params


def _bucket_p95(conn: sqlite3.Connection, window: Window, start: float, size: float, present: int) -> float | None:
    """The nearest-rank p95 TTFT of one bucket, read from the top of its ordered values."""
    if present == 0:
        return None
    rank = max(1, -(-95 * present // 100))
    where, params = window.where()
    bucket = [round(start / size)]
    table = LATENCY  # an hour or a day: the copy's index walks the bucket's values from the top
    if size < HOUR:  # no index holds finer buckets: the time range finds the bucket, the CAST keeps its edges
        where += " AND ts >= ? AND ts < ?"
        params = [*params, start - size, start + 2 * size]
        table = "requests"  # the ledger's own time index finds the range
    sql = (
        f"SELECT ttft_ms FROM {table} WHERE {_bucket_expr(size)} = ? AND ttft_ms IS NOT NULL AND {where}"
        " ORDER BY ttft_ms DESC LIMIT 1 OFFSET ?"
    )
    row = conn.execute(sql, [*bucket, *params, present - rank]).fetchone()
    return None if row is None else float(row[0])


def request_buckets(conn: sqlite3.Connection, window: Window, size: float) -> list[Bucket]:
    """Requests, spend, degraded requests and p95 TTFT per bucket; empty buckets included as zeros."""
    sql, params = grouped(REQUESTS, window, size, "", "SUM(n), TOTAL(cost), SUM(degraded), SUM(n_ttft)")
    found = {b * size: (n, cost, degraded, present) for b, n, cost, degraded, present in conn.execute(sql, params)}
    if not found:
        return []
    out: list[Bucket] = []
    for start in starts(min(found), max(found), size):
        n, cost, degraded, present = found.get(start, (0, 0.0, 0, 0))
        p95 = _bucket_p95(conn, window, start, size, present)
        out.append(Bucket(start=start, calls=n, cost_cents=cost, degraded=degraded, ttft_p95_ms=p95))
    return out


def grouped_series(
    conn: sqlite3.Connection, window: Window, size: float, keys: tuple[str, ...], value: str, table: Table = REQUESTS
) -> dict[tuple[str, ...], dict[float, float]]:
    """``value`` (a sum over ``table``'s columns) per bucket for each group of ``keys``."""
    sql, params = grouped(table, window, size, "".join(f", {k}" for k in keys), value)
    out: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for b, *row in conn.execute(sql, params):
        out[tuple(str(k) for k in row[: len(keys)])][b * size] = float(row[len(keys)])
    return dict(out)


def histograms(conn: sqlite3.Connection, window: Window, column: str) -> dict[str, list[int]]:
    """Per model, how many requests' ``column`` (``ttft`` or ``ttlt``) fell in each latency bin."""
    src, params = source(TTFT if column == "ttft" else TTLT, window)
    sql = f"SELECT model, bin, SUM(n) FROM {src} GROUP BY 1, 2"
    out: dict[str, list[int]] = {}
    for model, fine, n in conn.execute(sql, params):
        out.setdefault(model, [0] * (len(LATENCY_EDGES) + 1))[display_bin(fine)] += n
    return dict(sorted(out.items()))


def errors_by_kind(conn: sqlite3.Connection, window: Window, size: float) -> dict[tuple[str, ...], dict[float, float]]:
    """Failed attempts per bucket for each (provider, error kind)."""
    sql, params = grouped(ATTEMPTS, window, size, ", provider, kind, outcome", "SUM(n)")
    out: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for b, provider, kind, outcome, n in conn.execute(sql, params):
        if outcome == "error":
            out[(provider, kind)][b * size] = float(n)
    return dict(out)
