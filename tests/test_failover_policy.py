"""The failover rules: which failures move along the chain, which end it, and what makes an answer degraded."""

from __future__ import annotations

import pytest

from interlock._errors import ErrorClass
from interlock.policies._failover import FAILOVER, degraded_reason, ends_chain, is_degraded


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
