"""Ensembles: the same input to several models at once, their answers combined into one.

Every member is a pinned request run of its own (so each is governed by every rail and every
rule: a PII request still reaches local models only) and every member's attempts land in the
one request's ledger rows. Combining: the first valid answer, a majority on a JSON field, or a
judge model's pick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from interlock._errors import ChainExhausted, InterlockError
from interlock._types import ChatRequest, ChatResponse
from interlock.actors.request._assemble import BufferSink, assemble
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._run import RequestRun
from interlock.policies._classifier import EnsembleConfig, judge_request, majority, parse_pick

MakeRun = Callable[[ChatRequest], Awaitable[RequestRun | None]]
Ask = Callable[[ChatRequest], Awaitable[ChatResponse]]


class Member:
    """One member's run and, once it finished, its answer and buffered events."""

    def __init__(self, name: str, run: RequestRun) -> None:
        self.name = name
        self.run = run
        self.winner: Attempt | None = None
        self.answer: ChatResponse | None = None
        self.events: list[Any] = []
        self.error: InterlockError | None = None


async def run_ensemble(
    spec: EnsembleConfig, request: ChatRequest, main: RequestRun, make_run: MakeRun, ask: Ask
) -> tuple[Attempt, ChatResponse, list[Any]]:
    """Ask every member, combine, and fold every member's attempts into ``main``; returns the chosen one.

    ``make_run`` plans a member's pinned request through the router (None: no candidate may serve it).
    """
    members: list[Member] = []
    for name in spec.models:
        member_run = await make_run(msgspec.structs.replace(request, model=name, model_class=None))
        if member_run is not None:
            members.append(Member(name, member_run))
    finished: list[Member] = []

    async def one(member: Member) -> None:
        buffer = BufferSink()
        try:
            member.winner = await member.run.run(buffer)
            member.answer, member.events = assemble(member.winner), buffer.events
            finished.append(member)
        except InterlockError as exc:
            member.error = exc

    async with anyio.create_task_group() as tg:
        for member in members:
            tg.start_soon(one, member)
    main.absorb(member.run for member in members)
    if not finished:
        raise ChainExhausted(main.resolution.job, main.errors)
    chosen = await _choose(spec, request, finished, ask)
    assert chosen.winner is not None
    assert chosen.answer is not None
    main.choose(chosen.winner)
    return chosen.winner, chosen.answer, chosen.events


async def _choose(spec: EnsembleConfig, request: ChatRequest, finished: list[Member], ask: Ask) -> Member:
    answers = [m.answer for m in finished if m.answer is not None]
    if spec.combine == "majority":
        index = majority(answers, spec.field)
        return finished[index if index is not None else 0]
    if spec.combine == "judge" and spec.judge is not None and len(finished) > 1:
        try:
            verdict = await ask(judge_request(request, answers, spec.judge))
        except InterlockError:
            return finished[0]
        index = parse_pick(verdict.content, len(finished))
        return finished[index if index is not None else 0]
    return finished[0]  # first valid: the first member to finish successfully
