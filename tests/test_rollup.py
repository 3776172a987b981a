"""The report rollup on worked examples (every figure, every alert) and its rich / JSON rendering."""

from __future__ import annotations

import io

import msgspec
import pytest
from rich.console import Console

from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters.report._render import render_rollup, rollup_json
from interlock.policies._rollup import (
    HOUR,
    CostOutlier,
    DegradedShare,
    HourSpend,
    Rollup,
    SpendSpike,
    percentile,
    rollup,
)

H0 = 472_222 * HOUR  # 2023-11-14 22:00 UTC, the start of an hour
NOW = H0 + 40 * HOUR


def req(i: int, **fields: object) -> RequestRecord:
    """A request record ``r<i>`` at ``H0 + i`` seconds with the given fields."""
    base = RequestRecord(request_id=f"r{i}", ts=H0 + i, tenant="acme", caller="api", task="summarize", model="m1")
    return msgspec.structs.replace(base, **fields)


def att(i: int, **fields: object) -> AttemptRecord:
    """An attempt record of request ``r<i>``."""
    base = AttemptRecord(
        request_id=f"r{i}", attempt=0, ts=H0 + i, tenant="acme", caller="api", task="summarize",
        model_class="fast", model="m1", provider="openai", outcome="ok",
    )  # fmt: skip
    return msgspec.structs.replace(base, **fields)


def worked_requests() -> list[RequestRecord]:
    """Four requests of one (task, model) whose figures are worked out in the test below."""
    return [
        req(1, ttft_ms=100.0, ttlt_ms=1000.0, cost_cents=1.0, input_tokens=100, cache_read_tokens=300, hedged=True),
        req(2, ttft_ms=200.0, ttlt_ms=2000.0, cost_cents=2.0, input_tokens=100, cache_write_tokens=100, hedged=True),
        req(3, ttft_ms=300.0, ttlt_ms=3000.0, cost_cents=3.0, input_tokens=100, degraded=True, cache_hit=True),
        req(4, ttft_ms=None, ttlt_ms=4000.0, cost_cents=4.0, input_tokens=100, outcome="error", output_tokens=7),
    ]


def test_percentile_is_nearest_rank() -> None:
    """p-th percentile is the sorted value at rank ceil(p*n/100), clamped to rank 1; None when empty."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    twenty = [float(v) for v in range(1, 21)]
    assert percentile(twenty, 50) == 10.0
    assert percentile(twenty, 95) == 19.0
    assert percentile(twenty, 100) == 20.0
    assert percentile(twenty, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_model_figures_worked_example() -> None:
    """Calls, rates, TTFT/TTLT percentiles, costs and prompt-cache hit rate of one (task, model)."""
    (stats,) = rollup(worked_requests(), [], now=NOW).models
    assert (stats.task, stats.model, stats.calls) == ("summarize", "m1", 4)
    assert (stats.success_rate, stats.degraded_rate, stats.hedged_rate) == (0.75, 0.25, 0.5)
    # TTFT present on 3 calls: p50 rank ceil(1.5)=2 -> 200, p95 rank ceil(2.85)=3 -> 300.
    assert (stats.ttft_p50_ms, stats.ttft_p95_ms) == (200.0, 300.0)
    # TTLT on 4 calls: p50 rank 2 -> 2000, p95 rank ceil(3.8)=4 -> 4000.
    assert (stats.ttlt_p50_ms, stats.ttlt_p95_ms) == (2000.0, 4000.0)
    assert (stats.cost_cents, stats.mean_cost_cents) == (10.0, 2.5)
    assert (stats.input_tokens, stats.output_tokens, stats.cache_read_tokens, stats.cache_write_tokens) == (
        400, 7, 300, 100,
    )  # fmt: skip
    # 300 read / (400 fresh + 300 read + 100 written) = 0.375.
    assert stats.prompt_cache_hit_rate == 0.375


def test_prompt_cache_rate_is_none_without_prompt_tokens() -> None:
    """With no prompt tokens at all the hit rate is None, not a division by zero."""
    (stats,) = rollup([req(1)], [], now=NOW).models
    assert stats.prompt_cache_hit_rate is None
    assert stats.ttft_p50_ms is None


def test_groups_by_task_and_serving_model() -> None:
    """Requests split by (task, model), sorted, with an unserved request under model ''."""
    records = [req(1, model="m2"), req(2), req(3, task="classify"), req(4, model="", outcome="error")]
    keys = [(m.task, m.model, m.calls) for m in rollup(records, [], now=NOW).models]
    assert keys == [("classify", "m1", 1), ("summarize", "", 1), ("summarize", "m1", 1), ("summarize", "m2", 1)]


def test_task_figures_and_response_cache_hits() -> None:
    """Per task: calls, response-cache hits, degraded count and spend."""
    records = [*worked_requests(), req(5, task="classify", cache_hit=True, cost_cents=0.5)]
    tasks = {t.task: t for t in rollup(records, [], now=NOW).tasks}
    assert (tasks["summarize"].calls, tasks["summarize"].cache_hits, tasks["summarize"].cache_hit_rate) == (4, 1, 0.25)
    assert (tasks["summarize"].degraded, tasks["summarize"].degraded_rate) == (1, 0.25)
    assert (tasks["summarize"].cost_cents, tasks["summarize"].mean_cost_cents) == (10.0, 2.5)
    assert (tasks["classify"].calls, tasks["classify"].cache_hits, tasks["classify"].cost_cents) == (1, 1, 0.5)


def test_spend_by_tenant_and_caller() -> None:
    """Spend is summed per (tenant, caller) and listed biggest first."""
    records = [
        req(1, tenant="a", caller="x", cost_cents=1.0),
        req(2, tenant="a", caller="x", cost_cents=2.0),
        req(3, tenant="a", caller="y", cost_cents=5.0),
        req(4, tenant="b", caller="x", cost_cents=0.25),
    ]
    spend = [(s.tenant, s.caller, s.calls, s.cost_cents) for s in rollup(records, [], now=NOW).spenders]
    assert spend == [("a", "y", 1, 5.0), ("a", "x", 2, 3.0), ("b", "x", 1, 0.25)]


def test_attempts_by_provider_and_model() -> None:
    """Attempts count ok, cancelled, hedges, cost and errors by class per (provider, model)."""
    attempts = [
        att(1, cost_cents=1.0),
        att(2, outcome="error", error="rate_limit"),
        att(3, outcome="error", error="rate_limit"),
        att(4, outcome="error", error=None),
        att(5, outcome="cancelled", hedge=True, cost_cents=0.5),
        att(6, provider="anthropic", model="claude"),
    ]
    anthropic, openai = rollup([], attempts, now=NOW).providers
    assert (anthropic.provider, anthropic.attempts, anthropic.ok) == ("anthropic", 1, 1)
    assert (openai.attempts, openai.ok, openai.cancelled, openai.hedges, openai.cost_cents) == (5, 1, 1, 1, 1.5)
    assert openai.errors == {"rate_limit": 2, "unknown": 1}


def test_window_bounds_tables_but_not_the_spend_baseline() -> None:
    """Only records with since <= ts <= now are counted; earlier hours still appear in no table."""
    records = [req(0, cost_cents=1.0), req(int(HOUR), cost_cents=2.0), req(int(2 * HOUR), cost_cents=4.0)]
    attempts = [att(0), att(int(HOUR)), att(int(2 * HOUR))]
    result = rollup(records, attempts, now=H0 + HOUR + 10, since=H0 + HOUR)
    assert (result.requests, result.attempts, result.cost_cents) == (1, 1, 2.0)
    assert result.hours == (HourSpend(H0 + HOUR, 2.0, 1),)


def test_degraded_share_alert_needs_more_than_threshold() -> None:
    """A task at exactly 30% degraded raises nothing; above it (or above a custom threshold) it alerts."""
    at_threshold = [req(i, degraded=i < 3) for i in range(10)]
    assert rollup(at_threshold, [], now=NOW).alerts == ()
    above = [req(i, degraded=i < 4) for i in range(10)]
    (alert,) = rollup(above, [], now=NOW).alerts
    assert alert == DegradedShare(task="summarize", calls=10, degraded=4, share=0.4, threshold=0.3)
    assert rollup(above, [], now=NOW, degraded_threshold=0.5).alerts == ()


def test_cost_outlier_alert_against_the_other_calls_mean() -> None:
    """A call above 10x the mean of its task's other calls alerts; exactly 10x does not."""
    cheap = [req(i, cost_cents=1.0) for i in range(10)]
    (alert,) = rollup([*cheap, req(50, cost_cents=10.5)], [], now=NOW).alerts
    assert isinstance(alert, CostOutlier)
    assert (alert.request_id, alert.cost_cents, alert.baseline_cents, alert.ratio) == ("r50", 10.5, 1.0, 10.5)
    assert rollup([*cheap, req(50, cost_cents=10.0)], [], now=NOW).alerts == ()


def test_cost_outlier_needs_a_baseline() -> None:
    """A lone call, or one beside free calls only, is never an outlier."""
    assert rollup([req(1, cost_cents=100.0)], [], now=NOW).alerts == ()
    assert rollup([req(1, cost_cents=100.0), req(2, cost_cents=0.0)], [], now=NOW).alerts == ()


def hourly(spends: list[float | None]) -> list[RequestRecord]:
    """One request per hour from H0 costing the given cents; None leaves the hour without records."""
    return [req(int(h * HOUR) + 60, cost_cents=c) for h, c in enumerate(spends) if c is not None]


def test_spend_spike_above_three_times_trailing_mean() -> None:
    """An hour above 3x the mean of its trailing hours alerts; exactly 3x does not."""
    (alert,) = rollup(hourly([1.0, 1.0, 1.0, 3.5]), [], now=NOW).alerts
    assert alert == SpendSpike(
        hour_start=H0 + 3 * HOUR, cost_cents=3.5, trailing_mean_cents=1.0, trailing_hours=3, ratio=3.5
    )
    assert rollup(hourly([1.0, 1.0, 1.0, 3.0]), [], now=NOW).alerts == ()


def test_spend_spike_needs_three_trailing_hours() -> None:
    """With only two hours of history before it, even a huge hour raises nothing."""

    def spikes(min_hours: int) -> list[SpendSpike]:
        alerts = rollup(hourly([1.0, 1.0, 100.0]), [], now=NOW, spike_min_hours=min_hours).alerts
        return [a for a in alerts if isinstance(a, SpendSpike)]

    assert spikes(3) == []
    assert [a.trailing_hours for a in spikes(2)] == [2]


def test_spend_spike_counts_quiet_hours_as_zero() -> None:
    """Hours without records after the first record count as zero spend in the trailing mean."""
    (alert,) = rollup(hourly([2.0, None, 1.0, 3.5]), [], now=NOW).alerts
    assert isinstance(alert, SpendSpike)
    assert (alert.trailing_hours, alert.trailing_mean_cents, alert.ratio) == (3, 1.0, 3.5)


def test_spend_spike_trailing_window_is_24_hours() -> None:
    """Only the 24 hours just before an hour form its baseline; older expensive hours do not."""
    spends: list[float | None] = [*([100.0] * 5), *([1.0] * 24), 3.5]
    alerts = [a for a in rollup(hourly(spends), [], now=NOW).alerts if isinstance(a, SpendSpike)]
    assert [(a.hour_start, a.trailing_hours, a.trailing_mean_cents) for a in alerts] == [(H0 + 29 * HOUR, 24, 1.0)]


def test_spend_spike_baseline_uses_records_before_since() -> None:
    """Hours before ``since`` feed the baseline but are not themselves checked or counted."""
    # Hour 3 (10) would be a spike over hours 0-2, but lies before the window; hour 4 (40) is
    # checked against the mean of hours 0-3: 13 / 4 = 3.25, and 40 > 3 * 3.25.
    result = rollup(hourly([1.0, 1.0, 1.0, 10.0, 40.0]), [], now=NOW, since=H0 + 4 * HOUR)
    (alert,) = result.alerts
    assert isinstance(alert, SpendSpike)
    assert (alert.hour_start, alert.trailing_mean_cents, alert.trailing_hours) == (H0 + 4 * HOUR, 3.25, 4)
    assert result.requests == 1


def test_spend_spike_after_free_hours_has_no_ratio() -> None:
    """Spend after hours that cost nothing is a spike whose ratio is None."""
    (alert,) = rollup(hourly([0.0, 0.0, 0.0, 1.0]), [], now=NOW).alerts
    assert isinstance(alert, SpendSpike)
    assert (alert.trailing_mean_cents, alert.ratio) == (0.0, None)


def test_empty_input() -> None:
    """No records give a rollup of zeros and empty tables, and the renderer says so."""
    result = rollup([], [], now=NOW)
    assert (result.requests, result.attempts, result.cost_cents) == (0, 0, 0.0)
    tables: list[tuple[object, ...]] = [result.models, result.tasks, result.spenders, result.providers, result.hours]
    assert all(table == () for table in [*tables, result.alerts])
    assert "No records in this window." in render_text(result)


def render_text(result: Rollup) -> str:
    """The renderer's output on a wide recording console."""
    console = Console(file=io.StringIO(), record=True, width=220, color_system=None)
    render_rollup(result, console)
    return console.export_text()


def test_renderer_shows_the_figures() -> None:
    """The tables show each worked figure: rates, latencies, costs, spend, errors and alerts."""
    records = [*worked_requests(), *(req(10 + i, cost_cents=1.0) for i in range(10)), req(99, cost_cents=90.0)]
    result = rollup(records, [att(2, outcome="error", error="rate_limit")], now=NOW)
    text = render_text(result)
    for expected in ("Jobs x models", "summarize", "m1", "15", "37.5%", "Tasks", "acme", "api", "rate_limit 1"):
        assert expected in text
    model_row = next(line for line in text.splitlines() if "m1" in line and "summarize" in line)
    for expected in ("200", "4,000", "110.00", "7.33", "93.3%"):
        assert expected in model_row
    alert_row = next(line for line in text.splitlines() if "cost outlier" in line)
    assert "r99" in alert_row
    assert "No alerts." in render_text(rollup(worked_requests(), [], now=NOW))


def test_json_round_trips_with_tagged_alerts() -> None:
    """rollup_json is the Rollup as JSON: it decodes back equal, each alert tagged with its kind."""
    records = [*(req(i, degraded=True, cost_cents=1.0) for i in range(10)), req(99, cost_cents=90.0)]
    result = rollup(records, [att(1)], now=NOW)
    data = rollup_json(result)
    assert msgspec.json.decode(data, type=Rollup) == result
    kinds = [a["kind"] for a in msgspec.json.decode(data)["alerts"]]
    assert kinds == ["degraded_share", "cost_outlier"]


@pytest.mark.parametrize("threshold", [0.0, 0.99])
def test_thresholds_are_reported(threshold: float) -> None:
    """The settings a rollup used are part of it, so the JSON says what the alerts meant."""
    assert rollup([], [], now=NOW, degraded_threshold=threshold).thresholds.degraded_threshold == threshold
