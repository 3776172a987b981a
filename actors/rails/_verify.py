"""The verify rail: judge a finished answer with the job's verifiers; the verdict may escalate a cascade.

Local verifiers (JSON Schema, Python callables) run in place. A reviewer is a model call through
the request run itself — pinned to the first candidate of its class from a different lab than the
author's — and an agreement check asks a second model the same request. Every verdict is written
on the author's attempt, so ``interlock report --quality`` can roll accept rates up per model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec

from interlock._errors import InterlockError
from interlock._types import ChatRequest, ChatResponse
from interlock.actors.request._attempt import Attempt
from interlock.policies._config import Config
from interlock.policies._routing import resolve
from interlock.policies._tokens import estimate_input_tokens
from interlock.policies._verify import (
    AgreementVerifier,
    ReviewerVerifier,
    Verdict,
    Verifier,
    agree,
    build_review_request,
    combine_verdicts,
    parse_review,
    pick_reviewer,
    run_local,
)

Ask = Callable[[ChatRequest], Awaitable[ChatResponse]]


class VerifyRail:
    """Runs a job's verifiers over one answer."""

    def __init__(self, config: Config, ask: Ask) -> None:
        self._config = config
        self._ask = ask

    async def judge(
        self, specs: Sequence[Verifier], request: ChatRequest, response: ChatResponse, author: Attempt
    ) -> Verdict:
        """Every verifier's verdict, combined: the first reject wins, else one accept naming them all."""
        verdicts = [await self._one(spec, request, response, author) for spec in specs]
        return combine_verdicts(verdicts)

    async def _one(self, spec: Verifier, request: ChatRequest, response: ChatResponse, author: Attempt) -> Verdict:
        try:
            if isinstance(spec, ReviewerVerifier):
                return await self._review(spec, request, response, author)
            if isinstance(spec, AgreementVerifier):
                other = await self._ask(_pinned(request, spec.model))
                return agree(response, other, spec.field, verifier=f"agreement:{spec.model}")
            return await run_local(spec, response)
        except InterlockError as exc:
            # A verifier that cannot run is a reject with its reason, never a silent accept.
            return Verdict(False, f"verifier failed: {exc}", type(spec).__name__)

    async def _review(
        self, spec: ReviewerVerifier, request: ChatRequest, response: ChatResponse, author: Attempt
    ) -> Verdict:
        review = build_review_request(request, response, spec)
        reviewer = self._pick_reviewer(review, author, spec.require_other_lab)
        if reviewer is None:
            return Verdict(False, f"no reviewer from a lab other than {author.candidate.model.lab!r}", "reviewer")
        answer = await self._ask(_pinned(review, reviewer))
        return parse_review(answer.content, verifier=f"reviewer:{reviewer}")

    def _pick_reviewer(self, review: ChatRequest, author: Attempt, other_lab: bool) -> str | None:
        resolution = resolve(self._config, review, estimate_input_tokens(review))
        candidates = [(c.name, c.model.lab) for c in resolution.candidates]
        return pick_reviewer(candidates, author.candidate.model.lab, require_other_lab=other_lab)


def _pinned(request: ChatRequest, model: str) -> ChatRequest:
    """The request pinned to ``model`` alone (still governed by every rail), not counted as the job's."""
    return msgspec.structs.replace(request, model=model, model_class=None, task=None, request_id="")
