"""The report's rollup computed in SQL: the same ``Rollup`` that ``interlock report --json`` prints.

``sql_rollup`` groups in SQLite what ``policies._rollup.rollup`` groups in Python, field for
field, with the definitions of that module's docstring. Counts and sums come from the hourly
summaries (``_summary.source``: whole hours summed, cut hours from the raw rows); percentiles are
nearest-rank, placed in their latency bin by the summaries and then read by an ordered walk of
that bin's values from its nearer end (an index); the alerts' thresholds are the report's
defaults, and the degraded-share and spend-spike alerts are the rollup's own functions applied
to the grouped figures. Sums are SQLite's, so a cost may differ from the report's ``math.fsum``
in its last bits; nothing else may differ (``tests/test_dashboard.py`` compares the two).
Floating aliases need the config's model ids and are left empty here.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict

from interlock.adapters.dashboard._summary import (
    ATTEMPTS,
    FINE_EDGES,
    LATENCY,
    REQUESTS,
    TTFT,
    TTLT,
    Table,
    source,
)
from interlock.adapters.dashboard._window import Window
from interlock.policies._rollup import (
    HOUR,
    AttemptStats,
    CostOutlier,
    HourSpend,
    ModelStats,
    Rollup,
    SpendStats,
    TaskStats,
    Thresholds,
    _degraded_alerts,
    _spike_alerts,
    percentile,
)

_Ranks = dict[tuple[str, str], tuple[float | None, float | None, float | None, float | None]]
_TRAILING_S = 24 * HOUR  # the report reads a day before the window, for the spike baseline


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def nearest_rank(
    conn: sqlite3.Connection, column: str, group: tuple[str, str], bins: list[int], pct: int, window: Window
) -> float | None:
    """The ``pct``-th nearest-rank percentile of ``column`` for one (task, model) over ``window``.

    ``bins`` counts the group's values in each latency bin (``FINE_EDGES``) over the window, so
    the rank is first placed in its bin and only that bin's values are walked, from its nearer end.
    """
    present = sum(bins)
    if present == 0:
        return None
    rank = max(1, -(-pct * present // 100))
    before, b = 0, 0
    while before + bins[b] < rank:
        before += bins[b]
        b += 1
    where, params = window.where()
    bounds: list[float | str] = []
    if b > 0:
        where += f" AND {column} >= ?"
        bounds.append(FINE_EDGES[b - 1])
    if b < len(FINE_EDGES):
        where += f" AND {column} < ?"
        bounds.append(FINE_EDGES[b])
    below = rank - before - 1
    above = bins[b] - 1 - below
    order, offset = ("ASC", below) if below <= above else ("DESC", above)
    sql = (
        f"SELECT {column} FROM {LATENCY} WHERE task = ? AND model = ? AND {column} IS NOT NULL AND {where}"
        f" ORDER BY {column} {order} LIMIT 1 OFFSET ?"
    )
    row = conn.execute(sql, [*group, *params, *bounds, offset]).fetchone()
    return None if row is None else float(row[0])


def _latency_bins(conn: sqlite3.Connection, window: Window, table: Table) -> dict[tuple[str, str], list[int]]:
    src, params = source(table, window)
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(FINE_EDGES) + 1))
    sql = f"SELECT task, model, bin, SUM(n) FROM {src} GROUP BY 1, 2, 3"
    for task, model, b, n in conn.execute(sql, params):
        out[(task, model)][b] = n
    return out


# Up to this many requests in a window, its latencies are read once and ranked here (one range of
# the time index); above it, each percentile walks one latency bin of its (task, model) index.
RANKED_HERE = 100_000


def _percentiles(conn: sqlite3.Connection, window: Window, groups: list[tuple[str, str, int]]) -> _Ranks:
    """Per (task, model), its TTFT and TTLT p50 and p95, by whichever way reads fewer index entries."""
    if sum(n for _, _, n in groups) <= RANKED_HERE:
        where, params = window.where()
        values: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for task, model, ttft, ttlt in conn.execute(
            f"SELECT task, model, ttft_ms, ttlt_ms FROM requests WHERE {where}", params
        ):
            first, last = values[(task, model)]
            if ttft is not None:
                first.append(ttft)
            if ttlt is not None:
                last.append(ttlt)
        ranks: _Ranks = {}
        for key, (first, last) in values.items():
            first.sort()
            last.sort()
            ranks[key] = (percentile(first, 50), percentile(first, 95), percentile(last, 50), percentile(last, 95))
        return ranks
    ttft_bins, ttlt_bins = _latency_bins(conn, window, TTFT), _latency_bins(conn, window, TTLT)
    return {
        (t, m): (
            nearest_rank(conn, "ttft_ms", (t, m), ttft_bins[(t, m)], 50, window),
            nearest_rank(conn, "ttft_ms", (t, m), ttft_bins[(t, m)], 95, window),
            nearest_rank(conn, "ttlt_ms", (t, m), ttlt_bins[(t, m)], 50, window),
            nearest_rank(conn, "ttlt_ms", (t, m), ttlt_bins[(t, m)], 95, window),
        )
        for t, m, _ in groups
    }


def model_stats(conn: sqlite3.Connection, window: Window) -> tuple[ModelStats, ...]:
    """Per (task, model) figures, as the report's jobs x models table."""
    src, params = source(REQUESTS, window)
    sql = (
        "SELECT task, model, SUM(n), SUM(ok), SUM(degraded), SUM(hedged), TOTAL(cost),"
        f" SUM(fresh), SUM(output), SUM(cread), SUM(cwrite) FROM {src} GROUP BY task, model ORDER BY task, model"
    )
    rows = conn.execute(sql, params).fetchall()
    ranks = _percentiles(conn, window, [(r[0], r[1], r[2]) for r in rows])
    out: list[ModelStats] = []
    for task, model, n, ok, degraded, hedged, cost, fresh, output, read, write in rows:
        ttft_p50, ttft_p95, ttlt_p50, ttlt_p95 = ranks.get((task, model), (None, None, None, None))
        prompt_total = fresh + read + write
        stats = ModelStats(
            task=task, model=model, calls=n, success_rate=_rate(ok, n), degraded_rate=_rate(degraded, n),
            hedged_rate=_rate(hedged, n), ttft_p50_ms=ttft_p50, ttft_p95_ms=ttft_p95, ttlt_p50_ms=ttlt_p50,
            ttlt_p95_ms=ttlt_p95, cost_cents=cost, mean_cost_cents=cost / n, input_tokens=fresh, output_tokens=output,
            cache_read_tokens=read, cache_write_tokens=write,
            prompt_cache_hit_rate=read / prompt_total if prompt_total else None,
        )  # fmt: skip
        out.append(stats)
    return tuple(out)


def task_stats(conn: sqlite3.Connection, window: Window) -> tuple[TaskStats, ...]:
    """Per task: calls, response-cache hits, degraded requests and spend."""
    src, params = source(REQUESTS, window)
    sql = f"SELECT task, SUM(n), SUM(cache_hits), SUM(degraded), TOTAL(cost) FROM {src} GROUP BY task ORDER BY task"
    return tuple(
        TaskStats(
            task=task,
            calls=n,
            cache_hits=hits,
            cache_hit_rate=_rate(hits, n),
            degraded=degraded,
            degraded_rate=_rate(degraded, n),
            cost_cents=cost,
            mean_cost_cents=cost / n,
        )
        for task, n, hits, degraded, cost in conn.execute(sql, params)
    )


def spenders(conn: sqlite3.Connection, window: Window) -> tuple[SpendStats, ...]:
    """Per (tenant, caller) spend, the biggest first."""
    src, params = source(REQUESTS, window)
    sql = f"SELECT tenant, caller, SUM(n), TOTAL(cost) FROM {src} GROUP BY tenant, caller"
    rows = [SpendStats(tenant=t, caller=c, calls=n, cost_cents=cost) for t, c, n, cost in conn.execute(sql, params)]
    return tuple(sorted(rows, key=lambda s: (-s.cost_cents, s.tenant, s.caller)))


def attempt_stats(conn: sqlite3.Connection, window: Window) -> tuple[AttemptStats, ...]:
    """Per (provider, model) attempts, hedges and fallbacks included, with errors by class."""
    src, params = source(ATTEMPTS, window)
    sql = (
        f"SELECT provider, model, outcome, kind, SUM(n), SUM(hedges), TOTAL(cost) FROM {src}"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # attempts, ok, cancelled, hedges
    costs: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for provider, model, outcome, kind, n, hedges, cost in conn.execute(sql, params):
        counts = tally[(provider, model)]
        counts[0] += n
        counts[1] += n if outcome == "ok" else 0
        counts[2] += n if outcome == "cancelled" else 0
        counts[3] += hedges
        costs[(provider, model)].append(cost)
        if outcome == "error":
            errors[(provider, model)][kind] = n
    return tuple(
        AttemptStats(
            provider=p,
            model=m,
            attempts=n,
            ok=ok,
            cancelled=cancelled,
            hedges=hedges,
            errors=dict(sorted(errors[(p, m)].items())),
            cost_cents=math.fsum(costs[(p, m)]),
        )
        for (p, m), (n, ok, cancelled, hedges) in sorted(tally.items())
    )


def hours(conn: sqlite3.Connection, window: Window) -> dict[float, HourSpend]:
    """Spend per UTC hour from a day before the window to its end: the spike alert's baseline too."""
    history = Window(
        since=None if window.since is None else window.since - _TRAILING_S,
        until=window.until,
        task=window.task,
        tenant=window.tenant,
    )
    src, params = source(REQUESTS, history)
    sql = f"SELECT h, TOTAL(cost), SUM(n) FROM {src} GROUP BY h ORDER BY h"
    return {h * HOUR: HourSpend(h * HOUR, cost, n) for h, cost, n in conn.execute(sql, params)}


def cost_outliers(
    conn: sqlite3.Connection, window: Window, factor: float, tasks: tuple[TaskStats, ...]
) -> list[CostOutlier]:
    """Requests costing more than ``factor`` times the mean of the other requests of their task.

    ``cost > factor * (total - cost) / (n - 1)`` holds exactly when ``cost > factor * total / (n - 1 + factor)``:
    that bound finds the few candidates through the cost index, and the report's own test decides.
    """
    where, params = window.where("l")
    sql = (
        "SELECT r.request_id, r.ts, r.task, r.model, r.tenant, r.caller, r.cost_cents"
        f" FROM {LATENCY} l JOIN requests r ON r.rowid = l.rid WHERE l.task = ? AND l.cost_cents > ? AND {where}"
    )
    found = []
    for t in tasks:
        if t.calls < 2:
            continue
        bound = factor * t.cost_cents / (t.calls - 1 + factor) * (1 - 1e-9)  # a hair low: rounding cannot drop one
        for rid, ts, task, model, tenant, caller, cost in conn.execute(sql, [t.task, bound, *params]):
            base = (t.cost_cents - cost) / (t.calls - 1)
            if base > 0 and cost > factor * base:
                outlier = CostOutlier(
                    request_id=rid, ts=ts, task=task, model=model, tenant=tenant, caller=caller, cost_cents=cost,
                    baseline_cents=base, ratio=cost / base,
                )  # fmt: skip
                found.append(outlier)
    return sorted(found, key=lambda a: (-a.cost_cents, a.request_id))


def totals(conn: sqlite3.Connection, window: Window) -> tuple[int, int, float]:
    """Requests, attempts and spend in ``window``."""
    src, params = source(REQUESTS, window)
    requests, cost = conn.execute(f"SELECT COALESCE(SUM(n), 0), TOTAL(cost) FROM {src}", params).fetchone()
    src, params = source(ATTEMPTS, window)
    (attempts,) = conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {src}", params).fetchone()
    return int(requests), int(attempts), float(cost)


def sql_rollup(
    conn: sqlite3.Connection, window: Window, thresholds: Thresholds | None = None, *, with_models: bool = True
) -> Rollup:
    """The report's rollup of ``window``, grouped by SQLite (see the module docstring).

    ``with_models=False`` leaves ``models`` empty: a page that does not draw them skips their percentiles.
    """
    cfg = thresholds or Thresholds()
    start = float("-inf") if window.since is None else window.since
    tasks = task_stats(conn, window)
    by_hour = hours(conn, window)
    requests, attempts, cost = totals(conn, window)
    return Rollup(
        generated_at=window.until,
        since=window.since,
        requests=requests,
        attempts=attempts,
        cost_cents=cost,
        models=model_stats(conn, window) if with_models else (),
        tasks=tasks,
        spenders=spenders(conn, window),
        providers=attempt_stats(conn, window),
        hours=tuple(h for h in by_hour.values() if h.hour_start + HOUR > start),
        alerts=(
            *_degraded_alerts(tasks, cfg.degraded_threshold),
            *_spike_alerts(by_hour, start, window.until, cfg),
            *cost_outliers(conn, window, cfg.outlier_factor, tasks),
        ),
        thresholds=cfg,
    )
