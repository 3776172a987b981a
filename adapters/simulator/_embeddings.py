"""Simulator, embeddings: OpenAI's ``POST /v1/embeddings`` and Gemini's ``:batchEmbedContents``.

Answers are deterministic: a text's vector is drawn from a hash of the model id and the text
(SHAKE-256), so the same text on the same model always gets the same vector and another model
another one. Vectors are unit length. ``dimensions`` (OpenAI) or ``outputDimensionality``
(Gemini) shortens a vector as Matryoshka models do: the first N components of the full one,
normalized again. Without it a vector has ``FULL_DIMENSIONS`` components. OpenAI's
``encoding_format = "base64"`` sends each vector as little-endian float32 bytes in base64, as
the OpenAI SDKs expect; usage is ``prompt_tokens`` at about four characters a token. Gemini
reports no usage, as its API does not.

A scripted fault or an outage for the model (``Simulator.script``) answers with its error
status in the wire's own error shape (rate limit, server error, unavailable, overloaded); the
other fault kinds shape streams, and an embedding is no stream, so they answer normally.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Callable

import msgspec
from aiohttp import web

from interlock.adapters.simulator._behaviour import STATUS_OF, Fault, RateLimit, fault_kind
from interlock.adapters.simulator._gemini import GEMINI
from interlock.adapters.simulator._openai import OPENAI
from interlock.adapters.simulator._playback import JSON, error_response
from interlock.adapters.simulator._wire import WireFormat

__all__ = ["FULL_DIMENSIONS", "add_embedding_routes", "vector"]

FULL_DIMENSIONS = 256
Faults = Callable[[str], "Fault | None"]  # the model's next forced fault (a script or an outage), if any


def vector(model: str, text: str, dimensions: int | None = None) -> tuple[float, ...]:
    """The unit vector ``model`` gives ``text``: the first ``dimensions`` of the full one, renormalized."""
    size = max(FULL_DIMENSIONS, dimensions or 0)
    raw = hashlib.shake_256(f"{model}\0{text}".encode()).digest(2 * size)
    full = [v / 32767.5 - 1.0 for v in struct.unpack(f"<{size}H", raw)]
    cut = full[: dimensions or FULL_DIMENSIONS]
    norm = math.sqrt(sum(v * v for v in cut)) or 1.0
    return tuple(v / norm for v in cut)


def _tokens(text: str) -> int:
    return -(-len(text) // 4)


# -- OpenAI ------------------------------------------------------------------------------------


class _OpenAIRequest(msgspec.Struct, frozen=True):
    model: str
    input: str | list[str]
    dimensions: int | None = None
    encoding_format: str = "float"


class _OpenAIItem(msgspec.Struct, frozen=True):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class _OpenAIUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    total_tokens: int


class _OpenAIList(msgspec.Struct, frozen=True):
    data: list[_OpenAIItem]
    model: str
    usage: _OpenAIUsage
    object: str = "list"


# -- Gemini ------------------------------------------------------------------------------------


class _Part(msgspec.Struct, frozen=True):
    text: str = ""


class _Content(msgspec.Struct, frozen=True):
    parts: list[_Part] = msgspec.field(default_factory=list)


class _GeminiEmbed(msgspec.Struct, frozen=True, rename="camel"):
    content: _Content
    model: str = ""
    output_dimensionality: int | None = None


class _GeminiBatch(msgspec.Struct, frozen=True):
    requests: list[_GeminiEmbed]


class _Values(msgspec.Struct, frozen=True):
    values: tuple[float, ...]


class _GeminiEmbeddings(msgspec.Struct, frozen=True):
    embeddings: list[_Values]


_ENCODER = msgspec.json.Encoder()
_OPENAI_DECODER = msgspec.json.Decoder(_OpenAIRequest)
_GEMINI_DECODER = msgspec.json.Decoder(_GeminiBatch)


def _faulted(wire: WireFormat, fault: Fault | None) -> web.Response | None:
    status = STATUS_OF.get(type(fault)) if fault is not None else None
    if fault is None or status is None:
        return None
    headers = {"retry-after": f"{fault.retry_after:g}"} if isinstance(fault, RateLimit) else None
    return error_response(wire, status, f"simulated {fault_kind(fault)}", headers)


def _encoded(values: tuple[float, ...], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return list(values)


def add_embedding_routes(app: web.Application, faults: Faults) -> None:
    """Register both embeddings endpoints on ``app`` (before Gemini's catch-all model route)."""

    async def openai(request: web.Request) -> web.StreamResponse:
        try:
            ask = _OPENAI_DECODER.decode(await request.read())
        except msgspec.DecodeError as exc:
            return error_response(OPENAI, 400, f"invalid request body: {exc}")
        texts = [ask.input] if isinstance(ask.input, str) else ask.input
        if not texts or ask.encoding_format not in ("float", "base64") or (ask.dimensions or 1) < 1:
            return error_response(OPENAI, 400, "input must be non-empty; encoding_format float or base64")
        refused = _faulted(OPENAI, faults(ask.model))
        if refused is not None:
            return refused
        data = [
            _OpenAIItem(i, _encoded(vector(ask.model, text, ask.dimensions), ask.encoding_format))
            for i, text in enumerate(texts)
        ]
        tokens = sum(_tokens(t) for t in texts)
        body = _OpenAIList(data=data, model=ask.model, usage=_OpenAIUsage(tokens, tokens))
        return web.Response(body=_ENCODER.encode(body), content_type=JSON)

    async def gemini(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"].removeprefix("models/")
        try:
            batch = _GEMINI_DECODER.decode(await request.read())
        except msgspec.DecodeError as exc:
            return error_response(GEMINI, 400, f"invalid request body: {exc}")
        if not batch.requests or any(r.model not in ("", f"models/{model}") for r in batch.requests):
            return error_response(GEMINI, 400, "requests must be non-empty and name the model of the path")
        refused = _faulted(GEMINI, faults(model))
        if refused is not None:
            return refused
        embeddings = [
            _Values(vector(model, "".join(p.text for p in r.content.parts), r.output_dimensionality))
            for r in batch.requests
        ]
        return web.Response(body=_ENCODER.encode(_GeminiEmbeddings(embeddings)), content_type=JSON)

    app.router.add_post("/v1/embeddings", openai)
    for version in ("v1beta", "v1"):
        app.router.add_post(f"/{version}/models/{{model}}:batchEmbedContents", gemini)
