"""The budget rail: reserve an attempt's worst-case cost before the call, settle the real cost after.

Reservations are atomic across every scope a call touches (caller, tenant, provider) and across
processes sharing the state store, so concurrent calls cannot overspend what was reserved. A
refusal is ``BudgetExceeded`` naming the narrowest budget that is full.
"""

from __future__ import annotations

import uuid

import msgspec

from interlock._clock import Clock
from interlock._types import ChatRequest
from interlock.actors.request._attempt import Attempt
from interlock.adapters.stores._state_store import BudgetStore
from interlock.policies._budget import BudgetConfig, Unit, day_bucket, plan_reservation, settle_amount


class BudgetHold(msgspec.Struct, frozen=True):
    """What the budget rail holds for one attempt: its reservation, in the unit it was made in."""

    reservation_id: str
    unit: Unit


class BudgetRail:
    """Reserve-then-settle against the daily budgets in the config."""

    name = "budget"

    def __init__(self, store: BudgetStore, config: BudgetConfig, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def enter(self, request: ChatRequest, attempt: Attempt, input_tokens: int) -> None:
        model = attempt.candidate.model
        plan = plan_reservation(
            self._config,
            provider=attempt.candidate.provider,
            tenant=request.tenant,
            caller=request.caller,
            billing=model.billing,
            input_tokens=input_tokens,
            max_output_tokens=request.max_tokens or model.max_output_tokens,
            price=model.price,
        )
        if not plan.limits:
            return
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
        attempt.holds[self.name] = BudgetHold(reservation.reservation_id, reservation.unit)

    async def leave(self, attempt: Attempt) -> None:
        held = attempt.holds.pop(self.name, None)
        if not isinstance(held, BudgetHold):
            return
        usage = attempt.usage
        if usage.input_tokens or usage.output_tokens or usage.cache_read_tokens or usage.cache_write_tokens:
            amount = settle_amount(held.unit, usage, attempt.candidate.model.price)
            await self._store.settle(held.reservation_id, amount)
        else:
            await self._store.release(held.reservation_id)
