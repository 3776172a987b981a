"""The one-request page: a request's ledger row, and its attempts on a time axis (hedges, fallbacks, resume)."""

from __future__ import annotations

import sqlite3

import msgspec

from interlock.adapters.dashboard._detail import AttemptRow, request_attempts, request_row
from interlock.adapters.dashboard._html import DASH, cents, esc, ms, panel, table, utc
from interlock.adapters.dashboard._svg import WIDE, Span, timeline
from interlock.adapters.dashboard._window import Window


class RequestPage(msgspec.Struct, frozen=True, kw_only=True):
    """One request: its ledger row and its attempts."""

    request: dict[str, object]
    attempts: tuple[AttemptRow, ...]


def request_data(conn: sqlite3.Connection, request_id: str) -> RequestPage | None:
    """The request page's data; None when the ledger holds no such request."""
    row = request_row(conn, request_id)
    return None if row is None else RequestPage(request=row, attempts=tuple(request_attempts(conn, request_id)))


def role(a: AttemptRow, first: int | None) -> str:
    """What an attempt was for: a hedge, an auxiliary call (its purpose), the first try, or a fallback."""
    if a.hedge:
        return "hedge"
    if a.purpose:
        return a.purpose
    return "first" if a.attempt == first else "fallback"


def _first(attempts: tuple[AttemptRow, ...]) -> int | None:
    return next((a.attempt for a in attempts if not a.hedge and not a.purpose), None)


def _attempt_label(a: AttemptRow, first: int | None) -> str:
    name = f"{a.provider}/{a.model}"
    name = name if len(name) <= 26 else name[:25] + "\u2026"
    return f"#{a.attempt} {name} \u00b7 {role(a, first)}"


def render_request(data: RequestPage, window: Window) -> str:
    """The request page's body."""
    r = data.request
    drawn = [a for a in data.attempts if a.start_ms is not None]
    first = _first(data.attempts)
    hi = max([(a.start_ms or 0.0) + (a.duration_ms or 0.0) for a in drawn] + [float(str(r["ttlt_ms"] or 0.0)), 1.0])
    lanes = {
        _attempt_label(a, first): [
            Span(
                a.start_ms or 0.0,
                (a.start_ms or 0.0) + (a.duration_ms or 0.0),
                f"outcome-{a.outcome}",
                f"{a.outcome}{' (' + (a.error or a.cancel_reason or '') + ')' if a.error or a.cancel_reason else ''}: "
                f"{ms(a.duration_ms)}, first token {ms(a.ttft_ms)}",
            )
        ]
        for a in drawn
    }
    marks = [(a.start_ms or 0.0) + a.ttft_ms for a in drawn if a.ttft_ms is not None]
    chart = timeline(lanes, 0.0, hi, label="attempts", tick=lambda v: f"{v:,.0f} ms", marks=marks, width=WIDE)
    legend = "".join(f'<span class="key outcome-{o}">{o}</span>' for o in ("ok", "error", "cancelled")) + (
        '<span class="key event">first token</span>'
    )
    facts = [
        ("time", utc(float(str(r["ts"])))),
        ("job", r["task"]),
        ("tenant / caller", f"{r['tenant']} / {r['caller']}"),
        ("served by", f"{r['provider'] or DASH} / {r['model'] or DASH}"),
        ("outcome", r["outcome"]),
        ("degraded", r["degraded_reason"] or ("yes" if r["degraded"] else "no")),
        ("hedged", "yes" if r["hedged"] else "no"),
        ("TTFT / TTLT", f"{ms(_num(r['ttft_ms']))} / {ms(_num(r['ttlt_ms']))}"),
        ("tokens in / out", f"{r['input_tokens']} / {r['output_tokens']}"),
        ("cost", cents(float(str(r["cost_cents"])))),
        ("verdict", r["verdict"] or DASH),
        ("error", r["error"] or DASH),
        ("cache hit", "yes" if r["cache_hit"] else "no"),
    ]
    pairs = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    facts_html = f"<dl class=facts>{pairs}</dl>"
    rows = [
        [
            str(a.attempt),
            esc(a.provider),
            esc(a.model),
            esc(role(a, first)),
            f'<span class="tag outcome-{esc(a.outcome)}">{esc(a.outcome)}</span>',
            esc(a.error or a.cancel_reason or DASH),
            esc(DASH if a.status is None else a.status),
            ms(a.start_ms),
            ms(a.duration_ms),
            ms(a.ttft_ms),
            esc(cents(a.cost_cents)),
            esc(a.verdict or DASH),
        ]
        for a in data.attempts
    ]
    headers = [
        "#",
        "provider",
        "model",
        "role",
        "outcome",
        "why",
        "status",
        "start",
        "duration",
        "TTFT",
        "cost",
        "verdict",
    ]
    return (
        panel(f"Request {r['request_id']}", facts_html, wide=True)
        + panel(
            "Attempts on a time axis",
            f'<div class="legend">{legend}</div>{chart}',
            wide=True,
            note="milliseconds from the request's start: hedges run beside the first attempt, fallbacks after it",
        )
        + panel("Attempts", table(headers, rows, numeric_from=6), wide=True)
    )


def _num(value: object) -> float | None:
    return None if value is None else float(str(value))
