"""What a rail does while the state store fails, and the record of each such decision.

When the state store cannot be read or written (a Redis server that is down, a SQLite file
that stays locked), each rail decides in its own documented way, from ``[state]``:

===========  ==============================================  ===========================================
rail         ``closed``                                       ``open``
===========  ==============================================  ===========================================
budget       refuse the attempt: ``AdmissionRejected``        serve it without a reservation (the spend
             (``budget_state_unavailable``), a retryable      is in the ledger, not in the day's budget)
             503 with ``Retry-After``; the default
lease        refuse: ``lease_state_unavailable``              serve it without a machine-wide slot (the
                                                              provider's own ``max_concurrency`` holds)
cache        always local: a lookup that fails is a miss, a store that fails is skipped
===========  ==============================================  ===========================================

A settlement, release or renewal that fails is let go: the reservation or lease expires by its
TTL (the ledger keeps the real cost either way).

Every decision is recorded. A refusal is an attempt refused like any other: the attempt row's
``error_detail`` and the request row's ``skipped`` name the reason, and the request's error is
the chain's. Every decision is also a line on the ``interlock.state`` logger: a WARNING when a
rail first meets the failure (its choice and the store's problem, with the address shown as
``StoreUrl.shown``), DEBUG for each further one, and a WARNING when the store answers again,
with how many calls were refused, served without the rail, or lost in between; ``statistics()``
gives the same counts.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

import msgspec

from interlock._errors import AdmissionRejected
from interlock.adapters.stores._state_schema import StateStoreError

OutageChoice = Literal["closed", "open"]
RETRY_AFTER_S: Final = 1.0  # what a refused client is told to wait: long enough for a failover, no more
LOG: Final = logging.getLogger("interlock.state")


class OutageStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One rail's record of state-store failures since the door opened."""

    rail: str
    choice: OutageChoice
    down: bool  # the last call failed and none has succeeded since
    refused: int  # attempts refused (closed)
    served: int  # attempts served without the rail (open), or cache misses and skipped stores
    lost: int  # settlements, releases and renewals that could not be written
    problem: str  # the last failure, as the store described it


class StateOutage:
    """One rail's outage policy and its record; ``down`` is the one field its hot path reads."""

    __slots__ = ("_lost", "_problem", "_refused", "_served", "choice", "down", "rail")

    def __init__(self, rail: str, choice: OutageChoice = "closed") -> None:
        self.rail = rail
        self.choice: OutageChoice = choice
        self.down = False
        self._refused = self._served = self._lost = 0
        self._problem = ""

    def refusal(self, provider: str, error: StateStoreError) -> AdmissionRejected | None:
        """The refusal to raise for an attempt at ``provider`` (closed), or None to serve it without the rail (open)."""
        if self.choice == "closed":
            self._refused += 1
            self._failed(error, "refused")
            return AdmissionRejected(provider, f"{self.rail}_state_unavailable", retry_after=RETRY_AFTER_S)
        self._served += 1
        self._failed(error, "served without it")
        return None

    def missed(self, error: StateStoreError) -> None:
        """A cache lookup or store that failed, answered locally (a miss, a skipped store)."""
        self._served += 1
        self._failed(error, "answered as a miss")

    def lost(self, error: StateStoreError, what: str) -> None:
        """A write that could not be made (``what``: settlement, release, renewal); its TTL will undo it."""
        self._lost += 1
        self._failed(error, f"{what} let go to its TTL")

    def recovered(self) -> None:
        """The store answered again after failing: logged once, with what the outage cost."""
        self.down = False
        LOG.warning(
            "state store answers again for the %s rail: %d refused, %d served without it, %d writes lost meanwhile",
            self.rail, self._refused, self._served, self._lost,
        )  # fmt: skip

    def statistics(self) -> OutageStatistics:
        """The counts so far."""
        return OutageStatistics(
            rail=self.rail, choice=self.choice, down=self.down, refused=self._refused, served=self._served,
            lost=self._lost, problem=self._problem,
        )  # fmt: skip

    def _failed(self, error: StateStoreError, decision: str) -> None:
        self._problem = str(error)
        if not self.down:
            self.down = True
            LOG.warning("state store unavailable for the %s rail (%s): %s", self.rail, decision, error)
        else:
            LOG.debug("state store still unavailable for the %s rail (%s): %s", self.rail, decision, error)
