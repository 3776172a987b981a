"""The ledger's other readings for the dashboard: verdicts, breaker transitions, one request's walk.

``sql_quality`` is the report's ``--quality`` rollup grouped by SQLite: verdict strings are counted
per (task, model) in SQL, then read with the quality policy's own parser (unjudged apart, legacy
rejects of a verifier that could not run read as unjudged) and its own demotion rule.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Final

import msgspec

from interlock._records import BreakerRecord
from interlock.adapters.dashboard._series import grouped
from interlock.adapters.dashboard._summary import VERDICTS, source
from interlock.adapters.dashboard._window import Window
from interlock.policies._quality import (
    QualityRollup,
    QualitySettings,
    QualityStats,
    _as_read,
    demotions,
    parse_verdict_string,
)

_BREAKER_COLUMNS: Final = "ts, provider, from_state, to_state, cause"


def sql_quality(conn: sqlite3.Connection, window: Window, settings: QualitySettings | None = None) -> QualityRollup:
    """Accept rates per (task, model) and demotion candidates over ``window``, as ``report --quality``."""
    cfg = settings or QualitySettings()
    src, params = source(VERDICTS, window)
    sql = f"SELECT task, model, verdict, SUM(n) FROM {src} GROUP BY task, model, verdict"
    judged: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # judged, accepted, unjudged
    rejects: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    unparsed = 0
    for task, model, text, n in conn.execute(sql, params):
        try:
            verdict = _as_read(parse_verdict_string(text))
        except ValueError:
            unparsed += n
            continue
        counts = judged[(task, model)]
        if not verdict.judged:
            counts[2] += n
            continue
        counts[0] += n
        if verdict.accepted:
            counts[1] += n
        else:
            rejects[(task, model)][verdict.verifier] += n
    models = tuple(
        QualityStats(
            task=task,
            model=model,
            judged=n,
            accepted=ok,
            accept_rate=ok / n if n else None,
            rejects_by_verifier=dict(sorted(rejects[(task, model)].items())),
            unjudged=unjudged,
        )
        for (task, model), (n, ok, unjudged) in sorted(judged.items())
    )
    return QualityRollup(
        generated_at=window.until,
        since=window.since,
        judged=sum(s.judged for s in models),
        unparsed=unparsed,
        unjudged=sum(s.unjudged for s in models),
        models=models,
        demotions=demotions(models, cfg),
        settings=cfg,
    )


def accept_series(conn: sqlite3.Connection, window: Window, size: float) -> dict[tuple[str, str], dict[float, float]]:
    """Per (task, model), the accept rate of each bucket's judged verdicts (buckets with none left out)."""
    sql, params = grouped(VERDICTS, window, size, ", task, model, verdict", "SUM(n)")
    tally: dict[tuple[str, str], dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for b, task, model, text, n in conn.execute(sql, params):
        try:
            verdict = _as_read(parse_verdict_string(text))
        except ValueError:
            continue
        if verdict.judged:
            cell = tally[(task, model)][b * size]
            cell[0] += n
            cell[1] += n if verdict.accepted else 0
    return {key: {start: ok / n for start, (n, ok) in cells.items()} for key, cells in sorted(tally.items())}


def breaker_transitions(conn: sqlite3.Connection, window: Window) -> list[BreakerRecord]:
    """Every breaker transition in the window, oldest first (per provider: no job or tenant filter)."""
    terms, params = ["ts <= ?"], [window.until]
    if window.since is not None:
        terms.append("ts >= ?")
        params.append(window.since)
    sql = f"SELECT {_BREAKER_COLUMNS} FROM breaker_transitions WHERE {' AND '.join(terms)} ORDER BY ts, provider"
    return [
        BreakerRecord(ts=ts, provider=p, from_state=f, to_state=t, cause=c)
        for ts, p, f, t, c in conn.execute(sql, params)
    ]


def breaker_now(conn: sqlite3.Connection, until: float) -> dict[str, tuple[str, float]]:
    """Each provider's breaker state as of ``until`` (its latest transition's ``to_state``) and since when."""
    sql = (
        "SELECT provider, to_state, MAX(ts) FROM breaker_transitions WHERE ts <= ? GROUP BY provider ORDER BY provider"
    )
    return {p: (state, ts) for p, state, ts in conn.execute(sql, [until])}


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a request as the request page draws it."""

    attempt: int
    provider: str
    model: str
    outcome: str
    error: str | None
    hedge: bool
    cancel_reason: str | None
    start_ms: float | None
    duration_ms: float | None
    ttft_ms: float | None
    cost_cents: float
    verdict: str | None
    purpose: str
    status: int | None


_ATTEMPT_COLUMNS: Final = (
    "attempt, provider, model, outcome, error, hedge, cancel_reason, start_ms, duration_ms, ttft_ms,"
    " cost_cents, verdict, purpose, status"
)
_REQUEST_COLUMNS: Final = (
    "request_id",
    "ts",
    "tenant",
    "caller",
    "task",
    "model",
    "provider",
    "outcome",
    "cost_cents",
    "ttft_ms",
    "ttlt_ms",
    "error",
    "error_detail",
    "degraded",
    "degraded_reason",
    "hedged",
    "attempts",
    "cache_hit",
    "verdict",
    "input_tokens",
    "output_tokens",
    "first_choice",
    "aux_cost_cents",
)


def request_row(conn: sqlite3.Connection, request_id: str) -> dict[str, object] | None:
    """The ledger's row of one request, by column name; None when there is none."""
    row = conn.execute(
        f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM requests WHERE request_id = ?", [request_id]
    ).fetchone()
    return None if row is None else dict(zip(_REQUEST_COLUMNS, row, strict=True))


def request_attempts(conn: sqlite3.Connection, request_id: str) -> list[AttemptRow]:
    """The attempts of one request in the order they were made."""
    sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE request_id = ? ORDER BY attempt"
    return [
        AttemptRow(
            attempt=a,
            provider=p,
            model=m,
            outcome=o,
            error=e,
            hedge=bool(h),
            cancel_reason=cr,
            start_ms=s,
            duration_ms=d,
            ttft_ms=t,
            cost_cents=c,
            verdict=v,
            purpose=pu,
            status=st,
        )
        for a, p, m, o, e, h, cr, s, d, t, c, v, pu, st in conn.execute(sql, [request_id])
    ]


def notable_requests(conn: sqlite3.Connection, window: Window, limit: int = 12) -> list[dict[str, object]]:
    """The latest requests that took more than one attempt or were degraded: the ones worth opening."""
    where, params = window.where()
    columns = ("request_id", "ts", "task", "model", "tenant", "outcome", "attempts", "hedged", "degraded", "cost_cents")
    sql = (
        f"SELECT {', '.join(columns)} FROM requests WHERE (attempts > 1 OR degraded = 1 OR outcome != 'ok')"
        f" AND {where} ORDER BY ts DESC LIMIT ?"
    )
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(sql, [*params, limit])]
