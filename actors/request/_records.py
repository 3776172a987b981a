"""How a finished request is described: its ``Route`` for the caller and its ledger rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from interlock._errors import BudgetExceeded, ChainExhausted, ErrorClass, InterlockError
from interlock._records import BeginRecord, Outcome, RequestRecord
from interlock._types import ChatRequest, ChatResponse, Route, SkippedCandidate, Usage
from interlock.actors.request._attempt import Attempt, _ms
from interlock.actors.request._run import RequestRun
from interlock.policies import _failover as failover
from interlock.policies import _pii as pii

_encode: Final = msgspec.json.Encoder().encode


def is_degraded(run: RequestRun, winner: Attempt) -> bool:
    """Whether ``run``'s answer by ``winner`` is degraded (the rule is ``policies._failover.is_degraded``)."""
    resolution = run.resolution
    first = failover.first_choice(resolution)
    if not run.resumed and winner.candidate.name == first:
        return False  # the common case, decided without looking for the first choice among the skipped
    return failover.is_degraded(
        first, winner.candidate.name, resumed=run.resumed, escalated=run.escalated,
        first_skipped=failover.first_choice_skip(resolution) is not None,
    )  # fmt: skip


def route_of(
    run: RequestRun, winner: Attempt, timings: tuple[float | None, float], aux: Sequence[Attempt] = ()
) -> Route:
    """The caller's view of how ``run`` was served; timings are request-relative seconds.

    ``aux`` are the auxiliary calls made for the answer (reviews, classifier, judge): listed after
    the run's attempts, their cost part of the route's and counted apart in ``aux_cost_cents``.
    """
    degraded = is_degraded(run, winner)
    aux_cost = sum(a.cost() for a in aux)
    return Route(
        model=winner.candidate.name,
        provider=winner.candidate.provider,
        model_class=winner.candidate.model.model_class,
        task=run.resolution.job,
        attempts=tuple(a.summary() for a in (*run.attempts, *aux)),
        degraded=degraded,
        degraded_reason=reason(run, winner) if degraded else None,
        hedged=run.hedged,
        cost_cents=sum(a.cost() for a in run.attempts) + aux_cost,
        aux_cost_cents=aux_cost,
        ttft_ms=_ms(timings[0]),
        ttlt_ms=_ms(timings[1]),
        verdict=winner.verdict,
        first_choice=failover.first_choice(run.resolution) or "",
        served_model=winner.served_model,
        skipped=skipped_of(run),
        usage_estimated=any(a.usage_estimated for a in (*run.attempts, *aux)),
    )


def cached_route(hit: ChatResponse, task: str) -> Route:
    """The route of an answer replayed from the cache: who made it (as stored), flagged a hit, zero cost.

    The model, provider, class, first choice, served id and degradation label belong to the
    answer and come from its stored route; the cost, timings and attempts are the hit's own (none).
    """
    made = hit.route if hit.route is not None else Route(model="", provider="")
    return msgspec.structs.replace(
        made, task=task, cache_hit=True, cost_cents=0.0, aux_cost_cents=0.0, ttft_ms=0.0, ttlt_ms=0.0,
        attempts=(), skipped=(), hedged=False, usage_estimated=False,
    )  # fmt: skip


def reason(run: RequestRun, winner: Attempt) -> str:
    """Why ``run``'s answer is degraded (the rule is ``policies._failover.degraded_reason``)."""
    first_skip = failover.first_choice_skip(run.resolution)
    return failover.degraded_reason(
        (str(a.error.kind) for a in run.attempts if a is not winner and a.error is not None),
        resumed=run.resumed,
        winner_hedged=winner.hedge,
        skipped=(s.model for s in run.resolution.skipped),
        first_skip=first_skip.reason if first_skip is not None else None,
    )


def skipped_of(run: RequestRun) -> tuple[SkippedCandidate, ...]:
    """Every candidate never called, and why: left out by a routing gate, or refused admission at run time.

    A gate's reason is the routing's (``sensitivity``, ``rule``, ``tenant_allow_list``,
    ``context_window``, ``costlier_not_allowed``); a refused admission's is ``budget`` or the
    provider's (``breaker_open``, ``cooling_down``, ``unhealthy``, ``no_slot``, ``disabled``).
    """
    attempts = run.attempts
    if not run.resolution.skipped and len(attempts) == 1 and attempts[0].error is None:
        return ()  # the common case: one attempt, admitted, nothing gated
    gated = [SkippedCandidate(s.model, s.reason, s.detail) for s in run.resolution.skipped]
    refused = [
        SkippedCandidate(a.candidate.name, _refusal_reason(a.error), str(a.error)[:200])
        for a in attempts
        if a.error is not None and a.outcome == "skipped"
    ]
    return (*gated, *refused)


def _refusal_reason(error: InterlockError) -> str:
    if isinstance(error, BudgetExceeded):
        return "budget"
    return str(getattr(error, "reason", "") or error.kind)


def _skipped_json(skipped: tuple[SkippedCandidate, ...]) -> str:
    """The ledger's ``skipped`` column: a JSON list of ``{"model", "reason", "detail"}``, empty when none."""
    return _encode(skipped).decode() if skipped else ""


def _error_detail(error: BaseException | None) -> str:
    """The row's ``error_detail``: an exhausted chain as each cause's model and kind, else the message."""
    if error is None:
        return ""
    if isinstance(error, ChainExhausted):
        causes = "; ".join(f"{name}: {err.kind}" for name, err in error.errors)
        return (causes or "no candidate was tried")[:300]
    return str(error)[:300]


class DoorClosed(InterlockError):
    """Why a request cut by the door's close is recorded as cancelled."""

    def __init__(self) -> None:
        super().__init__("the door closed while the request ran", kind=ErrorClass.CANCELLED)


class InternalFailure(InterlockError):
    """How a request ended by a bug (an exception that is not interlock's) is recorded: an internal error.

    Only the record carries it; the original exception is what the caller gets.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"internal error: {type(cause).__name__}: {cause}", kind=ErrorClass.INTERNAL)


class ProcessEnding(InterlockError):
    """How a request cut by ``KeyboardInterrupt`` or ``SystemExit`` is recorded: the process was ending."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the process is ending ({type(cause).__name__})", kind=ErrorClass.INTERRUPTED)


_OUTCOMES: dict[ErrorClass, Outcome] = {ErrorClass.CANCELLED: "cancelled", ErrorClass.INTERRUPTED: "interrupted"}


def error_kind(error: BaseException) -> ErrorClass:
    """The kind a request that ended by ``error`` is recorded with.

    An interlock error keeps its own kind (a caller who left is ``ConsumerGone``: cancelled); any
    other exception is a bug, recorded as internal, never as cancelled.
    """
    return error.kind if isinstance(error, InterlockError) else ErrorClass.INTERNAL


def request_record(
    request: ChatRequest,
    request_id: str,
    task: str,
    ts: float,
    run: RequestRun | None,
    winner: Attempt | None,
    error: BaseException | None,
    timings: tuple[float | None, float],
    aux: Sequence[Attempt] = (),
) -> RequestRecord:
    """The request's row; TTFT and TTLT are measured from when the request entered the router.

    ``aux`` are its auxiliary calls (reviews, classifier, judge): their tokens and cost count in
    the row's, their cost apart in ``aux_cost_cents`` too, and they are not among its ``attempts``.
    ``pii_detected`` names the detectors that marked the request (``policies._pii``), never a value.
    """
    attempts = [*run.attempts, *aux] if run is not None else list(aux)
    if len(attempts) == 1:  # the common case: no sums over one attempt
        total, cost = attempts[0].usage, attempts[0].cost()
    else:
        total, cost = sum((a.usage for a in attempts), Usage()), sum(a.cost() for a in attempts)
    degraded = winner is not None and run is not None and is_degraded(run, winner)
    kind = None if error is None else error_kind(error)
    outcome: Outcome = "ok" if kind is None else _OUTCOMES.get(kind, "error")
    return RequestRecord(
        request_id=request_id,
        ts=ts,
        tenant=request.tenant,
        caller=request.caller,
        task=task,
        model_class=winner.candidate.model.model_class if winner else "",
        model=winner.candidate.name if winner else "",
        provider=winner.candidate.provider if winner else "",
        outcome=outcome,
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        cache_read_tokens=total.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens,
        cost_cents=cost,
        ttft_ms=_ms(timings[0]),
        ttlt_ms=_ms(timings[1]) if winner else None,
        error=str(kind) if kind else None,
        error_detail=_error_detail(error),
        degraded=degraded,
        degraded_reason=reason(run, winner) if degraded and run and winner else None,
        hedged=run.hedged if run is not None else False,
        attempts=len(attempts) - len(aux),
        verdict=winner.verdict if winner is not None else None,
        route_label=run.route_label if run is not None else None,
        route_detail=run.route_detail if run is not None else "",
        aux_cost_cents=sum(a.cost() for a in aux),
        first_choice=(failover.first_choice(run.resolution) or "") if run is not None else "",
        served_model=winner.served_model if winner is not None else "",
        skipped=_skipped_json(skipped_of(run)) if run is not None else "",
        usage_estimated=any(a.usage_estimated for a in attempts),
        pii_detected=pii.detected(request),
    )


def begin_record(request: ChatRequest, ts: float) -> BeginRecord:
    """What the ledger keeps of a request while it runs: closed as ``interrupted`` if its end never comes."""
    return BeginRecord(
        request_id=request.request_id, ts=ts, tenant=request.tenant, caller=request.caller, task=request.task or "",
    )


def attempt_begin_record(request: ChatRequest, ts: float, task: str, attempts: int, attempt: Attempt) -> BeginRecord:
    """The request's begin once ``attempts`` attempts are sent, ``attempt`` the latest (its job resolved).

    The ledger keeps it in place of the entry's begin, so a kill leaves what the walk had started.
    """
    candidate = attempt.candidate
    return BeginRecord(
        request_id=request.request_id, ts=ts, tenant=request.tenant, caller=request.caller, task=task,
        attempts=attempts, model_class=candidate.model.model_class, model=candidate.name, provider=candidate.provider,
    )  # fmt: skip


def cache_hit_record(request: ChatRequest, task: str, ts: float, hit: ChatResponse) -> RequestRecord:
    """The one row of a request served from the response cache: who made the answer, flagged a hit.

    The model, provider, class, first choice, served id and degradation label are the answer's
    (its stored route); the cost, tokens and timings are the hit's own: nothing was spent.
    """
    route = cached_route(hit, task)
    return RequestRecord(
        request_id=request.request_id, ts=ts, tenant=request.tenant, caller=request.caller, task=task,
        model=route.model, provider=route.provider, model_class=route.model_class, outcome="ok", cache_hit=True,
        ttft_ms=0.0, ttlt_ms=0.0, first_choice=route.first_choice, served_model=route.served_model,
        degraded=route.degraded, degraded_reason=route.degraded_reason, pii_detected=pii.detected(request),
    )  # fmt: skip
