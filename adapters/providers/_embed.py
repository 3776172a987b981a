"""The embeddings half of an HTTP provider: what an embed codec maps, and what an embed call returns.

An embed codec is pure, like the chat codec beside it: texts -> one wire request (a batch of at
most ``max_batch`` texts), a 2xx body -> ``Embedded``. Errors are classified by the provider's
chat codec (one error format per provider). ``HttpAdapter.embed`` splits the texts into batches,
sends them one after another and joins the vectors in input order. Providers without an
embeddings API (Anthropic, command-line models) have no embed codec: an embed call to them is a
``bad_request`` that says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from interlock._errors import ErrorClass, ProviderError
from interlock._types import Usage
from interlock.adapters.providers._codec import WireRequest


class Embedded(msgspec.Struct, frozen=True, kw_only=True):
    """Vectors in input order, the usage the provider reported (None: it reported none) and its model id."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None = None
    served_model: str = ""


class EmbedCodec(Protocol):
    """Pure mapping between texts and one provider's embeddings wire."""

    @property
    def max_batch(self) -> int:
        """The most texts one upstream request may carry."""
        ...

    def encode_embed(self, inputs: Sequence[str], model_id: str, dimensions: int | None) -> WireRequest:
        """One embeddings request for ``inputs`` (at most ``max_batch`` of them)."""
        ...

    def decode_embed(self, body: bytes, model_id: str, count: int) -> Embedded:
        """The ``count`` vectors of a 2xx body, in input order; ``ProviderError`` when it holds other than that."""
        ...


Embedder = Callable[[Sequence[str], str, "int | None"], Awaitable[Embedded]]


def embedder(adapter: object, provider: str) -> Embedder:
    """``adapter``'s ``embed`` (texts, model id, dimensions); a ``bad_request`` for an adapter that has none.

    Probed rather than part of ``ProviderAdapter``: only HTTP adapters embed (and an HTTP adapter
    whose provider has no embeddings API says so itself), so the others need not say they do not.
    """
    embed: Embedder | None = getattr(adapter, "embed", None)
    if embed is None:
        raise ProviderError(ErrorClass.BAD_REQUEST, provider, detail=f"{provider} has no embeddings API")
    return embed
