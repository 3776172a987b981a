"""Mid-stream rescue without splicing: continue from a prefill, or restart and reconcile.

When a stream breaks after the caller already has part of the answer, the next candidate must
give the caller the rest of *that* answer, never a second answer glued onto the first. A
candidate that accepts an assistant prefill (``Candidate.prefill``) gets the delivered text as
the start of its reply and continues it; its stream passes on as it comes. Any other candidate
restarts the answer from the original request, and its stream is held until it has reproduced
the delivered text: only what follows passes on. A restart that says something else is a
``MidStreamError`` carrying the delivered text — a divergence is never presented as success.
"""

from __future__ import annotations

import msgspec

from interlock._errors import ErrorClass, InterlockError, MidStreamError, ProviderError
from interlock._types import ChatRequest, Message, StreamEvent, TextDelta, ThinkingDelta, UsageEvent
from interlock.actors.request._attempt import Attempt


class Stalled(Exception):
    """The stream went quiet past its inter-token deadline, or ran past its total deadline."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which

    def as_error(self, attempt: Attempt) -> MidStreamError:
        return MidStreamError(
            ErrorClass.TIMEOUT, attempt.candidate.provider, partial=attempt.partial, model=attempt.candidate.name,
            detail=f"{self.which} deadline passed",
        )


def ended_early(attempt: Attempt) -> MidStreamError:
    """A stream that ended after its first event without a ``Finish``: a break, with the partial."""
    return MidStreamError(
        ErrorClass.SERVER_ERROR, attempt.candidate.provider, partial=attempt.partial,
        model=attempt.candidate.name, detail="stream ended without a finish",
    )


def not_resumed(error: InterlockError, attempt: Attempt, delivered: str, why: str) -> MidStreamError:
    """The caller's error for a break that is not resumed: its cause, why not, and all delivered text."""
    cause = error.detail if isinstance(error, ProviderError) and error.detail else str(error)
    return MidStreamError(
        error.kind, attempt.candidate.provider, partial=delivered, model=attempt.candidate.name,
        detail=f"mid-stream failure: {cause}; {why}",
    )


def no_resume(mid_stream: str, pending: bool, out_of_time: bool) -> str | None:
    """Why a broken stream is not resumed, or None when it is."""
    if mid_stream != "resume":
        return f"mid_stream = {mid_stream!r}"
    if out_of_time:
        return "no time left to resume"
    if not pending:
        return "no candidate left to resume on"
    return None


def continuation(request: ChatRequest, delivered: str, *, prefill: bool) -> tuple[ChatRequest, str]:
    """The request for the next candidate after ``delivered`` text, and the text its stream must reproduce.

    With ``prefill`` the delivered text (without trailing whitespace, which the Messages API
    refuses at the end of a prefill) is the reply's start, and only that trailing whitespace
    remains to be matched. Without it the request is the original one, and all of ``delivered``
    must be reproduced before anything passes on.
    """
    if not delivered:
        return request, ""
    if not prefill:
        return request, delivered
    head = delivered.rstrip()
    if not head:
        return request, delivered
    turn = Message.text("assistant", head)
    return msgspec.structs.replace(request, messages=(*request.messages, turn)), delivered[len(head):]


class Diverged(Exception):
    """A restarted answer said something else than the text already delivered; ``left`` was still to match."""

    def __init__(self, left: str) -> None:
        super().__init__(f"{len(left)} characters not reproduced")
        self.left = left

    def as_error(self, attempt: Attempt, delivered: str) -> MidStreamError:
        """The caller's error: a mid-stream failure carrying the delivered text, never a success."""
        return MidStreamError(
            ErrorClass.SERVER_ERROR, attempt.candidate.provider, partial=delivered, model=attempt.candidate.name,
            detail=(
                "the restarted answer diverged from the text already delivered "
                f"({len(delivered) - len(self.left)} of {len(delivered)} characters reproduced)"
            ),
        )


def reconcile(events: list[StreamEvent], expect: str) -> tuple[list[StreamEvent], str]:
    """The events past the text the caller already has, and what of ``expect`` is still to be reproduced.

    Text that reproduces the delivered answer is dropped; the rest of a delta that goes past it
    passes on as a new delta. Reasoning before the match is dropped (the caller heard the first
    attempt's), usage passes on (it is billed). Anything else before the match — different text,
    a tool call, the end — raises ``Diverged``. Only whitespace left to match is forgiven: a
    continuation may start its next word without the space the prefill could not carry.
    """
    out: list[StreamEvent] = []
    for event in events:
        if not expect:
            out.append(event)
            continue
        if isinstance(event, TextDelta):
            text = event.text
            size = min(len(text), len(expect))
            if text[:size] == expect[:size]:
                expect = expect[size:]
                if len(text) > size:
                    out.append(TextDelta(text[size:]))
                continue
        elif isinstance(event, ThinkingDelta):
            continue
        elif isinstance(event, UsageEvent):
            out.append(event)
            continue
        if not expect.isspace():
            raise Diverged(expect)
        expect = ""
        out.append(event)
    return out, expect
