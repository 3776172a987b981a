"""The budget rail: reserve an attempt's worst-case cost before the call, settle the real cost after.

The reservation is a bound, not a guess: the input counts ``input_token_bound`` (one token per
UTF-8 byte plus the framing overheads), not the routing estimate the rail is handed, and the
output every token the attempt may produce. Reservations are atomic across every scope a call
touches (caller, tenant, provider, the model's daily token cap) and across processes sharing the
state store, so concurrent calls cannot overspend what was reserved. A refusal is
``BudgetExceeded`` naming the narrowest budget that is full (or closed for the day).

Leaving settles whatever ``attempt.usage`` holds: the provider's own counts, or the estimate the
request run puts there when a stream broke after delivering text without reporting usage. Only
an attempt with no usage at all is released unbilled.

When the state store fails, ``on_outage`` decides (``[state] on_state_outage``): ``closed``, the
default, refuses the attempt as ``AdmissionRejected(budget_state_unavailable)``; ``open`` serves
it unreserved. A settlement that cannot be written is let go (its reservation expires by its
TTL). Each decision is recorded by the rail's ``StateOutage`` (``_state_outage``).
"""

from __future__ import annotations

import uuid

import anyio
import msgspec

from interlock._clock import Clock
from interlock._types import ChatRequest, Usage
from interlock.actors.rails._state_outage import OutageChoice, StateOutage
from interlock.actors.request._attempt import Attempt
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import BudgetStore
from interlock.policies._budget import (
    BudgetConfig,
    BudgetedCall,
    BudgetPlan,
    Unit,
    day_bucket,
    plan_reservations,
    settle_amount,
)
from interlock.policies._config import Config
from interlock.policies._pricing import Price
from interlock.policies._routing import Candidate
from interlock.policies._tokens import input_token_bound


class BudgetHold(msgspec.Struct, frozen=True):
    """What the budget rail holds for one attempt: each reservation with the unit it was made in."""

    reservations: tuple[tuple[str, Unit], ...]


def _may_write_cache(request: ChatRequest) -> bool:
    """Whether the request marks a prompt-cache breakpoint, so its input may be billed as a cache write."""
    return request.cache_system or request.cache_tools or any(m.cache_breakpoint for m in request.messages)


def billed(usage: Usage) -> bool:
    """Whether ``usage`` counts anything to bill (else a reservation is released, not settled)."""
    return bool(usage.input_tokens or usage.output_tokens or usage.cache_read_tokens or usage.cache_write_tokens)


def budgeted_call(request: ChatRequest, candidate: Candidate, price: Price | None) -> BudgetedCall:
    """What the budgets need to know of ``request`` on ``candidate`` at ``price``, its input as a bound.

    ``price`` is the model's own for an interactive call, its batch rate for a batch item (``_batch_budget``).
    """
    model = candidate.model
    return BudgetedCall(
        provider=candidate.provider,
        model=candidate.name,
        tenant=request.tenant,
        caller=request.caller,
        billing=model.billing,
        price=price,
        token_cap_per_day=model.token_cap_per_day,
        input_tokens=input_token_bound(request),
        max_output_tokens=request.max_tokens or model.max_output_tokens,
        may_write_cache=_may_write_cache(request),
    )


class BudgetRail:
    """Reserve-then-settle against the daily budgets in the config and the models' token caps."""

    name = "budget"

    def __init__(
        self, store: BudgetStore, config: BudgetConfig, clock: Clock, *, on_outage: OutageChoice = "closed"
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.outage = StateOutage(self.name, on_outage)

    @staticmethod
    def wanted(config: Config) -> bool:
        """Whether ``config`` has any budget for this rail to keep: a provider's, a tenant's or a model's cap."""
        budgets = config.budgets
        capped = any(model.token_cap_per_day is not None for model in config.models.values())
        return bool(budgets.providers or budgets.tenants or capped)

    async def enter(self, request: ChatRequest, attempt: Attempt, input_tokens: int) -> None:
        # ``input_tokens`` is the router's estimate, right for context windows and wrong for money.
        candidate = attempt.candidate
        plans = plan_reservations(self._config, budgeted_call(request, candidate, candidate.model.price))
        if not plans:
            return
        held: list[tuple[str, Unit]] = []
        try:
            for plan in plans:
                held.append((await self._reserve(plan), plan.unit))
        except StateStoreError as exc:
            await self._let_go(held)
            refusal = self.outage.refusal(candidate.provider, exc)
            if refusal is not None:
                raise refusal from exc
            return  # open: served without a reservation, as the config asks
        except BaseException:
            await self._let_go(held)
            raise
        if self.outage.down:
            self.outage.recovered()
        attempt.holds[self.name] = BudgetHold(tuple(held))

    async def _let_go(self, held: list[tuple[str, Unit]]) -> None:
        """Release what a refused (or cancelled) attempt held; a refusal or a cancel must not strand the cents."""
        with anyio.CancelScope(shield=True):
            for reservation_id, _ in held:
                try:
                    await self._store.release(reservation_id)
                except StateStoreError as exc:
                    self.outage.lost(exc, "release")

    async def _reserve(self, plan: BudgetPlan) -> str:
        wall = self._clock.wall()
        reservation = await self._store.reserve(
            plan.limits,
            day=day_bucket(wall),
            amount=plan.amount,
            reservation_id=uuid.uuid4().hex,
            now=wall,
            expires_at=wall + self._config.reservation_ttl_s,
            unit=plan.unit,
        )
        return reservation.reservation_id

    async def leave(self, attempt: Attempt) -> None:
        held = attempt.holds.pop(self.name, None)
        if not isinstance(held, BudgetHold):
            return
        usage = attempt.usage
        billed_usage = billed(usage)
        for reservation_id, unit in held.reservations:
            try:
                if billed_usage:
                    await self._store.settle(reservation_id, settle_amount(unit, usage, attempt.candidate.model.price))
                else:
                    await self._store.release(reservation_id)
            except StateStoreError as exc:
                self.outage.lost(exc, "settlement" if billed_usage else "release")
