"""A batch's budgets: each item reserves its worst case, at the batch rate, before the batch is sent,
and settles what it really cost when the batch is collected.

The rules are the budget rail's, with its very description of a call (``rails._budget.budgeted_call``,
``policies._budget``): the input's token bound
and every output token the item may produce, on caller, tenant and provider, and the model's
daily token cap, all at once or not at all. An item that does not fit is refused before sending,
as ``BudgetExceeded`` with its rows, so a batch cannot spend past a budget any more than
interactive calls can. Two things differ because a provider answers a batch hours later:

- a reservation counts for ``RESERVATION_S`` (two days, past the providers' 24-hour window), not
  for the rail's ``reservation_ttl_s``, or it would stop counting long before its cost arrives;
- its id is made from the item's request id, so the process that collects the batch (after a
  restart, another one) settles the very reservations the submitter made. Settling or releasing
  one already settled finds nothing, so a collection run twice books nothing twice.

When the state store is down, ``[state] on_state_outage`` decides as it does for the rail:
``closed`` refuses the item (the store's error), ``open`` sends it unreserved.
"""

from __future__ import annotations

from typing import Final, final

import anyio

from interlock._clock import Clock
from interlock._types import ChatRequest, Usage
from interlock.actors.rails._budget import billed, budgeted_call
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import BudgetStore
from interlock.policies._budget import Unit, day_bucket, plan_reservations, settle_amount
from interlock.policies._config import Config
from interlock.policies._pricing import Price
from interlock.policies._routing import Candidate

RESERVATION_S: Final = 2 * 86_400.0
_UNITS: Final[tuple[Unit, ...]] = ("cents", "tokens")


def reservation_id(request_id: str, unit: Unit) -> str:
    """The reservation an item of a batch holds in ``unit``: the same in every process."""
    return f"batch:{request_id}:{unit}"


@final
class BatchBudgets:
    """Reserve at submission, settle at collection, release what was never answered."""

    def __init__(self, store: BudgetStore, config: Config, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def reserve(self, request: ChatRequest, candidate: Candidate, price: Price | None) -> None:
        """Hold the item's worst case in every budget it touches; ``BudgetExceeded`` when one has no room."""
        wall = self._clock.wall()
        held: list[str] = []
        try:
            for plan in plan_reservations(self._config.budgets, budgeted_call(request, candidate, price)):
                rid = reservation_id(request.request_id, plan.unit)
                await self._store.reserve(
                    plan.limits, day=day_bucket(wall), amount=plan.amount, reservation_id=rid, now=wall,
                    expires_at=wall + RESERVATION_S, unit=plan.unit,
                )  # fmt: skip
                held.append(rid)
        except StateStoreError:
            await self._let_go(held)
            if self._config.state.on_state_outage == "open":
                return  # sent unreserved, as the config asks; the ledger still books its cost
            raise
        except BaseException:
            await self._let_go(held)
            raise

    async def settle(self, request_id: str, usage: Usage, price: Price | None) -> None:
        """Book what the item cost (its reservations settled), or free them when it was never billed."""
        for unit in _UNITS:
            rid = reservation_id(request_id, unit)
            if billed(usage):
                await self._store.settle(rid, settle_amount(unit, usage, price))
            else:
                await self._store.release(rid)

    async def release(self, request_id: str) -> None:
        """Free whatever the item holds (the provider refused it, or it was never sent)."""
        await self._let_go([reservation_id(request_id, unit) for unit in _UNITS])

    async def _let_go(self, held: list[str]) -> None:
        with anyio.CancelScope(shield=True):
            for rid in held:
                await self._store.release(rid)
