"""Failover rules: which failures move a request along its chain, which end it, and what is degraded.

Pure decisions over error kinds and names; the request run (``interlock.actors.request._run``)
applies them. Failover happens only before the first token: after it, the job's ``mid_stream``
policy decides (resume on the next candidate, or fail with the partial answer).

The degraded rule is one, here, used by the route, the ledger, the headers and the report: an
answer not from the job's first choice (``first_choice``) is degraded, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from interlock._errors import (
    BudgetExceeded,
    ChainExhausted,
    DeadlineExceeded,
    ErrorClass,
    InterlockError,
    PolicyRefused,
)

if TYPE_CHECKING:
    from interlock.policies._config import ModelConfig, ProviderConfig
    from interlock.policies._routing import Resolution, Skipped

# Causes that move a request to the next candidate before its first token: the next one may answer.
FAILOVER: frozenset[str] = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.QUOTA,  # this account is out of credit: another provider's is not
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECT,
        ErrorClass.INTERNAL,  # a crashed provider actor
        ErrorClass.CONTEXT_LENGTH,  # a longer-context candidate may still fit
    }
)


def ends_chain(kind: str, *, admitted: bool) -> bool:
    """True when a failure of ``kind`` ends the request: no other candidate will do better.

    ``admitted`` is False for a candidate that never reached its provider (a rail or the
    provider's admission refused it, or its actor was gone): that says nothing about the
    request, so the next candidate is always tried. Of the failures a provider returned, only
    the ``FAILOVER`` causes move on; a bad request, a refused key or a content-policy refusal
    would fail the same way everywhere, so trying the rest only spends money and time.
    """
    return admitted and kind not in FAILOVER


# Failures worth one more try on the same provider before the chain moves on: a 429 that says
# when to come back, a 500, a connection reset. Anything else says the same thing twice.
RETRY_SAME: frozenset[str] = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.SERVER_ERROR, ErrorClass.CONNECT})
MAX_RETRY_WAIT_S = 2.0  # a longer Retry-After is the next candidate's chance, not a wait


def same_provider_retry(kind: str, retry_after_s: float | None, remaining_s: float) -> float | None:
    """How long to wait before retrying a failed attempt on the same provider, or None to move on.

    Only the ``RETRY_SAME`` causes are retried, once per candidate (the caller keeps count). A
    429 is retried only with its ``Retry-After`` hint, when that is at most ``MAX_RETRY_WAIT_S``;
    a 500 or a reset at once, or after its hint. The wait must fit in what is left of the
    request's deadline (``remaining_s``), or the retry would only spend it.
    """
    if kind not in RETRY_SAME:
        return None
    if kind == ErrorClass.RATE_LIMIT and retry_after_s is None:
        return None
    wait = max(0.0, retry_after_s or 0.0)
    if wait > MAX_RETRY_WAIT_S or wait >= remaining_s:
        return None
    return wait


def accepts_prefill(provider: ProviderConfig, model: ModelConfig) -> bool:
    """Whether a broken answer may be continued on this model from the text already delivered.

    The model's own setting wins, then the provider's, then the kind's default: only Anthropic's
    Messages API documents continuing from an assistant prefill; OpenAI's chat completions and
    Gemini treat a final assistant turn as context and start a new answer, and a CLI has no turns.
    Where it is not accepted, the request run restarts the answer and reconciles it instead.
    """
    if model.prefill is not None:
        return model.prefill
    if provider.prefill is not None:
        return provider.prefill
    kind = provider.format if provider.kind == "simulator" else provider.kind
    return kind == "anthropic"


def walk_failure(
    resolution: Resolution, errors: list[tuple[str, InterlockError]], *, out_of_time: bool, late_first: str | None
) -> InterlockError:
    """The error a walk that found no answer ends with, saying what really stopped it.

    A request the routing gates left no candidate for (none tried) is refused by policy
    (``policy_refusal``); then the request's deadline if it ran out; the first-token deadline if
    that failed the last attempt; the full budget when money refused every candidate; else the
    chain's end, with every attempt's error.
    """
    job, policy = resolution.job or "(pinned)", resolution.policy
    if not errors and not resolution.candidates and resolution.skipped:
        return refusal(job, resolution.skipped)
    if out_of_time:
        return DeadlineExceeded("total", policy.total_timeout_ms, job, errors)
    if late_first == "first_token" and policy.first_token_timeout_ms is not None:
        return DeadlineExceeded("first_token", policy.first_token_timeout_ms, job, errors)
    over_budget = [e for _, e in errors if isinstance(e, BudgetExceeded)]
    if over_budget and len(over_budget) == len(errors):
        return over_budget[0]  # every candidate was refused for money: say which budget is full
    return ChainExhausted(job, errors)


# The rule a ``PolicyRefused`` names for a gate's skip reason (``policies._routing.SkipReason``).
_RULE_OF: dict[str, str] = {"sensitivity": "pii"}
_SIZE = frozenset({"context_window", "costlier_not_allowed"})  # not a policy: what the input or a price allows


def refusal(job: str, skipped: Sequence[Skipped]) -> InterlockError:
    """Why a request every routing gate left without a candidate is refused, naming the rule.

    The rule is the first policy gate in chain order that left a candidate out: ``pii`` (the
    sensitivity guard), ``rule`` (``detail`` names the ``rules[i]`` that matched),
    ``tenant_allow_list``. A request left out by context windows alone is refused by the rule
    ``context_window`` (the gateway answers it as OpenAI's ``context_length_exceeded``).
    """
    policy = next((s for s in skipped if s.reason not in _SIZE), None)
    if policy is None:
        detail = "; ".join(f"{s.model}: {s.detail}" for s in skipped[:3])
        return PolicyRefused(job, "context_window", f"the request fits no candidate's context window ({detail})")
    if policy.reason == "rule":
        detail = ", ".join(dict.fromkeys(s.detail for s in skipped if s.reason == "rule"))
    else:
        detail = "; ".join(f"{s.model}: {s.detail}" for s in skipped if s.reason == policy.reason)
    return PolicyRefused(job, _RULE_OF.get(policy.reason, policy.reason), detail[:300])


def first_choice(resolution: Resolution) -> str | None:
    """The model the plan meant to answer: an answer from any other model is degraded.

    It is the chain's first model before any gate left one out (``Resolution.first_choice``). An
    ensemble's first choice is its pick: the recording resolution lists the chosen member first
    (``actors.request._ensemble.ensemble_resolution``), and only members can win.
    """
    candidates = resolution.candidates
    if resolution.policy.ensemble is not None or not resolution.first_choice:
        return candidates[0].name if candidates else None
    return resolution.first_choice


def first_choice_skip(resolution: Resolution) -> Skipped | None:
    """The gate's skip of the first choice, when a gate left it out (None when it could serve)."""
    first = first_choice(resolution)
    if first is None or any(c.name == first for c in resolution.candidates):
        return None
    return next((s for s in resolution.skipped if s.model == first), None)


def is_degraded(first: str | None, winner: str, *, resumed: bool, escalated: bool, first_skipped: bool = False) -> bool:
    """True when the answer is not what the job's first choice (``first``) would have given.

    It is degraded when it was resumed mid-stream on another candidate, or served by any model
    but the first choice: after a failure (a fallback works around it), or because a gate left
    the first choice out (``first_skipped``: a rule, the tenant's allow-list, the PII guard, its
    context window). Only a cascade's escalation past an answer of the first choice is not
    degraded: that is the chain working as designed (a stronger model after a rejected answer).
    """
    if resumed:
        return True
    return winner != first and (first_skipped or not escalated)


def degraded_reason(
    causes: Iterable[str],
    *,
    resumed: bool,
    winner_hedged: bool,
    skipped: Iterable[str],
    first_skip: str | None = None,
) -> str:
    """Why an answer is degraded: the causes of the failed attempts before the winner, what was skipped.

    ``causes`` are the error kinds of the attempts that failed before the winner; a winning
    hedge adds ``slow_first_token``; ``first_skip`` is the reason a gate left the first choice
    out (it leads: ``skipped first choice: rule``); ``skipped`` names the candidates the routing
    gates left out.
    """
    if resumed:
        return "mid_stream_resume"
    listed = [c for c in causes if c]
    if winner_hedged:
        listed.append("slow_first_token")
    names = list(skipped)
    parts = [f"skipped first choice: {first_skip}"] if first_skip else []
    if listed or not parts:
        parts.append(",".join(listed) or "fallback")
    if names:
        parts.append(f"skipped {','.join(names)}")
    return "; ".join(parts)
