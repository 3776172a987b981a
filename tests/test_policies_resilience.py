"""Resilience and pricing policies: breaker, hedge budget and delay, latency, health, cooldown, cost."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    AdmitStep,
    BreakerStep,
    HedgeOp,
    breaker_configs,
    breaker_scripts,
    hedge_budget_configs,
    hedge_ops,
    latencies,
    usages,
)

from interlock._errors import ErrorClass
from interlock._types import Usage
from interlock.policies._breaker import (
    FAILURE_KINDS,
    Admission,
    BreakerConfig,
    BreakerState,
    CallOutcome,
    admit,
    advance,
    counts_as_failure,
    new_transitions,
    on_health_probe,
    open_wait,
    record,
    window_stats,
)
from interlock.policies._health import (
    QUOTA_MAX_S,
    CooldownConfig,
    HealthState,
    ProbeConfig,
    cooldown_after,
    cooldown_until,
    cooling_down,
    probe_interval,
    record_probe,
)
from interlock.policies._hedge import (
    HedgeBudget,
    HedgeBudgetConfig,
    HedgeDelay,
    can_hedge,
    full_budget,
    hedge_delay_s,
    on_success,
    spend_hedge,
)
from interlock.policies._latency import RollingLatency
from interlock.policies._pricing import Price, cost_cents, estimate_cents

OK = CallOutcome()
FAIL = CallOutcome(error=ErrorClass.SERVER_ERROR)


def _feed(state: BreakerState, outcomes: list[CallOutcome], now: float, cfg: BreakerConfig) -> BreakerState:
    for outcome in outcomes:
        state, admission = admit(state, now, cfg)
        assert admission.allowed
        state = record(state, outcome, now, cfg)
    return state


def _tripped(cfg: BreakerConfig, now: float = 100.0) -> BreakerState:
    state = _feed(BreakerState(), [FAIL] * cfg.min_calls, now, cfg)
    assert state.name == "open"
    return state


# -- breaker: which errors count -----------------------------------------------------------------


def test_failure_table_covers_every_error_class() -> None:
    """Provider-side classes (and auth) count as failures; request-side, cancelled and internal do not."""
    counted = {k for k in ErrorClass if counts_as_failure(k)}
    assert counted == {"rate_limit", "overloaded", "server_error", "timeout", "connect", "auth"}
    assert counted == FAILURE_KINDS


def test_non_failure_kinds_never_trip() -> None:
    """A flood of bad requests, filtered content and cancellations leaves the breaker closed and its window empty."""
    cfg = BreakerConfig(window_calls=5, min_calls=1, failure_rate_pct=1)
    ignored = [k for k in ErrorClass if not counts_as_failure(k)]
    state = _feed(BreakerState(), [CallOutcome(error=k) for k in ignored * 10], 0.0, cfg)
    assert state.name == "closed"
    assert window_stats(state, 0.0, cfg).calls == 0


def test_failure_kinds_are_configurable() -> None:
    """A config that stops counting auth leaves the breaker closed on auth errors."""
    cfg = BreakerConfig(window_calls=4, min_calls=2, failure_kinds=FAILURE_KINDS - {ErrorClass.AUTH})
    state = _feed(BreakerState(), [CallOutcome(error=ErrorClass.AUTH)] * 4, 0.0, cfg)
    assert state.name == "closed"


# -- breaker: closed -> open --------------------------------------------------------------------


def test_opens_on_failure_rate_only_after_min_calls() -> None:
    """Four failures of a five-call minimum keep it closed; the fifth opens it with reason failure_rate."""
    cfg = BreakerConfig(window_calls=10, min_calls=5, failure_rate_pct=50)
    state = _feed(BreakerState(), [FAIL] * 4, 0.0, cfg)
    assert state.name == "closed"
    opened = _feed(state, [FAIL], 1.0, cfg)
    assert opened.name == "open"
    assert [(t.source, t.target, t.reason) for t in new_transitions(state, opened)] == [
        ("closed", "open", "failure_rate")
    ]


def test_stays_closed_below_failure_rate() -> None:
    """Four failures in ten calls is 40%, under a 50% threshold: the breaker stays closed."""
    cfg = BreakerConfig(window_calls=10, min_calls=10, failure_rate_pct=50)
    state = _feed(BreakerState(), [OK, FAIL] * 4 + [OK, OK], 0.0, cfg)
    assert state.name == "closed"
    stats = window_stats(state, 0.0, cfg)
    assert (stats.calls, stats.failures, stats.failure_rate_pct) == (10, 4, 40.0)


def test_opens_on_slow_call_rate() -> None:
    """Successful calls whose TTFT exceeds the slow threshold trip the breaker with reason slow_call_rate."""
    cfg = BreakerConfig(window_calls=5, min_calls=5, slow_call_ttft_s=5.0, slow_call_rate_pct=60)
    slow, fast = CallOutcome(ttft_s=6.0), CallOutcome(ttft_s=1.0)
    state = _feed(BreakerState(), [slow, fast, slow, fast], 0.0, cfg)
    assert state.name == "closed"
    state = _feed(state, [slow], 0.0, cfg)
    assert state.name == "open"
    assert state.recent[-1].reason == "slow_call_rate"


def test_ttft_at_threshold_is_not_slow() -> None:
    """A TTFT equal to the threshold is not slow; the breaker only counts strictly slower calls."""
    cfg = BreakerConfig(window_calls=3, min_calls=3, slow_call_ttft_s=5.0, slow_call_rate_pct=1)
    state = _feed(BreakerState(), [CallOutcome(ttft_s=5.0)] * 3, 0.0, cfg)
    assert state.name == "closed"


def test_count_window_forgets_old_calls() -> None:
    """With a four-call window, two early failures drop out once four successes follow."""
    cfg = BreakerConfig(window_calls=4, min_calls=4, failure_rate_pct=75)
    state = _feed(BreakerState(), [FAIL, FAIL, OK, OK, OK, OK], 0.0, cfg)
    assert window_stats(state, 0.0, cfg).failures == 0
    state = _feed(state, [FAIL, FAIL], 0.0, cfg)
    assert state.name == "closed"  # window is OK, OK, FAIL, FAIL: 50% < 75%
    state = _feed(state, [FAIL], 0.0, cfg)
    assert state.name == "open"


def test_time_window_forgets_old_calls() -> None:
    """With a ten-second window, failures older than ten seconds no longer count toward the minimum."""
    cfg = BreakerConfig(window_calls=None, window_s=10.0, min_calls=3, failure_rate_pct=100)
    state = _feed(BreakerState(), [FAIL], 0.0, cfg)
    state = _feed(state, [FAIL], 1.0, cfg)
    state = _feed(state, [FAIL], 12.0, cfg)
    assert state.name == "closed"
    assert window_stats(state, 12.0, cfg).calls == 1
    state = _feed(state, [FAIL, FAIL], 13.0, cfg)
    assert state.name == "open"


def test_both_windows_keep_last_n_within_t() -> None:
    """With both windows, the window holds at most N calls and none older than T seconds."""
    cfg = BreakerConfig(window_calls=3, window_s=10.0, min_calls=1, failure_rate_pct=100)
    state = _feed(BreakerState(), [OK] * 5, 0.0, cfg)
    assert window_stats(state, 0.0, cfg).calls == 3
    assert window_stats(state, 10.0, cfg).calls == 0


# -- breaker: open, half-open, and back -------------------------------------------------------


def test_open_rejects_with_retry_in_until_the_wait_passes() -> None:
    """An open breaker rejects with the seconds left of its wait, then goes half-open when the wait is over."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=30.0)
    state = _tripped(cfg, now=100.0)
    state, adm = admit(state, 110.0, cfg)
    assert not adm.allowed
    assert adm.retry_in_s == pytest.approx(20.0)
    assert advance(state, 129.9, cfg).name == "open"
    state, adm = admit(state, 130.0, cfg)
    assert state.name == "half_open"
    assert adm.allowed
    assert adm.probe


def test_half_open_permits_exactly_n_probes() -> None:
    """Half-open hands out exactly half_open_probes slots, then rejects without a retry time."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=10.0, half_open_probes=3)
    state = advance(_tripped(cfg, now=0.0), 10.0, cfg)
    answers = []
    for _ in range(5):
        state, adm = admit(state, 10.0, cfg)
        answers.append(adm)
    assert [a.allowed for a in answers] == [True, True, True, False, False]
    assert answers[-1].retry_in_s is None


def test_all_probes_passing_closes() -> None:
    """When every permitted probe succeeds, the breaker closes with an empty window."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=10.0, half_open_probes=3)
    state = _tripped(cfg, now=0.0)
    admissions = []
    for _ in range(3):
        state, adm = admit(state, 10.0, cfg)
        admissions.append(adm)
    for i, adm in enumerate(admissions):
        assert state.name == "half_open", f"closed after only {i} probes"
        state = record(state, CallOutcome(epoch=adm.epoch), 11.0, cfg)
    assert state.name == "closed"
    assert state.recent[-1].reason == "probes_passed"
    assert window_stats(state, 11.0, cfg).calls == 0


def test_probe_failure_reopens_with_a_longer_wait() -> None:
    """A failed probe re-opens at once, and each trip in a row waits 1.5 times longer, up to the cap."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=30.0, open_wait_multiplier=1.5, open_wait_max_s=60.0)
    state = _tripped(cfg, now=0.0)
    waits = [state.wait_s]
    for _ in range(3):
        now = state.opened_at + state.wait_s
        state, adm = admit(state, now, cfg)
        state = record(state, CallOutcome(error=ErrorClass.TIMEOUT, epoch=adm.epoch), now, cfg)
        assert state.name == "open"
        assert state.recent[-1].reason == "probe_failed"
        waits.append(state.wait_s)
    assert waits == [30.0, 45.0, 60.0, 60.0]


def test_slow_probe_reopens() -> None:
    """A probe that succeeds but is slower than the slow-call threshold re-opens the breaker."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=5.0, slow_call_ttft_s=2.0)
    state, adm = admit(_tripped(cfg, now=0.0), 5.0, cfg)
    state = record(state, CallOutcome(ttft_s=3.0, epoch=adm.epoch), 6.0, cfg)
    assert (state.name, state.recent[-1].reason, state.wait_s) == ("open", "probe_slow", 7.5)


def test_ignored_probe_returns_its_slot() -> None:
    """A cancelled probe neither closes nor re-opens the breaker, and its slot can be handed out again."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=5.0, half_open_probes=1)
    state, adm = admit(_tripped(cfg, now=0.0), 5.0, cfg)
    state, refused = admit(state, 5.0, cfg)
    assert not refused.allowed
    state = record(state, CallOutcome(error=ErrorClass.CANCELLED, epoch=adm.epoch), 6.0, cfg)
    assert state.name == "half_open"
    state, again = admit(state, 6.0, cfg)
    assert again.allowed
    assert again.probe


def test_stale_outcome_is_dropped() -> None:
    """A call admitted while closed that ends after the breaker went half-open does not count as a probe."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=5.0, half_open_probes=1)
    state, old = admit(BreakerState(), 0.0, cfg)
    state = _feed(state, [FAIL, FAIL], 0.0, cfg)
    state, probe = admit(state, 5.0, cfg)
    after = record(state, CallOutcome(epoch=old.epoch), 6.0, cfg)
    assert after is state
    assert record(state, CallOutcome(epoch=probe.epoch), 6.0, cfg).name == "closed"


def test_outcome_with_nothing_outstanding_changes_nothing() -> None:
    """An outcome without an epoch, while open or half-open with no probe out, leaves the state as it was."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=5.0)
    opened = _tripped(cfg, now=0.0)
    assert record(opened, FAIL, 1.0, cfg) is opened
    half_open = advance(opened, 5.0, cfg)
    assert half_open.name == "half_open"
    assert record(half_open, OK, 6.0, cfg) is half_open


def test_trip_soon_after_closing_keeps_growing_the_wait() -> None:
    """Re-tripping within trip_memory_s of closing counts as a repeat; later, the wait starts over."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=10.0, trip_memory_s=100.0, half_open_probes=1)
    state, adm = admit(_tripped(cfg, now=0.0), 10.0, cfg)
    closed = record(state, CallOutcome(epoch=adm.epoch), 10.0, cfg)
    assert closed.name == "closed"
    assert _feed(closed, [FAIL, FAIL], 50.0, cfg).wait_s == 15.0
    assert _feed(closed, [FAIL, FAIL], 200.0, cfg).wait_s == 10.0


def test_open_wait_grows_geometrically_and_caps() -> None:
    """open_wait follows base * multiplier ** (trips - 1) and never exceeds the cap, even for huge trip counts."""
    cfg = BreakerConfig(open_wait_s=30.0, open_wait_multiplier=2.0, open_wait_max_s=300.0)
    assert [open_wait(n, cfg) for n in (1, 2, 3, 4, 5)] == [30.0, 60.0, 120.0, 240.0, 300.0]
    assert open_wait(10_000, cfg) == 300.0


def test_config_rejects_impossible_settings() -> None:
    """A minimum above the window, unknown keys and no window at all are refused at decode time."""
    with pytest.raises(msgspec.ValidationError, match="min_calls"):
        msgspec.json.decode(b'{"window_calls": 5, "min_calls": 6}', type=BreakerConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"windw_calls": 5}', type=BreakerConfig)
    with pytest.raises(ValueError, match="window"):
        BreakerConfig(window_calls=None, window_s=None)


# -- breaker: properties ----------------------------------------------------------------------


class _Harness:
    """Drives a breaker through a script, keeping its in-flight admissions, and checks invariants."""

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg, self.state, self.now = cfg, BreakerState(), 0.0
        self.inflight: list[Admission] = []
        self.counted_since_close = 0
        self.granted: dict[int, int] = {}  # epoch -> probe slots handed out minus slots given back

    def step(self, step: BreakerStep) -> None:
        self.now += step.dt
        before = self.state
        if isinstance(step, AdmitStep):
            self._admit()
        elif self.inflight:
            adm = self.inflight.pop(step.pick % len(self.inflight))
            outcome = msgspec.structs.replace(step.outcome, epoch=adm.epoch)
            counts = outcome.error is None or counts_as_failure(outcome.error)
            if before.name == "closed" and adm.epoch == before.epoch and counts:
                self.counted_since_close += 1
            if adm.probe and adm.epoch == before.epoch and not counts and before.name == "half_open":
                self.granted[adm.epoch] -= 1
            self.state = record(before, outcome, self.now, self.cfg)
        self._check(before)

    def _admit(self) -> None:
        self.state, adm = admit(self.state, self.now, self.cfg)
        name = self.state.name
        assert adm.allowed == (name == "closed" or adm.probe)
        if name == "open":
            assert adm.retry_in_s is not None
            assert 0 < adm.retry_in_s <= self.state.wait_s
        if adm.probe:
            self.granted[adm.epoch] = self.granted.get(adm.epoch, 0) + 1
        if adm.allowed:
            self.inflight.append(adm)

    def _check(self, before: BreakerState) -> None:
        state, cfg = self.state, self.cfg
        assert state.name in ("closed", "open", "half_open")
        assert 0 <= state.probes_passed <= state.probes_admitted <= cfg.half_open_probes
        assert self.granted.get(state.epoch, 0) <= cfg.half_open_probes
        assert state.wait_s <= cfg.open_wait_max_s
        for t in new_transitions(before, state):
            if (t.source, t.target) == ("closed", "open"):
                assert self.counted_since_close >= cfg.min_calls
            if t.target == "closed":
                self.counted_since_close = 0
        if state.name == "closed":
            assert window_stats(state, self.now, cfg).calls <= (cfg.window_calls or math.inf)


@settings(max_examples=300, deadline=None)
@given(cfg=breaker_configs(), script=breaker_scripts)
def test_breaker_invariants_hold_over_random_scripts(cfg: BreakerConfig, script: list[BreakerStep]) -> None:
    """Over any script: three states only, never more than N probes out, never open before min_calls, wait capped."""
    harness = _Harness(cfg)
    for step in script:
        harness.step(step)


@settings(max_examples=100, deadline=None)
@given(
    cfg=breaker_configs(),
    kinds=st.lists(st.sampled_from([k for k in ErrorClass if not counts_as_failure(k)]), max_size=60),
)
def test_only_ignored_errors_never_open(cfg: BreakerConfig, kinds: list[ErrorClass]) -> None:
    """Whatever the settings, outcomes made only of non-failure kinds never move the breaker off closed."""
    state = _feed(BreakerState(), [CallOutcome(error=k) for k in kinds], 0.0, cfg)
    assert state.name == "closed"
    assert state.transitions == 0


# -- breaker: health probes while open -----------------------------------------------------------


def test_a_passing_health_probe_half_opens_an_open_breaker_before_its_wait() -> None:
    """A good health probe half-opens an open breaker at once; a failed one, or one while closed, changes nothing."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=30.0)
    opened = _tripped(cfg, now=100.0)
    assert on_health_probe(opened, False, 102.0, cfg) is opened
    half = on_health_probe(opened, True, 102.0, cfg)
    assert (half.name, half.recent[-1].reason, half.recent[-1].at) == ("half_open", "health_probe_passed", 102.0)
    state, adm = admit(half, 102.0, cfg)
    assert (adm.allowed, adm.probe) == (True, True)  # the half-open trials still decide
    assert on_health_probe(BreakerState(), True, 0.0, cfg) == BreakerState()
    assert on_health_probe(state, True, 103.0, cfg) is state


def test_a_health_probe_contradicted_by_real_calls_stops_half_opening_until_closed() -> None:
    """Brownout: the model list answers but the trial fails, so later passing probes wait for the (longer) open wait."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=10.0, half_open_probes=1, open_wait_max_s=60.0)
    state = on_health_probe(_tripped(cfg, now=0.0), True, 2.0, cfg)
    state, adm = admit(state, 2.0, cfg)
    state = record(state, CallOutcome(error=ErrorClass.SERVER_ERROR, epoch=adm.epoch), 2.5, cfg)
    assert (state.name, state.wait_s, state.trust_health_probes) == ("open", 15.0, False)
    assert on_health_probe(state, True, 5.0, cfg) is state  # no early half-open any more
    state, adm = admit(state, 17.5, cfg)  # the open wait still half-opens it
    assert (state.name, state.recent[-1].reason) == ("half_open", "wait_elapsed")
    closed = record(state, CallOutcome(epoch=adm.epoch), 18.0, cfg)
    assert closed.name == "closed"
    assert closed.trust_health_probes  # recovered: a later outage may be half-opened by a probe again
    again = on_health_probe(_feed(closed, [FAIL, FAIL], 500.0, cfg), True, 501.0, cfg)
    assert again.name == "half_open"


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.sampled_from(["probe_ok", "probe_fail", "ok", "fail", "tick"]), max_size=120))
def test_reopening_backoff_stays_bounded_whatever_the_probes_say(steps: list[str]) -> None:
    """Over any mix of health probes, trial outcomes and time, the open wait never exceeds open_wait_max_s."""
    cfg = BreakerConfig(window_calls=2, min_calls=2, open_wait_s=5.0, open_wait_multiplier=2.0, open_wait_max_s=40.0)
    state, now = BreakerState(), 0.0
    for step in steps:
        now += 1.0 if step == "tick" else 0.0
        if step.startswith("probe"):
            state = on_health_probe(state, step == "probe_ok", now, cfg)
        elif step in ("ok", "fail"):
            state, adm = admit(state, now, cfg)
            if adm.allowed:
                state = record(state, OK if step == "ok" else CallOutcome(error=ErrorClass.TIMEOUT, epoch=adm.epoch),
                               now, cfg)
        assert state.wait_s <= cfg.open_wait_max_s
        if state.name == "open":
            assert state.opened_at + state.wait_s <= now + cfg.open_wait_max_s


def test_probe_interval_while_the_breaker_is_open_is_short_and_jittered() -> None:
    """While open the next probe comes after open_interval_s spread by open_jitter, whatever the health says."""
    cfg = ProbeConfig(interval_s=30.0, unhealthy_interval_s=5.0, open_interval_s=2.0, open_jitter=0.5)
    assert probe_interval(HealthState(), cfg, breaker_open=True, draw=0.0) == 1.0
    assert probe_interval(HealthState(), cfg, breaker_open=True, draw=0.5) == 2.0
    assert probe_interval(HealthState(healthy=False), cfg, breaker_open=True, draw=0.999) == pytest.approx(3.0, 1e-3)
    steady = ProbeConfig(open_interval_s=4.0, open_jitter=0.0)
    assert probe_interval(HealthState(), steady, breaker_open=True, draw=0.9) == 4.0


def test_quota_cools_for_quota_s_and_other_kinds_do_not_cool() -> None:
    """A quota error pauses for quota_s (any retry-after ignored), a rate limit by its retry-after, others not."""
    cfg = CooldownConfig(default_s=1.0, max_s=60.0, quota_s=300.0)
    assert cooldown_after(ErrorClass.QUOTA, 100.0, 2.0, cfg, current=-math.inf) == 400.0
    assert cooldown_after(ErrorClass.QUOTA, 100.0, None, cfg, current=900.0) == 900.0
    assert cooldown_after(ErrorClass.RATE_LIMIT, 100.0, 2.0, cfg, current=-math.inf) == 102.0
    assert cooldown_after(ErrorClass.SERVER_ERROR, 100.0, 2.0, cfg, current=-math.inf) is None
    assert CooldownConfig().quota_s == 300.0
    with pytest.raises(ValueError, match="quota_s"):
        CooldownConfig(quota_s=0.0)
    with pytest.raises(ValueError, match="quota_s"):
        CooldownConfig(quota_s=QUOTA_MAX_S + 1)


def test_probe_settings_refuse_a_jitter_of_one_or_more_and_an_empty_model() -> None:
    """open_jitter must stay below 1 (no zero interval) and a generation-probe model must name something."""
    with pytest.raises(msgspec.ValidationError, match="open_jitter"):
        msgspec.json.decode(b'{"open_jitter": 1.0}', type=ProbeConfig)
    with pytest.raises(msgspec.ValidationError, match="model"):
        msgspec.json.decode(b'{"model": " "}', type=ProbeConfig)
    assert msgspec.json.decode(b'{"model": "gpt-4o-mini"}', type=ProbeConfig).model == "gpt-4o-mini"


# -- hedge budget and delay ---------------------------------------------------------------------


def test_hedge_budget_allows_until_half_then_refills() -> None:
    """A full 10-token bucket allows five hedges (10 -> 5), refuses the sixth, and ten successes re-open it."""
    cfg = HedgeBudgetConfig()
    budget = full_budget(cfg)
    allowed = []
    for _ in range(6):
        budget, ok = spend_hedge(budget, cfg)
        allowed.append(ok)
    assert allowed == [True] * 5 + [False]
    assert budget.tokens == 5.0
    for _ in range(10):
        budget = on_success(budget, cfg)
    assert budget == HedgeBudget(6000)
    assert can_hedge(budget, cfg)


def test_hedge_budget_clamps_at_both_ends() -> None:
    """Successes never lift the bucket past max_tokens; hedges stop once half of it is spent."""
    cfg = HedgeBudgetConfig(max_tokens=2.0, token_ratio=0.5)
    budget = full_budget(cfg)
    assert on_success(budget, cfg).tokens == 2.0
    for _ in range(5):
        budget, _ok = spend_hedge(budget, cfg)
    assert budget.tokens == 1.0  # spent down to half: a hedge needs strictly more than half left
    assert not can_hedge(budget, cfg)
    assert spend_hedge(budget, cfg) == (budget, False)


@given(cfg=hedge_budget_configs, ops=hedge_ops)
def test_hedge_budget_stays_within_bounds(cfg: HedgeBudgetConfig, ops: list[HedgeOp]) -> None:
    """Under any sequence of successes, failures and hedges the bucket stays in [0, max] and hedges need > max/2."""
    budget = full_budget(cfg)
    for op in ops:
        if op == "success":
            budget = on_success(budget, cfg)
        elif op == "failure":
            pass  # a failed call refills nothing and takes nothing: only a hedge spends
        else:
            before = budget
            budget, ok = spend_hedge(budget, cfg)
            assert ok == (before.milli_tokens * 2 > cfg.max_milli)
        assert 0 <= budget.milli_tokens <= cfg.max_milli


def _window(values_s: list[float], capacity: int = 200) -> RollingLatency:
    window = RollingLatency(capacity)
    for v in values_s:
        window.add(v)
    return window


def test_fixed_hedge_delay() -> None:
    """A fixed delay is its milliseconds in seconds, whatever the latency window holds."""
    assert hedge_delay_s(HedgeDelay(mode="fixed", fixed_ms=750), _window([9.0] * 50)) == 0.75


def test_p95_hedge_delay_uses_fallback_then_p95_clamped() -> None:
    """Before min_samples TTFTs the fallback applies; then the p95 rules, clamped to [min_ms, max_ms]."""
    delay = HedgeDelay(mode="p95", min_ms=100, max_ms=5000, fallback_ms=1500, min_samples=20)
    assert hedge_delay_s(delay, None) == 1.5
    assert hedge_delay_s(delay, _window([0.5] * 19)) == 1.5
    ms = [i / 1000 * 20 for i in range(1, 101)]  # 20 ms .. 2000 ms: p95 is 1900 ms
    assert hedge_delay_s(delay, _window(ms)) == pytest.approx(1.9)
    assert hedge_delay_s(delay, _window([0.01] * 40)) == pytest.approx(0.1)
    assert hedge_delay_s(delay, _window([30.0] * 40)) == pytest.approx(5.0)


# -- rolling latency ----------------------------------------------------------------------------


def test_percentiles_by_nearest_rank() -> None:
    """For the samples 1..100 the p50, p95 and p99 are 50, 95 and 99, whatever the insertion order."""
    window = _window([float(v) for v in reversed(range(1, 101))])
    assert (len(window), window.percentile(50), window.percentile(95), window.percentile(99)) == (100, 50.0, 95.0, 99.0)
    assert window.percentile(100) == 100.0


def test_latency_window_evicts_oldest_and_handles_empty() -> None:
    """A full ring drops its oldest sample; an empty one has no percentiles; bad input is refused."""
    window = _window([1.0, 2.0, 3.0, 4.0, 5.0], capacity=3)
    assert len(window) == 3
    assert (window.percentile(1), window.percentile(50), window.percentile(100)) == (3.0, 4.0, 5.0)
    empty = RollingLatency(4)
    assert empty.percentile(95) is None
    with pytest.raises(ValueError, match="percentile"):
        window.percentile(0)
    with pytest.raises(ValueError, match="latency"):
        window.add(-1.0)


@given(samples=st.lists(latencies, max_size=60), capacity=st.integers(1, 20), q=st.floats(0.5, 100))
def test_latency_window_matches_a_sorted_reference(samples: list[float], capacity: int, q: float) -> None:
    """The ring keeps exactly the last `capacity` samples and its percentile is nearest rank over them."""
    window = _window(samples, capacity)
    kept = samples[-capacity:]
    assert len(window) == len(kept)
    expected = sorted(kept)[max(math.ceil(q * len(kept) / 100), 1) - 1] if kept else None
    assert window.percentile(q) == expected


# -- health and cooldown ------------------------------------------------------------------------


def _probes(results: str, cfg: ProbeConfig) -> HealthState:
    state = HealthState()
    for ch in results:
        state = record_probe(state, ch == "+", cfg)
    return state


def test_health_hysteresis() -> None:
    """It takes three failures in a row to go unhealthy and two successes in a row to come back."""
    cfg = ProbeConfig(unhealthy_after=3, healthy_after=2)
    assert _probes("--+--", cfg).healthy
    assert not _probes("---", cfg).healthy
    assert not _probes("---+-+", cfg).healthy
    back = _probes("---++", cfg)
    assert back.healthy
    assert back.changes == 2


def test_probe_interval_is_faster_while_unhealthy() -> None:
    """The next probe comes after interval_s while healthy and after unhealthy_interval_s while not."""
    cfg = ProbeConfig(interval_s=30.0, unhealthy_interval_s=5.0, unhealthy_after=1)
    assert probe_interval(HealthState(), cfg) == 30.0
    assert probe_interval(_probes("-", cfg), cfg) == 5.0


def test_cooldown_follows_retry_after_with_default_and_cap() -> None:
    """A 429's retry-after sets the pause; none uses the default; a long one is capped; a running one is kept."""
    cfg = CooldownConfig(default_s=1.0, max_s=60.0)
    assert cooldown_until(100.0, 12.0, cfg) == 112.0
    assert cooldown_until(100.0, None, cfg) == 101.0
    assert cooldown_until(100.0, 3600.0, cfg) == 160.0
    assert cooldown_until(100.0, -5.0, cfg) == 100.0
    assert cooldown_until(100.0, math.nan, cfg) == 101.0
    assert cooldown_until(100.0, 2.0, cfg, current=130.0) == 130.0
    assert cooling_down(112.0, 111.9)
    assert not cooling_down(112.0, 112.0)
    assert not cooling_down(None, 0.0)


def test_other_configs_refuse_impossible_settings() -> None:
    """Hedge, latency, probe and cooldown settings that cannot work are refused when built."""
    with pytest.raises(ValueError, match="max_ms"):
        HedgeDelay(min_ms=500, max_ms=100)
    with pytest.raises(ValueError, match="max_tokens"):
        HedgeBudgetConfig(max_tokens=0)
    with pytest.raises(ValueError, match="capacity"):
        RollingLatency(0)
    with pytest.raises(msgspec.ValidationError, match="unhealthy_after"):
        msgspec.json.decode(b'{"unhealthy_after": 0}', type=ProbeConfig)
    with pytest.raises(ValueError, match="default_s"):
        CooldownConfig(default_s=90.0, max_s=60.0)


# -- pricing -----------------------------------------------------------------------------------

SONNET = Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)  # Claude Sonnet list prices
GPT_4O = Price(input=2.50, output=10.0, cache_read=1.25)  # OpenAI: cached input half price, writes free
GPT_4O_MINI_NO_CACHE = Price(input=0.15, output=0.60)


def test_cost_with_cache_read_and_write_prices() -> None:
    """Sonnet: 1k in, 500 out, 20k cache read, 2k cache write: $0.003 + $0.0075 + $0.006 + $0.0075 = 2.4 cents."""
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=20_000, cache_write_tokens=2000)
    assert cost_cents(usage, SONNET) == pytest.approx(2.4)


def test_cost_with_cache_read_only() -> None:
    """GPT-4o: 2k uncached in, 8k cached in, 1k out costs $0.005 + $0.01 + $0.01 = 2.5 cents."""
    usage = Usage(input_tokens=2000, output_tokens=1000, cache_read_tokens=8000)
    assert cost_cents(usage, GPT_4O) == pytest.approx(2.5)


def test_absent_cache_prices_charge_the_input_price() -> None:
    """With no cache prices, cached tokens cost as much as uncached ones: no discount and no double count."""
    split = Usage(input_tokens=1000, output_tokens=1000, cache_read_tokens=3000, cache_write_tokens=1000)
    flat = Usage(input_tokens=5000, output_tokens=1000)
    assert cost_cents(split, GPT_4O_MINI_NO_CACHE) == pytest.approx(0.135)
    assert cost_cents(split, GPT_4O_MINI_NO_CACHE) == pytest.approx(cost_cents(flat, GPT_4O_MINI_NO_CACHE))


def test_estimate_prices_uncached_input_and_full_output() -> None:
    """A reservation for 10k input and 1k max output on Sonnet is 4.5 cents, or 5.25 when a cache write may happen."""
    assert estimate_cents(10_000, 1000, SONNET) == pytest.approx(4.5)
    assert estimate_cents(10_000, 1000, SONNET, may_write_cache=True) == pytest.approx(5.25)
    assert estimate_cents(10_000, 1000, GPT_4O, may_write_cache=True) == pytest.approx(3.5)


def test_price_rejects_negative_and_unknown_fields() -> None:
    """A negative price or a misspelt key is a decode error."""
    with pytest.raises(msgspec.ValidationError, match="input"):
        msgspec.json.decode(b'{"input": -1, "output": 1}', type=Price)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"input": 1, "output": 1, "cached": 0.1}', type=Price)


@given(a=usages, b=usages)
def test_cost_is_additive_and_bounded_by_the_estimate(a: Usage, b: Usage) -> None:
    """Cost of summed usage is the sum of costs, and never above the estimate for the same tokens uncached."""
    assert cost_cents(a + b, SONNET) == pytest.approx(cost_cents(a, SONNET) + cost_cents(b, SONNET))
    bound = estimate_cents(a.total_input_tokens, a.output_tokens, SONNET, may_write_cache=True)
    assert cost_cents(a, SONNET) <= bound * (1 + 1e-12)
