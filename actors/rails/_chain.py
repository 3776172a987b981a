"""The rails an attempt passes on its way to a provider, folded once at start-up.

Per request: cache (``_rail_cache``) before routing, verify (``_rail_verify``) after the answer.
Per attempt, in order: budget (``_rail_budget``: reserve, then settle or release) and the
cross-process concurrency slot (``_rail_lease``); the breaker and the provider's own slots live
in the provider actor. An attempt rail refuses with ``AdmissionRejected`` or ``BudgetExceeded``,
which the request run records as a skipped candidate and moves past.
"""

from __future__ import annotations

from typing import Protocol

from interlock._types import ChatRequest
from interlock.actors.request._attempt import Attempt


class AttemptRail(Protocol):
    """One step before a provider call, with its undo after the attempt ends."""

    name: str

    async def enter(self, request: ChatRequest, attempt: Attempt, input_tokens: int) -> None:
        """Admit the attempt (recording what it holds in ``attempt.holds``) or raise to skip it."""
        ...

    async def leave(self, attempt: Attempt) -> None:
        """Settle or release what ``enter`` took; called once for every attempt that entered."""
        ...


class AttemptRails:
    """The attempt rails in order; entering stops at the first refusal and undoes the ones passed."""

    def __init__(self, rails: tuple[AttemptRail, ...]) -> None:
        self.rails = rails

    async def enter(self, request: ChatRequest, attempt: Attempt, input_tokens: int) -> None:
        """Pass every rail in order, or leave the ones passed and re-raise the refusal."""
        passed: list[AttemptRail] = []
        try:
            for rail in self.rails:
                await rail.enter(request, attempt, input_tokens)
                passed.append(rail)
        except BaseException:
            for rail in reversed(passed):
                await rail.leave(attempt)
            raise

    async def leave(self, attempt: Attempt) -> None:
        """Undo every rail in reverse order (each one only acts on what it holds)."""
        for rail in reversed(self.rails):
            await rail.leave(attempt)
