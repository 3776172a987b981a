"""The verify rail: judge a finished answer with the job's verifiers; the verdict may escalate a cascade.

Local verifiers (JSON Schema, Python callables) run in place. A reviewer is a model call made as
an auxiliary call of the request (``Ask``: recorded among the request's own attempts, with its
purpose, its cost in the request's) — pinned to the first candidate of the asked class (or the
named model) from a different lab than the author's — and an agreement check asks a second model
the same request. A verifier that cannot run (no model may review, the call fails) is
*unjudged*, never a reject of the author. Every verdict is written on the author's attempt, so
``interlock report --quality`` can roll accept rates up per model.
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
    CallableVerifier,
    ReviewerVerifier,
    SchemaVerifier,
    Verdict,
    Verifier,
    agree,
    build_review_request,
    combine_verdicts,
    parse_review,
    pick_reviewer,
    run_local,
    serves_as_reviewer,
    unjudged,
)

Ask = Callable[[ChatRequest, str], Awaitable[ChatResponse]]
"""An auxiliary call: the request, and its purpose (``review``, ``agreement``) for the ledger."""


class VerifyRail:
    """Runs a job's verifiers over one answer."""

    def __init__(self, config: Config, ask: Ask) -> None:
        self._config = config
        self._ask = ask

    async def judge(
        self, specs: Sequence[Verifier], request: ChatRequest, response: ChatResponse, author: Attempt
    ) -> Verdict:
        """Every verifier's verdict, combined: the first reject, else the first unjudged, else one accept."""
        verdicts = [await self._one(spec, request, response, author) for spec in specs]
        return combine_verdicts(verdicts)

    async def _one(self, spec: Verifier, request: ChatRequest, response: ChatResponse, author: Attempt) -> Verdict:
        try:
            if isinstance(spec, ReviewerVerifier):
                return await self._review(spec, request, response, author)
            if isinstance(spec, AgreementVerifier):
                other = await self._ask(_pinned(request, spec.model), "agreement")
                return agree(response, other, spec.field, verifier=f"agreement:{spec.model}")
            return await run_local(spec, response)
        except InterlockError as exc:
            # A verifier that cannot run judged nothing: never a silent accept, never the author's reject.
            return unjudged(f"verifier could not run: {exc}", _name(spec))

    async def _review(
        self, spec: ReviewerVerifier, request: ChatRequest, response: ChatResponse, author: Attempt
    ) -> Verdict:
        review = build_review_request(request, response, spec)
        reviewer = self._pick_reviewer(review, spec, author)
        if reviewer is None:
            asked = spec.model if spec.model is not None else f"class {spec.model_class!r}"
            lab = f" from a lab other than {author.candidate.model.lab!r}" if spec.require_other_lab else ""
            return unjudged(f"no reviewer of {asked}{lab} may serve", "reviewer")
        answer = await self._ask(_pinned(review, reviewer), "review")
        return parse_review(answer.content, verifier=f"reviewer:{reviewer}")

    def _pick_reviewer(self, review: ChatRequest, spec: ReviewerVerifier, author: Attempt) -> str | None:
        """The reviewer's config name: of the asked class (or the named model), never a degradation's pick."""
        resolution = resolve(self._config, review, estimate_input_tokens(review))
        candidates = [
            (c.name, c.model.lab)
            for c in resolution.candidates
            if serves_as_reviewer(
                spec, name=c.name, model_id=c.model.id, model_class=c.model.model_class, degrade=c.degrade
            )
        ]
        return pick_reviewer(candidates, author.candidate.model.lab, require_other_lab=spec.require_other_lab)


def _name(spec: Verifier) -> str:
    match spec:
        case ReviewerVerifier():
            return f"reviewer:{spec.model}" if spec.model is not None else "reviewer"
        case AgreementVerifier():
            return f"agreement:{spec.model}"
        case CallableVerifier():
            return spec.name
        case SchemaVerifier():
            return "schema"


def _pinned(request: ChatRequest, model: str) -> ChatRequest:
    """The request pinned to ``model`` alone (still governed by every rail), not counted as the job's."""
    return msgspec.structs.replace(request, model=model, model_class=None, task=None, request_id="")
