"""Answers held until judged: tool-call checks, verifiers, cascades, and the verdict on an ensemble's pick.

The caller hears a held answer only once it is judged. A rejected answer of a cascade escalates
to the next candidate; when every answer of a cascade is rejected, the caller gets
``AnswersRejected`` holding the last one, never the rejected answer as if it were accepted. An
*unjudged* answer (a verifier could not run) is not a reject: it stands, and escalates nothing.
A job that is not a cascade keeps its answer whatever the verdict, which its route carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from interlock._errors import AnswersRejected, InterlockError
from interlock._types import ChatRequest, ChatResponse
from interlock.actors.rails._verify import VerifyRail
from interlock.actors.request._assemble import BufferSink, assemble
from interlock.actors.request._attempt import Attempt
from interlock.actors.request._run import RequestRun
from interlock.policies._quality import verdict_string
from interlock.policies._tool_validate import ToolCallProblem, corrective_message, validate_tool_calls
from interlock.policies._verify import Verdict, Verifier, rejects


def holds_events(run: RequestRun, request: ChatRequest, python_verifiers: bool) -> bool:
    """True when the caller must not hear the answer before it is judged (or combined)."""
    job = run.resolution.policy
    if job.ensemble is not None or job.verify or job.cascade:
        return True
    return (bool(request.tools) and job.tool_retry) or python_verifiers


async def judged_walk(
    run: RequestRun, request: ChatRequest, verify: VerifyRail, verifiers: Sequence[Verifier]
) -> tuple[Attempt, ChatResponse, list[Any]]:
    """Walk the chain, judging each answer: one corrective tool-call retry, verifiers, cascade escalation."""
    job = run.resolution.policy
    check_tools = bool(request.tools) and job.tool_retry
    retried = False
    reasons: list[str] = []
    rejected: tuple[Attempt, ChatResponse] | None = None  # the last answer the cascade rejected
    while True:
        buffer = BufferSink()
        try:
            winner = await run.run(buffer)
        except InterlockError as exc:
            if rejected is None:
                raise
            run.choose(rejected[0])  # no better answer came: the request ends on the rejected one
            raise AnswersRejected(run.resolution.job, rejected[1], reasons) from exc
        answer = assemble(winner)
        problems = validate_tool_calls(request.tools, answer.tool_calls) if check_tools else []
        if problems and not retried:
            retried = True  # one corrective retry on the same model, then the problems are reported
            run.judged(winner, verdict_string(Verdict(False, _problem_text(problems), "tool_calls")))
            run.retry_on(winner.candidate, _corrected(request, problems))
            continue
        verdict = Verdict(False, _problem_text(problems), "tool_calls") if problems else None
        if verifiers and verdict is None:
            verdict = await verify.judge(verifiers, request, answer, winner)
        run.judged(winner, verdict_string(verdict) if verdict is not None else None)
        if verdict is None or not rejects(verdict) or not job.cascade:
            return winner, answer, buffer.events
        reasons.append(verdict.reason)
        rejected = (winner, answer)
        if not run.escalate():
            raise AnswersRejected(run.resolution.job, answer, reasons)


async def judge_pick(
    run: RequestRun,
    winner: Attempt,
    answer: ChatResponse,
    request: ChatRequest,
    verify: VerifyRail,
    verifiers: Sequence[Verifier],
) -> None:
    """The job's verifiers on an ensemble's pick; a cascade's reject is ``AnswersRejected``.

    Only members can win, so a rejected pick does not escalate to the job's chain.
    """
    verdict = await verify.judge(verifiers, request, answer, winner) if verifiers else None
    run.judged(winner, verdict_string(verdict) if verdict is not None else None)
    if verdict is not None and rejects(verdict) and run.resolution.policy.cascade:
        raise AnswersRejected(run.resolution.job, answer, [verdict.reason])


def _corrected(request: ChatRequest, problems: list[ToolCallProblem]) -> ChatRequest:
    """The original request plus the corrective message (the failed assistant turn is left out)."""
    return msgspec.structs.replace(request, messages=(*request.messages, corrective_message(problems)))


def _problem_text(problems: list[ToolCallProblem]) -> str:
    return "; ".join(f"{p.tool}: {p.kind} at {p.path}" for p in problems[:3])
