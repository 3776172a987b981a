"""The concurrency rail: a machine-wide cap on in-flight calls, shared by every process using the store.

Each attempt takes a lease per capped scope (``all``, ``provider:<name>``); leases expire unless
renewed, and a renewal loop in the door's tree keeps the held ones alive every third of their TTL.
Each lease records the process holding it, so when a process dies its slots are free at once to
the next process of its host that finds the scope full (``_lease_store`` for SQLite,
``_redis_leases`` for Redis); the TTL is left for what that check cannot see: a hung process, a
holder in another pid namespace or, on a Redis store, on another machine.

When the state store fails, ``on_outage`` decides (``[state] on_lease_outage``, else
``on_state_outage``): ``closed`` refuses the attempt as ``AdmissionRejected(lease_state_unavailable)``;
``open`` serves it without a machine-wide slot (the provider's own ``max_concurrency`` still
holds). A release or renewal that cannot be written is let go to the TTL. Each decision is
recorded by the rail's ``StateOutage`` (``_state_outage``).
"""

from __future__ import annotations

import uuid

import msgspec

from interlock._clock import Clock
from interlock._errors import AdmissionRejected
from interlock._types import ChatRequest
from interlock.actors.rails._state_outage import OutageChoice, StateOutage
from interlock.actors.request._attempt import Attempt
from interlock.adapters.stores._state_schema import StateStoreError
from interlock.adapters.stores._state_store import LeaseStore
from interlock.policies._config import LimitsConfig


class LeaseHold(msgspec.Struct, frozen=True):
    """What the concurrency rail holds for one attempt: one lease per capped scope."""

    lease_ids: tuple[str, ...]


class LeaseRail:
    """Takes the capped scopes' leases for an attempt, or refuses it with ``no_slot``."""

    name = "lease"

    def __init__(
        self, store: LeaseStore, limits: LimitsConfig, clock: Clock, *, on_outage: OutageChoice = "closed"
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._held: set[str] = set()
        self.outage = StateOutage(self.name, on_outage)

    def _scopes(self, provider: str) -> list[tuple[str, int]]:
        scopes: list[tuple[str, int]] = []
        if self._limits.max_in_flight is not None:
            scopes.append(("all", self._limits.max_in_flight))
        cap = self._limits.per_provider.get(provider)
        if cap is not None:
            scopes.append((f"provider:{provider}", cap))
        return scopes

    async def enter(self, request: ChatRequest, attempt: Attempt, input_tokens: int) -> None:
        scopes = self._scopes(attempt.candidate.provider)
        if not scopes:
            return
        taken: list[str] = []
        now, ttl = self._clock.wall(), float(self._limits.lease_ttl_s)
        provider = attempt.candidate.provider
        try:
            for scope, limit in scopes:
                lease_id = f"{scope}|{uuid.uuid4().hex}"
                if not await self._store.acquire(scope, limit, lease_id, now, ttl):
                    await self._release_all(taken)
                    raise AdmissionRejected(provider, "no_slot")
                taken.append(lease_id)
                self._held.add(lease_id)
        except StateStoreError as exc:
            await self._release_all(taken)
            refusal = self.outage.refusal(provider, exc)
            if refusal is not None:
                raise refusal from exc
            return  # open: served without a machine-wide slot, as the config asks
        if self.outage.down:
            self.outage.recovered()
        attempt.holds[self.name] = LeaseHold(tuple(taken))

    async def leave(self, attempt: Attempt) -> None:
        held = attempt.holds.pop(self.name, None)
        if isinstance(held, LeaseHold):
            for lease_id in held.lease_ids:
                await self._release(lease_id)

    async def _release_all(self, lease_ids: list[str]) -> None:
        for lease_id in lease_ids:
            await self._release(lease_id)

    async def _release(self, lease_id: str) -> None:
        self._held.discard(lease_id)
        try:
            await self._store.release(lease_id)
        except StateStoreError as exc:
            self.outage.lost(exc, "release")

    async def renew_forever(self) -> None:
        """Keep held leases alive; runs in the tree's task group while the door is open."""
        ttl = float(self._limits.lease_ttl_s)
        while True:
            await self._clock.sleep(ttl / 3.0)
            now = self._clock.wall()
            for lease_id in list(self._held):
                try:
                    await self._store.renew(lease_id, now, ttl)
                except StateStoreError as exc:
                    self.outage.lost(exc, "renewal")
