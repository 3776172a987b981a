"""Auxiliary calls: the reviews, classifier labels, agreement checks and judges a request makes.

Each is a run of its own — planned by the router, pinned to one model, through every attempt
rail, so budgets bill it and leases bound it — but never a request of its own: it has no request
row, no cache, no verifiers. Its attempts are recorded as the parent request's attempts (the same
request id, numbered after the parent's own), each with its purpose (``review``, ``classify``,
``judge``, ``agreement``), and their cost is part of the parent's route and ledger row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from interlock._types import ChatRequest, ChatResponse
from interlock.actors.request._assemble import BufferSink, assemble
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._run import RequestRun

MakeRun = Callable[[ChatRequest], Awaitable[RequestRun]]
"""Plan a run of a pinned request through the router (not yet started)."""


class AuxCalls:
    """One request's auxiliary calls, kept until the request is recorded."""

    __slots__ = ("_make_run", "_runs")

    def __init__(self, make_run: MakeRun) -> None:
        self._make_run = make_run
        self._runs: list[tuple[str, RequestRun]] = []

    async def ask(self, request: ChatRequest, purpose: str) -> ChatResponse:
        """The answer of one auxiliary call made for ``purpose``; its failure is raised, its attempts kept."""
        run = await self._make_run(request)
        self._runs.append((purpose, run))
        return assemble(await run.run(BufferSink()))  # the run closes itself: rails left, budget settled

    def cancel_upstream(self) -> None:
        """Cancel every auxiliary call still running at its provider (the door is closing)."""
        for _, run in self._runs:
            run.cancel_upstream()

    def attempts(self, after: int, reason: str) -> list[Attempt]:
        """Every auxiliary attempt, numbered from ``after + 1`` with its purpose, in the order made.

        An attempt that neither finished nor failed is marked cancelled for ``reason``.
        """
        found: list[Attempt] = []
        for purpose, run in self._runs:
            run.end_unfinished(reason)
            for attempt in run.attempts:
                attempt.purpose = purpose
                found.append(attempt)
        for number, attempt in enumerate(found, after + 1):
            attempt.number = number
        return found
