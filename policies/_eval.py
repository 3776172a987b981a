"""Comparing candidate models on a prompt set: the result Structs, the statistics and the recommendation.

``interlock eval`` (``door.evaluate``) runs every prompt on every candidate; each run is one
``EvalCall``. This module turns those calls into one ``EvalCandidate`` per model and picks a
``recommended`` one. Pure: no I/O, no clock.

The figures, per candidate:

- **accept rate** ``accepted / judged``, where ``judged`` counts every call but the *unjudged*
  ones (a verifier that could not run judged nothing, as in ``policies._verify``): a call that
  failed (rate limit, budget, timeout...) or whose answer a verifier rejected is not accepted.
  With no verifier at all, every answer is accepted, so the rate is the answer rate.
- its **95% confidence interval**, the Wilson score interval (``wilson_interval``): unlike the
  normal approximation it stays inside [0, 1] and is honest at 0 or n successes and small n.
  With ``--repeat K`` the K judgements of one prompt are not independent (a prompt a model gets
  wrong it tends to get wrong every time), so the interval and the significance test use the
  calls' **effective** number of judgements (``effective_judged``): the judged count shrunk by
  the cluster-robust variance of the accept rate, prompt by prompt, never below the number of
  prompts nor above the judged count. With one judgement per prompt it is the judged count.
- **cost per call** (every call's billed cents over the calls) and **per accepted answer** (the
  same cents over the accepted answers: rejected answers are paid for too).
- **p50 / p95 TTFT and TTLT** of the answered calls, by nearest rank (``RollingLatency``).
- **failures by kind**: the error class of each failed call, and ``rejected`` for verifier rejects.

The recommendation (``recommend``): the *best* is the candidate with the highest accept rate
(ties: the cheaper per accepted answer, then the earlier given). A candidate is *significantly
worse* than the best when a two-sided two-proportion z-test (pooled variance) at the 5% level
rejects equal accept rates and its own rate is the lower one (``significantly_worse``). Among
the candidates with at least one accepted answer that are not significantly worse, the cheapest
per accepted answer is recommended (ties: the higher accept rate, the lower p50 TTLT, the earlier
given). No candidate with an accepted answer: no recommendation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, TypedDict

import msgspec

from interlock._types import Message
from interlock.policies._latency import RollingLatency

Z_95: Final = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95%
TEST: Final = "two-proportion z-test, pooled, two-sided, 5% level"

Outcome = Literal["accepted", "rejected", "unjudged", "failed"]


class EvalMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One chat turn of an ``EvalPrompt``: a role and its text."""

    role: Literal["system", "user", "assistant"]
    content: str

    def message(self) -> Message:
        """The canonical ``Message``."""
        return Message.text(self.role, self.content)


class EvalPrompt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One prompt of an eval set (one JSONL line): ``prompt`` or ``messages``, and what judges it.

    ``messages`` are chat turns ``{"role": "system" | "user" | "assistant", "content": "text"}``.
    ``expected``: the answer must equal it (a string: the trimmed text; any other JSON value: the
    answer parsed as JSON, compared as JSON). ``schema``: a JSON Schema the answer must match; it
    is also sent as the request's ``response_format``, as a structured-output job would ask.
    ``id`` names the prompt in the results (default: its line number).
    """

    id: str = ""
    prompt: str | None = None
    messages: tuple[EvalMessage, ...] | None = None
    expected: Any = msgspec.UNSET
    schema: dict[str, Any] | None = None


class EvalCall(msgspec.Struct, frozen=True, kw_only=True):
    """One prompt on one candidate, one repeat: how it ended and what it cost.

    ``failure`` is the error class of a failed call (``rate_limit``, ``budget``...), ``detail``
    the error or the verdict's reason; ``resumed``: replayed from the eval cache, not called now
    (its cost and timings are those measured when it was called).
    """

    prompt_id: str
    candidate: str
    repeat: int
    outcome: Outcome
    failure: str = ""
    detail: str = ""
    cost_cents: float = 0.0
    verify_cost_cents: float = 0.0
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    resumed: bool = False


class EvalCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """One candidate's figures over its calls (see the module docstring for each)."""

    model: str
    model_id: str
    calls: int
    accepted: int
    rejected: int
    unjudged: int
    failed: int
    judged: int
    accept_rate: float | None
    accept_low: float
    accept_high: float
    cost_cents: float
    cost_per_call_cents: float | None
    cost_per_accepted_cents: float | None
    verify_cost_cents: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttlt_p50_ms: float | None
    ttlt_p95_ms: float | None
    failures: dict[str, int]
    resumed: int
    effective_judged: float = 0.0  # what the judgements are worth independently (``effective_judged``)


class EvalReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``door.evaluate`` returns and ``interlock eval --json`` prints.

    ``candidates`` in the order given; ``recommended`` is a candidate's name (None when no
    candidate had an accepted answer), ``reason`` says why, ``test`` names the significance test;
    ``toml`` is the config change that moves ``task`` to the recommended model ("" when none or
    when the job already starts with it); ``calls`` holds every call; ``verifiers`` names the
    verifiers that judged (besides each prompt's own ``expected`` and ``schema``).
    """

    task: str
    prompts: int
    repeat: int
    verifiers: tuple[str, ...]
    candidates: tuple[EvalCandidate, ...]
    recommended: str | None
    reason: str
    test: str
    toml: str
    cache_ttl_s: float
    calls: tuple[EvalCall, ...]


class EvalOptions(TypedDict, total=False):
    """The further keyword options of ``door.evaluate``.

    ``tenant`` and ``caller`` the calls run as (budgets and allow-lists apply; the caller defaults
    to ``eval``, so a caller budget can cap eval spend); ``progress(done, total, call)`` is
    called after each call; ``fresh`` re-measures every call instead of resuming from the cache.
    """

    tenant: str
    caller: str
    progress: Callable[[int, int, EvalCall], None]
    fresh: bool


# -- statistics ------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n``; (0, 1) when ``n`` is 0.

    Always within [0, 1] and always holding the observed proportion (its ends are pinned at 0
    successes and at ``n``, where rounding could otherwise leave the point just outside).
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    return wilson_of(successes / n, n, z)


def wilson_of(p: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``p`` worth ``n`` (maybe fractional) independent trials."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if p == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if p == 1 else min(1.0, max(p, centre + half))
    return low, high


def effective_judged(calls: Sequence[EvalCall]) -> float:
    """How many independent judgements ``calls`` are worth, counting each prompt's repeats as one cluster.

    ``n / design effect``: ``p(1 - p)`` over the cluster-robust variance of the accept rate
    ``p`` (``k / (k - 1) * sum((a_i - p m_i)^2) / n^2`` over the ``k`` prompts, ``a_i`` accepted
    of ``m_i`` judged), kept within ``[k, n]``. One judgement per prompt: ``n``. Repeats that all
    agree (every call accepted, or none) cannot show they are independent: ``k``.
    """
    clusters: dict[str, list[int]] = {}
    for call in calls:
        if call.outcome != "unjudged":
            clusters.setdefault(call.prompt_id, []).append(call.outcome == "accepted")
    n = sum(len(c) for c in clusters.values())
    k = len(clusters)
    if n == k:
        return float(n)
    accepted = sum(sum(c) for c in clusters.values())
    p = accepted / n
    if p in (0.0, 1.0) or k < 2:
        return float(k)
    variance = k / (k - 1) * sum((sum(c) - p * len(c)) ** 2 for c in clusters.values()) / (n * n)
    if variance <= 0:
        return float(n)
    return min(float(n), max(float(k), p * (1 - p) / variance))


def significantly_worse(successes: int, n: int, best_successes: int, best_n: int, z: float = Z_95) -> bool:
    """True when ``successes / n`` is below ``best_successes / best_n`` by the two-proportion z-test.

    Pooled variance, two-sided at the level ``z`` gives (5% by default). A candidate with no
    judged call cannot be shown worse (nor better).
    """
    if n == 0 or best_n == 0:
        return False
    return worse_rate(successes / n, n, best_successes / best_n, best_n, z)


def worse_rate(p: float, n: float, best: float, best_n: float, z: float = Z_95) -> bool:
    """``significantly_worse`` for rates worth ``n`` and ``best_n`` (maybe fractional) independent judgements."""
    if n <= 0 or best_n <= 0 or p >= best:
        return False
    pooled = (p * n + best * best_n) / (n + best_n)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / best_n))
    return spread > 0 and (best - p) / spread > z


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile by nearest rank (a latency some call really had), None with no samples."""
    if not samples:
        return None
    window = RollingLatency(len(samples))
    for sample in samples:
        window.add(sample)
    return window.percentile(q)


def summarize(model: str, model_id: str, calls: Sequence[EvalCall]) -> EvalCandidate:
    """One candidate's figures over its calls."""
    counts = Counter(call.outcome for call in calls)
    accepted, unjudged = counts["accepted"], counts["unjudged"]
    judged = len(calls) - unjudged
    worth = effective_judged(calls)
    low, high = wilson_of(accepted / judged, worth) if judged else (0.0, 1.0)
    cost = sum(call.cost_cents for call in calls)
    failures = Counter(call.failure or "rejected" for call in calls if call.outcome in ("failed", "rejected"))
    ttft = [c.ttft_ms for c in calls if c.ttft_ms is not None]
    ttlt = [c.ttlt_ms for c in calls if c.ttlt_ms is not None]
    return EvalCandidate(
        model=model, model_id=model_id, calls=len(calls), accepted=accepted, rejected=counts["rejected"],
        unjudged=unjudged, failed=counts["failed"], judged=judged,
        accept_rate=accepted / judged if judged else None, accept_low=low, accept_high=high,
        cost_cents=cost, cost_per_call_cents=cost / len(calls) if calls else None,
        cost_per_accepted_cents=cost / accepted if accepted else None,
        verify_cost_cents=sum(call.verify_cost_cents for call in calls),
        ttft_p50_ms=percentile(ttft, 50), ttft_p95_ms=percentile(ttft, 95),
        ttlt_p50_ms=percentile(ttlt, 50), ttlt_p95_ms=percentile(ttlt, 95),
        failures=dict(sorted(failures.items())), resumed=sum(call.resumed for call in calls),
        effective_judged=worth,
    )  # fmt: skip


# -- the recommendation ----------------------------------------------------------------------


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    """The recommended candidate (None: none had an accepted answer), the best one, and why."""

    model: str | None
    best: str | None
    reason: str


def best_candidate(candidates: Sequence[EvalCandidate]) -> EvalCandidate | None:
    """The highest accept rate (ties: cheaper per accepted answer, then the earlier given); None if none judged."""
    judged = [c for c in candidates if c.accept_rate is not None]
    if not judged:
        return None
    return max(judged, key=lambda c: (c.accept_rate, -_per_accepted(c)))


def recommend(candidates: Sequence[EvalCandidate]) -> Recommendation:
    """The cheapest candidate not significantly worse than the best (module docstring), and why."""
    best = best_candidate(candidates)
    if best is None or best.accepted == 0:
        return Recommendation(model=None, best=None if best is None else best.model,
                              reason="no candidate had an accepted answer")  # fmt: skip
    order = {c.model: i for i, c in enumerate(candidates)}
    eligible = [
        c
        for c in candidates
        if c.accepted > 0 and not _worse(c, best)
    ]
    pick = min(
        eligible,
        key=lambda c: (_per_accepted(c), -(c.accept_rate or 0.0), _or_inf(c.ttlt_p50_ms), order[c.model]),
    )
    worse = [c.model for c in candidates if c not in eligible]
    price = _cents(pick.cost_per_accepted_cents)
    if pick is best:
        reason = f"the best accept rate ({_pct(best.accept_rate)}) at the lowest cost per accepted answer ({price})"
    else:
        reason = (
            f"the cheapest per accepted answer ({price}) of the candidates not significantly worse than "
            f"the best, {best.model} ({_pct(best.accept_rate)} accepted)"
        )
    if worse:
        reason += f"; significantly worse or never accepted: {', '.join(worse)}"
    return Recommendation(model=pick.model, best=best.model, reason=reason)


def toml_change(job: str, chain: Sequence[str], first_choice: str, model: str | None) -> str:
    """The TOML lines that move job ``job`` to ``model``: it goes first, the old chain stays as fallback.

    "" when there is no model, or when ``model`` is already the job's first choice.
    """
    if model is None or model == first_choice:
        return ""
    names = [model, *(name for name in chain if name != model)]
    listed = ", ".join(msgspec.json.encode(name).decode() for name in names)
    return f"[jobs.{_toml_key(job or 'default')}]\nchain = [{listed}]"


def _toml_key(name: str) -> str:
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else msgspec.json.encode(name).decode()


def _worse(candidate: EvalCandidate, best: EvalCandidate) -> bool:
    """The z-test on the two accept rates, each worth its candidate's effective judgements."""
    if candidate.accept_rate is None or best.accept_rate is None:
        return False
    worth, best_worth = _worth(candidate), _worth(best)
    return worse_rate(candidate.accept_rate, worth, best.accept_rate, best_worth)


def _worth(candidate: EvalCandidate) -> float:
    # A candidate built without calls' clusters (``effective_judged`` 0) is worth its judged count.
    return candidate.effective_judged or float(candidate.judged)


def _per_accepted(candidate: EvalCandidate) -> float:
    return _or_inf(candidate.cost_per_accepted_cents)


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _cents(value: float | None) -> str:
    if value is None:
        return "—"
    return "0¢, free" if value == 0 else f"{value:.4f}¢"


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"
