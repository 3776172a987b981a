"""The gateway's embeddings dialect: OpenAI's ``POST /v1/embeddings`` over ``door.send_embed``.

Request ``{"input": "text" | ["text", ...], "model", "dimensions"?, "encoding_format"?: "float" |
"base64", "user"?}``; ``model`` names a job (``embed`` in the embedded fleet) or a model, as for
chat. Answer ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
"model", "usage": {"prompt_tokens", "total_tokens"}}`` with the ``x-interlock-*`` headers of how
it was served. With ``base64`` each vector is its little-endian float32 bytes in base64 (what the
OpenAI SDKs ask for by default, and decode themselves). Token arrays as ``input`` (OpenAI
accepts pre-tokenized input) cannot be routed across providers and are a 400 naming ``input``,
before the door sees the request.

The door is reached through ``EmbeddingDoor``, apart from ``GatewayDoor``: a door that serves
no embeddings (a test double of the chat face) answers this route with a 404 naming it.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interlock._embeddings import EmbedRequest, EmbedResponse
from interlock._errors import RequestError
from interlock.adapters.gateway._answers import route_headers
from interlock.adapters.gateway._edge import Edge, Reject, guarded, json_response, trace_of
from interlock.adapters.gateway._failures import failure
from interlock.adapters.gateway._requests import decode_error, sensitivity_of, too_deep

__all__ = ["EmbeddingDoor", "embeddings_route"]


@runtime_checkable
class EmbeddingDoor(Protocol):
    """The part of ``interlock.Door`` that embeds."""

    async def send_embed(self, request: EmbedRequest) -> EmbedResponse: ...


class EmbeddingsIn(msgspec.Struct, frozen=True):
    """The request body; unknown fields are ignored, as OpenAI's SDKs may add some."""

    input: str | list[Any]
    model: str
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class EmbeddingOut(msgspec.Struct, frozen=True):
    """One vector of the answer, at its input's index."""

    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsageOut(msgspec.Struct, frozen=True):
    """Input tokens billed (embeddings have no output tokens)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingListOut(msgspec.Struct, frozen=True):
    """The answer body."""

    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsageOut
    object: str = "list"


_DECODER = msgspec.json.Decoder(EmbeddingsIn)


def embeddings_route(edge: Edge) -> Route:
    """``POST /embeddings`` over ``edge``'s door (the app serves it under ``/v1`` too)."""
    return Route("/embeddings", guarded(_Embeddings(edge).create), methods=["POST"])


class _Embeddings:
    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    async def create(self, request: Request) -> Response:
        edge = self._edge
        who = edge.authenticate(request)
        door = edge.door
        if not isinstance(door, EmbeddingDoor):
            raise Reject(failure("model_not_found", "this gateway's door serves no embeddings", param="model"))
        wire = _decode(await edge.read_body(request))
        request_id, _ = edge.new_request_id()
        metadata = trace_of(request)
        if wire.user:
            metadata["user"] = wire.user
        ask = EmbedRequest(
            inputs=_texts(wire.input), model=wire.model, tenant=who.tenant, caller=who.caller,
            sensitivity=sensitivity_of(request.headers.get("x-interlock-sensitivity")),
            dimensions=wire.dimensions, metadata=metadata, request_id=request_id,
        )  # fmt: skip
        answer = await door.send_embed(ask)
        tokens = answer.usage.input_tokens if answer.usage is not None else 0
        data = [EmbeddingOut(i, _encoded(v, wire.encoding_format)) for i, v in enumerate(answer.vectors)]
        out = EmbeddingListOut(data=data, model=wire.model, usage=EmbeddingUsageOut(tokens, tokens))
        return json_response(out, headers=route_headers(answer.route, request_id))


def _decode(body: bytes) -> EmbeddingsIn:
    try:
        wire = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    except RecursionError:  # msgspec descends containers on the C stack: a deep body runs out of it
        raise too_deep(body) from None
    if wire.dimensions is not None and wire.dimensions < 1:
        raise RequestError("dimensions", "must be a positive integer")
    return wire


def _texts(value: str | list[Any]) -> tuple[str, ...]:
    """The texts to embed; token arrays and empty input are refused naming ``input``."""
    if isinstance(value, str):
        return (value,)
    if not value:
        raise RequestError("input", "at least one text is required")
    if not all(isinstance(v, str) for v in value):
        raise RequestError("input", "expected a string or an array of strings; token arrays are not supported")
    return tuple(value)


def _encoded(vector: tuple[float, ...], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return list(vector)
