"""Rendering a report rollup: rich tables for people, JSON bytes for machines (``--json``).

Costs are shown in cents (four decimals below one cent, two above); rates as percentages with one
decimal; latencies in whole milliseconds; hours in UTC. A missing figure shows as an em dash.
The JSON form is the ``Rollup`` Struct itself, as msgspec encodes it: rates are fractions there.
Models a floating alias served as another id (the provider's own model id differs from the configured
one) follow the provider table as a footnote, one line each: ``alias: gpt-x -> gpt-x-2025-06-01``.
The breaker transitions the ledger keeps (when, which provider, from, to, why) follow as their own
table, and as the ``breaker_transitions`` key of the JSON form (``report_json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec
from rich.console import Console
from rich.table import Table

from interlock._records import BreakerRecord
from interlock.policies._rollup import (
    Alert,
    CostOutlier,
    DegradedShare,
    Rollup,
    SpendSpike,
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


def _models_table(rollup: Rollup) -> Table:
    table = Table(title="Jobs x models", title_justify="left")
    for name in ("task", "model"):
        table.add_column(name)
    for name in ("calls", "ok", "degraded", "hedged", "TTFT p50", "TTFT p95", "TTLT p50", "TTLT p95"):
        table.add_column(name, justify="right")
    for name in ("cost ¢", "mean ¢", "prompt cache"):
        table.add_column(name, justify="right")
    for m in rollup.models:
        table.add_row(
            m.task,
            m.model or _DASH,
            str(m.calls),
            pct(m.success_rate),
            pct(m.degraded_rate),
            pct(m.hedged_rate),
            ms(m.ttft_p50_ms),
            ms(m.ttft_p95_ms),
            ms(m.ttlt_p50_ms),
            ms(m.ttlt_p95_ms),
            cents(m.cost_cents),
            cents(m.mean_cost_cents),
            pct(m.prompt_cache_hit_rate),
        )
    return table


def _tasks_table(rollup: Rollup) -> Table:
    table = Table(title="Tasks", title_justify="left")
    table.add_column("task")
    for name in ("calls", "cache hits", "degraded", "cost ¢", "mean ¢"):
        table.add_column(name, justify="right")
    for t in rollup.tasks:
        table.add_row(
            t.task,
            str(t.calls),
            f"{t.cache_hits} ({pct(t.cache_hit_rate)})",
            f"{t.degraded} ({pct(t.degraded_rate)})",
            cents(t.cost_cents),
            cents(t.mean_cost_cents),
        )
    return table


def _spenders_table(rollup: Rollup) -> Table:
    table = Table(title="Spend by tenant and caller", title_justify="left")
    table.add_column("tenant")
    table.add_column("caller")
    table.add_column("calls", justify="right")
    table.add_column("cost ¢", justify="right")
    for s in rollup.spenders:
        table.add_row(s.tenant, s.caller, str(s.calls), cents(s.cost_cents))
    return table


def _providers_table(rollup: Rollup) -> Table:
    table = Table(title="Attempts by provider and model", title_justify="left")
    table.add_column("provider")
    table.add_column("model")
    for name in ("attempts", "ok", "cancelled", "hedges", "cost ¢"):
        table.add_column(name, justify="right")
    table.add_column("errors")
    for p in rollup.providers:
        errors = ", ".join(f"{kind} {count}" for kind, count in p.errors.items()) or _DASH
        table.add_row(
            p.provider,
            p.model,
            str(p.attempts),
            str(p.ok),
            str(p.cancelled),
            str(p.hedges),
            cents(p.cost_cents),
            errors,
        )
    return table


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


def _alerts_table(rollup: Rollup) -> Table:
    table = Table(title="Alerts", title_justify="left")
    for name in ("alert", "subject", "detail"):
        table.add_column(name)
    for alert in rollup.alerts[:MAX_ALERT_ROWS]:
        table.add_row(*describe_alert(alert))
    if (more := len(rollup.alerts) - MAX_ALERT_ROWS) > 0:
        table.add_row("…", f"{more} more", "see --json")
    return table


def _breakers_table(transitions: Sequence[BreakerRecord]) -> Table:
    table = Table(title="Breaker transitions", title_justify="left")
    for name in ("time", "provider", "from", "to", "cause"):
        table.add_column(name)
    for t in transitions:
        table.add_row(utc_seconds(t.ts), t.provider, t.from_state, t.to_state, t.cause)
    return table


def render_rollup(rollup: Rollup, console: Console, transitions: Sequence[BreakerRecord] = ()) -> None:
    """Print the report: a summary line, the tables that have rows, the alerts, then the breaker transitions.

    ``transitions`` are shown oldest first, whether or not the window holds any request.
    """
    _render_tables(rollup, console)
    if transitions:
        console.print(_breakers_table(transitions))


def _render_tables(rollup: Rollup, console: Console) -> None:
    window = f"since {utc(rollup.since)}" if rollup.since is not None else "all records"
    console.print(
        f"interlock report, {window} until {utc(rollup.generated_at)}: {rollup.requests} requests, "
        f"{rollup.attempts} attempts, {cents(rollup.cost_cents)}¢ spent"
    )
    if not rollup.requests and not rollup.attempts:
        console.print("No records in this window.")
        return
    for build in (_models_table, _tasks_table, _spenders_table, _providers_table):
        if (table := build(rollup)).row_count:
            console.print(table)
    for line in alias_lines(rollup):
        console.print(line, markup=False, highlight=False)
    if rollup.alerts:
        console.print(_alerts_table(rollup))
    else:
        console.print("No alerts.")
