"""Gemini's embeddings wire: ``POST /{version}/models/{model}:batchEmbedContents``.

Request ``{"requests": [{"model": "models/{model}", "content": {"parts": [{"text"}]},
"outputDimensionality"?}]}`` (every request names the same model as the path); response
``{"embeddings": [{"values": [floats]}]}`` in request order. The response reports no usage: the
walk bills an estimate and marks it so. Gemini takes at most 100 requests per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

import msgspec

from interlock._errors import ErrorClass, ProviderError
from interlock._secret import Secret
from interlock.adapters.providers._codec import WireRequest
from interlock.adapters.providers._embed import Embedded
from interlock.adapters.providers.gemini._codec import request_headers

__all__ = ["GeminiEmbedCodec"]


class _Part(msgspec.Struct, frozen=True):
    text: str


class _Content(msgspec.Struct, frozen=True):
    parts: tuple[_Part, ...]


class _EmbedContent(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    model: str
    content: _Content
    output_dimensionality: int | None = None


class _Batch(msgspec.Struct, frozen=True):
    requests: list[_EmbedContent]


class _Values(msgspec.Struct, frozen=True):
    values: list[float] = msgspec.field(default_factory=list)


class _Response(msgspec.Struct, frozen=True):
    embeddings: list[_Values] = msgspec.field(default_factory=list)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Response)


class GeminiEmbedCodec:
    """Texts to ``:batchEmbedContents`` and back; implements ``EmbedCodec``."""

    max_batch = 100

    def __init__(
        self,
        provider: str,
        api_key: Secret | None,
        *,
        api_version: str = "v1beta",
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self._key = api_key
        self._version = api_version
        self._extra = dict(extra_headers or {})

    def __repr__(self) -> str:
        return f"GeminiEmbedCodec({self.provider!r}, api_version={self._version!r})"

    def encode_embed(self, inputs: Sequence[str], model_id: str, dimensions: int | None) -> WireRequest:
        """One ``batchEmbedContents`` request, one entry per text, at ``dimensions`` when given."""
        bare = model_id.removeprefix("models/")
        name = f"models/{bare}"
        requests = [_EmbedContent(name, _Content((_Part(text),)), dimensions) for text in inputs]
        path = f"/{self._version}/models/{quote(bare, safe='-._')}:batchEmbedContents"
        headers = request_headers(self._key, self._extra, json_body=True)
        return WireRequest("POST", path, headers, _ENCODER.encode(_Batch(requests)))

    def decode_embed(self, body: bytes, model_id: str, count: int) -> Embedded:
        """The vectors in request order; Gemini reports no usage for them."""
        try:
            wire = _DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise _bad(self.provider, model_id, "malformed embeddings JSON") from exc
        if len(wire.embeddings) != count or any(not e.values for e in wire.embeddings):
            raise _bad(self.provider, model_id, f"expected {count} embeddings with values")
        return Embedded(vectors=tuple(tuple(e.values) for e in wire.embeddings), served_model=model_id)


def _bad(provider: str, model_id: str, detail: str) -> ProviderError:
    return ProviderError(ErrorClass.SERVER_ERROR, provider, model=model_id, detail=detail)
