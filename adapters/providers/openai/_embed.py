"""OpenAI's embeddings wire: ``POST /embeddings`` (relative to a base URL ending in ``/v1``).

Request ``{"model", "input": [texts], "dimensions"?, "encoding_format": "float"}``; response
``{"object": "list", "data": [{"object": "embedding", "index", "embedding": [floats]}], "model",
"usage": {"prompt_tokens", "total_tokens"}}``. Floats are asked for rather than base64 so that
OpenAI-compatible servers (which often lack base64) answer the same way. ``data`` is put back in
input order by ``index``. OpenAI takes at most 2048 inputs per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from interlock._errors import ErrorClass, ProviderError
from interlock._secret import Secret
from interlock._types import Usage
from interlock.adapters.providers._codec import WireRequest
from interlock.adapters.providers._embed import Embedded

__all__ = ["OpenAIEmbedCodec"]


class _Request(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    input: list[str]
    encoding_format: str  # no default: omit_defaults would leave it out, and servers differ on theirs
    dimensions: int | None = None


class _Item(msgspec.Struct, frozen=True):
    embedding: list[float]
    index: int = 0


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    total_tokens: int = 0


class _Response(msgspec.Struct, frozen=True):
    data: list[_Item]
    model: str = ""
    usage: _Usage | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Response)


class OpenAIEmbedCodec:
    """Texts to ``POST /embeddings`` and back; implements ``EmbedCodec``."""

    max_batch = 2048

    def __init__(
        self, provider: str, api_key: Secret | None, *, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        self.provider = provider
        self._api_key = api_key
        self._extra_headers = dict(extra_headers or {})

    def __repr__(self) -> str:
        return f"OpenAIEmbedCodec({self.provider!r}, api_key={self._api_key!r})"

    def encode_embed(self, inputs: Sequence[str], model_id: str, dimensions: int | None) -> WireRequest:
        """``POST /embeddings`` for ``inputs``, as floats, at ``dimensions`` when given."""
        body = _ENCODER.encode(
            _Request(model=model_id, input=list(inputs), encoding_format="float", dimensions=dimensions)
        )
        headers = {**self._extra_headers, "Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return WireRequest("POST", "/embeddings", headers, body)

    def decode_embed(self, body: bytes, model_id: str, count: int) -> Embedded:
        """The vectors in input order (by ``index``), with ``prompt_tokens`` as input usage."""
        try:
            wire = _DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise _bad(self.provider, model_id, "malformed embeddings JSON") from exc
        items = sorted(wire.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(count)):
            raise _bad(self.provider, model_id, f"expected {count} embeddings indexed 0..{count - 1}")
        usage = None if wire.usage is None else Usage(input_tokens=wire.usage.prompt_tokens)
        vectors = tuple(tuple(item.embedding) for item in items)
        return Embedded(vectors=vectors, usage=usage, served_model=wire.model)


def _bad(provider: str, model_id: str, detail: str) -> ProviderError:
    return ProviderError(ErrorClass.SERVER_ERROR, provider, model=model_id, detail=detail)
