"""The embedding operation's request and answer: texts in, one vector per text out, with its route."""

from __future__ import annotations

import msgspec

from interlock._types import Route, Sensitivity, Usage


class EmbedRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Texts to embed, with the routing fields a ``ChatRequest`` has (task, model, tenant...).

    ``dimensions`` asks for shorter vectors where the model can give them (None: its own size).
    Only models marked ``kind = "embedding"`` may serve it; a chat model never does.
    """

    inputs: tuple[str, ...]
    task: str | None = None
    model: str | None = None
    model_class: str | None = None
    tenant: str = "default"
    caller: str = "default"
    sensitivity: Sensitivity = "internal"
    dimensions: int | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    request_id: str = ""


class EmbedResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One vector per input, in input order, with the usage billed and the route that served them.

    ``usage`` is None when the provider reported none (Gemini does not): the route's cost is then
    an estimate, and says so (``usage_estimated``).
    """

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None = None
    route: Route | None = None
