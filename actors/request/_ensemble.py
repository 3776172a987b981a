"""Ensembles: the same input to several models at once, their answers combined into one.

Every member is a run of its own pinned to that member alone (``member_resolution``): it never
falls back along the job's chain, so a member that fails is a failed member, and only members
can win. Each is still governed by every rail and every rule (a PII request reaches local members
only; a member a rule leaves out is recorded as skipped). Combining: ``first_valid`` returns at the
first valid answer and cancels the other members (their attempts are cancelled upstream and
recorded as ``ensemble_lost``); ``majority`` waits for every member and takes the most common
value of a JSON field; ``judge`` waits for every member and asks a judge model (an auxiliary call
of the request) to pick.

Every member's attempts become the one request's attempts, in a run built for the record
(``Combine``) whose resolution lists the members that could serve with the chosen one first: the
ensemble's pick is its first choice, so picking a member other than the first is not degraded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec

from interlock._errors import InterlockError
from interlock._types import ChatRequest, ChatResponse
from interlock.actors.request._assemble import BufferSink, assemble
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._run import RequestRun
from interlock.policies._classifier import EnsembleConfig, judge_request, majority, parse_pick
from interlock.policies._failover import walk_failure
from interlock.policies._routing import Resolution

MakeRun = Callable[[ChatRequest, str], Awaitable[RequestRun]]
"""Plan the member run of the request for one member (by config name)."""
Ask = Callable[[ChatRequest, str], Awaitable[ChatResponse]]
"""An auxiliary call of the request, with its purpose."""
Combine = Callable[[Attempt | None], RequestRun]
"""The run that records the ensemble: every member's attempts, the chosen attempt's member first."""

LOST = "ensemble_lost"  # why a member still running when another's answer won is cancelled
_VALID = frozenset({"stop", "length", "tool_calls"})


class Member:
    """One member's run and, once it finished, its answer and buffered events."""

    __slots__ = ("answer", "error", "events", "name", "run", "winner")

    def __init__(self, name: str, run: RequestRun) -> None:
        self.name = name
        self.run = run
        self.winner: Attempt | None = None
        self.answer: ChatResponse | None = None
        self.events: list[Any] = []
        self.error: InterlockError | None = None


def member_resolution(resolution: Resolution, name: str) -> Resolution:
    """``resolution`` narrowed to the member ``name`` alone: none of the job's chain, none of its degradation."""
    return msgspec.structs.replace(
        resolution,
        candidates=tuple(c for c in resolution.candidates if c.name == name and not c.degrade),
        skipped=tuple(s for s in resolution.skipped if s.model == name),
    )


def ensemble_resolution(job: Resolution, members: Sequence[RequestRun], chosen: Attempt | None) -> Resolution:
    """The resolution the ensemble is recorded with: the members that could serve, ``chosen``'s first.

    Every member's skipped candidates are kept, so a member a rule left out is on the route too.
    """
    candidates = [c for run in members for c in run.resolution.candidates]
    if chosen is not None:
        name = chosen.candidate.name
        candidates.sort(key=lambda c: c.name != name)  # stable: the rest keep the members' order
    skipped = tuple(s for run in members for s in run.resolution.skipped)
    return msgspec.structs.replace(job, candidates=tuple(candidates), skipped=skipped)


def is_valid(member: Member) -> bool:
    """Whether a finished member's answer may win: a complete answer, not a refusal or a filtered one."""
    winner = member.winner
    return winner is not None and winner.finish in _VALID and not winner.refusal


async def run_ensemble(
    spec: EnsembleConfig, request: ChatRequest, make_run: MakeRun, ask: Ask, combine: Combine
) -> tuple[RequestRun, Attempt, ChatResponse, list[Any]]:
    """Ask every member and combine; returns the recording run, the chosen attempt, its answer and events.

    Raises the walk's failure (``ChainExhausted`` holding every member's error, or the full
    budget) when no member answered.
    """
    members = [Member(name, await make_run(request, name)) for name in spec.models]
    finished: list[Member] = []
    chosen: Member | None = None
    try:
        async with anyio.create_task_group() as tg:
            first_wins = tg.cancel_scope if spec.combine == "first_valid" else None
            for member in members:
                if member.run.has_pending:  # a member every rule left out is not asked
                    tg.start_soon(_answer, member, finished, first_wins)
        if finished:
            chosen = await _choose(spec, request, finished, ask)
            for member in members:
                if member is not chosen:
                    member.run.end_unfinished(LOST)
    finally:
        # Also when cancelled: every member's attempts are the request's, recorded whatever happened.
        run = combine(chosen.winner if chosen is not None else None)
    if chosen is None or chosen.winner is None or chosen.answer is None:
        raise walk_failure(run.resolution, run.errors, out_of_time=False, late_first=None)
    return run, chosen.winner, chosen.answer, chosen.events


async def _answer(member: Member, finished: list[Member], first_wins: anyio.CancelScope | None) -> None:
    """Run one member to its end; with ``first_wins``, the first valid answer cancels the others."""
    buffer = BufferSink()
    try:
        member.winner = await member.run.run(buffer)
    except InterlockError as exc:
        member.error = exc  # a failed member; its attempts still count as the request's
        return
    member.answer, member.events = assemble(member.winner), buffer.events
    finished.append(member)
    if first_wins is not None and is_valid(member):
        first_wins.cancel()


async def _choose(spec: EnsembleConfig, request: ChatRequest, finished: list[Member], ask: Ask) -> Member:
    """The member whose answer serves: among the valid answers if any (in the order they finished)."""
    pool = [m for m in finished if is_valid(m)] or finished
    answers = [m.answer for m in pool if m.answer is not None]
    if spec.combine == "majority":
        index = majority(answers, spec.field)
        return pool[index if index is not None else 0]
    if spec.combine == "judge" and spec.judge is not None and len(pool) > 1:
        try:
            verdict = await ask(judge_request(request, answers, spec.judge), "judge")
        except InterlockError:
            return pool[0]  # a judge that cannot run picks nothing: the first answer stands
        index = parse_pick(verdict.content, len(pool))
        return pool[index if index is not None else 0]
    return pool[0]  # first valid: the first member to finish with a valid answer
