"""The report rollup: figures and alerts computed from ledger records, with no I/O and no clock.

Definitions (each figure is over the *window*, the records with ``since <= ts <= now``):

- A request is *successful* when its outcome is ``ok``; rates are fractions in [0, 1].
- Per (task, model), ``model`` is the model that served the request (``""`` when none did).
- Percentiles use the nearest-rank method: the p-th percentile of n values is the value at
  1-based rank ``ceil(p * n / 100)`` of the sorted values, so it is always an observed value
  (p50 of 1, 2, 3, 4 is 2; p95 of 1..20 is 19). Requests without the figure (no first token)
  are left out; with no values at all the percentile is ``None``.
- Provider prompt-cache hit rate = cache_read / (input + cache_read + cache_write) tokens,
  ``None`` when that sum is 0 (input tokens are counted apart from cached ones, as the ledger stores them).
- Response-cache hits are requests with ``cache_hit`` set, counted per task.
- Spend is the requests' ``cost_cents`` (a request's cost covers all of its attempts).
- Aliases: per (provider, model, served id), the answered attempts whose ``served_model`` (the
  model id the provider says answered) differs from the model's configured id — a floating
  alias (``gpt-x``) that served traffic as a dated model (``gpt-x-2025-06-01``). The configured
  ids come from ``model_ids`` (config name -> id): the ledger keeps only the config name, so a
  model without an entry is never flagged (its name is no id to compare with).

Alerts:

- ``degraded_share``: a task whose degraded requests are *more than* ``degraded_threshold`` of its calls.
- ``cost_outlier``: a request costing more than ``outlier_factor`` times the mean cost of the
  *other* requests of its task in the window (the call itself is left out of the baseline so one
  outlier cannot hide itself; the task needs at least one other call with a non-zero mean).
- ``spend_spike``: an hour (UTC, starting on the hour) overlapping the window whose spend is more
  than ``spike_factor`` times the mean hourly spend of its trailing hours. The trailing hours are
  the ``trailing_hours`` hours just before it, counting only hours at or after the first hour that
  holds any record (quiet hours after that count as zero spend), and there must be at least
  ``spike_min_hours`` of them. Records before ``since`` are used for this baseline only: pass the
  24 hours before the window too for a full baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec

from interlock._records import AttemptRecord, RequestRecord

HOUR = 3600.0
_K = TypeVar("_K")
_V = TypeVar("_V")


class ModelStats(msgspec.Struct, frozen=True, kw_only=True):
    """Requests of one task served by one model."""

    task: str
    model: str
    calls: int
    success_rate: float
    degraded_rate: float
    hedged_rate: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttlt_p50_ms: float | None
    ttlt_p95_ms: float | None
    cost_cents: float
    mean_cost_cents: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    prompt_cache_hit_rate: float | None


class TaskStats(msgspec.Struct, frozen=True, kw_only=True):
    """All requests of one task: response-cache hits, degradation and spend."""

    task: str
    calls: int
    cache_hits: int
    cache_hit_rate: float
    degraded: int
    degraded_rate: float
    cost_cents: float
    mean_cost_cents: float


class SpendStats(msgspec.Struct, frozen=True, kw_only=True):
    """Spend of one (tenant, caller) pair."""

    tenant: str
    caller: str
    calls: int
    cost_cents: float


class AttemptStats(msgspec.Struct, frozen=True, kw_only=True):
    """Attempts at one (provider, model), hedges and fallbacks included; ``errors`` counts by error class."""

    provider: str
    model: str
    attempts: int
    ok: int
    cancelled: int
    hedges: int
    errors: dict[str, int]
    cost_cents: float


class AliasStats(msgspec.Struct, frozen=True, kw_only=True):
    """A model whose provider answered as another model id than the configured one: a floating alias."""

    provider: str
    model: str
    configured_id: str
    served_model: str
    attempts: int


class HourSpend(msgspec.Struct, frozen=True):
    """Spend of one UTC hour that holds records; ``hour_start`` is epoch seconds."""

    hour_start: float
    cost_cents: float
    calls: int


class DegradedShare(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="degraded_share"):
    """A task served degraded more often than the threshold allows."""

    task: str
    calls: int
    degraded: int
    share: float
    threshold: float


class CostOutlier(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="cost_outlier"):
    """One request that cost far more than the other requests of its task."""

    request_id: str
    ts: float
    task: str
    model: str
    tenant: str
    caller: str
    cost_cents: float
    baseline_cents: float
    ratio: float


class SpendSpike(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="spend_spike"):
    """An hour whose spend is far above its trailing hours' mean; ``ratio`` is None when that mean is 0."""

    hour_start: float
    cost_cents: float
    trailing_mean_cents: float
    trailing_hours: int
    ratio: float | None


Alert = DegradedShare | CostOutlier | SpendSpike


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """The alert settings a rollup was computed with (see the module docstring)."""

    degraded_threshold: float = 0.3
    outlier_factor: float = 10.0
    spike_factor: float = 3.0
    trailing_hours: int = 24
    spike_min_hours: int = 3


class Rollup(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``interlock report`` shows; msgspec encodes it as the ``--json`` form."""

    generated_at: float
    since: float | None
    requests: int
    attempts: int
    cost_cents: float
    models: tuple[ModelStats, ...]
    tasks: tuple[TaskStats, ...]
    spenders: tuple[SpendStats, ...]
    providers: tuple[AttemptStats, ...]
    hours: tuple[HourSpend, ...]
    alerts: tuple[Alert, ...]
    thresholds: Thresholds
    aliases: tuple[AliasStats, ...] = ()


def percentile(values: Sequence[float], pct: int) -> float | None:
    """Nearest-rank percentile of already sorted ``values``; None when there are none."""
    if not values:
        return None
    rank = max(1, -(-pct * len(values) // 100))
    return values[rank - 1]


def _groups(items: Iterable[_V], key: Callable[[_V], _K]) -> dict[_K, list[_V]]:
    out: dict[_K, list[_V]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _sorted_present(values: Iterable[float | None]) -> list[float]:
    return sorted(v for v in values if v is not None)


def _model_stats(task: str, model: str, rows: list[RequestRecord]) -> ModelStats:
    n = len(rows)
    ttft = _sorted_present(r.ttft_ms for r in rows)
    ttlt = _sorted_present(r.ttlt_ms for r in rows)
    cost = math.fsum(r.cost_cents for r in rows)
    fresh = sum(r.input_tokens for r in rows)
    read = sum(r.cache_read_tokens for r in rows)
    write = sum(r.cache_write_tokens for r in rows)
    prompt_total = fresh + read + write
    return ModelStats(
        task=task, model=model, calls=n, success_rate=_rate(sum(r.outcome == "ok" for r in rows), n),
        degraded_rate=_rate(sum(r.degraded for r in rows), n), hedged_rate=_rate(sum(r.hedged for r in rows), n),
        ttft_p50_ms=percentile(ttft, 50), ttft_p95_ms=percentile(ttft, 95),
        ttlt_p50_ms=percentile(ttlt, 50), ttlt_p95_ms=percentile(ttlt, 95),
        cost_cents=cost, mean_cost_cents=cost / n, input_tokens=fresh, output_tokens=sum(r.output_tokens for r in rows),
        cache_read_tokens=read, cache_write_tokens=write,
        prompt_cache_hit_rate=read / prompt_total if prompt_total else None,
    )  # fmt: skip


def _task_stats(task: str, rows: list[RequestRecord]) -> TaskStats:
    n = len(rows)
    hits = sum(r.cache_hit for r in rows)
    degraded = sum(r.degraded for r in rows)
    cost = math.fsum(r.cost_cents for r in rows)
    return TaskStats(
        task=task, calls=n, cache_hits=hits, cache_hit_rate=_rate(hits, n), degraded=degraded,
        degraded_rate=_rate(degraded, n), cost_cents=cost, mean_cost_cents=cost / n,
    )  # fmt: skip


def _attempt_stats(provider: str, model: str, rows: list[AttemptRecord]) -> AttemptStats:
    errors: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.outcome == "error":
            errors[r.error or "unknown"] += 1
    return AttemptStats(
        provider=provider, model=model, attempts=len(rows), ok=sum(r.outcome == "ok" for r in rows),
        cancelled=sum(r.outcome == "cancelled" for r in rows), hedges=sum(r.hedge for r in rows),
        errors=dict(sorted(errors.items())), cost_cents=math.fsum(r.cost_cents for r in rows),
    )  # fmt: skip


def _degraded_alerts(tasks: Iterable[TaskStats], threshold: float) -> list[DegradedShare]:
    return [
        DegradedShare(task=t.task, calls=t.calls, degraded=t.degraded, share=t.degraded_rate, threshold=threshold)
        for t in tasks
        if t.degraded_rate > threshold
    ]


def _outlier_alerts(by_task: dict[str, list[RequestRecord]], factor: float) -> list[CostOutlier]:
    found: list[CostOutlier] = []
    for task, rows in by_task.items():
        if len(rows) < 2:
            continue
        total = math.fsum(r.cost_cents for r in rows)
        for r in rows:
            baseline = (total - r.cost_cents) / (len(rows) - 1)
            if baseline > 0 and r.cost_cents > factor * baseline:
                outlier = CostOutlier(
                    request_id=r.request_id, ts=r.ts, task=task, model=r.model, tenant=r.tenant, caller=r.caller,
                    cost_cents=r.cost_cents, baseline_cents=baseline, ratio=r.cost_cents / baseline,
                )  # fmt: skip
                found.append(outlier)
    return sorted(found, key=lambda a: (-a.cost_cents, a.request_id))


def hour_of(ts: float) -> float:
    """The start of the UTC hour holding ``ts``, in epoch seconds."""
    return math.floor(ts / HOUR) * HOUR


def _hourly(requests: Iterable[RequestRecord]) -> dict[float, HourSpend]:
    by_hour = _groups(requests, lambda r: hour_of(r.ts))
    return {h: HourSpend(h, math.fsum(r.cost_cents for r in rows), len(rows)) for h, rows in sorted(by_hour.items())}


def _trailing(start: float, first: float, cfg: Thresholds) -> list[float]:
    """The hours just before ``start`` that count as its baseline: never before the first record's hour."""
    available = round((start - first) / HOUR)
    return [start - k * HOUR for k in range(1, min(cfg.trailing_hours, available) + 1)]


def _spike_alerts(hours: dict[float, HourSpend], window_start: float, now: float, cfg: Thresholds) -> list[SpendSpike]:
    found: list[SpendSpike] = []
    first = min(hours, default=0.0)
    for start, spend in hours.items():
        if start + HOUR <= window_start or start > now or spend.cost_cents <= 0:
            continue
        trailing = _trailing(start, first, cfg)
        if len(trailing) < cfg.spike_min_hours:
            continue
        mean = math.fsum(hours[h].cost_cents for h in trailing if h in hours) / len(trailing)
        if spend.cost_cents > cfg.spike_factor * mean:
            spike = SpendSpike(
                hour_start=start, cost_cents=spend.cost_cents, trailing_mean_cents=mean,
                trailing_hours=len(trailing), ratio=spend.cost_cents / mean if mean > 0 else None,
            )  # fmt: skip
            found.append(spike)
    return found


def _spenders(window: Iterable[RequestRecord]) -> tuple[SpendStats, ...]:
    rows = (
        SpendStats(tenant=tenant, caller=caller, calls=len(v), cost_cents=math.fsum(r.cost_cents for r in v))
        for (tenant, caller), v in _groups(window, lambda r: (r.tenant, r.caller)).items()
    )
    return tuple(sorted(rows, key=lambda s: (-s.cost_cents, s.tenant, s.caller)))


def _providers(tried: Iterable[AttemptRecord]) -> tuple[AttemptStats, ...]:
    by_model = _groups(tried, lambda a: (a.provider, a.model))
    return tuple(_attempt_stats(p, m, rows) for (p, m), rows in sorted(by_model.items()))


def _aliases(tried: Iterable[AttemptRecord], model_ids: Mapping[str, str]) -> tuple[AliasStats, ...]:
    """Answered attempts served under another id than configured, counted per (provider, model, served id)."""
    served = (a for a in tried if a.outcome == "ok" and a.served_model and a.model in model_ids)
    drifted = (a for a in served if a.served_model != model_ids[a.model])
    by_id = _groups(drifted, lambda a: (a.provider, a.model, a.served_model))
    return tuple(
        AliasStats(provider=p, model=m, configured_id=model_ids[m], served_model=s, attempts=len(rows))
        for (p, m, s), rows in sorted(by_id.items())
    )


def rollup(
    requests: Iterable[RequestRecord],
    attempts: Iterable[AttemptRecord],
    *,
    now: float,
    since: float | None = None,
    degraded_threshold: float = 0.3,
    outlier_factor: float = 10.0,
    spike_factor: float = 3.0,
    trailing_hours: int = 24,
    spike_min_hours: int = 3,
    model_ids: Mapping[str, str] | None = None,
) -> Rollup:
    """Compute every figure and alert of the report over the window ``since <= ts <= now``.

    ``model_ids`` maps config names to their configured model ids, for the aliases.
    """
    cfg = Thresholds(
        degraded_threshold=degraded_threshold, outlier_factor=outlier_factor, spike_factor=spike_factor,
        trailing_hours=trailing_hours, spike_min_hours=spike_min_hours,
    )  # fmt: skip
    start = -math.inf if since is None else since
    every = [r for r in requests if r.ts <= now]
    window = [r for r in every if r.ts >= start]
    tried = [a for a in attempts if start <= a.ts <= now]
    by_task = _groups(window, lambda r: r.task)
    tasks = tuple(_task_stats(t, rows) for t, rows in sorted(by_task.items()))
    by_model = _groups(window, lambda r: (r.task, r.model))
    hours = _hourly(every)
    return Rollup(
        generated_at=now,
        since=since,
        requests=len(window),
        attempts=len(tried),
        cost_cents=math.fsum(r.cost_cents for r in window),
        models=tuple(_model_stats(t, m, rows) for (t, m), rows in sorted(by_model.items())),
        tasks=tasks,
        spenders=_spenders(window),
        providers=_providers(tried),
        hours=tuple(h for h in hours.values() if h.hour_start + HOUR > start),
        alerts=(
            *_degraded_alerts(tasks, degraded_threshold),
            *_spike_alerts(hours, start, now, cfg),
            *_outlier_alerts(by_task, outlier_factor),
        ),
        thresholds=cfg,
        aliases=_aliases(tried, model_ids or {}),
    )
