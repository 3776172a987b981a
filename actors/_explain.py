"""``door.explain``: the route a request would take, gathered from the live tree, with no model called.

The plan is the router actor's own (``RouteRequest``: the same chain, rules, PII scan and hedge
delay a real request gets); a job's classifier is followed only as far as its rules go (its
model's label would be a call). Each provider's admission state is its actor's ``GetHealth``
answer (what ``door.health()`` returns), and each candidate's budget rooms are read from the
state store's budgets as the budget rail would reserve: the input bound and every output token,
against the caller's, tenant's and provider's daily budgets and the model's token cap. The fold
into an ``Explanation`` is pure (``interlock.policies._explain``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import msgspec

from interlock._actor import ActorRef
from interlock._errors import InterlockError
from interlock._types import ChatRequest
from interlock.actors._provider_actor import GetHealth, ProviderHealth, ProviderMsg
from interlock.actors._router_actor import Plan, RouteRequest
from interlock.actors.rails._budget import BudgetRail
from interlock.actors.request._serving import ServingContext
from interlock.adapters.stores._state_store import BudgetStore, StateStore
from interlock.policies._budget import BudgetedCall, day_bucket, plan_reservations, reservation_cents
from interlock.policies._classifier import classify_by_rules
from interlock.policies._config import Config
from interlock.policies._explain import BudgetRoom, Explanation, ProviderSnapshot, explain_resolution
from interlock.policies._routing import Candidate
from interlock.policies._tokens import input_token_bound

__all__ = ["explain"]


async def explain(
    context: ServingContext,
    providers: Mapping[str, ActorRef[ProviderMsg]],
    state: StateStore,
    request: ChatRequest,
) -> Explanation:
    """The explanation of ``request`` on this door's tree; raises ``RequestError`` as ``ask`` would."""
    config = context.config
    plan: Plan = await context.router.ask(RouteRequest(request), timeout=None)
    notes: list[str] = []
    spec = plan.resolution.policy.classifier
    if spec is not None:
        found = classify_by_rules(spec, plan.request, plan.tokens)
        label, how = found.label, "a classifier rule"
        if label is None and spec.model is None and spec.default_label is not None:
            label, how = spec.default_label, "the default label"
        chain = spec.labels.get(label) if label is not None else None
        if chain:
            plan = await context.router.ask(RouteRequest(plan.request, chain), timeout=None)
            notes.append(f"classifier: label {label!r} by {how}, chain {', '.join(chain)}")
        else:
            notes.append("classifier: no rule decides; its model would be asked at run time (not called here)")
    if plan.resolution.policy.ensemble is not None:
        notes.append("ensemble: every admitted member would be asked")
    request = _with_job_cache_marks(plan.request, plan.resolution.policy.prompt_cache)
    wall = context.clock.wall()
    names = {config.models[n].provider for n in plan.resolution.order}
    snapshots = {name: await _snapshot(name, providers.get(name), config) for name in sorted(names)}
    budgets: dict[str, tuple[BudgetRoom, ...]] = {}
    max_cost: dict[str, float] = {}
    watched = BudgetRail.wanted(config)
    for candidate in plan.resolution.candidates:
        call = _budgeted(request, candidate)
        if candidate.model.price is not None:
            max_cost[candidate.name] = reservation_cents(
                call.input_tokens, call.max_output_tokens, candidate.model.price, may_write_cache=call.may_write_cache
            )
        if watched:
            budgets[candidate.name] = await _rooms(state.budgets, config, call, wall)
    hedge = plan.resolution.policy.hedge_delay
    delay = None if plan.hedge.delay_s is None else plan.hedge.delay_s * 1000
    return explain_resolution(
        plan.resolution, config.models, sensitivity=request.sensitivity, input_tokens=plan.tokens,
        providers=snapshots, budgets=budgets, max_cost=max_cost, pii_detected=plan.pii_detected,
        hedge=(hedge.mode if hedge is not None else "off", delay, plan.hedge.max_hedges),
        notes=tuple(notes),
    )  # fmt: skip


async def _snapshot(name: str, ref: ActorRef[ProviderMsg] | None, config: Config) -> ProviderSnapshot:
    """The provider's admission state from its actor (as ``door.health()``), or disabled without one."""
    if ref is None:
        return ProviderSnapshot(enabled=False)
    health: ProviderHealth | None = None
    with contextlib.suppress(InterlockError):  # an actor mid-restart: say so rather than fail the explanation
        health = await ref.ask(GetHealth(), timeout=5.0)
    if health is None:
        return ProviderSnapshot(enabled=True, breaker="restarting")
    return ProviderSnapshot(
        enabled=True, breaker=health.breaker, cooling_down_s=health.cooling_down_s,
        probes_healthy=health.probes_healthy, free_slots=health.free_slots,
        slot_wait_ms=config.providers[name].slot_wait_ms,
    )  # fmt: skip


def _with_job_cache_marks(request: ChatRequest, marks: tuple[str, ...]) -> ChatRequest:
    """The request with the job's prompt-cache marks, as served (a marked input may be billed as a write)."""
    if not marks:
        return request
    system, tools = request.cache_system or "system" in marks, request.cache_tools or "tools" in marks
    return msgspec.structs.replace(request, cache_system=system, cache_tools=tools)


def _budgeted(request: ChatRequest, candidate: Candidate) -> BudgetedCall:
    """What the budget rail would reserve for this candidate's attempt (``actors.rails._budget``)."""
    model = candidate.model
    marked = request.cache_system or request.cache_tools or any(m.cache_breakpoint for m in request.messages)
    return BudgetedCall(
        provider=candidate.provider, model=candidate.name, tenant=request.tenant, caller=request.caller,
        billing=model.billing, price=model.price, token_cap_per_day=model.token_cap_per_day,
        input_tokens=input_token_bound(request), max_output_tokens=request.max_tokens or model.max_output_tokens,
        may_write_cache=marked,
    )  # fmt: skip


async def _rooms(store: BudgetStore, config: Config, call: BudgetedCall, wall: float) -> tuple[BudgetRoom, ...]:
    """Every daily budget the call reserves against, with today's use read from the state store."""
    day = day_bucket(wall)
    rooms: list[BudgetRoom] = []
    for plan in plan_reservations(config.budgets, call):
        for scope, limit in plan.limits:
            used = await store.used(scope, day, wall, unit=plan.unit)
            closed = await store.closed(scope, day)
            rooms.append(
                BudgetRoom(scope=scope, unit=plan.unit, limit=limit, used=used, needed=plan.amount, closed=closed)
            )
    return tuple(rooms)
