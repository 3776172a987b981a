"""Rendering a report rollup: rich tables for people, JSON bytes for machines (``--json``).

Costs are shown in cents (four decimals below one cent, two above); rates as percentages with one
decimal; latencies in whole milliseconds; hours in UTC. A missing figure shows as an em dash.
The JSON form is the ``Rollup`` Struct itself, as msgspec encodes it: rates are fractions there.
Models a floating alias served as another id (the provider's own model id differs from the configured
one) follow the provider table as a footnote, one line each: ``alias: gpt-x -> gpt-x-2025-06-01``.
The breaker transitions the ledger keeps (when, which provider, from, to, why) follow as their own
table, and as the ``breaker_transitions`` key of the JSON form (``report_json``).

Each table is first built as a ``Sheet`` (its cells as text) and then fitted to the console's
width by ``_fit``: no cell is ever cut, the columns that do not fit go to a continuation table,
and ``Layout`` carries ``--wide`` and ``--columns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec
from rich.console import Console

from interlock._records import BreakerRecord
from interlock.adapters.report._fit import DEFAULT_LAYOUT, Column, Layout, Sheet, print_sheet
from interlock.policies._rollup import (
    Alert,
    AttemptStats,
    CostOutlier,
    DegradedShare,
    ModelStats,
    Rollup,
    SpendSpike,
    TaskStats,
)

_ENCODER: Final = msgspec.json.Encoder()
_DASH: Final = "—"
MAX_ALERT_ROWS: Final = 20


def rollup_json(rollup: Rollup) -> bytes:
    """The rollup as JSON bytes: the machine-readable form of ``interlock report --json``."""
    return _ENCODER.encode(rollup)


def report_json(rollup: Rollup, transitions: Sequence[BreakerRecord]) -> bytes:
    """``interlock report --json``: the rollup's JSON object with ``breaker_transitions`` added, oldest first."""
    body = msgspec.to_builtins(rollup)
    body["breaker_transitions"] = msgspec.to_builtins(tuple(transitions))
    return _ENCODER.encode(body)


def cents(value: float) -> str:
    """A cost in cents, precise enough for sub-cent calls."""
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def pct(rate: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return _DASH if rate is None else f"{rate * 100:.1f}%"


def ms(value: float | None) -> str:
    """A latency in whole milliseconds."""
    return _DASH if value is None else f"{value:,.0f}"


def utc(ts: float) -> str:
    """An epoch timestamp as a UTC minute."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%MZ")


def utc_seconds(ts: float) -> str:
    """An epoch timestamp as a UTC second: breaker transitions come seconds apart."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_TASK: Final = Column("task", "task")
_MODEL: Final = Column("model", "model")


def _right(header: str, key: str) -> Column:
    return Column(header, key, justify="right")


def models_sheet(rollup: Rollup) -> Sheet:
    """Jobs x models: calls, outcome rates, cost, latency percentiles and the prompt-cache rate."""
    columns = (
        _right("calls", "calls"), _right("ok", "ok"), _right("degraded", "degraded"), _right("hedged", "hedged"),
        _right("cost ¢", "cost"), _right("mean ¢", "mean_cost"), _right("TTFT p50", "ttft_p50"),
        _right("TTFT p95", "ttft_p95"), _right("TTLT p50", "ttlt_p50"), _right("TTLT p95", "ttlt_p95"),
        _right("prompt cache", "prompt_cache"),
    )  # fmt: skip

    def row(m: ModelStats) -> tuple[str, ...]:
        return (
            m.task, m.model or _DASH, str(m.calls), pct(m.success_rate), pct(m.degraded_rate), pct(m.hedged_rate),
            cents(m.cost_cents), cents(m.mean_cost_cents), ms(m.ttft_p50_ms), ms(m.ttft_p95_ms),
            ms(m.ttlt_p50_ms), ms(m.ttlt_p95_ms), pct(m.prompt_cache_hit_rate),
        )  # fmt: skip

    rows = [row(m) for m in rollup.models]
    return Sheet("Jobs x models", (_TASK, _MODEL), columns, rows)


def tasks_sheet(rollup: Rollup) -> Sheet:
    """Tasks: calls, response-cache hits, degraded answers and spend."""
    columns = (
        _right("calls", "calls"), _right("cache hits", "cache_hits"), _right("degraded", "degraded"),
        _right("cost ¢", "cost"), _right("mean ¢", "mean_cost"),
    )  # fmt: skip

    def row(t: TaskStats) -> tuple[str, ...]:
        return (
            t.task, str(t.calls), f"{t.cache_hits} ({pct(t.cache_hit_rate)})", f"{t.degraded} ({pct(t.degraded_rate)})",
            cents(t.cost_cents), cents(t.mean_cost_cents),
        )  # fmt: skip

    rows = [row(t) for t in rollup.tasks]
    return Sheet("Tasks", (_TASK,), columns, rows)


def spenders_sheet(rollup: Rollup) -> Sheet:
    """Spend by tenant and caller."""
    rows = [(s.tenant, s.caller, str(s.calls), cents(s.cost_cents)) for s in rollup.spenders]
    ident = (Column("tenant", "tenant"), Column("caller", "caller"))
    return Sheet("Spend by tenant and caller", ident, (_right("calls", "calls"), _right("cost ¢", "cost")), rows)


def providers_sheet(rollup: Rollup) -> Sheet:
    """Attempts by provider and model: outcomes, hedges, cost and errors by class."""
    columns = (
        _right("attempts", "attempts"), _right("ok", "ok"), _right("cancelled", "cancelled"),
        _right("hedges", "hedges"), _right("cost ¢", "cost"), Column("errors", "errors", wrap=True),
    )  # fmt: skip

    def row(p: AttemptStats) -> tuple[str, ...]:
        return (
            p.provider, p.model, str(p.attempts), str(p.ok), str(p.cancelled), str(p.hedges), cents(p.cost_cents),
            ", ".join(f"{kind} {count}" for kind, count in p.errors.items()) or _DASH,
        )  # fmt: skip

    rows = [row(p) for p in rollup.providers]
    return Sheet("Attempts by provider and model", (Column("provider", "provider"), _MODEL), columns, rows)


def alias_lines(rollup: Rollup) -> list[str]:
    """The aliases footnote: one line per model served under another id than its configured one."""
    return [
        f"alias: {a.model} ({a.provider}) {a.configured_id} -> {a.served_model}, {a.attempts} answered"
        for a in rollup.aliases
    ]


def describe_alert(alert: Alert) -> tuple[str, str, str]:
    """An alert as (kind, subject, detail) for a table row."""
    match alert:
        case DegradedShare():
            detail = f"{alert.degraded}/{alert.calls} degraded ({pct(alert.share)} > {pct(alert.threshold)})"
            return "degraded share", alert.task, detail
        case SpendSpike():
            ratio = "no spend before" if alert.ratio is None else f"{alert.ratio:.1f}x"
            detail = (
                f"{cents(alert.cost_cents)}¢ vs mean {cents(alert.trailing_mean_cents)}¢"
                f" of {alert.trailing_hours} trailing hours ({ratio})"
            )
            return "spend spike", utc(alert.hour_start), detail
        case CostOutlier():
            detail = (
                f"{cents(alert.cost_cents)}¢ vs {cents(alert.baseline_cents)}¢ mean of the task's other calls"
                f" ({alert.ratio:.1f}x),"
                f" {alert.model or _DASH}, {alert.tenant}/{alert.caller}"
            )
            return "cost outlier", f"{alert.task} {alert.request_id}", detail


def alerts_sheet(rollup: Rollup) -> Sheet:
    """The alerts, at most ``MAX_ALERT_ROWS`` of them, then a row saying how many more ``--json`` holds."""
    rows = [describe_alert(alert) for alert in rollup.alerts[:MAX_ALERT_ROWS]]
    if (more := len(rollup.alerts) - MAX_ALERT_ROWS) > 0:
        rows.append(("more", f"{more} more alerts", "see --json"))
    ident = (Column("alert", "alert", wrap=True), Column("subject", "subject", wrap=True))
    return Sheet("Alerts", ident, (Column("detail", "detail", wrap=True),), rows)


def breakers_sheet(transitions: Sequence[BreakerRecord]) -> Sheet:
    """Breaker transitions: when, which provider, from, to, why."""
    rows = [(utc_seconds(t.ts), t.provider, t.from_state, t.to_state, t.cause) for t in transitions]
    ident = (Column("time", "time", wrap=True), Column("provider", "provider"))
    columns = (Column("from", "from"), Column("to", "to"), Column("cause", "cause", wrap=True))
    return Sheet("Breaker transitions", ident, columns, rows)


def report_sheets(rollup: Rollup, transitions: Sequence[BreakerRecord] = ()) -> list[Sheet]:
    """Every table the report may print, in order (empty ones included): what ``--columns`` chooses from."""
    built = (models_sheet, tasks_sheet, spenders_sheet, providers_sheet, alerts_sheet)
    return [*(build(rollup) for build in built), breakers_sheet(transitions)]


def render_rollup(
    rollup: Rollup, console: Console, transitions: Sequence[BreakerRecord] = (), layout: Layout = DEFAULT_LAYOUT
) -> None:
    """Print the report: a summary line, the tables that have rows, the alerts, then the breaker transitions.

    ``transitions`` are shown oldest first, whether or not the window holds any request. Each
    table is fitted to the console's width (``_fit``): whole cells, the rest in a continuation table.
    """
    _render_tables(rollup, console, layout)
    if transitions:
        print_sheet(console, breakers_sheet(transitions), layout)


def _render_tables(rollup: Rollup, console: Console, layout: Layout) -> None:
    window = f"since {utc(rollup.since)}" if rollup.since is not None else "all records"
    console.print(
        f"interlock report, {window} until {utc(rollup.generated_at)}: {rollup.requests} requests, "
        f"{rollup.attempts} attempts, {cents(rollup.cost_cents)}¢ spent"
    )
    if not rollup.requests and not rollup.attempts:
        console.print("No records in this window.")
        return
    for build in (models_sheet, tasks_sheet, spenders_sheet, providers_sheet):
        if (sheet := build(rollup)).rows:
            print_sheet(console, sheet, layout)
    for line in alias_lines(rollup):
        console.print(line, markup=False, highlight=False)
    if rollup.alerts:
        print_sheet(console, alerts_sheet(rollup), layout)
    else:
        console.print("No alerts.")
