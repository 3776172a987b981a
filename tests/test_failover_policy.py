"""The failover rules: which failures move along the chain, which end it, and what makes an answer degraded."""

from __future__ import annotations

import msgspec
import pytest

from interlock._errors import (
    BudgetExceeded,
    ChainExhausted,
    DeadlineExceeded,
    ErrorClass,
    PolicyRefused,
    ProviderError,
)
from interlock.policies._config import JobConfig, ModelConfig, ProviderConfig
from interlock.policies._failover import (
    FAILOVER,
    accepts_prefill,
    degraded_reason,
    ends_chain,
    is_degraded,
    same_provider_retry,
    walk_failure,
)
from interlock.policies._routing import Resolution, Skipped


@pytest.mark.parametrize(
    "kind",
    [
        ErrorClass.RATE_LIMIT,
        ErrorClass.QUOTA,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECT,
        ErrorClass.INTERNAL,
        ErrorClass.CONTEXT_LENGTH,
    ],
)
def test_transient_and_size_failures_move_on(kind: ErrorClass) -> None:
    """A failure another candidate may not have (load, outage, a shorter context) tries the next one."""
    assert kind in FAILOVER
    assert not ends_chain(kind, admitted=True)


@pytest.mark.parametrize("kind", [ErrorClass.BAD_REQUEST, ErrorClass.AUTH, ErrorClass.CONTENT_POLICY])
def test_failures_every_candidate_would_share_end_the_chain(kind: ErrorClass) -> None:
    """A bad request, a refused key or a content refusal ends the walk: the rest would fail alike."""
    assert ends_chain(kind, admitted=True)


@pytest.mark.parametrize("kind", [ErrorClass.BUDGET, ErrorClass.BAD_REQUEST, ErrorClass.RATE_LIMIT])
def test_a_candidate_never_admitted_never_ends_the_chain(kind: ErrorClass) -> None:
    """A refusal before the provider was reached says nothing about the request: the next candidate is tried."""
    assert not ends_chain(kind, admitted=False)


def test_first_candidate_is_not_degraded() -> None:
    assert not is_degraded("a", "a", resumed=False, escalated=False)


def test_fallback_is_degraded_but_an_escalation_is_not() -> None:
    """Serving by a later candidate is degraded after a failure, not after a cascade's rejection."""
    assert is_degraded("a", "b", resumed=False, escalated=False)
    assert not is_degraded("a", "b", resumed=False, escalated=True)


def test_a_resumed_answer_is_degraded_even_on_the_first_candidate() -> None:
    assert is_degraded("a", "a", resumed=True, escalated=False)
    assert is_degraded("a", "b", resumed=True, escalated=True)


def test_no_first_candidate_means_degraded() -> None:
    """With no first candidate to compare with (an empty chain), any winner is not the plan's first."""
    assert is_degraded(None, "a", resumed=False, escalated=False)


def test_reason_lists_causes_then_the_hedge_then_the_skipped() -> None:
    text = degraded_reason(["rate_limit", "", "timeout"], resumed=False, winner_hedged=True, skipped=["x", "y"])
    assert text == "rate_limit,timeout,slow_first_token; skipped x,y"


def test_reason_without_causes_is_fallback() -> None:
    assert degraded_reason([], resumed=False, winner_hedged=False, skipped=[]) == "fallback"


def test_reason_of_a_resumed_answer() -> None:
    assert degraded_reason(["timeout"], resumed=True, winner_hedged=True, skipped=["x"]) == "mid_stream_resume"


@pytest.mark.parametrize(
    ("kind", "retry_after", "remaining", "wait"),
    [
        (ErrorClass.SERVER_ERROR, None, 10.0, 0.0),  # a 500: at once
        (ErrorClass.CONNECT, None, 10.0, 0.0),  # a reset: at once
        (ErrorClass.RATE_LIMIT, 0.5, 10.0, 0.5),  # a 429 with a short hint: after it
        (ErrorClass.RATE_LIMIT, None, 10.0, None),  # a 429 without a hint: move on
        (ErrorClass.RATE_LIMIT, 5.0, 10.0, None),  # a long hint is the next candidate's chance
        (ErrorClass.RATE_LIMIT, 1.0, 0.5, None),  # the wait does not fit the deadline
        (ErrorClass.QUOTA, None, 10.0, None),  # out of credit: retrying here cannot help
        (ErrorClass.OVERLOADED, None, 10.0, None),
        (ErrorClass.BAD_REQUEST, None, 10.0, None),
        (ErrorClass.TIMEOUT, None, 10.0, None),
    ],
)
def test_same_provider_retry(kind: ErrorClass, retry_after: float | None, remaining: float, wait: float | None) -> None:
    assert same_provider_retry(kind, retry_after, remaining) == wait


def _resolution(first_token_ms: int | None = None) -> Resolution:
    job = JobConfig(chain=("a",), total_timeout_ms=1500, first_token_timeout_ms=first_token_ms)
    return Resolution(job="j", policy=job, tenant="t", candidates=(), skipped=(), pinned=None)


def test_walk_failure_names_what_stopped_the_walk() -> None:
    """The deadline that ran out, else the full budget when money refused all, else the chain's end."""
    late = ProviderError(ErrorClass.TIMEOUT, "p", detail="no first token")
    broke = BudgetExceeded("tenant:acme", 10, 10)
    total = walk_failure(_resolution(400), [("a", late)], out_of_time=True, late_first="total")
    assert isinstance(total, DeadlineExceeded)
    assert (total.which, total.limit_ms) == ("total", 1500)
    first = walk_failure(_resolution(400), [("a", late)], out_of_time=False, late_first="first_token")
    assert isinstance(first, DeadlineExceeded)
    assert (first.which, first.limit_ms) == ("first_token", 400)
    assert walk_failure(_resolution(), [("a", broke)], out_of_time=False, late_first=None) is broke
    mixed = walk_failure(_resolution(), [("a", broke), ("b", late)], out_of_time=False, late_first=None)
    assert isinstance(mixed, ChainExhausted)
    assert [name for name, _ in mixed.errors] == ["a", "b"]


def test_prefill_follows_model_then_provider_then_kind() -> None:
    """Only Anthropic's wire continues a prefill by default; a provider or a model may say otherwise."""
    model = ModelConfig(provider="p", id="m-2025-01-01", model_class="c", context_window=1000, max_output_tokens=10)
    assert accepts_prefill(ProviderConfig(kind="anthropic"), model)
    assert accepts_prefill(ProviderConfig(kind="simulator", format="anthropic"), model)
    assert not accepts_prefill(ProviderConfig(kind="openai"), model)
    assert not accepts_prefill(ProviderConfig(kind="gemini"), model)
    assert accepts_prefill(ProviderConfig(kind="openai_compatible", prefill=True), model)
    no = msgspec.structs.replace(model, prefill=False)
    assert not accepts_prefill(ProviderConfig(kind="anthropic"), no)


def test_a_request_no_context_window_holds_is_the_requests_fault() -> None:
    """Every candidate skipped for its context window and none tried: refused by rule context_window, not a
    fleet failure (the gateway answers it as context_length_exceeded, 400)."""
    skipped = (Skipped(model="a", reason="context_window", detail="120000 tokens > window 100000"),)
    resolution = msgspec.structs.replace(_resolution(), skipped=skipped)
    error = walk_failure(resolution, [], out_of_time=False, late_first=None)
    assert isinstance(error, PolicyRefused)
    assert error.rule == "context_window"
    assert error.kind == ErrorClass.POLICY_REFUSAL
    assert "120000 tokens > window 100000" in str(error)
    other = msgspec.structs.replace(_resolution(), skipped=(Skipped(model="a", reason="rule", detail="rules[0]"),))
    refused = walk_failure(other, [], out_of_time=False, late_first=None)
    assert isinstance(refused, PolicyRefused)  # a rule left no candidate: refused by policy, naming the rule
    assert (refused.rule, refused.detail) == ("rule", "rules[0]")
