"""The providers, quality and one-request pages: each a data function (SQL) and a renderer (HTML)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from interlock._records import BreakerRecord
from interlock.adapters.dashboard._detail import (
    accept_series,
    breaker_now,
    breaker_transitions,
    sql_quality,
)
from interlock.adapters.dashboard._figures import attempt_stats
from interlock.adapters.dashboard._html import DASH, cents, esc, panel, pct, table, utc
from interlock.adapters.dashboard._pages import bucket_for
from interlock.adapters.dashboard._series import errors_by_kind, starts
from interlock.adapters.dashboard._svg import SERIES, WIDE, Span, count, lines, time_label, timeline
from interlock.adapters.dashboard._window import Window, bucket_label
from interlock.policies._quality import QualityRollup
from interlock.policies._rollup import AttemptStats

_MAX_LINES = SERIES  # more series than colours would repeat a colour: the most judged are drawn


class Health(Protocol):
    """What the providers page shows of a live provider (the gateway's door answers it)."""

    @property
    def breaker(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def cooling_down_s(self) -> float: ...
    @property
    def in_flight(self) -> int: ...


class ProviderNow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider as the page opens: breaker state, and, when served live, health and cooldown."""

    provider: str
    breaker: str
    since: float | None
    healthy: bool | None = None
    cooling_down_s: float | None = None
    in_flight: int | None = None


class Providers(msgspec.Struct, frozen=True, kw_only=True):
    """The providers page: the report's attempt figures, breaker states and transitions, errors over time."""

    attempts: tuple[AttemptStats, ...]
    now: tuple[ProviderNow, ...]
    transitions: tuple[BreakerRecord, ...]
    lo: float
    hi: float
    bucket_s: float
    starts: tuple[float, ...]
    errors: dict[str, dict[float, float]]  # "provider: kind" -> bucket start -> failed attempts


def providers_data(conn: sqlite3.Connection, window: Window, health: Mapping[str, Health] | None) -> Providers:
    """Everything the providers page draws; ``health`` is the live door's, None for a ledger alone."""
    size, first, last = bucket_for(conn, window)
    moves = breaker_transitions(conn, window)
    states = breaker_now(conn, window.until)
    stats = attempt_stats(conn, window)
    names = sorted({s.provider for s in stats} | set(states) | set(health or {}))
    now = []
    for name in names:
        state, since = states.get(name, ("closed", None))
        live = (health or {}).get(name)
        if live is None:
            now.append(ProviderNow(provider=name, breaker=state, since=since))
        else:
            now.append(
                ProviderNow(
                    provider=name,
                    breaker=live.breaker,
                    since=since,
                    healthy=live.healthy,
                    cooling_down_s=live.cooling_down_s,
                    in_flight=live.in_flight,
                )
            )
    times = [t for t in (first, last, *(m.ts for m in moves)) if t is not None]
    lo, hi = (min(times), max(times)) if times else (window.until, window.until)
    errors = {f"{p}: {k}": v for (p, k), v in sorted(errors_by_kind(conn, window, size).items())}
    return Providers(
        attempts=stats,
        now=tuple(now),
        transitions=tuple(moves),
        lo=lo,
        hi=hi,
        bucket_s=size,
        starts=tuple(starts(first, last, size)),
        errors=errors,
    )


def breaker_lanes(data: Providers) -> dict[str, list[Span]]:
    """Per provider, its breaker states as spans from one transition to the next over ``lo``..``hi``."""
    lanes: dict[str, list[Span]] = {}
    by_provider: dict[str, list[BreakerRecord]] = {}
    for move in data.transitions:
        by_provider.setdefault(move.provider, []).append(move)
    for p in data.now:
        moves = by_provider.get(p.provider, [])
        state = moves[0].from_state if moves else p.breaker
        at, spans = data.lo, []
        for move in moves:
            spans.append(Span(at, move.ts, f"state-{state}", f"{state} until {utc(move.ts)}"))
            at, state = move.ts, move.to_state
        spans.append(
            Span(at, data.hi, f"state-{state}", f"{state} from {utc(at)}" + (f" ({moves[-1].cause})" if moves else ""))
        )
        lanes[p.provider] = spans
    return lanes


def render_providers(data: Providers, window: Window) -> str:
    """The providers page's body."""
    width = max(data.hi - data.lo, 1.0)
    tick_size = 1.0 if width < 600 else 60.0 if width < 36000 else 3600.0
    chart = timeline(
        breaker_lanes(data),
        data.lo,
        data.hi,
        label="breaker states",
        tick=lambda t: time_label(t, tick_size),
        marks=[m.ts for m in data.transitions],
        width=WIDE,
    )
    legend = "".join(f'<span class="key state-{s}">{s}</span>' for s in ("closed", "half_open", "open"))
    now_rows = [
        [
            esc(p.provider),
            f'<span class="tag state-{esc(p.breaker)}">{esc(p.breaker)}</span>',
            esc(DASH if p.since is None else utc(p.since)),
            esc(DASH if p.healthy is None else ("healthy" if p.healthy else "unhealthy")),
            esc(DASH if p.cooling_down_s is None else f"{p.cooling_down_s:.1f} s"),
            esc(DASH if p.in_flight is None else p.in_flight),
        ]
        for p in data.now
    ]
    moves = [
        [esc(utc(m.ts)), esc(m.provider), esc(m.from_state), esc(m.to_state), esc(m.cause)] for m in data.transitions
    ]
    attempt_rows = [
        [
            esc(a.provider),
            esc(a.model),
            f"{a.attempts:,}",
            f"{a.ok:,}",
            f"{a.cancelled:,}",
            f"{a.hedges:,}",
            esc(", ".join(f"{k} {n}" for k, n in a.errors.items()) or DASH),
            esc(cents(a.cost_cents)),
        ]
        for a in data.attempts
    ]
    labels = [time_label(s, data.bucket_s) for s in data.starts]
    err_series: dict[str, Sequence[float | None]] = {
        k: [v.get(s, 0.0) for s in data.starts] for k, v in data.errors.items()
    }
    err_legend = "".join(f'<span class="key s{i % SERIES}">{esc(k)}</span>' for i, k in enumerate(err_series))
    errors = lines(labels, err_series, label="failed attempts", fmt=count, width=WIDE)
    return (
        panel(
            "Breakers now",
            table(["provider", "breaker", "since", "health", "cooldown", "in flight"], now_rows, numeric_from=4),
            wide=True,
            note="health, cooldown and in-flight come from the live gateway; a ledger alone keeps only the breaker",
        )
        + panel("Breaker timeline", f'<div class="legend">{legend}</div>{chart}', wide=True)
        + panel(
            f"Failed attempts per {bucket_label(data.bucket_s)}, by error kind",
            f'<div class="legend">{err_legend}</div>{errors}',
            wide=True,
        )
        + panel(
            "Attempts per provider and model",
            table(
                ["provider", "model", "attempts", "ok", "cancelled", "hedges", "errors", "cost"],
                attempt_rows,
                numeric_from=2,
            ),
            wide=True,
        )
        + panel(
            "Breaker transitions", table(["when", "provider", "from", "to", "cause"], moves, numeric_from=9), wide=True
        )
    )


class Quality(msgspec.Struct, frozen=True, kw_only=True):
    """The quality page: the report's ``--quality`` rollup and accept rates per bucket."""

    rollup: QualityRollup
    bucket_s: float
    starts: tuple[float, ...]
    accept: dict[str, dict[float, float]]  # "task/model" -> bucket start -> accept rate


def quality_data(conn: sqlite3.Connection, window: Window) -> Quality:
    """Everything the quality page draws, over ``window``."""
    size, first, last = bucket_for(conn, window)
    series = accept_series(conn, window, size)
    return Quality(
        rollup=sql_quality(conn, window),
        bucket_s=size,
        starts=tuple(starts(first, last, size)),
        accept={f"{t}/{m}": v for (t, m), v in series.items()},
    )


def render_quality(data: Quality, window: Window) -> str:
    """The quality page's body."""
    q = data.rollup
    judged = {f"{s.task}/{s.model}": s.judged for s in q.models}
    drawn = sorted(data.accept, key=lambda k: (-judged.get(k, 0), k))[:_MAX_LINES]
    labels = [time_label(s, data.bucket_s) for s in data.starts]
    series: dict[str, Sequence[float | None]] = {k: [data.accept[k].get(s) for s in data.starts] for k in drawn}
    legend = "".join(f'<span class="key s{i % SERIES}">{esc(k)}</span>' for i, k in enumerate(series))
    chart = lines(labels, series, label="accept rate", fmt=pct, top=1.0, width=WIDE)
    rows = [
        [
            esc(s.task),
            esc(s.model or DASH),
            f"{s.judged:,}",
            f"{s.accepted:,}",
            pct(s.accept_rate),
            f"{s.unjudged:,}",
            esc(", ".join(f"{v} {n}" for v, n in s.rejects_by_verifier.items()) or DASH),
        ]
        for s in q.models
    ]
    demoted = [
        [
            esc(d.task),
            esc(d.model),
            pct(d.accept_rate),
            esc(d.better_model),
            pct(d.better_accept_rate),
            f"{d.difference * 100:.1f} pts",
            f"{d.z:.2f}",
            f"{d.p_value:.4f}",
        ]
        for d in q.demotions
    ]
    cfg = q.settings
    note = (
        f"at least {cfg.min_judged} judged each, {cfg.margin * 100:.0f} points apart,"
        f" significant at {cfg.confidence:.0%}"
    )
    return (
        panel(
            f"Accept rate per {bucket_label(data.bucket_s)}",
            f'<div class="legend">{legend}</div>{chart}',
            wide=True,
            note=f"{q.judged:,} judged verdicts, {q.unjudged:,} unjudged, {q.unparsed:,} unreadable",
        )
        + panel(
            "Verdicts per job and model",
            table(
                ["job", "model", "judged", "accepted", "accept rate", "unjudged", "rejects by verifier"],
                rows,
                numeric_from=2,
            ),
            wide=True,
        )
        + panel(
            "Demotion candidates",
            table(
                ["job", "model", "accept", "better model", "its accept", "difference", "z", "p"],
                demoted,
                numeric_from=2,
            ),
            wide=True,
            note=note,
        )
    )
