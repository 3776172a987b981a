"""Hypothesis strategies shared by the property tests: policy configs, outcomes, event scripts."""

from __future__ import annotations

from typing import Literal

import msgspec
from hypothesis import strategies as st

from interlock._errors import ErrorClass
from interlock._types import Usage
from interlock.policies._breaker import FAILURE_KINDS, BreakerConfig, CallOutcome
from interlock.policies._hedge import HedgeBudgetConfig

error_classes = st.sampled_from(list(ErrorClass))

# Time steps between events: often zero (bursts), sometimes long enough to pass an open wait.
time_steps = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=5.0), st.floats(min_value=5.0, max_value=400.0))

ttfts = st.one_of(st.none(), st.floats(min_value=0.0, max_value=60.0))

# Weighted toward the two outcomes that move a breaker (a success, a counted failure); every
# class still shows up, so ignored kinds mix in.
outcome_errors = st.one_of(st.none(), st.sampled_from(sorted(FAILURE_KINDS)), error_classes)
call_outcomes = st.builds(CallOutcome, error=outcome_errors, ttft_s=ttfts)


@st.composite
def breaker_configs(draw: st.DrawFn) -> BreakerConfig:
    """Small, valid breaker settings, so random scripts reach every state quickly."""
    window_calls = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=12)))
    window_s = draw(st.floats(min_value=1.0, max_value=120.0)) if window_calls is None else None
    if window_calls is not None and draw(st.booleans()):
        window_s = draw(st.floats(min_value=1.0, max_value=120.0))
    base = draw(st.floats(min_value=1.0, max_value=60.0))
    return BreakerConfig(
        window_calls=window_calls,
        window_s=window_s,
        min_calls=draw(st.integers(min_value=1, max_value=window_calls or 12)),
        failure_rate_pct=draw(st.floats(min_value=1.0, max_value=100.0)),
        slow_call_ttft_s=draw(st.one_of(st.none(), st.floats(min_value=0.5, max_value=30.0))),
        slow_call_rate_pct=draw(st.floats(min_value=1.0, max_value=100.0)),
        open_wait_s=base,
        open_wait_multiplier=draw(st.floats(min_value=1.0, max_value=3.0)),
        open_wait_max_s=base * draw(st.floats(min_value=1.0, max_value=10.0)),
        trip_memory_s=draw(st.floats(min_value=0.0, max_value=600.0)),
        half_open_probes=draw(st.integers(min_value=1, max_value=4)),
    )


class AdmitStep(msgspec.Struct, frozen=True):
    """Time passes by ``dt``, then one call asks to be admitted."""

    dt: float


class FinishStep(msgspec.Struct, frozen=True):
    """Time passes by ``dt``, then the in-flight call at ``pick`` (modulo their count) ends."""

    dt: float
    pick: int
    outcome: CallOutcome


BreakerStep = AdmitStep | FinishStep

breaker_steps = st.one_of(
    st.builds(AdmitStep, dt=time_steps),
    st.builds(FinishStep, dt=time_steps, pick=st.integers(min_value=0, max_value=1000), outcome=call_outcomes),
)

breaker_scripts = st.lists(breaker_steps, min_size=1, max_size=200)

hedge_budget_configs = st.builds(
    HedgeBudgetConfig,
    max_tokens=st.floats(min_value=0.5, max_value=100.0),
    token_ratio=st.floats(min_value=0.001, max_value=5.0),
)

HedgeOp = Literal["success", "failure", "hedge"]
hedge_ops: st.SearchStrategy[list[HedgeOp]] = st.lists(st.sampled_from(["success", "failure", "hedge"]), max_size=300)

latencies = st.floats(min_value=0.0, max_value=600.0, allow_nan=False, allow_infinity=False)

token_counts = st.integers(min_value=0, max_value=2_000_000)
usages = st.builds(Usage, token_counts, token_counts, token_counts, token_counts)
