"""A job's classifier, before the walk: rules first, then a small model's label, then the default label.

The small model's call is an auxiliary call of the request (``Ask``, purpose ``classify``): its
attempt is recorded among the request's own, its cost in the request's. A label call that fails
decides nothing; the default label (if any) then stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from interlock._errors import InterlockError
from interlock._types import ChatRequest, ChatResponse
from interlock.policies._classifier import classify_by_rules, label_request, parse_label
from interlock.policies._config import Names
from interlock.policies._routing import Resolution

Ask = Callable[[ChatRequest, str], Awaitable[ChatResponse]]

_json = msgspec.json.Encoder()


async def classify(
    request: ChatRequest, resolution: Resolution, tokens: int, ask: Ask
) -> tuple[Names | None, str | None, str]:
    """The chain the job's classifier picks (None: the job's own), the label, and the decision as JSON."""
    job = resolution.policy
    spec = job.classifier
    assert spec is not None
    found = classify_by_rules(spec, request, tokens)
    label, decided_by = found.label, found.decided_by
    if label is None and spec.model is not None:
        try:
            reply = await ask(label_request(spec, request), "classify")
            label = parse_label(reply.content, list(spec.labels))
            decided_by = "model" if label is not None else "none"
        except InterlockError:
            label = None
    if label is None and spec.default_label is not None:
        label, decided_by = spec.default_label, "default"
    chain = spec.labels.get(label) if label is not None else None
    detail = {"decided_by": decided_by, "features": found.features, "chain": chain or job.chain}
    return chain or None, label, _json.encode(detail).decode()
