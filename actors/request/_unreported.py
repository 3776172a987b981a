"""Billing the text an attempt delivered when its provider reported no output usage for it."""

from __future__ import annotations

from collections.abc import Iterable

from interlock._types import ChatRequest
from interlock.actors.request._attempt import Attempt
from interlock.policies._tokens import estimate_output_tokens, input_token_bound


def bill_unreported(request: ChatRequest, attempts: Iterable[Attempt]) -> None:
    """Bill each of ``attempts`` that delivered text without output usage, from an estimate of that text.

    A stream that broke, or was left, after delivering tokens cost money all the same. Called by
    the run that owns ``attempts`` as it closes (``RequestRun.close``), never by anything else.
    """
    for attempt in attempts:
        if (attempt.text or attempt.thinking or attempt.refusal) and not attempt.usage.output_tokens:
            cap = request.max_tokens or attempt.candidate.model.max_output_tokens
            output = estimate_output_tokens(attempt.partial + "".join(attempt.thinking) + "".join(attempt.refusal), cap)
            attempt.bill_delivered(input_token_bound(request), output)
