"""The overview, jobs x models and tenants pages: each a data function (SQL) and a renderer (HTML).

A page's data is a Struct whose report figures are the report's own types, computed by
``_figures.sql_rollup`` over the page's window; the renderer only draws it. Tests compare the data
with ``interlock report --json`` for the same window, and the HTML with the data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from interlock.adapters.dashboard._detail import notable_requests
from interlock.adapters.dashboard._figures import model_stats, spenders, sql_rollup
from interlock.adapters.dashboard._html import (
    DASH,
    cents,
    cents_tick,
    esc,
    ms,
    ms_tick,
    panel,
    pct,
    request_link,
    table,
    utc,
)
from interlock.adapters.dashboard._html import card as card_html
from interlock.adapters.dashboard._series import (
    Bucket,
    grouped_series,
    histograms,
    request_buckets,
    span,
    starts,
)
from interlock.adapters.dashboard._summary import LATENCY_EDGES
from interlock.adapters.dashboard._svg import WIDE, bars, count, histogram, lines, sparkline, time_label
from interlock.adapters.dashboard._window import Window, bucket_label, bucket_seconds
from interlock.policies._budget import BudgetConfig
from interlock.policies._rollup import Alert, CostOutlier, DegradedShare, ModelStats, Rollup, SpendSpike, SpendStats

_DAY = 86400.0


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    """The overview page: the report's rollup (less the models, drawn on their own page), its figures
    per bucket, and requests worth opening."""

    rollup: Rollup
    bucket_s: float
    buckets: tuple[Bucket, ...]
    notable: tuple[dict[str, object], ...]


def bucket_for(conn: sqlite3.Connection, window: Window) -> tuple[float, float | None, float | None]:
    """The bucket width the window's records are drawn in, and their first and last time."""
    first, last = span(conn, window)
    return bucket_seconds(window, first, last), first, last


def overview_data(conn: sqlite3.Connection, window: Window) -> Overview:
    """Everything the overview draws, over ``window``."""
    size, _, _ = bucket_for(conn, window)
    return Overview(
        rollup=sql_rollup(conn, window, with_models=False),
        bucket_s=size,
        buckets=tuple(request_buckets(conn, window, size)),
        notable=tuple(notable_requests(conn, window)),
    )


def _alert_row(alert: Alert, window: Window) -> list[str]:
    if isinstance(alert, DegradedShare):
        what = f"{alert.degraded} of {alert.calls} calls degraded ({pct(alert.share)} &gt; {pct(alert.threshold)})"
        return ['<span class="tag warn">degraded share</span>', esc(alert.task), what]
    if isinstance(alert, SpendSpike):
        ratio = DASH if alert.ratio is None else f"{alert.ratio:.1f}\u00d7"
        what = f"{cents(alert.cost_cents)} in the hour of {utc(alert.hour_start)}, {ratio} the trailing mean"
        return ['<span class="tag bad">spend spike</span>', "", esc(what)]
    outlier: CostOutlier = alert
    link = request_link(outlier.request_id, window)
    what = f"{link} cost {esc(cents(outlier.cost_cents))}, {outlier.ratio:.1f}\u00d7 its job's mean"
    return ['<span class="tag bad">cost outlier</span>', esc(outlier.task), what]


def render_overview(data: Overview, window: Window) -> str:
    """The overview page's body."""
    r = data.rollup
    degraded = sum(t.degraded for t in r.tasks)
    labels = [time_label(b.start, data.bucket_s) for b in data.buckets]
    unit = bucket_label(data.bucket_s)
    cards = "".join(
        (
            card_html("requests", f"{r.requests:,}", f"{r.attempts:,} attempts"),
            card_html(
                "spend", cents(r.cost_cents), f"{cents(r.cost_cents / r.requests) if r.requests else DASH} per request"
            ),
            card_html("degraded", pct(degraded / r.requests if r.requests else None), f"{degraded:,} requests"),
            card_html("alerts", f"{len(r.alerts)}", "degraded share, spend spikes, cost outliers"),
        )
    )
    charts = "".join(
        (
            panel(f"Requests per {unit}", bars(labels, [b.calls for b in data.buckets], label="requests", fmt=count)),
            panel(
                f"Spend per {unit}",
                bars(labels, [b.cost_cents for b in data.buckets], label="spend", fmt=cents, series=1, tick=cents_tick),
            ),
            panel(
                f"Degraded share per {unit}",
                bars(labels, [b.degraded_share for b in data.buckets], label="degraded share", fmt=pct, series=3),
            ),
            panel(
                f"p95 TTFT per {unit}",
                lines(
                    labels, {"p95 TTFT": [b.ttft_p95_ms for b in data.buckets]}, label="p95 TTFT", fmt=ms, tick=ms_tick
                ),
            ),
        )
    )
    alerts = table(["alert", "job", "what"], (_alert_row(a, window) for a in r.alerts), numeric_from=9)
    notable = table(
        ["request", "time", "job", "model", "tenant", "outcome", "attempts", "cost"],
        (
            [
                request_link(str(n["request_id"]), window),
                esc(utc(float(str(n["ts"])))),
                esc(n["task"]),
                esc(n["model"] or DASH),
                esc(n["tenant"]),
                _outcome(n),
                esc(n["attempts"]),
                esc(cents(float(str(n["cost_cents"])))),
            ]
            for n in data.notable
        ),
        numeric_from=6,
    )
    return (
        f'<div class="cards">{cards}</div><div class="grid">{charts}</div>'
        + panel("Alerts", alerts, wide=True)
        + panel(
            "Requests worth opening",
            notable,
            wide=True,
            note="the latest fallbacks, hedges, degraded answers and failures",
        )
    )


def _outcome(row: dict[str, object]) -> str:
    tags = [f'<span class="tag {"ok" if row["outcome"] == "ok" else "bad"}">{esc(row["outcome"])}</span>']
    if row["hedged"]:
        tags.append('<span class="tag info">hedged</span>')
    if row["degraded"]:
        tags.append('<span class="tag warn">degraded</span>')
    return " ".join(tags)


class JobsModels(msgspec.Struct, frozen=True, kw_only=True):
    """The jobs x models page: the report's per-model figures, calls per bucket, latency histograms."""

    models: tuple[ModelStats, ...]
    bucket_s: float
    starts: tuple[float, ...]
    calls: dict[str, dict[float, float]]  # "task/model" -> bucket start -> calls
    ttft: dict[str, list[int]]
    ttlt: dict[str, list[int]]


def jobs_models_data(conn: sqlite3.Connection, window: Window) -> JobsModels:
    """Everything the jobs x models page draws, over ``window``."""
    size, first, last = bucket_for(conn, window)
    series = grouped_series(conn, window, size, ("task", "model"), "SUM(n)")
    return JobsModels(
        models=model_stats(conn, window),
        bucket_s=size,
        starts=tuple(starts(first, last, size)),
        calls={f"{k[0]}/{k[1]}": v for k, v in series.items()},
        ttft=histograms(conn, window, "ttft"),
        ttlt=histograms(conn, window, "ttlt"),
    )


def render_jobs_models(data: JobsModels, window: Window) -> str:
    """The jobs x models page's body."""
    rows = []
    for m in data.models:
        per_bucket = data.calls.get(f"{m.task}/{m.model}", {})
        spark = sparkline([per_bucket.get(s, 0.0) for s in data.starts], label=f"{m.task}/{m.model} calls")
        rows.append(
            [
                esc(m.task),
                esc(m.model or DASH),
                spark,
                f"{m.calls:,}",
                pct(m.success_rate),
                pct(m.degraded_rate),
                pct(m.hedged_rate),
                ms(m.ttft_p50_ms),
                ms(m.ttft_p95_ms),
                ms(m.ttlt_p50_ms),
                ms(m.ttlt_p95_ms),
                esc(cents(m.cost_cents)),
                esc(cents(m.mean_cost_cents)),
                pct(m.prompt_cache_hit_rate),
            ]
        )
    headers = [
        "job",
        "model",
        f"calls per {bucket_label(data.bucket_s)}",
        "calls",
        "ok",
        "degraded",
        "hedged",
        "TTFT p50",
        "TTFT p95",
        "TTLT p50",
        "TTLT p95",
        "cost",
        "mean",
        "prompt cache",
    ]
    hists = "".join(
        panel(f"{model or 'no model'}: TTFT and TTLT", _two_histograms(data, model))
        for model in sorted(set(data.ttft) | set(data.ttlt))
    )
    return (
        panel("Jobs \u00d7 models", table(headers, rows, numeric_from=3, cls="models"), wide=True)
        + f'<div class="grid">{hists}</div>'
    )


def _two_histograms(data: JobsModels, model: str) -> str:
    empty = [0] * (len(LATENCY_EDGES) + 1)
    return (
        '<div class="pair"><h3>TTFT</h3>'
        + histogram(data.ttft.get(model, empty), LATENCY_EDGES, label=f"{model} TTFT")
        + "<h3>TTLT</h3>"
        + histogram(data.ttlt.get(model, empty), LATENCY_EDGES, label=f"{model} TTLT", series=2)
        + "</div>"
    )


class Tenants(msgspec.Struct, frozen=True, kw_only=True):
    """The tenants page: the report's spenders, and each tenant's spend so far in its UTC day per bucket."""

    spenders: tuple[SpendStats, ...]
    bucket_s: float
    starts: tuple[float, ...]
    spend: dict[str, dict[float, float]]  # tenant -> bucket start -> cents spent in the bucket
    budgets_cents: dict[str, float]  # tenant -> daily budget in cents
    caller_budgets_cents: dict[str, float]  # "tenant/caller" -> daily budget in cents


def tenants_data(conn: sqlite3.Connection, window: Window, budgets: BudgetConfig | None) -> Tenants:
    """Everything the tenants page draws, over ``window``; ``budgets`` from the config, when there is one."""
    size, first, last = bucket_for(conn, window)
    size = min(size, _DAY)
    series = grouped_series(conn, window, size, ("tenant",), "TOTAL(cost)")
    tenants = budgets.tenants if budgets is not None else {}
    return Tenants(
        spenders=spenders(conn, window),
        bucket_s=size,
        starts=tuple(starts(first, last, size)),
        spend={k[0]: v for k, v in sorted(series.items())},
        budgets_cents={t: b.usd_per_day * 100 for t, b in tenants.items() if b.usd_per_day is not None},
        caller_budgets_cents={
            f"{t}/{c}": cb.usd_per_day * 100 for t, b in tenants.items() for c, cb in b.callers.items()
        },
    )


def day_to_date(per_bucket: dict[float, float], bucket_starts: Sequence[float]) -> list[float]:
    """Spend so far in each bucket's UTC day: the running sum, restarting at midnight UTC."""
    out, running, day = [], 0.0, None
    for start in bucket_starts:
        today = start // _DAY
        if today != day:
            running, day = 0.0, today
        running += per_bucket.get(start, 0.0)
        out.append(running)
    return out


def render_tenants(data: Tenants, window: Window) -> str:
    """The tenants page's body."""
    labels = [time_label(s, data.bucket_s) for s in data.starts]
    series: dict[str, Sequence[float | None]] = {t: day_to_date(v, data.starts) for t, v in data.spend.items()}
    chart = lines(
        labels,
        series,
        label="spend today per tenant",
        fmt=cents,
        limits=data.budgets_cents,
        width=WIDE,
        tick=cents_tick,
    )
    legend = "".join(f'<span class="key s{i % 8}">{esc(t)}</span>' for i, t in enumerate(series))
    rows = []
    for s in data.spenders:
        cap = data.caller_budgets_cents.get(f"{s.tenant}/{s.caller}")
        tenant_cap = data.budgets_cents.get(s.tenant)
        rows.append(
            [
                esc(s.tenant),
                esc(s.caller),
                f"{s.calls:,}",
                esc(cents(s.cost_cents)),
                esc(DASH if cap is None else cents(cap)),
                esc(DASH if tenant_cap is None else cents(tenant_cap)),
            ]
        )
    note = "spend so far in each UTC day; dashed lines are the tenants' daily budgets" + (
        "" if data.budgets_cents else " (no budgets configured: serve with a config that has [budgets.tenants])"
    )
    return panel("Spend against budgets", f'<div class="legend">{legend}</div>{chart}', wide=True, note=note) + panel(
        "Tenants and callers",
        table(
            ["tenant", "caller", "calls", "spend", "caller budget / day", "tenant budget / day"], rows, numeric_from=2
        ),
        wide=True,
    )
